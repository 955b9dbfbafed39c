"""Run a file through the Python reader and the C reader; report what each said, how long it
took and the most memory it held.

The C reader is driven through the cffi extension ``czmodel._cz_c`` with a COUNTING
cz_allocator (ffi callbacks over libc's aligned_alloc/free): the peak of live bytes the C
library asked for is exact, not a guess from RSS. The Python reader is measured with
tracemalloc (numpy registers its buffers with it)."""

from __future__ import annotations

import ctypes
import time
import tracemalloc
from dataclasses import dataclass

import czmodel

_C_CLASSES = {100: "FormatError", 200: "CorruptionError", 201: "CorruptionError",
              300: "UnsupportedError", 400: "LimitError", 600: "MemoryError", 700: "OSError"}


@dataclass
class Outcome:
    error: str | None          # class name, None when accepted
    stage: str                 # "open" or "verify" (where it was rejected / "verify" if ok)
    message: str
    seconds: float
    peak_bytes: int


def python_reader(data: bytes, cap: int | None = None) -> Outcome:
    """czmodel.open + verify + read every tensor. Any non-CzError exception propagates."""
    kw = {} if cap is None else {"max_tensor_bytes": cap}
    tracemalloc.start()
    t0 = time.perf_counter()
    stage = "open"
    try:
        with czmodel.open(data, **kw) as f:
            stage = "verify"
            f.verify()
            for name in f:
                f[name]
        err, msg = None, ""
    except czmodel.CzError as e:
        err, msg = type(e).__name__, str(e)
    finally:
        dt = time.perf_counter() - t0
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return Outcome(err, stage, msg, dt, peak)


class _Counter:
    def __init__(self, ffi):
        libc = ctypes.CDLL(None)
        libc.aligned_alloc.restype = ctypes.c_void_p
        libc.aligned_alloc.argtypes = [ctypes.c_size_t, ctypes.c_size_t]
        libc.free.argtypes = [ctypes.c_void_p]
        self.libc, self.ffi = libc, ffi
        self.live: dict[int, int] = {}
        self.cur = self.peak = self.calls = 0
        self.biggest = 0

        def alloc(ctx, size, align):
            self.calls += 1
            self.biggest = max(self.biggest, size)
            a = max(int(align), 16)
            p = libc.aligned_alloc(a, max(-(-int(size) // a) * a, a))
            if not p:
                return ffi.NULL
            self.live[p] = int(size)
            self.cur += int(size)
            self.peak = max(self.peak, self.cur)
            return ffi.cast("void *", p)

        def free(ctx, ptr):
            p = int(ffi.cast("uintptr_t", ptr))
            if p:
                self.cur -= self.live.pop(p)
                libc.free(p)

        self._alloc = ffi.callback("void *(*)(void *, size_t, size_t)", alloc)
        self._free = ffi.callback("void (*)(void *, void *)", free)
        self.struct = ffi.new("cz_allocator *")
        self.struct.alloc = self._alloc
        self.struct.free = self._free


def c_reader(data: bytes, cap: int | None = None) -> Outcome:
    """cz_open_memory + cz_verify + cz_tensor_read of every tensor, with a counting allocator
    (threads = 1). Leaks are an AssertionError."""
    from czmodel._cz_c import ffi, lib
    counter = _Counter(ffi)
    opts = ffi.new("cz_options *")
    opts.allocator = counter.struct
    opts.max_tensor_bytes = cap or 0
    opts.threads = 1
    buf = ffi.from_buffer(data)
    out = ffi.new("cz_model **")
    err = ffi.new("char[]", 1024)
    t0 = time.perf_counter()
    stage, st = "open", lib.cz_open_memory(buf, len(data), opts, out, err, 1024)
    if st == lib.CZ_OK:
        m = out[0]
        stage, st = "verify", lib.cz_verify(m, err, 1024)
        info = ffi.new("cz_info *")
        for i in range(lib.cz_tensor_count(m) if st == lib.CZ_OK else 0):
            assert lib.cz_tensor_info(m, i, info) == lib.CZ_OK
            n = lib.cz_dtype_size(info.dtype)
            for k in range(info.ndim):
                n *= info.shape[k]
            dst = ffi.new("char[]", max(n, 1))
            st = lib.cz_tensor_read(m, info.name, dst, n, err, 1024)
            if st != lib.CZ_OK:
                break
        lib.cz_close(m)
    dt = time.perf_counter() - t0
    assert counter.cur == 0 and not counter.live, f"C reader leaked {counter.cur} bytes"
    msg = ffi.string(err).decode("utf-8", "replace") if st != lib.CZ_OK else ""
    return Outcome(None if st == lib.CZ_OK else _C_CLASSES.get(st, f"status {st}"), stage, msg,
                   dt, counter.peak)


def c_read_tensor(data: bytes, name: str):
    """Decode one tensor with the C reader (for valid attack files): numpy array."""
    import numpy as np
    from czmodel._cz_c import ffi, lib

    from czmodel.runtime.c_backend import _DT
    opts = ffi.new("cz_options *")
    opts.threads = 1
    buf = ffi.from_buffer(data)
    out = ffi.new("cz_model **")
    err = ffi.new("char[]", 1024)
    assert lib.cz_open_memory(buf, len(data), opts, out, err, 1024) == lib.CZ_OK, \
        ffi.string(err)
    m = out[0]
    try:
        info = ffi.new("cz_info *")
        for i in range(lib.cz_tensor_count(m)):
            lib.cz_tensor_info(m, i, info)
            if ffi.string(info.name).decode() == name:
                shape = [info.shape[k] for k in range(info.ndim)]
                a = np.empty(shape, _DT[info.dtype])
                assert lib.cz_tensor_read(m, info.name, ffi.from_buffer(a), a.nbytes, err,
                                          1024) == lib.CZ_OK, ffi.string(err)
                return a
        raise KeyError(name)
    finally:
        lib.cz_close(m)
