"""Progress bars for anything that takes more than a second.

One interface for the whole project (compression layer by layer, k-means, calibration,
conversion, training, planning):

    for item in progress(items, total=len(items), desc="k-means"):
        ...

    with progress_task(total=n, desc="profiling") as bar:   # when work is not a loop
        bar.advance(1)

Bars are drawn with ``rich`` on stderr only when stderr is a terminal, so piped output and
logs stay clean; ``CZ_PROGRESS=0`` turns them off, ``CZ_PROGRESS=1`` forces them on (tests).
Nothing here changes results: a bar is a pure observer of the iteration.

Bars nest: while one is live (say "compressing", layer by layer), a bar opened inside it
(k-means of one layer, channel by channel) is one more row of the same display, removed when
it finishes. All bars share one rich ``Progress`` (rich allows a single live display per
console); it stops, leaving nothing on screen, when the last bar closes.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
import time
from collections.abc import Iterable, Iterator
from typing import Any


def enabled(enable: bool | None = None) -> bool:
    """Whether to draw: explicit argument, else ``CZ_PROGRESS``, else "stderr is a tty"."""
    if enable is not None:
        return bool(enable)
    env = os.environ.get("CZ_PROGRESS", "").strip().lower()
    if env in ("0", "false", "no", "off"):
        return False
    if env in ("1", "true", "yes", "on"):
        return True
    return _isatty(sys.stderr)


def _isatty(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


class _NoBar:
    """The disabled bar: same methods, no output."""

    def __init__(self, it: Iterable | None = None) -> None:
        self.it = it
        self.n = 0

    def __iter__(self) -> Iterator:
        return iter(self.it if self.it is not None else ())

    def __enter__(self) -> _NoBar:
        return self

    def __exit__(self, *exc: Any) -> None:
        pass

    def set_postfix_str(self, s: str) -> None:
        pass

    def advance(self, n: float = 1) -> None:
        self.n += n

    update = advance


# -- the one live rich display shared by every open bar -------------------------------------
_lock = threading.RLock()
_shared: Any = None        # rich.progress.Progress while at least one bar is open
_users = 0


def _acquire() -> Any:
    global _shared, _users
    with _lock:
        if _shared is None:
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )

            # force_terminal: we only get here when drawing was decided (a TTY, or forced
            # with CZ_PROGRESS=1 / enable=True); rich would otherwise print nothing to a
            # non-terminal. stdout is redirected through the display only when it is a
            # terminal too (then the lines land on the same screen); piped stdout is never
            # touched.
            console = Console(file=sys.stderr, force_terminal=True)
            _shared = Progress(
                TextColumn("[bold cyan]{task.description}"), BarColumn(),
                MofNCompleteColumn(), TimeElapsedColumn(), TextColumn("eta"),
                TimeRemainingColumn(), TextColumn("{task.fields[postfix]}"),
                console=console, transient=True, redirect_stdout=_isatty(sys.stdout),
                redirect_stderr=False)
            _shared.start()
        _users += 1
        return _shared


def _release() -> None:
    global _shared, _users
    with _lock:
        _users -= 1
        if _users <= 0:
            _users = 0
            shared, _shared = _shared, None
            if shared is not None:
                shared.stop()


class _RichBar:
    """One row of the shared rich display (``transient``: no residue once finished).

    Re-entrant: ``with progress(items) as bar: for x in bar: ...`` opens the row once and
    closes it when the ``with`` ends, also when the loop body raises (a bare ``for`` closes
    it when the loop ends or the generator is collected)."""

    def __init__(self, it: Iterable | None, total: float | None, desc: str) -> None:
        if total is None and it is not None and hasattr(it, "__len__"):
            total = len(it)  # type: ignore[arg-type]
        self.it, self.total, self.desc = it, total, desc
        self.n = 0
        self._depth = 0
        self._progress: Any = None
        self._task: Any = None

    def __enter__(self) -> _RichBar:
        self._depth += 1
        if self._depth == 1:
            self._progress = _acquire()
            self._task = self._progress.add_task(self.desc, total=self.total, postfix="")
            self._progress.refresh()      # draw now: short steps end before the first tick
        return self

    def __exit__(self, *exc: Any) -> None:
        self._depth -= 1
        if self._depth == 0 and self._task is not None:
            with contextlib.suppress(KeyError):
                self._progress.remove_task(self._task)
            self._task = None
            _release()

    def __iter__(self) -> Iterator:
        with self:
            for x in self.it if self.it is not None else ():
                yield x
                self.advance(1)

    def set_postfix_str(self, s: str) -> None:
        if self._task is not None:
            self._progress.update(self._task, postfix=s)

    def advance(self, n: float = 1) -> None:
        self.n += n
        if self._task is not None:
            self._progress.update(self._task, advance=n)

    def update(self, n: float = 1) -> None:
        self.advance(n)


class _TextBar(_RichBar):
    """Fallback when rich is missing: one carriage-return line on stderr."""

    def __init__(self, it: Iterable | None, total: float | None, desc: str) -> None:
        if total is None and it is not None and hasattr(it, "__len__"):
            total = len(it)  # type: ignore[arg-type]
        self.it, self.total, self.desc, self.n = it, total, desc, 0
        self.postfix, self._t0, self._last = "", time.perf_counter(), 0.0
        self._task, self._depth = True, 0

    def __enter__(self) -> _TextBar:
        self._depth += 1
        return self

    def __exit__(self, *exc: Any) -> None:
        self._depth -= 1
        if self._depth == 0:
            sys.stderr.write("\n")

    def set_postfix_str(self, s: str) -> None:
        self.postfix = s

    def advance(self, n: float = 1) -> None:
        self.n += n
        now = time.perf_counter()
        if now - self._last > 0.2 or self.n == self.total:
            self._last = now
            frac = min(self.n / self.total, 1.0) if self.total else 0.0
            sys.stderr.write(f"\r{self.desc} [{'#' * int(30 * frac):<30}] "
                             f"{self.n:g}/{self.total or '?'} {now - self._t0:.0f}s "
                             f"{self.postfix}")
            sys.stderr.flush()


def _make(it: Iterable | None, total: float | None, desc: str, enable: bool | None) -> Any:
    if not enabled(enable):
        return _NoBar(it)
    try:
        import rich.progress  # noqa: F401
    except ImportError:
        return _TextBar(it, total, desc)
    return _RichBar(it, total, desc)


def progress(it: Iterable, total: float | None = None, desc: str = "",
             enable: bool | None = None) -> Any:
    """Wrap ``it`` in a progress bar (iterate it; ``set_postfix_str`` adds a live note).
    Use it as a context manager too (``with progress(it) as bar: for x in bar``) so the bar
    closes at once when the loop body raises."""
    return _make(it, total, desc, enable)


@contextlib.contextmanager
def progress_task(total: float | None, desc: str = "", enable: bool | None = None):
    """A bar for work that is not a single loop: ``bar.advance(n)`` as units complete."""
    with _make(None, total, desc, enable) as bar:
        yield bar
