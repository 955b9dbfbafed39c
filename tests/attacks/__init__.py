"""Hostile ``.cz`` files, one builder per attack (the safetensors "attacks" folder, for .cz).

Each builder makes a hostile file with the real writer (``czmodel.format.writer.build_file``)
plus surgical edits; checksums are recomputed so that the fault reaches the parser or decoder
it targets instead of being caught by a CRC. ``tests/test_attacks.py`` feeds every file to the
Python reader and to the C reader and checks the specific error, the time and the memory.

An ``Attack`` names:
  * ``error``  -- the class the spec (spec/format.md, "When a file is corrupt") prescribes;
                  ``None`` for a file that is VALID and must be accepted (e.g. NaN scales);
  * ``stage``  -- ``"open"`` (found by czmodel.open) or ``"verify"`` (found when decoding);
                  the C reader builds kernel forms at open, so it may find a decode fault at
                  cz_open_memory already: the C side accepts either stage;
  * ``message`` -- a substring of the Python reader's message;
  * ``c_error`` -- the C class when it differs from ``error`` (documented deviations only).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Attack:
    name: str
    build: Callable[[], bytes]
    error: str | None
    stage: str
    message: str
    doc: str
    c_error: str | None = None
    cap: int | None = None          # max_tensor_bytes for both readers (None: default, 8 GiB)


ATTACKS: list[Attack] = []


def attack(error: str | None, stage: str, message: str, *, c_error: str | None = None,
           cap: int | None = None):
    """Register a builder ``a_<name>()`` returning the hostile file's bytes."""
    def deco(fn: Callable[[], bytes]) -> Callable[[], bytes]:
        ATTACKS.append(Attack(fn.__name__.removeprefix("a_"), fn, error, stage, message,
                              (fn.__doc__ or "").strip().splitlines()[0] if fn.__doc__ else "",
                              c_error, cap))
        return fn
    return deco


def all_attacks() -> list[Attack]:
    from . import codecs, container, entropy, graph, msgpack  # noqa: F401 - fill ATTACKS
    return list(ATTACKS)
