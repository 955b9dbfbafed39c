"""czmodel: compressed neural networks in one .cz file.

The top level only re-exports; see ``czmodel.api`` (open/verify/write/save),
``czmodel.encode`` (encoding-tree builders) and ``czmodel.compress`` (algorithms).
"""

from czmodel.api import open, save, verify, write  # noqa: A004
from czmodel.errors import (
    CorruptionError,
    CzError,
    EncodeError,
    FormatError,
    LimitError,
    UnsupportedError,
)
from czmodel.format.reader import CzFile
from czmodel.runtime.model import load

__version__ = "0.1.0"
__all__ = ["open", "load", "save", "verify", "write", "CzFile", "CzError", "FormatError",
           "CorruptionError", "UnsupportedError", "LimitError", "EncodeError", "__version__"]
