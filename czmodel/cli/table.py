"""Tables: colourful and aligned (rich) in a terminal, plain aligned text when piped.

``render`` builds the plain text (no dependency; tests and README examples rely on it byte for
byte); ``print_table`` prints a table to stdout: a rich ``Table`` when stdout is a terminal and
``NO_COLOR`` is unset, else exactly ``render``'s text. ``stdout_is_terminal`` is the one place
that decides (tests monkeypatch it to fake a terminal).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from typing import IO


def render(headers: Sequence[str], rows: Sequence[Sequence[object]],
           align: str | None = None) -> str:
    """``align``: one char per column, 'l' or 'r' (default: numbers right, text left)."""
    cells = [[_fmt(c) for c in r] for r in rows]
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(headers)]
    align = _align(headers, rows, align)

    def line(vals: Sequence[str]) -> str:
        return "  ".join(v.rjust(w) if a == "r" else v.ljust(w)
                         for v, w, a in zip(vals, widths, align)).rstrip()

    out = [line(headers), line(["-" * w for w in widths])]
    out += [line(r) for r in cells]
    return "\n".join(out)


def _align(headers: Sequence[str], rows: Sequence[Sequence[object]], align: str | None) -> str:
    if align is None:
        align = "".join("r" if rows and isinstance(rows[0][i], (int, float)) else "l"
                        for i in range(len(headers)))
    return align


def stdout_is_terminal() -> bool:
    """Whether stdout is an interactive terminal (the one check; tests monkeypatch it)."""
    try:
        return sys.stdout.isatty()
    except (AttributeError, ValueError):
        return False


def use_color() -> bool:
    """Rich output: stdout is a terminal and ``NO_COLOR`` (https://no-color.org) is unset."""
    return stdout_is_terminal() and not os.environ.get("NO_COLOR")


def print_table(headers: Sequence[str], rows: Sequence[Sequence[object]],
                align: str | None = None, title: str | None = None, *,
                total_row: bool = False, file: IO[str] | None = None) -> None:
    """Print a table to ``file`` (default stdout): rich in a terminal, else ``render``'s
    plain text followed by a newline (``title`` is shown in rich mode only, so piped output
    stays exactly ``render``'s). ``total_row``: the last row is a total (set apart, bold)."""
    out = file if file is not None else sys.stdout
    if not use_color():
        print(render(headers, rows, align), file=out)
        return
    from rich.console import Console

    # force_terminal: the decision is ours (stdout_is_terminal), rich must not second-guess.
    # crop=False: a table wider than the terminal (every column at its minimum) wraps
    # instead of losing its right-hand columns.
    Console(file=out, force_terminal=True, highlight=False).print(
        rich_table(headers, rows, align, title, total_row=total_row), crop=False)


def rich_table(headers: Sequence[str], rows: Sequence[Sequence[object]],
               align: str | None = None, title: str | None = None, *,
               total_row: bool = False):
    """The rich ``Table`` for ``print_table``: bold header, numbers right-aligned and
    formatted as in ``render`` (``_fmt``); cells are plain text (no markup parsing)."""
    from rich import box
    from rich.table import Table
    from rich.text import Text

    align = _align(headers, rows, align)
    cells = [[_fmt(c) for c in r] for r in rows]
    t = Table(title=title, box=box.SIMPLE_HEAD, show_edge=False, header_style="bold",
              title_style="bold")
    for i, (h, a) in enumerate(zip(headers, align)):
        right = a == "r"
        # On a narrow terminal headers wrap between words and long text cells fold; a number
        # or a header word never gets cut (min_width), nothing is ellipsized.
        widest = max([len(r[i]) for r in cells] + [len(w) for w in h.split()], default=0)
        t.add_column(Text(h), justify="right" if right else "left",
                     style="cyan" if right else None, overflow="fold",
                     min_width=widest if right else min(widest, _TEXT_MIN_WIDTH))
    for i, r in enumerate(cells):
        last = total_row and i == len(cells) - 1
        if last:
            t.add_section()
        t.add_row(*(Text(c) for c in r), style="bold" if last else None)
    return t


_TEXT_MIN_WIDTH = 24


def _fmt(c: object) -> str:
    if isinstance(c, float):
        if c != c or c in (float("inf"), float("-inf")):
            return str(c)
        return f"{c:.3g}" if abs(c) < 0.01 and c != 0 else f"{c:,.2f}"
    if isinstance(c, int) and not isinstance(c, bool):
        return f"{c:,}"
    return str(c)


def human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"  # pragma: no cover
