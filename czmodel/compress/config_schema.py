"""Validation of compression config sections (strict: unknown keys or values fail).

Each validator returns a normalised copy of its section, or None for "off", and raises
``EncodeError`` naming the offending key and the allowed values.
"""

from __future__ import annotations

from typing import Any, NoReturn

from czmodel.errors import EncodeError

from .prune import GRANULARITIES

TOP_KEYS = ("default", "op_types", "layers")
SPEC_KEYS = ("prune", "quantize", "lowrank", "entropy", "gap_bits")
PRUNE_KEYS = ("sparsity", "quality", "granularity", "block", "n", "m")
QUANT_KEYS = ("method", "bits", "per_channel", "symmetric", "group_size", "init",
              "outlier_fraction", "exp_bits", "man_bits", "rounding")
QUANT_METHODS = ("kmeans", "affine", "binary", "ternary", "pow2", "fixed", "minifloat", "fp16",
                 "bf16")
LOWRANK_KEYS = ("method", "rank", "energy", "budget")
LOWRANK_METHODS = ("svd", "tucker2")
ENTROPY = ("huffman", "zstd", "raw", "auto")
INITS = ("linear", "forgy", "density")
# Allowed bit widths per quantize method (inclusive); None = bits not applicable.
BITS_RANGE: dict[str, tuple[int, int] | None] = {
    "kmeans": (1, 8), "affine": (2, 8), "pow2": (2, 8), "fixed": (2, 16),
    "binary": None, "ternary": None, "minifloat": (3, 16), "fp16": None, "bf16": None}


def _fail(where: str, msg: str) -> NoReturn:
    raise EncodeError(f"config {where}: {msg}")


def _keys(d: Any, allowed: tuple[str, ...], where: str) -> dict:
    if not isinstance(d, dict):
        _fail(where, f"expected a mapping, got {type(d).__name__}")
    for k in d:
        if k not in allowed:
            _fail(where, f"unknown key {k!r}; allowed: {', '.join(allowed)}")
    return d


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _int_in(d: dict, key: str, lo: int, hi: int | None, where: str) -> None:
    v = d[key]
    if not _is_int(v) or v < lo or (hi is not None and v > hi):
        rng = f"[{lo}, {hi}]" if hi is not None else f">= {lo}"
        _fail(where, f"{key!r} must be an integer in {rng}, got {v!r}")


def _frac(d: dict, key: str, lo: float, hi: float, where: str) -> None:
    v = d[key]
    if not _is_num(v) or not lo <= v <= hi:
        _fail(where, f"{key!r} must be a number in [{lo}, {hi}], got {v!r}")


def _bool(d: dict, key: str, where: str) -> None:
    if key in d and not isinstance(d[key], bool):
        _fail(where, f"{key!r} must be true or false, got {d[key]!r}")


def _choice(v: Any, key: str, allowed: tuple, where: str) -> None:
    if v not in allowed:
        _fail(where, f"{key!r} must be one of {', '.join(map(repr, allowed))}; got {v!r}")


def validate_prune(d: Any, where: str = "prune") -> dict | None:
    """One of: sparsity (magnitude, any granularity), quality (Han std rule, element
    only), or n + m (N:M; normalised to granularity 'nm'). ``block`` = [bh, bw] is
    required iff granularity is 'block'. Returns a normalised copy."""
    if d is None:
        return None
    d = dict(_keys(d, PRUNE_KEYS, where))
    nm = "n" in d or "m" in d or d.get("granularity") == "nm"
    kinds = [k for k in ("sparsity", "quality") if k in d] + (["n/m"] if nm else [])
    if len(kinds) != 1:
        _fail(where, f"give exactly one of 'sparsity', 'quality', or 'n' + 'm' (got {kinds})")
    if nm:
        if "n" not in d or "m" not in d:
            _fail(where, "N:M pruning needs both 'n' and 'm'")
        _int_in(d, "m", 1, None, where)
        _int_in(d, "n", 0, d["m"], where)
        d["granularity"] = "nm"
    g = d.get("granularity", "element")
    _choice(g, "granularity", GRANULARITIES + ("nm",), where)
    if "sparsity" in d:
        _frac(d, "sparsity", 0.0, 1.0, where)
    if "quality" in d and (not _is_num(d["quality"]) or d["quality"] < 0):
        _fail(where, f"'quality' must be a number >= 0, got {d['quality']!r}")
    if "quality" in d and g != "element":
        _fail(where, f"granularity {g!r} does not apply to 'quality' (Han) pruning")
    if g == "block":
        b = d.get("block")
        ok = isinstance(b, (list, tuple)) and len(b) == 2
        if not (ok and all(_is_int(x) and x >= 1 for x in b)):
            _fail(where, f"granularity 'block' needs 'block': [bh, bw] positive ints, got {b!r}")
        d["block"] = list(b)
    elif "block" in d:
        _fail(where, "'block' is only valid with granularity 'block'")
    return d


def validate_quantize(d: Any, where: str = "quantize") -> dict | None:
    """``method`` required; None (or method None) = no quantization."""
    if d is None:
        return None
    _keys(d, QUANT_KEYS, where)
    if "method" not in d:
        _fail(where, f"missing 'method'; allowed: {', '.join(QUANT_METHODS)} or null")
    m = d["method"]
    if m is None:
        if len(d) > 1:
            _fail(where, "method null (no quantization) takes no other keys")
        return None
    _choice(m, "method", QUANT_METHODS, where)
    rng = BITS_RANGE[m]
    if m == "minifloat":
        for k in ("exp_bits", "man_bits"):
            if k not in d:
                _fail(where, f"method 'minifloat' needs {k!r}")
        _int_in(d, "exp_bits", 2, 8, where)
        _int_in(d, "man_bits", 0, 23, where)
        if "bits" in d and d["bits"] != 1 + d["exp_bits"] + d["man_bits"]:
            _fail(where, "'bits' must equal 1 + exp_bits + man_bits for minifloat")
    else:
        for k in ("exp_bits", "man_bits"):
            if k in d:
                _fail(where, f"{k!r} only applies to method 'minifloat'")
    if rng is None:
        if "bits" in d:
            _fail(where, f"method {m!r} has a fixed number format; 'bits' does not apply")
    elif m != "minifloat":
        if "bits" not in d:
            _fail(where, f"method {m!r} needs 'bits' in [{rng[0]}, {rng[1]}]")
        _int_in(d, "bits", rng[0], rng[1], where)
    for k in ("per_channel", "symmetric"):
        _bool(d, k, where)
    only = {"symmetric": ("affine",), "group_size": ("affine",),
            "outlier_fraction": ("affine",), "init": ("kmeans",),
            "rounding": ("affine", "fixed", "minifloat"),
            "per_channel": ("kmeans", "affine", "binary", "ternary")}
    for k, methods in only.items():
        if k in d and m not in methods:
            _fail(where, f"{k!r} does not apply to method {m!r} (only {', '.join(methods)})")
    if "init" in d:
        _choice(d["init"], "init", INITS, where)
    if "rounding" in d:
        _choice(d["rounding"], "rounding", ("nearest", "stochastic"), where)
    if "group_size" in d:
        _int_in(d, "group_size", 1, None, where)
        if d.get("per_channel"):
            _fail(where, "'group_size' and 'per_channel' are exclusive")
    if "outlier_fraction" in d:
        _frac(d, "outlier_fraction", 0.0, 0.5, where)
    return d


def validate_lowrank(d: Any, where: str = "lowrank") -> dict | None:
    """``method`` svd|tucker2 and exactly one of rank (int; [r_out, r_in] or "vbmf" for
    tucker2; "vbmf" also for svd), energy (0..1], budget (parameter count)."""
    if d is None:
        return None
    _keys(d, LOWRANK_KEYS, where)
    _choice(d.get("method"), "method", LOWRANK_METHODS, where)
    given = [k for k in ("rank", "energy", "budget") if k in d]
    if len(given) != 1:
        _fail(where, f"give exactly one of 'rank', 'energy', 'budget' (got {given})")
    if d["method"] == "tucker2" and given[0] != "rank":
        _fail(where, "method 'tucker2' takes 'rank': [r_out, r_in] or 'vbmf'")
    if "rank" in d:
        r = d["rank"]
        ok = r == "vbmf" or (_is_int(r) and r >= 1)
        if d["method"] == "tucker2":
            ok = r == "vbmf" or (isinstance(r, (list, tuple)) and len(r) == 2
                                 and all(_is_int(x) and x >= 1 for x in r))
        if not ok:
            want = "[r_out, r_in] or 'vbmf'" if d["method"] == "tucker2" else "int >= 1 or 'vbmf'"
            _fail(where, f"'rank' must be {want}, got {r!r}")
    if "energy" in d:
        _frac(d, "energy", 0.0, 1.0, where)
    if "budget" in d:
        _int_in(d, "budget", 1, None, where)
    return d
