"""Fixtures shared by the C-runtime tests."""

from __future__ import annotations

import os
import subprocess

import pytest

RUNTIME = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "runtime_c")


@pytest.fixture(scope="session")
def cb():
    """The C backend module; builds the extension when missing or stale (fails, not skips,
    when the build fails)."""
    from czmodel.runtime import c_build
    c_build.build()
    from czmodel.runtime import c_backend
    return c_backend


@pytest.fixture(scope="session")
def cz_run_bin():
    """The standalone cz_run tool, built with make (no Python inside)."""
    r = subprocess.run(["make", "-C", RUNTIME, "build/cz_run"], capture_output=True, text=True)
    assert r.returncode == 0, f"make -C runtime_c failed:\n{r.stdout}\n{r.stderr}"
    path = os.path.join(RUNTIME, "build", "cz_run")
    assert os.path.exists(path)
    return path
