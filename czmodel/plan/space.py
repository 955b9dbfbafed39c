"""Candidate settings per layer, the config a choice becomes, and the exact stored bytes
of a (layer, candidate) (by really compressing the tensor).

A ``Candidate`` is a short label and a config section the compression step understands
(``layers[name]`` of a ``CompressionConfig``); ``spec=None`` is "fp32, stored as is". Labels
name the catalogue settings and can be parsed back (``parse_label``):

    fp32                  as is                       int8 / int4     affine per channel
    k5                    5-bit k-means codebook      p90             90% magnitude pruning
    p90-k4                pruned 90%, kept values in a 4-bit codebook (Deep Compression)
    p70-int8              pruned 70%, kept values int8
    r0.25-int8            SVD low rank, rank = 0.25 x min(rows, cols), factors int8
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from czmodel.errors import EncodeError

#: the top-level default of every config the planner writes: planned layers are all listed
#: under "layers", so this only reaches weights the plan does not list (stored losslessly)
PLAN_DEFAULT: dict = {}


@dataclass(frozen=True)
class Candidate:
    label: str
    spec: Any = None          # a config section (dict), or None = fp32 as is

    def to_dict(self) -> dict:
        return {"label": self.label, "spec": copy.deepcopy(self.spec)}

    @classmethod
    def from_dict(cls, d: Mapping) -> Candidate:
        return cls(str(d["label"]), _freeze(d.get("spec")))


def _freeze(spec: Any) -> Any:
    """Specs are plain dicts; keep a private deep copy so callers cannot mutate ours."""
    return copy.deepcopy(spec)


_INT = {"int8": 8, "int4": 4}
_PART = re.compile(r"^(?:p(?P<p>\d+(?:\.\d+)?)|r(?P<r>\d*\.?\d+)|(?P<q>k\d+|int8|int4))$")


def parse_label(label: str, shape: Sequence[int] | None = None) -> Candidate:
    """A catalogue label -> Candidate (``shape`` is needed for ``rF`` rank fractions)."""
    label = label.strip()
    if label == "fp32":
        return Candidate("fp32", None)
    groups: dict[str, str] = {}
    for part in label.split("-"):
        m = _PART.match(part)
        key = next((k for k, v in m.groupdict().items() if v), None) if m else None
        if key is None or key in groups:
            raise EncodeError(f"candidate {label!r}: use fp32, int8, int4, kB (B-bit "
                              "k-means), pS (S% pruned), rF (SVD rank fraction F) or "
                              "combinations like p90-k4, p70-int8, r0.25-int8")
        groups[key] = m.group(key)
    m = groups
    spec: dict[str, Any] = {}
    if m.get("p"):
        s = float(m["p"]) / 100.0
        if not 0.0 < s < 1.0:
            raise EncodeError(f"candidate {label!r}: sparsity must be in (0, 100)")
        spec["prune"] = {"sparsity": round(s, 6)}
    if m.get("r"):
        if shape is None or len(shape) < 2:
            raise EncodeError(f"candidate {label!r}: low rank needs a 2-D (or conv) weight")
        rows, cols = int(shape[0]), int(np.prod(shape[1:]))
        frac = float(m["r"])
        if not 0.0 < frac <= 1.0:
            raise EncodeError(f"candidate {label!r}: rank fraction must be in (0, 1]")
        spec["lowrank"] = {"method": "svd", "rank": max(1, int(round(frac * min(rows, cols))))}
        if "prune" in spec:
            raise EncodeError(f"candidate {label!r}: low rank and pruning do not combine")
    q = m.get("q")
    if q in _INT:
        spec["quantize"] = {"method": "affine", "bits": _INT[q], "per_channel": True}
    elif q:
        b = int(q[1:])
        if not 1 <= b <= 8:
            raise EncodeError(f"candidate {label!r}: k-means bits must be in [1, 8]")
        spec["quantize"] = {"method": "kmeans", "bits": b}
    if "prune" in spec and spec.get("quantize", {}).get("per_channel"):
        # kept values of a sparse tensor are one vector: per-tensor scale
        spec["quantize"] = {"method": "affine", "bits": spec["quantize"]["bits"]}
    return Candidate(label, spec)


#: default catalogues by op type ("small": a quick profile; "default": the full grid)
_FC_DEFAULT = ["fp32", "int8", "int4", "k6", "k5", "k4", "k3", "p50-k5", "p70-k5", "p80-k5",
               "p80-k4", "p90-k5", "p90-k4", "p95-k4", "r0.5-int8", "r0.25-int8",
               "r0.125-int8"]
_CONV_DEFAULT = ["fp32", "int8", "int4", "k6", "k5", "k4", "p50-k6", "p50-k5", "p70-k5",
                 "p80-k5", "p80-k4", "p90-k4"]
_EMB_DEFAULT = ["fp32", "int8", "int4", "k6", "k5", "k4"]
CATALOGUE = {
    "default": {"Linear": _FC_DEFAULT, "Gemm": _FC_DEFAULT, "MatMul": _FC_DEFAULT,
                "Conv": _CONV_DEFAULT, "ConvTranspose": _CONV_DEFAULT, "Gather": _EMB_DEFAULT},
    "small": {"Linear": ["fp32", "int8", "k5", "p70-k5", "p90-k4"],
              "Gemm": ["fp32", "int8", "k5", "p70-k5", "p90-k4"],
              "MatMul": ["fp32", "int8", "k5", "p70-k5", "p90-k4"],
              "Conv": ["fp32", "int8", "k5", "p50-k5", "p80-k4"],
              "ConvTranspose": ["fp32", "int8", "k5", "p50-k5", "p80-k4"],
              "Gather": ["fp32", "int8", "k5", "k4"]},
}


def default_candidates(op_type: str, shape: Sequence[int], level: str = "default"
                       ) -> list[Candidate]:
    """The catalogue for one layer; low-rank entries only where they save parameters."""
    if level not in CATALOGUE:
        raise EncodeError(f"candidate level {level!r}: use one of {sorted(CATALOGUE)}")
    labels = CATALOGUE[level].get(op_type, ["fp32", "int8", "k5"])
    out = []
    for lab in labels:
        if lab.startswith("r") and not _lowrank_pays(lab, shape):
            continue
        out.append(parse_label(lab, shape))
    return out


def _lowrank_pays(label: str, shape: Sequence[int]) -> bool:
    if len(shape) != 2:
        return False
    rows, cols = int(shape[0]), int(shape[1])
    frac = float(label[1:].split("-")[0])
    r = max(1, int(round(frac * min(rows, cols))))
    return min(rows, cols) >= 16 and r * (rows + cols) < 0.75 * rows * cols


@dataclass
class Space:
    """layer name -> its candidates (index 0.. in the order given)."""

    candidates: dict[str, list[Candidate]]

    @classmethod
    def default(cls, model: Any, level: str = "default",
                overrides: Mapping[str, Sequence[str]] | None = None) -> Space:
        """Catalogue candidates for every planned layer of ``model`` (a PlanModel);
        ``overrides``: layer glob or op type -> labels, replacing the catalogue there."""
        import fnmatch

        out = {}
        for name, op in model.weights.items():
            shape = np.asarray(model.tensors[name]).shape
            labels = None
            for pat, labs in (overrides or {}).items():
                if pat == op or fnmatch.fnmatchcase(name, pat):
                    labels = labs
            out[name] = ([parse_label(lab, shape) for lab in labels] if labels is not None
                         else default_candidates(op, shape, level))
        return cls(out)

    @property
    def layers(self) -> list[str]:
        return list(self.candidates)

    def grid_size(self) -> int:
        return int(np.prod([len(c) for c in self.candidates.values()], dtype=np.float64))

    def to_dict(self) -> dict:
        return {k: [c.to_dict() for c in v] for k, v in self.candidates.items()}

    @classmethod
    def from_dict(cls, d: Mapping) -> Space:
        return cls({k: [Candidate.from_dict(c) for c in v] for k, v in d.items()})


# -- configs ------------------------------------------------------------------------------
def glob_escape(name: str) -> str:
    """A ``layers`` pattern that matches exactly ``name`` (fnmatch: * ? [ are special)."""
    return re.sub(r"([*?\[])", r"[\1]", name)


def build_config(choice: Mapping[str, Candidate]) -> dict:
    """The compression config for one setting per layer (``layers`` lists each planned
    tensor by its exact name; None = stored as is)."""
    return {"default": copy.deepcopy(PLAN_DEFAULT),
            "layers": {glob_escape(name): copy.deepcopy(c.spec) for name, c in choice.items()}}


def layer_spec(name: str, op_type: str | None, cand: Candidate) -> Any:
    """The resolved LayerSpec the compression step will use for this tensor."""
    from czmodel.compress.config import CompressionConfig

    return CompressionConfig.from_dict(build_config({name: cand})).resolve(name, op_type)


# -- compressing one candidate --------------------------------------------------------------
_EMPTY_FILE: int | None = None


def empty_file_bytes() -> int:
    """Size of a .cz with no tensors (what one tensor's marginal bytes are measured from)."""
    global _EMPTY_FILE
    if _EMPTY_FILE is None:
        from czmodel.format.writer import build_file

        _EMPTY_FILE = len(build_file({}))
    return _EMPTY_FILE


@dataclass
class Compressed:
    """One (layer, candidate) compressed: ``data`` is a one-tensor .cz (bytes) holding it,
    ``bytes`` its marginal size in a file (data + header entry + alignment)."""

    name: str
    label: str
    data: bytes
    bytes: int
    encoding: str
    node: Any = None          # the encoding tree (None: stored as is)


def compress_candidate(name: str, w: np.ndarray, op_type: str | None,
                       cand: Candidate) -> Compressed:
    """Compress ``w`` exactly as the compression step will for this candidate."""
    from czmodel.compress.pipeline import compress_tensor
    from czmodel.format.writer import build_file

    spec = layer_spec(name, op_type, cand)
    w = np.asarray(w)
    node = None
    if spec is None:
        data = build_file({name: w})
        enc = "dense(as is)"
    else:
        res = compress_tensor(name, w, spec, op_type)
        data = build_file({name: res.node}, tensor_dtypes={name: _tensor_dtype(w, res.node)})
        enc, node = res.node.codec, res.node
    return Compressed(name, cand.label, data, len(data) - empty_file_bytes(), enc, node)


def _tensor_dtype(a: np.ndarray, node: Any) -> str:
    """The stored tensor dtype, as ``czmodel.compress.pipeline.save`` sets it."""
    from czmodel.format.header import NUMPY_TO_TENSOR

    if node.codec == "dense" or a.dtype.kind == "f":
        return NUMPY_TO_TENSOR.get(a.dtype.newbyteorder("="), "f32")
    return "f32"
