"""The ``cz`` command line. Exit codes: 0 ok, 1 bad input (a CzError or missing file),
2 usage error. Errors print one line unless ``--debug``."""
