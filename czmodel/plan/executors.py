"""Where the planner's evaluations run: one interface, three implementations.

    ex.map(fn, items, context=ctx, on_done=callback) -> [fn(ctx, item) for item in items]

``fn`` is a picklable top-level function; ``context`` is shipped to each worker ONCE (the
model, the calibration data, the metric) and every call on that worker gets the same
object, so a worker builds its expensive state (e.g. the fp32 run) once and caches it.
Results come back in the order of ``items``; ``on_done(i, result)`` is called in the parent
as each one completes (progress bars).

* ``SerialExecutor``: in this process (tests, debugging).
* ``ProcessExecutor`` (default): a ``concurrent.futures`` process pool, ``workers`` = cores,
  "spawn" start (safe with the runtime's threads), the context given through the pool's
  initializer; the pool is kept for further maps with the same context.
* ``DaskExecutor``: a ``dask.distributed`` ``Client`` (an address, an existing ``Client``,
  or a ``LocalCluster`` of ``workers`` processes); the context is scattered to every worker
  (``broadcast=True``). Needs ``pip install 'czmodel[plan]'``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any

from czmodel.errors import UnsupportedError

OnDone = Callable[[int, Any], None] | None
_NO_CONTEXT = object()


def _call(fn: Callable, context: Any, item: Any) -> Any:
    return fn(item) if context is _NO_CONTEXT else fn(context, item)


class Executor:
    """Base class; ``with`` closes the workers."""

    name = "executor"
    workers = 1

    def map(self, fn: Callable, items: Sequence[Any], *, context: Any = _NO_CONTEXT,
            on_done: OnDone = None) -> list:  # pragma: no cover - every executor overrides
        raise NotImplementedError

    def close(self) -> None:
        pass

    def __enter__(self) -> Executor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(workers={self.workers})"


class SerialExecutor(Executor):
    name = "serial"

    def map(self, fn, items, *, context=_NO_CONTEXT, on_done=None):
        out = []
        for i, it in enumerate(items):
            r = _call(fn, context, it)
            out.append(r)
            if on_done is not None:
                on_done(i, r)
        return out


# -- process pool ---------------------------------------------------------------------------
_WORKER_CONTEXT: Any = _NO_CONTEXT


def _init_worker(context: Any) -> None:
    global _WORKER_CONTEXT
    _WORKER_CONTEXT = context


def _pool_call(fn: Callable, item: Any) -> Any:
    return _call(fn, _WORKER_CONTEXT, item)


class ProcessExecutor(Executor):
    name = "process"

    def __init__(self, workers: int | None = None, start_method: str = "spawn") -> None:
        self.workers = max(1, int(workers or os.cpu_count() or 1))
        self.start_method = start_method
        self._pool: Any = None
        self._pool_ctx: Any = None

    def _get_pool(self, context: Any) -> Any:
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor

        if self._pool is not None and self._pool_ctx is context:
            return self._pool
        self.close()
        self._pool = ProcessPoolExecutor(self.workers, mp_context=mp.get_context(
            self.start_method), initializer=_init_worker, initargs=(context,))
        self._pool_ctx = context
        return self._pool

    def map(self, fn, items, *, context=_NO_CONTEXT, on_done=None):
        from concurrent.futures import as_completed

        items = list(items)
        if not items:
            return []
        pool = self._get_pool(context)
        futs = {pool.submit(_pool_call, fn, it): i for i, it in enumerate(items)}
        out: list[Any] = [None] * len(items)
        try:
            for f in as_completed(futs):
                i = futs[f]
                out[i] = f.result()
                if on_done is not None:
                    on_done(i, out[i])
        except BaseException:
            for f in futs:
                f.cancel()
            raise
        return out

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool, self._pool_ctx = None, None


# -- dask ---------------------------------------------------------------------------------------
def _import_distributed() -> Any:
    try:
        import distributed
    except ImportError as e:
        raise UnsupportedError("the Dask executor needs dask.distributed: pip install "
                               "'czmodel[plan]'") from e
    return distributed


def _dask_call(fn: Callable, context: Any, item: Any) -> Any:
    return _call(fn, context, item)


class DaskExecutor(Executor):
    """``DaskExecutor(address)`` / ``DaskExecutor(client=c)`` / ``DaskExecutor(workers=2)``
    (a LocalCluster of single-threaded worker processes, closed with the executor)."""

    name = "dask"

    def __init__(self, address: str | None = None, *, client: Any = None,
                 workers: int | None = None) -> None:
        distributed = _import_distributed()
        self._own: list[Any] = []
        self._scattered: tuple[Any, Any] | None = None    # (context, its future)
        if client is not None:
            self.client = client
        elif address is not None:
            self.client = distributed.Client(address)
            self._own = [self.client]
        else:
            cluster = distributed.LocalCluster(n_workers=max(1, int(workers or os.cpu_count()
                                                                    or 1)),
                                               threads_per_worker=1, processes=True,
                                               dashboard_address=None)
            self.client = distributed.Client(cluster)
            self._own = [self.client, cluster]
        info = self.client.scheduler_info()
        self.workers = max(1, len(info.get("workers", {})))

    def map(self, fn, items, *, context=_NO_CONTEXT, on_done=None):
        distributed = _import_distributed()
        items = list(items)
        if not items:
            return []
        ctx = context
        if context is not _NO_CONTEXT:
            if self._scattered is None or self._scattered[0] is not context:
                self._scattered = (context, self.client.scatter(context, broadcast=True,
                                                                 hash=False))
            ctx = self._scattered[1]
        futs = [self.client.submit(_dask_call, fn, ctx, it, pure=False) for it in items]
        index = {f.key: i for i, f in enumerate(futs)}
        out: list[Any] = [None] * len(items)
        try:
            for f in distributed.as_completed(futs):
                i = index[f.key]
                out[i] = f.result()
                if on_done is not None:
                    on_done(i, out[i])
        except BaseException:
            self.client.cancel(futs)
            raise
        return out

    def close(self) -> None:
        self._scattered = None
        for obj in self._own:
            obj.close()
        self._own = []


def make_executor(kind: str | Executor | None = None, workers: int | None = None,
                  address: str | None = None) -> Executor:
    """"process" (default), "serial", "dask" (``address`` or a LocalCluster), or an
    Executor passed through."""
    if isinstance(kind, Executor):
        return kind
    kind = kind or "process"
    if kind == "serial":
        return SerialExecutor()
    if kind == "process":
        return ProcessExecutor(workers)
    if kind == "dask":
        return DaskExecutor(address, workers=workers)
    raise UnsupportedError(f"executor {kind!r}: use process, serial or dask")
