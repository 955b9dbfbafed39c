"""The C backend: whole-graph execution in the C runtime (``runtime_c``) through the cffi
extension ``czmodel._cz_c``.

``CModel(path_or_bytes, threads=None)`` opens a .cz file in C (format checks, graph
validation, kernel forms) and exposes the same interface as ``czmodel.runtime.Model``:
``.inputs`` / ``.outputs`` (``ValueInfo`` lists), ``.run(feeds) -> dict``, ``__call__``,
``close()`` and context-manager use, plus ``resident_bytes(name)`` / ``.resident``.

The GIL is released for the whole of each C call (cffi API mode does this for every call), so
one model may be run from several Python threads at once; each ``cz_run`` uses its own
workspace. Outputs are numpy arrays over the C buffers (no copy; freed with the array).

C statuses map to ``czmodel.errors``: FORMAT -> FormatError, CORRUPT/CHECKSUM ->
CorruptionError, UNSUPPORTED -> UnsupportedError, LIMIT -> LimitError, PARAM/SHAPE/NOT_FOUND
-> RuntimeInputError, MEMORY -> MemoryError, IO -> OSError.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping
from typing import Any

import numpy as np

# OpenMP threads that spin while waiting starve everything else on a busy machine (a 2-thread
# MiniLM call went from 8 ms to 170 ms with other processes on the cores). libgomp reads this
# once, when the extension loads it, so it must be set before the import; a user's own
# setting wins.
os.environ.setdefault("OMP_WAIT_POLICY", "passive")

try:
    from czmodel._cz_c import ffi, lib
except ImportError as _e:  # pragma: no cover - depends on the build
    raise ImportError("the czmodel C extension is not built; build it with: "
                      "python -m czmodel.runtime.c_build") from _e

from czmodel.errors import (
    CorruptionError,
    FormatError,
    LimitError,
    RuntimeInputError,
    UnsupportedError,
)
from czmodel.graph.model import Graph, ValueInfo
from czmodel.runtime.executor import Backend

_ERRLEN = 1024
_NULL = ffi.NULL
_OK = lib.CZ_OK
_COPY_OUT_MAX = 1 << 16     # outputs up to this many bytes are copied into numpy arrays
_DT = {
    lib.CZ_F32: np.dtype(np.float32), lib.CZ_F16: np.dtype(np.float16),
    lib.CZ_F64: np.dtype(np.float64), lib.CZ_I64: np.dtype(np.int64),
    lib.CZ_I32: np.dtype(np.int32), lib.CZ_I16: np.dtype(np.int16),
    lib.CZ_I8: np.dtype(np.int8), lib.CZ_U8: np.dtype(np.uint8),
    lib.CZ_U16: np.dtype(np.uint16), lib.CZ_U32: np.dtype(np.uint32),
    lib.CZ_BOOL: np.dtype(np.bool_),
}
_NP_TO_CZ = {v: k for k, v in _DT.items()}
_NAMES = {lib.CZ_F32: "f32", lib.CZ_F16: "f16", lib.CZ_F64: "f64", lib.CZ_I64: "i64",
          lib.CZ_I32: "i32", lib.CZ_I16: "i16", lib.CZ_I8: "i8", lib.CZ_U8: "u8",
          lib.CZ_U16: "u16", lib.CZ_U32: "u32", lib.CZ_BOOL: "bool"}


def _raise(status: int, err: Any, what: str = "") -> None:
    msg = ffi.string(err).decode("utf-8", "replace") or ffi.string(
        lib.cz_status_name(status)).decode()
    if what:
        msg = f"{what}: {msg}"
    if status == lib.CZ_ERR_FORMAT:
        raise FormatError(msg)
    if status in (lib.CZ_ERR_CORRUPT, lib.CZ_ERR_CHECKSUM):
        raise CorruptionError(msg)
    if status == lib.CZ_ERR_UNSUPPORTED:
        raise UnsupportedError(msg)
    if status == lib.CZ_ERR_LIMIT:
        raise LimitError(msg)
    if status in (lib.CZ_ERR_PARAM, lib.CZ_ERR_SHAPE, lib.CZ_ERR_NOT_FOUND):
        raise RuntimeInputError(msg)
    if status == lib.CZ_ERR_MEMORY:
        raise MemoryError(msg)
    if status == lib.CZ_ERR_IO:
        raise OSError(msg)
    raise RuntimeError(f"C runtime status {status}: {msg}")


def _free(p: Any) -> None:
    lib.cz_free(ffi.NULL, p)   # the default allocator (the model's, as opened here)


def _value_infos(infos: list[tuple[str, int, list[int]]], graph_side: list | None) -> list:
    if graph_side is not None:
        return [ValueInfo(v["name"], v["dtype"], list(v["shape"])) if isinstance(v, dict) else v
                for v in graph_side]
    return [ValueInfo(n, _NAMES[dt], [d if d >= 0 else f"d{i}" for i, d in enumerate(s)])
            for n, dt, s in infos]


class CModel:
    """A .cz model opened and run by the C runtime (see the module doc)."""

    def __init__(self, source: str | os.PathLike | bytes, threads: int | None = None, *,
                 max_tensor_bytes: int | None = None, graph: Any = None,
                 precise: bool = False) -> None:
        self._lock = threading.Lock()
        self._m = None
        opts = ffi.new("cz_options *")
        opts.threads = int(threads) if threads else (os.cpu_count() or 1)
        opts.precise = 1 if precise else 0
        opts.max_tensor_bytes = int(max_tensor_bytes or 0)
        out = ffi.new("cz_model **")
        err = ffi.new("char[]", _ERRLEN)
        if isinstance(source, (bytes, bytearray, memoryview)):
            self._data = ffi.from_buffer(bytes(source))   # kept alive: cz_open_memory borrows
            st = lib.cz_open_memory(self._data, len(self._data), opts, out, err, _ERRLEN)
        else:
            self._data = None
            st = lib.cz_open_file(os.fsencode(os.fspath(source)), opts, out, err, _ERRLEN)
        if st != lib.CZ_OK:
            _raise(st, err)
        self._m = out[0]
        self.threads = opts.threads
        self._source = source
        self._graph = graph
        self._in_names = []
        info = ffi.new("cz_info *")
        ins, outs = [], []
        for count, get, dst in ((lib.cz_input_count, lib.cz_input_info, ins),
                                (lib.cz_output_count, lib.cz_output_info, outs)):
            for i in range(count(self._m)):
                if get(self._m, i, info) != lib.CZ_OK:
                    raise RuntimeError("cz_*_info failed")
                dst.append((ffi.string(info.name).decode(), int(info.dtype),
                            [int(info.shape[k]) for k in range(info.ndim)]))
        if not outs:
            self.close()
            raise FormatError("this file holds weights only (no graph); use czmodel.open to "
                              "read its tensors")
        self._c_inputs, self._c_outputs = ins, outs
        # per-call fast paths (see run): encoded input names, output names, per-thread buffers
        self._in_map = {n: (ffi.new("char[]", n.encode()), dt) for n, dt, _ in ins}
        self._out_names = [n for n, _, _ in outs]
        self._n_out = len(outs)
        self._out_guess: dict = {}
        self._tls = threading.local()
        self._vi_in = self._vi_out = None
        self.precise = bool(precise)
        self.backend: Backend = CBackend(threads=self.threads, precise=self.precise)

    # -- graph interface -------------------------------------------------------------------
    def _graph_side(self, key: str) -> list | None:
        """ValueInfos with symbolic dim names (from the header graph, read in Python)."""
        infos = self._c_inputs if key == "inputs" else self._c_outputs
        if not any(d < 0 for _, _, s in infos for d in s):
            return None
        if self._graph is None:
            import czmodel
            with czmodel.open(self._source if not isinstance(self._source, memoryview)
                              else bytes(self._source)) as f:
                self._graph = f.graph
        g = self._graph
        return list(getattr(g, key)) if not isinstance(g, dict) else g[key]

    @property
    def graph(self) -> Graph:
        """The model graph (parsed in Python from the header on first use)."""
        if not isinstance(self._graph, Graph):
            import czmodel
            src = bytes(self._source) if isinstance(self._source, memoryview) else self._source
            with czmodel.open(src) as f:
                d = self._graph if isinstance(self._graph, dict) else f.graph
                self._graph = Graph.from_header(d, set(f))
        return self._graph

    @property
    def inputs(self) -> list[ValueInfo]:
        if self._vi_in is None:
            self._vi_in = _value_infos(self._c_inputs, self._graph_side("inputs"))
        return self._vi_in

    @property
    def outputs(self) -> list[ValueInfo]:
        if self._vi_out is None:
            self._vi_out = _value_infos(self._c_outputs, self._graph_side("outputs"))
        return self._vi_out

    def _model(self) -> Any:
        if self._m is None:
            raise ValueError("model is closed")
        return self._m

    def run(self, feeds: Mapping[str, Any], *, fetch: list[str] | None = None
            ) -> dict[str, np.ndarray]:
        """Run the graph; returns ``{output name: array}``. Thread-safe.

        Per-call Python work is kept small: the cffi input/output descriptors and the error
        buffer are reused per thread, input names are pre-encoded, and small outputs (up to
        ``_COPY_OUT_MAX`` bytes) are written by C straight into numpy arrays allocated from
        the output shapes of the previous call with the same input shapes (a wrong guess is
        detected by C and the call is repeated without buffers); larger ones are wrapped
        without a copy.

        Fast path (the common serving loop: a dict of C-contiguous ndarrays with the same
        names, shapes and dtypes as this thread's previous call, small outputs): the
        descriptors of that call are reused as they are -- only the data pointers are set --
        and the outputs C reports are checked against the expected ones with one compare of
        the descriptors' raw bytes (dtype, rank, shape, size)."""
        if fetch:   # graph outputs are always returned; intermediates are not kept by C
            missing = [f for f in fetch if f not in self._out_names]
            if missing:
                raise UnsupportedError(f"the C backend returns graph outputs only, not "
                                       f"{missing[0]!r}; use backend='reference' or 'numba' to "
                                       "fetch intermediates")
        fp = getattr(self._tls, "fast", None)
        if fp is not None and type(feeds) is dict and len(feeds) == fp[0]:
            m = self._m
            if m is None:
                raise ValueError("model is closed")
            sig = fp[1]
            tin_items = fp[2]
            bufs = []
            j = 0
            for name, x in feeds.items():
                nm, shape, dt = sig[j]
                if type(x) is not np.ndarray or name != nm or x.shape != shape or \
                        (x.dtype is not dt and x.dtype != dt):
                    break
                try:
                    b = ffi.from_buffer(x)
                except ValueError:   # not C-contiguous
                    break
                bufs.append(b)
                tin_items[j].data = b
                j += 1
            else:
                outs = []
                for shape, dt, item in fp[4]:
                    a = np.empty(shape, dt)
                    b = ffi.from_buffer(a)
                    bufs.append(b)
                    item.data = b
                    outs.append(a)
                st = lib.cz_run(m, fp[3], j, fp[5], len(outs), fp[6], _ERRLEN)
                for _, _, item in fp[4]:
                    item.data = _NULL   # (as when the expected bytes were taken)
                # fp[8]: a buffer over the output descriptors, made once (~0.35 us a call)
                if st == _OK and fp[8][:] == fp[7]:
                    if len(outs) == 1:
                        return {self._out_names[0]: outs[0]}
                    return dict(zip(self._out_names, outs))
                # an error, or outputs of another shape than the last call's: the general
                # path below repeats the call (and reports the error)
                self._tls.fast = None
        return self._run_slow(feeds)

    def _run_slow(self, feeds: Mapping[str, Any]) -> dict[str, np.ndarray]:
        self._tls.fast = None   # the descriptors are rewritten below
        if type(feeds) is not dict and not isinstance(feeds, Mapping):
            raise RuntimeInputError(f"feeds must be a mapping name -> array, got "
                                    f"{type(feeds).__name__}")
        m = self._m
        if m is None:
            raise ValueError("model is closed")
        n_in = len(feeds)
        tls = self._tls
        st_ = getattr(tls, "state", None)
        if st_ is None or st_[0] < n_in:
            st_ = [max(n_in, 1), ffi.new("cz_tensor[]", max(n_in, 1)),
                   ffi.new("cz_tensor[]", self._n_out), ffi.new("char[]", _ERRLEN), None, None]
            tls.state = st_
        tin, tout, err = st_[1], st_[2], st_[3]
        in_map = self._in_map
        arrs = []
        key = []
        for name, x in feeds.items():
            if type(x) is not np.ndarray or not x.flags.c_contiguous:
                if not isinstance(name, str):
                    raise RuntimeInputError(f"feed names must be strings, got {name!r}")
                if not isinstance(x, np.ndarray):
                    info = in_map.get(name)
                    dt = _DT.get(info[1] if info else lib.CZ_F32)
                    try:
                        x = np.asarray(x, dtype=dt)
                    except (TypeError, ValueError) as e:
                        raise RuntimeInputError(f"input {name!r}: cannot convert to {dt}: {e}") \
                            from None
                if not x.flags.c_contiguous:
                    x = np.ascontiguousarray(x)
            arrs.append(x)
            key.append(name)
            key.append(x.shape)
            key.append(x.dtype)
        key = tuple(key)
        keep = st_[5] if key == st_[4] else None
        if keep is None:
            # new input signature: fill names, dtypes and shapes (kept for the next calls)
            keep = []
            for j, x in enumerate(arrs):
                name = key[3 * j]
                if not isinstance(name, str):
                    raise RuntimeInputError(f"feed names must be strings, got {name!r}")
                info = in_map.get(name)
                if info is None:
                    info = (ffi.new("char[]", name.encode()), lib.CZ_F32)
                keep.append(info[0])
                cz_dt = _NP_TO_CZ.get(x.dtype)
                if cz_dt is None:
                    raise RuntimeInputError(f"input {name!r} has dtype {x.dtype}, which the "
                                            "graph cannot take (convert it with .astype)")
                nd = x.ndim
                if nd > 16:
                    raise RuntimeInputError(f"input {name!r} has rank {nd}, over 16")
                t = tin[j]
                t.name = info[0]
                t.dtype = cz_dt
                t.ndim = nd
                if nd:
                    t.shape[0:nd] = x.shape
                t.bytes = x.nbytes
            st_[4], st_[5] = key, keep
        bufs = []
        for j, x in enumerate(arrs):
            if x.nbytes:
                b = ffi.from_buffer(x)
                bufs.append(b)
                tin[j].data = b
            else:
                tin[j].data = ffi.NULL
        n_out = self._n_out
        guess = self._out_guess.get(key)
        outs = None
        # tout[j].name stays as C set it on an earlier call (output j's own name) or NULL
        if guess is None:
            for j in range(n_out):
                tout[j].data = ffi.NULL
        else:
            outs = []
            for j, (shape, dt, copy) in enumerate(guess):
                o = tout[j]
                if copy:
                    a = np.empty(shape, dt)
                    b = ffi.from_buffer(a)
                    bufs.append(b)
                    o.data = b
                    o.bytes = a.nbytes
                else:
                    a = None
                    o.data = ffi.NULL
                outs.append(a)
        st = lib.cz_run(m, tin, n_in, tout, n_out, err, _ERRLEN)   # GIL released here
        if st != lib.CZ_OK:
            if guess is None or st != lib.CZ_ERR_PARAM:
                _raise(st, err)
            # a shape guess was wrong (data-dependent output shape): run again without buffers
            self._out_guess.pop(key, None)
            guess = outs = None
            for j in range(n_out):
                tout[j].data = ffi.NULL
            st = lib.cz_run(m, tin, n_in, tout, n_out, err, _ERRLEN)
            if st != lib.CZ_OK:
                _raise(st, err)
        res = {}
        names = self._out_names
        new_guess = []
        for j in range(n_out):
            t = tout[j]
            dt = _DT[t.dtype]
            tnd = t.ndim
            shape = tuple(t.shape[0:tnd]) if tnd else ()
            nbytes = t.bytes
            a = outs[j] if outs is not None else None
            if a is not None:
                t.data = ffi.NULL   # (the caller's buffer: nothing to free)
                if a.shape != shape or a.dtype != dt:   # same bytes, other shape / dtype
                    a = np.frombuffer(a, dtype=np.uint8)[:nbytes].view(dt).reshape(shape)
                arr = a
            elif nbytes == 0:
                if t.data != ffi.NULL:
                    _free(t.data)
                arr = np.empty(shape, dt)
            else:
                p = ffi.gc(ffi.cast("char *", t.data), _free, size=nbytes)
                arr = np.frombuffer(ffi.buffer(p, nbytes), dtype=dt).reshape(shape)
            new_guess.append((shape, dt, 0 < nbytes <= _COPY_OUT_MAX))
            res[names[j]] = arr
        if guess is None:
            if len(self._out_guess) > 64:
                self._out_guess.clear()
            self._out_guess[key] = new_guess
        # fast path for the next call of this thread with the same signature: every input a
        # non-empty ndarray, every output small (copied into an array allocated per call)
        # and written into the buffer that the guess gave this call
        if type(feeds) is dict and outs is not None and all(a is not None for a in outs) \
                and all(x.nbytes for x in arrs) and n_in == len(arrs):
            sig = tuple((key[3 * j], key[3 * j + 1], key[3 * j + 2]) for j in range(n_in))
            if all(type(feeds[nm]) is np.ndarray for nm, _, _ in sig):
                items_out = [tout[j] for j in range(n_out)]
                specs = [(a.shape, a.dtype, items_out[j]) for j, a in enumerate(outs)]
                for item in items_out:   # as the fast path leaves them before the compare
                    item.data = ffi.NULL
                expect = ffi.buffer(tout)[:]
                self._tls.fast = (n_in, sig, [tin[j] for j in range(n_in)], tin, specs, tout, err,
                                  expect, ffi.buffer(tout))
        return res

    def __call__(self, **feeds: np.ndarray) -> dict[str, np.ndarray]:
        return self.run(feeds)

    # -- tensors -----------------------------------------------------------------------------
    def tensor_names(self) -> list[str]:
        m = self._model()
        info = ffi.new("cz_info *")
        out = []
        for i in range(lib.cz_tensor_count(m)):
            lib.cz_tensor_info(m, i, info)
            out.append(ffi.string(info.name).decode())
        return out

    def resident_bytes(self, name: str) -> int:
        """Bytes the C runtime keeps resident for file tensor ``name`` (its kernel form)."""
        v = ffi.new("uint64_t *")
        st = lib.cz_tensor_resident_bytes(self._model(), name.encode(), v)
        if st != lib.CZ_OK:
            raise KeyError(name)
        return int(v[0])

    @property
    def resident(self) -> dict[str, int]:
        return {n: self.resident_bytes(n) for n in self.tensor_names()}

    @property
    def resident_total(self) -> int:
        """Sum of ``cz_tensor_resident_bytes`` over every file tensor (weight memory)."""
        return sum(self.resident.values())

    def verify(self) -> None:
        err = ffi.new("char[]", _ERRLEN)
        st = lib.cz_verify(self._model(), err, _ERRLEN)
        if st != lib.CZ_OK:
            _raise(st, err)

    def close(self) -> None:
        with self._lock:
            if self._m is not None:
                lib.cz_close(self._m)
                self._m = None

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # noqa: BLE001 - interpreter shutdown
            pass

    def __enter__(self) -> CModel:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return (f"CModel(inputs={[n for n, _, _ in self._c_inputs]}, "
                f"outputs={[n for n, _, _ in self._c_outputs]}, threads={self.threads})")


class CBackend(Backend):
    """Registry entry "c" for ``czmodel.runtime.load``. The C runtime runs whole graphs, not
    single ops: ``load_model`` builds a ``CModel``; ``op`` is not used."""

    name = "c"

    @staticmethod
    def available() -> bool:
        """Importing this module succeeded, so the compiled extension is there."""
        return True

    def op(self, op: str):  # noqa: ANN201
        raise UnsupportedError(f"backend 'c' runs whole graphs (op {op!r} cannot run alone); "
                               "load the model with czmodel.runtime.load(..., backend='c')")

    def load_model(self, file: Any, graph: Any = None,
                   max_tensor_bytes: int | None = None) -> CModel:
        """A ``CModel`` for an open ``CzFile`` (its path, else its bytes), a path or bytes."""
        src = file
        if hasattr(file, "_buf") or hasattr(file, "path"):
            src = file.path if getattr(file, "path", None) else bytes(file._buf)
        m = CModel(src, threads=self.threads, max_tensor_bytes=max_tensor_bytes, graph=graph,
                   precise=self.precise)
        m.backend = self
        return m


def load(source: str | os.PathLike | bytes, threads: int | None = None, *,
         max_tensor_bytes: int | None = None, precise: bool = False) -> CModel:
    """Open ``source`` with the C runtime."""
    return CModel(source, threads=threads, max_tensor_bytes=max_tensor_bytes, precise=precise)
