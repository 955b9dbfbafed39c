"""Replay runtime_c/fuzz/regressions/*.cz (inputs that once crashed or misled a reader, found
by the libFuzzer targets of runtime_c/fuzz/ or by the attacks) through BOTH readers: the Python
reader must raise a CzError subclass (never anything else), the C reader must return an error
status of one of the four file-fault classes (never crash, leak or over-read), and the two must
agree on the class. The C side runs in one subprocess, so a regression that crashes C fails
this test instead of killing the test session. Each file's expected class is in
regressions/manifest.json.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from attacks._readers import python_reader

ROOT = Path(__file__).resolve().parents[1]
REG = ROOT / "runtime_c" / "fuzz" / "regressions"
MANIFEST = json.loads((REG / "manifest.json").read_text())
FILES = sorted(p.name for p in REG.glob("*.cz"))

_C_CHILD = r"""
import json, sys
sys.path.insert(0, sys.argv[1])
from attacks._readers import c_reader
out = {}
for path in sys.argv[2:]:
    o = c_reader(open(path, "rb").read(), 1 << 20)
    out[path.rsplit("/", 1)[-1]] = [o.error, o.message, o.peak_bytes]
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def c_outcomes() -> dict:
    r = subprocess.run([sys.executable, "-c", _C_CHILD, str(ROOT / "tests")]
                       + [str(REG / f) for f in FILES], capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, f"the C reader crashed on a regression file:\n{r.stderr[-3000:]}"
    return json.loads(r.stdout)


def test_manifest_matches_files():
    assert FILES, "no regression files"
    assert sorted(MANIFEST) == FILES


@pytest.mark.parametrize("name", FILES)
def test_regression_python(name):
    out = python_reader((REG / name).read_bytes(), 1 << 20)
    assert out.error == MANIFEST[name]["error"], f"{out.error}: {out.message}"


@pytest.mark.parametrize("name", FILES)
def test_regression_c(name, c_outcomes):
    error, message, peak = c_outcomes[name]
    assert error == MANIFEST[name]["error"], f"{error}: {message}"
    size = (REG / name).stat().st_size
    assert peak <= (1 << 20) + 32 * size, f"C reader held {peak} bytes for a {size}-byte file"
