import sys

from czmodel.cli.main import main

sys.exit(main())
