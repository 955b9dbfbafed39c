"""Hard limits every reader enforces before it allocates or decodes (spec: "Limits")."""

from __future__ import annotations

from dataclasses import dataclass

MAX_HEADER_BYTES = 64 << 20        # hard: a header larger than this is rejected unread
MAX_NDIM = 16                      # hard: tensor/node rank
MAX_DIM = 1 << 40                  # hard: any single dimension
MAX_ELEMENTS = 1 << 44             # hard: elements of a shape (streams: 2^34, entropy)
MAX_TREE_DEPTH = 8                 # hard: nesting of encoding nodes
MAX_TENSORS = 1 << 20              # hard: tensor entries
MAX_SECTIONS = 1 << 22             # hard: section table entries
ZSTD_MAX_RATIO = 1 << 15           # no valid zstd frame expands more than this (RLE blocks)
DEFAULT_MAX_TENSOR_BYTES = 8 << 30  # recommended: cap on one decoded tensor, caller-settable


@dataclass(frozen=True)
class Limits:
    """Caller-settable caps (recommended limits); hard limits above always apply."""

    max_tensor_bytes: int = DEFAULT_MAX_TENSOR_BYTES
    max_header_bytes: int = MAX_HEADER_BYTES

    def __post_init__(self) -> None:
        if self.max_header_bytes > MAX_HEADER_BYTES:
            raise ValueError(f"max_header_bytes cannot exceed the hard limit {MAX_HEADER_BYTES}")
