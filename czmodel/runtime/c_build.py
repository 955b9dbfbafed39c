"""Build the C runtime's Python extension ``czmodel._cz_c`` (cffi, API mode).

    python -m czmodel.runtime.c_build          # compile in place (skips if up to date)
    python -m czmodel.runtime.c_build --force  # recompile

The extension is compiled from ``runtime_c/src/*.c`` and ``runtime_c/src/kernels/*.c`` and
placed next to ``czmodel/__init__.py`` (so editable installs and the tests import it). Needs a
C compiler, libzstd headers and OpenMP (gcc). cffi API-mode calls release the GIL while C
runs, so ``cz_run`` calls from several Python threads proceed in parallel.
"""

from __future__ import annotations

import glob
import os
import re
import shutil
import sys
import sysconfig
import tempfile

import cffi

PKG_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))   # .../czmodel
ROOT = os.path.dirname(PKG_DIR)
RUNTIME = os.path.join(ROOT, "runtime_c")
MODULE = "czmodel._cz_c"

def cdef() -> str:
    """The cffi declarations, taken from the public header itself (so they cannot drift):
    comments, preprocessor lines and the C++ guard are dropped, CZ_* constants inlined."""
    with open(os.path.join(RUNTIME, "include", "cz.h"), encoding="utf-8") as f:
        text = f.read()
    consts = dict(re.findall(r"#define\s+(CZ_[A-Z_]+)\s+(\d+)", text))
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    keep = []
    for line in text.splitlines():
        t = line.strip()
        if t.startswith("#") or t in ('extern "C" {', "}"):
            continue
        keep.append(line)
    out = "\n".join(keep)
    for name, value in consts.items():
        out = re.sub(rf"\b{name}\b", value, out)
    return out


def sources() -> list[str]:
    return sorted(glob.glob(os.path.join(RUNTIME, "src", "*.c"))
                  + glob.glob(os.path.join(RUNTIME, "src", "kernels", "*.c")))


def _inputs() -> list[str]:
    return (sources() + glob.glob(os.path.join(RUNTIME, "src", "**", "*.h"), recursive=True)
            + glob.glob(os.path.join(RUNTIME, "include", "*.h")) + [os.path.abspath(__file__)])


def ffibuilder(absolute: bool = False) -> cffi.FFI:
    """The FFI builder. setuptools (``pip install``, through ``cffi_modules`` in setup.py)
    calls it with no argument from ROOT and refuses absolute source paths; ``build()``
    compiles in a temporary folder and needs absolute ones."""

    def _rel(path: str) -> str:
        if absolute or os.path.abspath(os.getcwd()) != ROOT:
            return path
        return os.path.relpath(path, ROOT)

    ffi = cffi.FFI()
    ffi.cdef(cdef())
    ffi.set_source(
        MODULE, '#include "cz.h"\n',
        sources=[_rel(p) for p in sources()],
        include_dirs=[_rel(os.path.join(RUNTIME, "include")), _rel(os.path.join(RUNTIME, "src"))],
        libraries=["zstd", "m"],
        define_macros=[("_DEFAULT_SOURCE", None)],   # as runtime_c/Makefile
        extra_compile_args=["-O2", "-std=c11", "-fopenmp"],
        extra_link_args=["-fopenmp"])
    return ffi


def target_path() -> str:
    suffix = sysconfig.get_config_var("EXT_SUFFIX") or ".so"
    return os.path.join(PKG_DIR, "_cz_c" + suffix)


def up_to_date() -> bool:
    """True when an extension built by pip (``_cz_c.abi3.so``) or by ``build()`` is newer
    than every C source and header."""
    import importlib.machinery

    # the file `import czmodel._cz_c` would load: the first suffix that exists wins
    for suffix in importlib.machinery.EXTENSION_SUFFIXES:
        p = os.path.join(PKG_DIR, "_cz_c" + suffix)
        if os.path.isfile(p):
            mt = os.path.getmtime(p)
            return all(os.path.getmtime(q) <= mt for q in _inputs())
    return False


def build(force: bool = False, verbose: bool = False) -> str:
    """Compile the extension into the czmodel package; returns its path. Raises on failure
    (``cffi.VerificationError`` / ``distutils`` errors carry the compiler output)."""
    target = target_path()
    if not force and up_to_date():
        return target
    tmp = tempfile.mkdtemp(prefix="cz_cffi_")
    try:
        built = ffibuilder(absolute=True).compile(tmpdir=tmp, verbose=verbose)
        tmp_target = target + f".tmp{os.getpid()}"
        shutil.copyfile(built, tmp_target)
        os.replace(tmp_target, target)   # atomic: a concurrent import sees old or new
        for other in glob.glob(os.path.join(PKG_DIR, "_cz_c*.so")):
            if os.path.abspath(other) != os.path.abspath(target):
                os.unlink(other)          # a stale pip-built variant must not shadow it
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    force = "--force" in argv
    try:
        path = build(force=force, verbose="-v" in argv)
    except Exception as e:  # noqa: BLE001 - report the compiler failure on one line + details
        print(f"czmodel C extension build failed: {type(e).__name__}: {e}", file=sys.stderr)
        return 1
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
