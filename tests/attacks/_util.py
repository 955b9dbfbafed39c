"""Shared helpers: the golden-vector script's file surgery (split, re-assemble with CRCs)."""

from __future__ import annotations

import sys
import zlib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "spec"))

from make_vectors import (  # noqa: E402, F401 - re-exported for the attack modules
    assemble,
    forced,
    modify,
    node_at,
    patch,
    sec_of,
    split_file,
)

from czmodel.format.preamble import PREAMBLE_SIZE  # noqa: E402


def set_payload(data: bytes, tensor: str, path: str, payload: bytes) -> bytes:
    """Replace the payload of one stream (any length), fixing the section table and CRCs."""
    def edit(hdr, payloads):
        payloads[sec_of(hdr, tensor, path)] = payload
    return modify(data, edit)


def payload_of(data: bytes, tensor: str, path: str) -> bytes:
    hdr, payloads = split_file(data)
    return payloads[sec_of(hdr, tensor, path)]


def assemble_table(data: bytes, lengths: dict) -> bytes:
    """Re-assemble ``data`` with the section table's ``length`` of section i replaced by
    ``lengths[i](offset_i)`` (offsets and CRCs as the real payloads need them): a hostile
    table that is otherwise consistent, so the length rule is the one that fires."""
    from make_vectors import preamble

    from czmodel.format import header as H
    from czmodel.format.preamble import align_up
    hdr, payloads = split_file(data)
    crcs = [zlib.crc32(p) for p in payloads]
    table = [[0, len(p), c] for p, c in zip(payloads, crcs)]
    for _ in range(16):
        hdr["sections"] = table
        hb = H.pack_header(hdr)
        pos, offs = PREAMBLE_SIZE + len(hb), []
        for p in payloads:
            offs.append(align_up(pos))
            pos = offs[-1] + len(p)
        new = [[o, lengths[i](o) if i in lengths else len(p), c]
               for i, (o, p, c) in enumerate(zip(offs, payloads, crcs))]
        if new == table:
            break
        table = new
    out = bytearray(preamble(hb)) + hb
    for o, p in zip(offs, payloads):
        out += bytes(o - len(out)) + p
    return bytes(out)
