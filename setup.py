"""Build hook for the optional C runtime (cffi, API mode). Everything else is in
pyproject.toml. Without a C compiler, OpenMP or the libzstd headers, czmodel still installs
and uses the Numba backend; `python -m czmodel.runtime.c_build` builds the C runtime later.
``CZ_REQUIRE_C=1`` makes a failed C build fail the build (release wheels, tests/test_wheel.py)."""

import os
import sys

from setuptools import setup
from setuptools.command.build_ext import build_ext


class OptionalBuildExt(build_ext):
    def run(self) -> None:
        try:
            super().run()
        except Exception as e:  # noqa: BLE001 - the C runtime is optional
            _notice(e)

    def build_extension(self, ext) -> None:
        try:
            super().build_extension(ext)
        except Exception as e:  # noqa: BLE001
            _notice(e)


def _notice(e: Exception) -> None:
    if os.environ.get("CZ_REQUIRE_C", "") not in ("", "0"):
        raise RuntimeError(f"CZ_REQUIRE_C is set and the C runtime did not build: {e}") from e
    print(f"czmodel: C runtime not built ({type(e).__name__}: {str(e)[:200]}); the Numba "
          "backend will be used. Build it later: python -m czmodel.runtime.c_build",
          file=sys.stderr)


setup(cffi_modules=["czmodel/runtime/c_build.py:ffibuilder"],
      cmdclass={"build_ext": OptionalBuildExt})
