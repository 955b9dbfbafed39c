"""Faults while writing: a writer killed with SIGKILL at any point, and a full disk.

The writer (czmodel.format.writer.write_file) writes a temporary file ``.cz-*.tmp`` in the
destination's folder, fsyncs it and renames it over the destination. So:

* whatever the moment of a SIGKILL, the destination holds the old complete file or the new
  complete file (czmodel.verify passes), never a partial one;
* a normal write leaves no temporary file;
* a SIGKILL between the temporary file's creation and the rename DOES leave that
  ``.cz-*.tmp`` file behind (nothing can remove it: the process is gone). It is never under
  the destination name; callers may delete stale ``.cz-*.tmp`` files;
* a full disk raises OSError (errno ENOSPC, "No space left on device") and leaves the
  destination as it was, with no temporary file.

Kills are forked children of the test process (no interpreter start-up per kill): some at
deterministic points inside the writer (half-way through the data, before the fsync, before
the rename, before the folder fsync), the rest after seeded random delays.
"""

from __future__ import annotations

import errno
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import czmodel
from czmodel.codecs import dense
from czmodel.format import writer as W
from czmodel.format.writer import build_file

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork and SIGKILL")

SIZE = 3 << 20          # bytes of each version: multi-MB, so writes take a while


@pytest.fixture(scope="module")
def versions() -> tuple[bytes, bytes]:
    a = build_file({"w": dense(np.full(SIZE // 4, 1.0, np.float32), entropy="raw")},
                   metadata={"v": "old"})
    b = build_file({"w": dense(np.arange(SIZE // 4 + 100, dtype=np.float32), entropy="raw")},
                   metadata={"v": "new"})
    return a, b


def tmp_files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith(".cz-")
                  and p.name.endswith(".tmp"))


def check_destination(dest: Path, versions: tuple[bytes, bytes]) -> str:
    data = dest.read_bytes()
    assert data in versions, f"partial or foreign file under the destination ({len(data)} B)"
    czmodel.verify(dest)
    return "old" if data == versions[0] else "new"


def _child_loop(dest: Path, versions: tuple[bytes, bytes], pause_at: str | None,
                wfd: int) -> None:
    """Runs in the forked child: write the two versions alternately, forever. With
    ``pause_at``, tell the parent (one byte on the pipe) and sleep when the writer reaches that
    point, so the parent kills it exactly there."""
    try:
        def pause():
            os.write(wfd, b"!")
            time.sleep(60)

        if pause_at == "mid-write":
            real_fdopen = os.fdopen

            class Half:
                def __init__(self, f):
                    self.f = f

                def __enter__(self):
                    return self

                def __exit__(self, *exc):
                    return self.f.__exit__(*exc)

                def write(self, data):
                    self.f.write(data[:len(data) // 2])
                    self.f.flush()
                    pause()

                def __getattr__(self, name):
                    return getattr(self.f, name)
            W.os.fdopen = lambda *a, **k: Half(real_fdopen(*a, **k))
        elif pause_at == "before-fsync":
            W.os.fsync = lambda fd: pause()
        elif pause_at == "before-rename":
            real_fsync = os.fsync
            W.os.fsync = real_fsync
            W.os.replace = lambda src, dst: pause()
        elif pause_at == "before-dir-fsync":
            real_fsync = os.fsync

            def fsync(fd):
                real_fsync(fd)
                if os.path.isdir(f"/proc/self/fd/{fd}"):
                    pause()
            W.os.fsync = fsync
        else:
            os.write(wfd, b"!")
        i = 1
        while True:
            W.write_file(dest, versions[i % 2])
            i += 1
    finally:
        os._exit(0)


def _kill_once(dest: Path, versions, pause_at: str | None, delay: float) -> None:
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        os.close(r)
        _child_loop(dest, versions, pause_at, w)
    os.close(w)
    try:
        assert os.read(r, 1) == b"!"          # the child reached its kill point / started
        time.sleep(delay)
    finally:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        os.close(r)


@pytest.mark.parametrize("point", ["mid-write", "before-fsync", "before-rename",
                                   "before-dir-fsync"])
def test_sigkill_at_each_step(tmp_path, versions, point):
    dest = tmp_path / "model.cz"
    W.write_file(dest, versions[0])
    _kill_once(dest, versions, point, 0.0)
    state = check_destination(dest, versions)
    left = tmp_files(tmp_path)
    if point in ("mid-write", "before-fsync", "before-rename"):
        assert state == "old"                 # the rename never happened
        assert len(left) == 1, left           # the killed writer's temporary file remains
    else:
        assert state == "new" and left == []
    for name in left:                         # what a caller's cleanup would do
        (tmp_path / name).unlink()


def test_sigkill_at_random_points(tmp_path, versions):
    """30 kills after seeded random delays of 0-40 ms into a loop that rewrites the file."""
    dest = tmp_path / "model.cz"
    W.write_file(dest, versions[0])
    rng = random.Random(1234)
    seen, leftovers = set(), 0
    for _ in range(30):
        _kill_once(dest, versions, None, rng.uniform(0.0, 0.04))
        seen.add(check_destination(dest, versions))
        left = tmp_files(tmp_path)
        assert len(left) <= 1, left
        leftovers += len(left)
        for name in left:
            (tmp_path / name).unlink()
    print(f"\n30 random SIGKILLs: destination always complete ({sorted(seen)} seen), "
          f"{leftovers} kills left a .cz-*.tmp")


def test_normal_writes_leave_no_temp_files(tmp_path, versions):
    dest = tmp_path / "model.cz"
    for v in versions + versions:
        W.write_file(dest, v)
        assert tmp_files(tmp_path) == []
    czmodel.write(tmp_path / "other.cz", {"x": np.ones(3, np.float32)})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.cz", "other.cz"]


# ----------------------------------------------------------------------------- full disk


def test_disk_full_enospc(tmp_path, versions, monkeypatch):
    """The temporary file's write fails with ENOSPC after part of the data."""
    dest = tmp_path / "model.cz"
    W.write_file(dest, versions[0])
    real_fdopen = os.fdopen

    class Full:
        def __init__(self, f):
            self.f = f

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return self.f.__exit__(*exc)

        def write(self, data):
            self.f.write(data[:4096])
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

        def __getattr__(self, name):
            return getattr(self.f, name)
    monkeypatch.setattr(W.os, "fdopen", lambda *a, **k: Full(real_fdopen(*a, **k)))
    with pytest.raises(OSError) as ei:
        czmodel.write(dest, {"w": np.zeros(1000, np.float32)})
    assert ei.value.errno == errno.ENOSPC and "No space left" in str(ei.value)
    assert dest.read_bytes() == versions[0]
    assert tmp_files(tmp_path) == []
    with pytest.raises(OSError) as ei:                       # a new name never appears
        czmodel.write(tmp_path / "new.cz", {"w": np.zeros(1000, np.float32)})
    assert not (tmp_path / "new.cz").exists() and tmp_files(tmp_path) == []


_FSIZE_CHILD = r"""
import resource, signal, sys
import numpy as np
import czmodel
import czmodel.codecs
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)       # get EFBIG instead of being killed
resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, 1 << 20))
try:
    w = np.random.default_rng(0).standard_normal(1 << 20).astype(np.float32)   # 4 MiB
    czmodel.write(sys.argv[1], {"w": czmodel.codecs.dense(w, entropy="raw")})
except OSError as e:
    print(f"OSError errno={e.errno}: {e}")
    sys.exit(3)
sys.exit(0)
"""


def test_file_size_limit_real_kernel_error(tmp_path, versions):
    """A real kernel refusal (RLIMIT_FSIZE = 1 MiB: the write gets EFBIG part-way, as a full
    disk would give ENOSPC): clear OSError, destination untouched, no temporary file."""
    dest = tmp_path / "model.cz"
    small = build_file({"w": np.ones(4, np.float32)})
    W.write_file(dest, small)
    r = subprocess.run([sys.executable, "-c", _FSIZE_CHILD, str(dest)], capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 3, r.stdout + r.stderr
    assert f"errno={errno.EFBIG}" in r.stdout and "File too large" in r.stdout, r.stdout
    assert dest.read_bytes() == small
    assert tmp_files(tmp_path) == []
