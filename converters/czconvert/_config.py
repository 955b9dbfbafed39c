"""Compression-config plumbing shared by the converters (no onnx / torch imports)."""

from __future__ import annotations

import copy
import fnmatch
import json
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from czmodel.errors import EncodeError


def split_config(config: Any) -> tuple[Any, dict | None]:
    """(CompressionConfig or None, activations request or None). A dict (or JSON / YAML file)
    config may carry a top-level ``"activations"`` key: ``"int8"`` or
    ``{"dtype": "int8", "method": "minmax" | "percentile" | "entropy", "percentile": p,
    "symmetric": bool}``; the rest is a ``CompressionConfig``."""
    from czmodel.compress.config import CompressionConfig

    if config is None or isinstance(config, CompressionConfig):
        return config, None
    if isinstance(config, (str, os.PathLike)):
        config = load_config_file(config)
    if not isinstance(config, Mapping):
        raise EncodeError(f"config must be a dict, a file path or a CompressionConfig, not "
                          f"{type(config).__name__}")
    d = dict(config)
    act = parse_activations(d.pop("activations", None))
    return CompressionConfig.from_dict(d), act


def load_config_file(path: str | os.PathLike) -> dict:
    p = Path(path)
    text = p.read_text(encoding="utf-8")
    suffix = p.suffix.lower()
    try:
        if suffix == ".json":
            data = json.loads(text)
        elif suffix in (".yaml", ".yml"):
            try:
                import yaml
            except ImportError:
                raise EncodeError(f"config file {p}: YAML configs need PyYAML: "
                                  "pip install 'czmodel[yaml]' (or use a .json config)") from None
            data = yaml.safe_load(text)
        else:
            raise EncodeError(f"config file {p}: unknown suffix {p.suffix!r}; use .json, .yaml "
                              "or .yml")
    except EncodeError:
        raise
    except Exception as e:  # noqa: BLE001 - json / yaml parse errors
        raise EncodeError(f"config file {p}: cannot parse: {e}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise EncodeError(f"config file {p}: top level must be a mapping")
    return data


def parse_activations(act: Any) -> dict | None:
    if act in (None, False, "float", "f32"):
        return None
    if act in ("int8", True):
        return {"dtype": "int8"}
    if not isinstance(act, Mapping):
        raise EncodeError(f"config 'activations' must be 'int8' or a mapping, got {act!r}")
    act = dict(act)
    unknown = set(act) - {"dtype", "method", "percentile", "symmetric"}
    if unknown:
        raise EncodeError(f"config 'activations': unknown key(s) {sorted(unknown)} (allowed: "
                          "dtype, method, percentile, symmetric)")
    if act.get("dtype", "int8") != "int8":
        raise EncodeError(f"config 'activations' dtype {act.get('dtype')!r}: only 'int8'")
    if act.get("method", "minmax") not in ("minmax", "percentile", "entropy"):
        raise EncodeError(f"config 'activations' method {act.get('method')!r}: use minmax, "
                          "percentile or entropy")
    return act


def named_by_layers(cfg: Any, names: Iterable[str]) -> set[str]:
    """The names some ``layers`` pattern of ``cfg`` matches."""
    if cfg is None:
        return set()
    return {n for n in names if any(fnmatch.fnmatchcase(n, p) for p in cfg.layers)}


def effective_config(cfg: Any, raw: Iterable[str]) -> Any:
    """``cfg`` with the tensors in ``raw`` forced to "store as is"."""
    if cfg is None:
        return None
    from czmodel.compress.config import CompressionConfig

    raw_set = frozenset(raw)

    class _RawFirst(CompressionConfig):
        def resolve(self, name: str, op_type: str | None = None):
            if name in raw_set:
                return None
            return super().resolve(name, op_type)

    return _RawFirst(default=copy.deepcopy(cfg.default), op_types=copy.deepcopy(cfg.op_types),
                     layers=copy.deepcopy(cfg.layers))
