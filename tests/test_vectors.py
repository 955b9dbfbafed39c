"""The golden vectors of spec/vectors/ (written by ``python spec/make_vectors.py``).

Every valid vector opens, verifies and decodes (reference and fast paths) to exactly its .npz;
every invalid vector raises exactly its manifest's error class with the manifest's message.
A missing or empty vectors folder FAILS (never skips): goldens are written by the script,
never by the tests.
"""

from __future__ import annotations

import json
import struct
import subprocess
import sys
from pathlib import Path

import jsonschema  # dev dependency: pip install jsonschema
import numpy as np
import pytest

import czmodel
from czmodel.format import header as H

ROOT = Path(__file__).resolve().parents[1]
SPEC = ROOT / "spec"
VECTORS = SPEC / "vectors"
MISSING = "<no vectors: run python spec/make_vectors.py>"


def _names(sub: str) -> list[str]:
    d = VECTORS / sub
    names = sorted(p.stem for p in d.glob("*.cz")) if d.is_dir() else []
    return names or [MISSING]   # an empty parameter list would skip: make it fail instead


VALID = _names("valid")
INVALID = _names("invalid")


def _manifest() -> dict:
    p = VECTORS / "invalid" / "manifest.json"
    assert p.is_file(), f"{p} is missing: run python spec/make_vectors.py"
    return json.loads(p.read_text())


def _header(data: bytes) -> dict:
    hlen = struct.unpack_from("<I", data, 12)[0]
    return H.unpack_header(data[24:24 + hlen])


def _same(a: np.ndarray, b: np.ndarray) -> bool:
    return (a.dtype == b.dtype and a.shape == b.shape
            and np.ascontiguousarray(a).tobytes() == np.ascontiguousarray(b).tobytes())


def test_vectors_present():
    assert VALID != [MISSING], f"no valid vectors under {VECTORS / 'valid'}"
    assert INVALID != [MISSING], f"no invalid vectors under {VECTORS / 'invalid'}"
    for name in VALID:
        assert (VECTORS / "valid" / f"{name}.npz").is_file(), f"valid/{name}.npz is missing"
    assert set(_manifest()) == {f"{n}.cz" for n in INVALID}, "manifest and files disagree"
    # the families the spec promises
    for want in ("empty", "scalar_f32", "dense_dtypes", "dense_bf16", "entropy_raw",
                 "entropy_huffman", "entropy_zstd", "metadata_graph_calibration", "svd",
                 "tucker2", "sum_outlier", "nm_2of4", "block"):
        assert want in VALID, want
    assert len(INVALID) >= 26


@pytest.mark.parametrize("name", VALID)
@pytest.mark.parametrize("reference", [True, False], ids=["reference", "fast"])
def test_valid_vector(name, reference):
    assert name != MISSING, MISSING
    path = VECTORS / "valid" / f"{name}.cz"
    czmodel.verify(path)
    with np.load(VECTORS / "valid" / f"{name}.npz", allow_pickle=False) as z:
        expected = {k: z[k] for k in z.files}
    with czmodel.open(path, reference=reference) as f:
        f.verify()
        assert sorted(f) == sorted(expected)
        for t, want in expected.items():
            got = f[t]
            assert _same(got, want), f"{name}/{t}: {got!r} != {want!r}"
            assert f.entry(t).dtype == H.NUMPY_TO_TENSOR[want.dtype]


@pytest.mark.parametrize("name", INVALID)
def test_invalid_vector(name):
    assert name != MISSING, MISSING
    spec = _manifest()[f"{name}.cz"]
    cls = getattr(czmodel, spec["error"])
    assert issubclass(cls, czmodel.CzError)
    path = VECTORS / "invalid" / f"{name}.cz"
    if spec["stage"] == "open":
        with pytest.raises(czmodel.CzError) as ei:
            czmodel.open(path)
    else:
        assert spec["stage"] == "verify"
        with czmodel.open(path):   # the fault is only visible when a stream is decoded
            pass
        with pytest.raises(czmodel.CzError) as ei:
            czmodel.verify(path)
    assert type(ei.value) is cls, f"{type(ei.value).__name__}: {ei.value}"
    assert spec["message"] in str(ei.value), str(ei.value)


def test_make_vectors_check_reproduces_committed_bytes():
    r = subprocess.run([sys.executable, str(SPEC / "make_vectors.py"), "--check"],
                       capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert r.returncode == 0, r.stdout + r.stderr


def test_vectors_are_small():
    size = sum(p.stat().st_size for p in VECTORS.rglob("*") if p.is_file())
    assert 0 < size < 300_000


# ----------------------------------------------------------------------------- header schema


@pytest.fixture(scope="module")
def schema():
    s = json.loads((SPEC / "header.schema.json").read_text())
    jsonschema.Draft202012Validator.check_schema(s)
    return s


@pytest.mark.parametrize("name", VALID)
def test_valid_header_matches_schema(schema, name):
    assert name != MISSING, MISSING
    hdr = _header((VECTORS / "valid" / f"{name}.cz").read_bytes())
    jsonschema.validate(json.loads(json.dumps(hdr)), schema,
                        cls=jsonschema.Draft202012Validator)


@pytest.mark.parametrize("name", ["unknown_codec", "unknown_entropy_stage", "unknown_feature",
                                  "unknown_node_key", "graph_opset_too_new"])
def test_schema_rejects_header_faults(schema, name):
    hdr = _header((VECTORS / "invalid" / f"{name}.cz").read_bytes())
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(hdr, schema, cls=jsonschema.Draft202012Validator)


def test_schema_matches_code(schema):
    """The schema's name lists are the code's: a new codec/dtype/stage updates the spec."""
    import czmodel.codecs  # noqa: F401 - fills the registry
    from czmodel.codecs.base import REGISTRY
    from czmodel.entropy import STAGES, STREAM_DTYPES
    d = schema["$defs"]
    assert sorted(d["node"]["properties"]["codec"]["enum"]) == sorted(REGISTRY)
    assert sorted(d["stream"]["properties"]["entropy"]["enum"]) == sorted(STAGES)
    assert sorted(d["stream"]["properties"]["dtype"]["enum"]) == sorted(STREAM_DTYPES)
    assert sorted(d["tensor"]["properties"]["dtype"]["enum"]) == sorted(H.TENSOR_DTYPES)
    by_codec = {c["if"]["properties"]["codec"]["const"]: c["then"]["properties"]
                for c in d["node"]["allOf"]}
    assert sorted(by_codec) == sorted(REGISTRY)
    for name, codec in REGISTRY.items():
        params = by_codec[name]["params"]
        assert params.get("propertyNames", {}).get("enum", []) == list(codec.params), name
        streams = by_codec[name]["streams"]
        assert streams.get("propertyNames", {}).get("enum", []) == sorted(codec.roles), name
