"""Run the ONNX backend node tests against czmodel's converter and backends and write
``bench/results/onnx_node_suite.json`` (per-op passed / failed / unsupported, every case's
status and reason). Shares its code with ``tests/test_onnx_node_suite.py``
(``czconvert.node_suite``).

    python bench/onnx_node_suite.py [--backends reference,numba] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
try:
    from czconvert import node_suite as S
except ImportError:  # czconvert not installed: the source folder
    sys.path.insert(0, str(ROOT / "converters"))
    from czconvert import node_suite as S


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--backends", default=None, help="comma-separated (default: available)")
    p.add_argument("--out", default=str(ROOT / "bench" / "results" / "onnx_node_suite.json"))
    args = p.parse_args(argv)
    backends = args.backends.split(",") if args.backends else S.available_backends()
    summary = S.run_suite(backends)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(summary, indent=1) + "\n")
    print(S.table(summary))
    print(f"\n{summary['cases_selected']} of {summary['cases_total']} cases selected, "
          f"{summary['seconds']} s; written to {out}")
    return 1 if any(summary["totals"][b]["fail"] for b in backends) else 0


if __name__ == "__main__":
    sys.exit(main())
