"""The wheel: ``python -m build`` (sdist, then the wheel from the sdist, compiling the C
extension with cffi) installs into a FRESH virtual environment with the core dependencies only
(no torch, onnx, onnxruntime, PyYAML, scipy, matplotlib, tqdm, threadpoolctl) and runs:
``cz demo --json``, ``czmodel.load`` on the demo's file with the C backend (the extension
inside the wheel), ``cz info`` / ``cz verify --json``, and ``cz compress`` says which extra
it needs. Slow (minutes: the build, the C compile, pip installing numpy/numba); needs PyPI.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
OPTIONAL = ("torch", "onnx", "onnxruntime", "yaml", "scipy", "matplotlib", "tqdm",
            "threadpoolctl", "dask", "jsonschema")
_SKIP_DIRS = {".git", "build", "dist", "__pycache__", ".pytest_cache", ".hypothesis",
              ".ruff_cache"}


def _source_files() -> list[Path]:
    """The project's files as git sees them (tracked + new, not ignored); without git,
    everything but caches and build products."""
    try:
        out = subprocess.run(["git", "ls-files", "-z", "--cached", "--others",
                              "--exclude-standard"], cwd=ROOT, capture_output=True,
                             check=True).stdout
        files = [ROOT / f for f in out.decode().split("\0") if f]
    except (OSError, subprocess.CalledProcessError):
        files = [p for p in ROOT.rglob("*") if not _SKIP_DIRS & set(p.relative_to(ROOT).parts)
                 and not p.name.endswith((".so", ".egg-info"))]
    return [p for p in files if p.is_file()]


def _run(cmd: list, cwd: Path, env: dict, timeout: float = 1800) -> subprocess.CompletedProcess:
    r = subprocess.run([str(c) for c in cmd], cwd=cwd, env=env, capture_output=True,
                       text=True, timeout=timeout)
    if r.returncode != 0:       # pytrace=False: no traceback locals (env) in the CI log
        pytest.fail(f"{' '.join(map(str, cmd))} failed ({r.returncode}):\n--- stdout\n"
                    f"{r.stdout[-4000:]}\n--- stderr\n{r.stderr[-4000:]}", pytrace=False)
    return r


@pytest.mark.slow
def test_wheel_builds_installs_and_runs_in_a_fresh_venv(tmp_path):
    pytest.importorskip("build")
    # Build from a copy: setuptools writes czmodel.egg-info/ and build/ into the source tree,
    # and the copy proves the sdist does not depend on untracked local files.
    src = tmp_path / "src"
    for f in _source_files():
        dest = src / f.relative_to(ROOT)
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(f, dest)
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "PIP_REQUIRE_VIRTUALENV")}
    env.update(CZ_REQUIRE_C="1", PYTHONNOUSERSITE="1", CZ_PROGRESS="0")
    dist = tmp_path / "dist"
    _run([sys.executable, "-m", "build", "--outdir", dist, src], tmp_path, env)

    (sdist,) = dist.glob("czmodel-*.tar.gz")
    with tarfile.open(sdist) as t:
        names = t.getnames()
    for want in ("runtime_c/include/cz.h", "runtime_c/src/", "czmodel/data/lenet300_fmnist.npz",
                 "czmodel/runtime/c_build.py", "setup.py", "MANIFEST.in"):
        assert any(want in n for n in names), f"sdist lacks {want}"
    assert not any(n.endswith(".so") for n in names), "a local build product is in the sdist"
    (wheel,) = dist.glob("czmodel-*.whl")
    with zipfile.ZipFile(wheel) as z:
        wnames = z.namelist()
    assert any(n.startswith("czmodel/_cz_c") and n.endswith(".so") for n in wnames), wnames
    assert "czmodel/data/lenet300_fmnist.npz" in wnames
    assert "czmodel/progress.py" in wnames and "czconvert/cli.py" in wnames

    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", venv], tmp_path, env)   # no system site packages
    py, cz = venv / "bin" / "python", venv / "bin" / "cz"
    env["VIRTUAL_ENV"] = str(venv)
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    _run([py, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", wheel],
         tmp_path, env)
    run = tmp_path / "run"                  # cwd without a czmodel/ folder to shadow the install
    run.mkdir()
    missing = _run([py, "-c", "import importlib.util as u, json; print(json.dumps("
                    f"[m for m in {OPTIONAL!r} if u.find_spec(m) is not None]))"], run, env)
    assert json.loads(missing.stdout) == [], "an optional package got installed"

    r = _run([cz, "demo", "--json", "-o", run / "demo.cz"], run, env)
    demo = json.loads(r.stdout)
    assert r.stderr == ""                   # stderr is piped: no progress bars
    assert demo["backend"] == "c" and demo["ratio"] > 20
    assert demo["accuracy_cz"] >= demo["accuracy_fp32_pruned_checkpoint"] - 0.01

    code = ("import json, czmodel, czmodel._cz_c as ext, numpy as np\n"
            f"m = czmodel.load({str(run / 'demo.cz')!r})\n"
            "y = m.run({'image': np.zeros((2, 784), np.float32)})['logits']\n"
            "print(json.dumps({'backend': m.backend.name, 'ext': ext.__file__, "
            "'czmodel': czmodel.__file__, 'shape': list(y.shape)}))")
    info = json.loads(_run([py, "-c", code], run, env).stdout)
    assert info["backend"] == "c" and info["shape"] == [2, 10]
    for k in ("ext", "czmodel"):            # the installed wheel, not the source tree
        assert Path(info[k]).resolve().is_relative_to(venv.resolve()), info

    out = _run([cz, "info", run / "demo.cz"], run, env).stdout
    assert "fc1.weight" in out and "\x1b[" not in out      # piped: plain table
    v = json.loads(_run([cz, "verify", "--json", run / "demo.cz"], run, env).stdout)
    assert v == {"file": str(run / "demo.cz"), "ok": True}
    r = subprocess.run([cz, "compress", "m.onnx", "-o", "m.cz"], cwd=run, env=env,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 1 and "czmodel[onnx]" in r.stderr, r.stderr[-2000:]
