"""Typed errors. Every fault found in a file raises a ``CzError`` subclass.

Each error carries where it happened (``tensor`` name, byte ``offset``, stream
``path``) so a user can tell which part of which file is bad.
"""

from __future__ import annotations


class CzError(Exception):
    """Base class of every error raised for a bad, hostile or unsupported file."""

    def __init__(self, message: str, *, tensor: str | None = None,
                 offset: int | None = None, path: str | None = None) -> None:
        self.message = message
        self.tensor = tensor
        self.offset = offset
        self.path = path
        super().__init__(self._render())

    def _render(self) -> str:
        where = []
        if self.tensor is not None:
            where.append(f"tensor {self.tensor!r}")
        if self.path is not None:
            where.append(f"stream {self.path!r}")
        if self.offset is not None:
            where.append(f"offset {self.offset}")
        return f"{self.message} ({', '.join(where)})" if where else self.message

    def located(self, *, tensor: str | None = None, path: str | None = None,
                offset: int | None = None) -> CzError:
        """Return self with missing location fields filled in (for re-raise)."""
        if self.tensor is None and tensor is not None:
            self.tensor = tensor
        if self.path is None and path is not None:
            self.path = path
        if self.offset is None and offset is not None:
            self.offset = offset
        self.args = (self._render(),)
        return self


class FormatError(CzError):
    """The bytes are not a well-formed .cz file (bad magic, malformed header, bad layout)."""


class CorruptionError(CzError):
    """Structure is valid but content is inconsistent (checksum mismatch, bad stream)."""


class UnsupportedError(CzError):
    """The file uses a version, feature, codec, dtype or op this reader does not know."""


class LimitError(CzError):
    """The file claims sizes beyond a hard limit or beyond what its bytes can hold."""


class EncodeError(CzError, ValueError):
    """Arguments given to a writer/encoder are invalid (raised before anything is written)."""


class RuntimeInputError(CzError, ValueError):
    """A model run got inputs that do not fit the graph (missing/extra feed, wrong dtype,
    rank or dim), or an op found its operands inconsistent at run time (names the node)."""
