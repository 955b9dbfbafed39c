"""Compression configuration as data (in the spirit of coremltools.optimize configs).

    config = {
        "default":  {"prune": {"sparsity": 0.9}, "quantize": {"method": "kmeans", "bits": 5},
                     "entropy": "huffman"},
        "op_types": {"Conv": {"prune": {"sparsity": 0.65},
                              "quantize": {"method": "kmeans", "bits": 8}}},
        "layers":   {"*.bias": None, "classifier.*": {"quantize": {"method": "affine", "bits": 8}}},
    }

Resolution for a tensor: ``default`` < ``op_types[op_type]`` < every ``layers`` glob
(``fnmatch``, case-sensitive, ``*`` also matches dots) that matches, in the order written,
later ones winning. Merging is per section: an override's "prune", "quantize" or
"lowrank" dict REPLACES that whole section (no key-by-key merge, so a section is always
self-consistent), and a section set to None switches it off; "entropy"/"gap_bits"
replace scalars. A layers (or op_types) value of None means "store as is, uncompressed"
and is final: resolve() returns None whenever any matching entry is None, even if a
later pattern also matches (so ``{"*.bias": None, "classifier.*": {...}}`` leaves
classifier biases alone, as intended). To compress some of the tensors a broad None
would catch, narrow the None pattern instead.
"""

from __future__ import annotations

import copy
import fnmatch
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from czmodel.errors import EncodeError

from .config_schema import (
    ENTROPY,
    SPEC_KEYS,
    TOP_KEYS,
    _choice,
    _fail,
    _is_int,
    _keys,
    validate_lowrank,
    validate_prune,
    validate_quantize,
)


@dataclass
class LayerSpec:
    """Resolved compression recipe for one tensor (sections None = step skipped)."""

    prune: dict | None = None
    quantize: dict | None = None
    lowrank: dict | None = None
    entropy: str = "auto"
    gap_bits: int | str = "auto"

    def __post_init__(self) -> None:
        self.prune = validate_prune(self.prune)
        self.quantize = validate_quantize(self.quantize)
        self.lowrank = validate_lowrank(self.lowrank)
        _choice(self.entropy, "entropy", ENTROPY, "layer spec")
        g = self.gap_bits
        if g != "auto" and not (_is_int(g) and 2 <= g <= 8):
            _fail("layer spec", f"'gap_bits' must be an integer in [2, 8] or 'auto', got {g!r}")


def _validate_override(d: Any, where: str) -> dict | None:
    """A partial spec (default / op_types / layers value), checked section by section."""
    if d is None:
        return None
    _keys(d, SPEC_KEYS, where)
    out = dict(d)
    for key, fn in (("prune", validate_prune), ("quantize", validate_quantize),
                    ("lowrank", validate_lowrank)):
        if key in out:
            out[key] = fn(out[key], f"{where}.{key}")
    if "entropy" in out:
        _choice(out["entropy"], "entropy", ENTROPY, where)
    if "gap_bits" in out:
        g = out["gap_bits"]
        if g != "auto" and not (_is_int(g) and 2 <= g <= 8):
            _fail(where, f"'gap_bits' must be an integer in [2, 8] or 'auto', got {g!r}")
    return out


@dataclass
class CompressionConfig:
    default: dict = field(default_factory=dict)
    op_types: dict[str, dict | None] = field(default_factory=dict)
    layers: dict[str, dict | None] = field(default_factory=dict)

    def __post_init__(self) -> None:
        d = _validate_override(self.default, "default")
        if d is None:
            _fail("default", "must be a mapping (use layers: {'*': null} to store all raw)")
        self.default = d
        for name in ("op_types", "layers"):
            table = getattr(self, name)
            if not isinstance(table, dict):
                _fail(name, f"expected a mapping, got {type(table).__name__}")
            for k in table:
                if not isinstance(k, str):
                    _fail(name, f"keys must be strings, got {k!r}")
            setattr(self, name, {k: _validate_override(v, f"{name}[{k!r}]")
                                 for k, v in table.items()})

    # -- construction / serialisation -------------------------------------------------
    @classmethod
    def from_dict(cls, d: Any) -> CompressionConfig:
        _keys(d, TOP_KEYS, "top level")
        return cls(default=copy.deepcopy(d.get("default") or {}),
                   op_types=copy.deepcopy(d.get("op_types") or {}),
                   layers=copy.deepcopy(d.get("layers") or {}))

    @classmethod
    def from_file(cls, path: str | Path) -> CompressionConfig:
        """Load JSON (``.json``) or YAML (``.yaml`` / ``.yml``)."""
        p = Path(path)
        suffix = p.suffix.lower()
        text = p.read_text(encoding="utf-8")
        if suffix not in (".json", ".yaml", ".yml"):
            raise EncodeError(f"config file {p}: unknown suffix {p.suffix!r}; "
                              "use .json, .yaml or .yml")
        if suffix == ".json":
            try:
                data = json.loads(text)
            except json.JSONDecodeError as e:
                raise EncodeError(f"config file {p}: cannot parse: {e}") from e
        else:
            yaml = _yaml(f"reading {p}")
            try:
                data = yaml.safe_load(text)
            except yaml.YAMLError as e:
                raise EncodeError(f"config file {p}: cannot parse: {e}") from e
        return cls.from_dict(data if data is not None else {})

    def to_dict(self) -> dict:
        return copy.deepcopy({"default": self.default, "op_types": self.op_types,
                              "layers": self.layers})

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent)

    def to_yaml(self) -> str:
        return _yaml("to_yaml").safe_dump(_plain(self.to_dict()), sort_keys=False)

    # -- resolution -------------------------------------------------------------------
    def resolve(self, name: str, op_type: str | None = None) -> LayerSpec | None:
        """The recipe for tensor ``name`` of an op of type ``op_type`` (None = raw)."""
        state: dict[str, Any] = {}
        overrides = [self.default]
        if op_type is not None and op_type in self.op_types:
            overrides.append(self.op_types[op_type])
        overrides += [v for pat, v in self.layers.items() if fnmatch.fnmatchcase(name, pat)]
        for ov in overrides:
            if ov is None:
                return None  # "store as is" is final, whatever else matches
            state.update(copy.deepcopy(ov))  # per-section replacement
        return LayerSpec(**state)


def _yaml(what: str) -> Any:
    """PyYAML, imported on first use: it is an optional extra, JSON configs need nothing."""
    try:
        import yaml
    except ImportError:
        raise EncodeError(f"YAML configs need PyYAML ({what}): pip install 'czmodel[yaml]', "
                          "or write the config as .json") from None
    return yaml


def _plain(x: Any) -> Any:
    """Tuples -> lists so YAML output stays free of python-specific tags."""
    if isinstance(x, dict):
        return {k: _plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_plain(v) for v in x]
    return x


_FC = {"prune": {"sparsity": 0.9}, "quantize": {"method": "kmeans", "bits": 5}}
_CONV = {"prune": {"sparsity": 0.65}, "quantize": {"method": "kmeans", "bits": 8}}


def deep_compression_default() -> CompressionConfig:
    """Deep Compression (Han et al. 2016) recipe: conv layers pruned to 65% sparsity and
    8-bit k-means shared, fully connected layers 90% / 5-bit, Huffman coding, biases
    stored as is. Op names cover ONNX (Conv, Gemm, MatMul) and PyTorch (Conv2d, Linear);
    other ops only get Huffman coding."""
    return CompressionConfig.from_dict({
        "default": {"prune": None, "quantize": None, "entropy": "huffman"},
        "op_types": {"Conv": _CONV, "Conv2d": _CONV, "Gemm": _FC, "MatMul": _FC, "Linear": _FC},
        "layers": {"*.bias": None},
    })
