"""The per-layer compression report in the form of Deep Compression's Tables 2 and 3,
with an energy estimate from the 45 nm cost table (Horowitz, ISSCC 2014).

P = pruning, Q = quantization (weight sharing), H = Huffman. "P+Q" sizes are the streams'
raw packed sizes (before the entropy stage); "P+Q+H" are the stored sizes in the file.
Weight bits count the value streams (indices, centroids, scales) per stored weight; index
bits count the sparse structure (gaps, row pointers, positions) per stored weight.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from typing import Any

# pJ per operation, 45 nm, from Horowitz ISSCC 2014 (the lecture's table).
ENERGY_PJ = {"dram_32b": 640.0, "sram_32b": 5.0, "fp32_mult": 3.7, "fp32_add": 0.9,
             "int32_add": 0.1, "int8_add": 0.03, "int32_mult": 3.1, "int8_mult": 0.2}
DEFAULT_ON_CHIP_BYTES = 4 << 20   # an SRAM budget in the EIE range


@dataclass
class LayerRow:
    name: str
    weights: int
    kept_pct: float
    weight_bits_pq: float
    weight_bits_pqh: float
    index_bits_pq: float
    index_bits_pqh: float
    rate_pq: float
    rate_pqh: float
    encoding: str
    stored_bytes: int


@dataclass
class Report:
    rows: list[LayerRow]
    fp32_bytes: int
    stored_bytes: int
    file_bytes: int
    energy: dict[str, float] = field(default_factory=dict)

    @property
    def ratio(self) -> float:
        return self.fp32_bytes / self.stored_bytes if self.stored_bytes else float("inf")

    @property
    def file_ratio(self) -> float:
        return self.fp32_bytes / self.file_bytes if self.file_bytes else float("inf")

    def totals(self) -> LayerRow:
        n = sum(r.weights for r in self.rows)
        kept = sum(r.weights * r.kept_pct / 100 for r in self.rows)

        def wavg(attr: str) -> float:
            k = sum(r.weights * r.kept_pct / 100 * getattr(r, attr) for r in self.rows)
            return k / kept if kept else 0.0

        pq_bytes = sum(r.weights * 4 / r.rate_pq for r in self.rows if r.rate_pq)
        return LayerRow("total", n, 100 * kept / n if n else 0.0, wavg("weight_bits_pq"),
                        wavg("weight_bits_pqh"), wavg("index_bits_pq"), wavg("index_bits_pqh"),
                        self.fp32_bytes / pq_bytes if pq_bytes else 0.0, self.ratio, "",
                        self.stored_bytes)

    _HEAD = ["layer", "#weights", "kept % (P)", "weight bits (P+Q)", "weight bits (P+Q+H)",
             "index bits (P+Q)", "index bits (P+Q+H)", "rate (P+Q)", "rate (P+Q+H)"]

    def _cells(self, r: LayerRow) -> list[Any]:
        return [r.name, r.weights, round(r.kept_pct, 1), round(r.weight_bits_pq, 2),
                round(r.weight_bits_pqh, 2), round(r.index_bits_pq, 2),
                round(r.index_bits_pqh, 2), f"{r.rate_pq:.1f}x", f"{r.rate_pqh:.1f}x"]

    def _table_rows(self) -> list[list[Any]]:
        return [self._cells(r) for r in self.rows] + [self._cells(self.totals())]

    def _summary(self) -> str:
        e = self.energy
        if not e:
            return ""
        return (f"file: {self.file_bytes:,} bytes vs {self.fp32_bytes:,} fp32 "
                f"({self.file_ratio:.1f}x). Energy per inference (45 nm, one use per "
                f"weight): {e['compressed_uj']:.2f} uJ vs {e['fp32_uj']:.2f} uJ fp32 "
                f"({e['fp32_uj'] / e['compressed_uj']:.1f}x less); weights "
                f"{'fit' if e['fits_on_chip'] else 'do not fit'} in a "
                f"{e['on_chip_bytes'] >> 20} MiB SRAM")

    def to_text(self) -> str:
        from czmodel.cli.table import render

        out = render(self._HEAD, self._table_rows(), "lrrrrrrrr")
        summary = self._summary()
        return out + ("\n\n" + summary if summary else "")

    def print(self, file: Any = None) -> None:
        """Print the report: a rich table in a terminal, else exactly ``to_text()``."""
        from czmodel.cli.table import print_table

        print_table(self._HEAD, self._table_rows(), "lrrrrrrrr", total_row=True, file=file)
        summary = self._summary()
        if summary:
            print("\n" + summary, file=file)

    def to_markdown(self) -> str:
        rows = [self._cells(r) for r in self.rows] + [self._cells(self.totals())]
        lines = ["| " + " | ".join(self._HEAD) + " |",
                 "|" + "---|" * len(self._HEAD)]
        lines += ["| " + " | ".join(f"{c:,}" if isinstance(c, int) else str(c) for c in r)
                  + " |" for r in rows]
        return "\n".join(lines)

    def to_dict(self) -> dict:
        return {"rows": [asdict(r) for r in self.rows], "total": asdict(self.totals()),
                "fp32_bytes": self.fp32_bytes, "stored_bytes": self.stored_bytes,
                "file_bytes": self.file_bytes, "ratio": self.ratio,
                "file_ratio": self.file_ratio, "energy": self.energy}

    def to_json(self, indent: int = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent)


def energy_estimate(rows: list[LayerRow], fp32_bytes: int, stored_bytes: int,
                    on_chip_bytes: int = DEFAULT_ON_CHIP_BYTES) -> dict[str, float]:
    """Memory + arithmetic energy of one inference, one multiply-add per stored weight.
    Weights live in SRAM when they fit in ``on_chip_bytes``, else in DRAM."""
    e = ENERGY_PJ
    macs_dense = sum(r.weights for r in rows)
    macs_kept = sum(r.weights * r.kept_pct / 100 for r in rows)
    mac = e["fp32_mult"] + e["fp32_add"]

    def mem(nbytes: int) -> float:
        per = e["sram_32b"] if nbytes <= on_chip_bytes else e["dram_32b"]
        return nbytes / 4 * per

    fp32 = mem(fp32_bytes) + macs_dense * mac
    comp = mem(stored_bytes) + macs_kept * mac
    return {"fp32_uj": fp32 / 1e6, "compressed_uj": comp / 1e6,
            "fits_on_chip": stored_bytes <= on_chip_bytes,
            "fp32_fits_on_chip": fp32_bytes <= on_chip_bytes, "on_chip_bytes": on_chip_bytes}


def rows_from_info(info: list[dict], kept: dict[str, int] | None = None) -> list[LayerRow]:
    rows = []
    for t in info:
        n = t["elements"]
        k = (kept or {}).get(t["name"], n)
        w_raw = sum(s["raw_bytes"] for s in t["streams"] if s["kind"] == "weight")
        w_st = sum(s["stored_bytes"] for s in t["streams"] if s["kind"] == "weight")
        i_raw = sum(s["raw_bytes"] for s in t["streams"] if s["kind"] == "index")
        i_st = sum(s["stored_bytes"] for s in t["streams"] if s["kind"] == "index")
        per = 8 / k if k else 0.0
        rows.append(LayerRow(t["name"], n, 100 * k / n if n else 100.0, w_raw * per,
                             w_st * per, i_raw * per, i_st * per,
                             t["fp32_bytes"] / (w_raw + i_raw) if w_raw + i_raw else 0.0,
                             t["ratio"] if t["stored_bytes"] else 0.0, t["encoding"],
                             t["stored_bytes"]))
    return rows


def build_report(path: str | os.PathLike, results: list | None = None,
                 on_chip_bytes: int = DEFAULT_ON_CHIP_BYTES) -> Report:
    """Report for a written file; ``results`` (from the pipeline) give the kept counts,
    otherwise they are counted by decoding (non-zeros)."""
    import numpy as np

    from czmodel.format.reader import CzFile

    with CzFile(path) as f:
        info = f.info()
        if results is not None:
            kept = {r.name: r.kept for r in results}
        else:
            kept = {t["name"]: int(np.count_nonzero(f[t["name"]])) for t in info}
    rows = rows_from_info(info, kept)
    fp32 = sum(t["fp32_bytes"] for t in info)
    stored = sum(t["stored_bytes"] for t in info)
    return Report(rows, fp32, stored, os.path.getsize(path),
                  energy_estimate(rows, fp32, stored, on_chip_bytes))
