"""The .cz container: preamble, msgpack header, 64-byte-aligned checksummed sections."""

from czmodel.format.reader import CzFile, TensorEntry
from czmodel.format.writer import build_file, write, write_file

__all__ = ["CzFile", "TensorEntry", "build_file", "write", "write_file"]
