"""``cz`` entry point: argument parsing and error handling shared by every subcommand."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from czmodel.errors import CzError

EXIT_OK, EXIT_BAD_INPUT, EXIT_USAGE = 0, 1, 2


def _cmd_info(args: argparse.Namespace) -> int:
    import czmodel
    from czmodel.cli.table import human_bytes, print_table

    with czmodel.open(args.file) as f:
        rows = f.info()
        if args.json:
            out = {"version": list(f.version), "tensors": rows, "metadata": f.metadata,
                   "has_graph": f.graph is not None}
            if args.report:
                from czmodel.compress.report import build_report
                out["report"] = build_report(args.file).to_dict()
            print(json.dumps(out, indent=2, default=str))
            return EXIT_OK
        table = [[r["name"], "x".join(map(str, r["shape"])) or "scalar", r["dtype"],
                  r["encoding"], r["stored_bytes"], r["bits_per_weight"], r["ratio"]]
                 for r in rows]
        print_table(["tensor", "shape", "dtype", "encoding", "bytes", "bits/w", "x fp32"],
                    table, "llllrrr")
        stored = sum(r["stored_bytes"] for r in rows)
        fp32 = sum(r["fp32_bytes"] for r in rows)
        ratio = fp32 / stored if stored else float("inf")
        print(f"\n{len(rows)} tensors, {human_bytes(stored)} stored, {human_bytes(fp32)} as "
              f"fp32: {ratio:.1f}x; format {f.version[0]}.{f.version[1]}"
              f"{', with graph' if f.graph else ''}")
    if args.report or args.markdown:
        from czmodel.compress.report import build_report

        rep = build_report(args.file)
        print("\nDeep Compression report (P: pruning, Q: quantization, H: Huffman):\n")
        if args.markdown:
            print(rep.to_markdown())
        else:
            rep.print()
    return EXIT_OK


def _cmd_verify(args: argparse.Namespace) -> int:
    import czmodel

    if not args.json:
        czmodel.verify(args.file)
        print(f"{args.file}: OK")
        return EXIT_OK
    try:
        czmodel.verify(args.file)
    except (CzError, OSError) as e:
        # --json: the verdict is the output (on stdout), the exit code stays 1
        print(json.dumps({"file": args.file, "ok": False, "error": type(e).__name__,
                          "message": str(e)}, indent=2))
        return EXIT_BAD_INPUT
    print(json.dumps({"file": args.file, "ok": True}, indent=2))
    return EXIT_OK


def _cmd_bench(args: argparse.Namespace) -> int:
    from czmodel.cli.bench import print_result, run_bench

    r = run_bench(args.model, args.vs, args.threads, args.batch, args.seq, args.seconds,
                  args.backend)
    if args.json:
        print(json.dumps(r, indent=2))
    else:
        print_result(r)
    return EXIT_OK


def _cmd_demo(args: argparse.Namespace) -> int:
    from czmodel.demo import run_demo

    return run_demo(out=args.output, as_json=args.json)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="cz", description="Compressed neural networks in one "
                                ".cz file.", formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="exit codes: 0 ok, 1 bad input, 2 usage")
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("info", help="per-tensor table of a .cz file",
                       epilog="example: cz info model.cz --json")
    s.add_argument("file")
    s.add_argument("--json", action="store_true", help="machine-readable output")
    s.add_argument("--report", action="store_true",
                   help="also print the per-layer Deep Compression table (Tables 2/3 form)")
    s.add_argument("--markdown", action="store_true", help="the report as a markdown table")
    s.set_defaults(func=_cmd_info)
    s = sub.add_parser("verify", help="check every checksum and structural rule",
                       epilog="example: cz verify model.cz  (exit 0 when sound)")
    s.add_argument("file")
    s.add_argument("--json", action="store_true", help='machine-readable verdict: '
                   '{"file": ..., "ok": true} or "ok": false with the error (exit 1)')
    s.set_defaults(func=_cmd_verify)
    s = sub.add_parser("bench", help="latency, throughput and memory of a .cz model",
                       epilog="example: cz bench model.cz --vs model.onnx --threads 1")
    s.add_argument("model")
    s.add_argument("--vs", metavar="ORIGINAL.onnx", help="also time ONNX Runtime on this file")
    s.add_argument("--threads", type=int, default=1)
    s.add_argument("--batch", type=int, default=1, help="value of the first symbolic dim")
    s.add_argument("--seq", type=int, default=12, help="value of other symbolic dims")
    s.add_argument("--seconds", type=float, default=2.0, help="timing budget")
    s.add_argument("--backend", default="auto", choices=["auto", "c", "numba", "reference"])
    s.add_argument("--json", action="store_true", help="machine-readable output")
    s.set_defaults(func=_cmd_bench)
    s = sub.add_parser("demo", help="compress the bundled model, run it, print the report",
                       epilog="example: cz demo -o /tmp/demo.cz")
    s.add_argument("-o", "--output", default=None, help="where to write the .cz "
                   "(default: a temporary folder)")
    s.add_argument("--json", action="store_true", help="machine-readable output")
    s.set_defaults(func=_cmd_demo)
    from czmodel.cli.plan import add_parser as add_plan_parser

    add_plan_parser(sub)
    try:  # compress/run/export live with the converters (optional onnx/torch extras)
        from czconvert.cli import add_subparsers
    except ImportError as e:
        _add_missing_converters(sub, getattr(e, "name", None) or str(e))
    else:
        add_subparsers(sub)
    return p


def _add_missing_converters(sub: argparse._SubParsersAction, missing: str) -> None:
    """Without the converters' extras, ``cz compress/run/export`` still exist and say what to
    install (exit 1) instead of argparse's "invalid choice"."""

    def fail(args: argparse.Namespace) -> int:
        from czmodel.errors import UnsupportedError

        raise UnsupportedError(f"needs the converters ({missing} is not installed): "
                               "pip install 'czmodel[onnx]'")

    for name, what in (("compress", "convert an ONNX model or a state dict to .cz"),
                       ("run", "run a .cz model on .npy inputs"),
                       ("export", "write a .cz model as fp32 ONNX")):
        s = sub.add_parser(name, help=f"{what} (needs: pip install 'czmodel[onnx]')")
        s.add_argument("args", nargs=argparse.REMAINDER)
        s.set_defaults(func=fail)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except CzError as e:
        if args.debug:
            raise
        print(f"cz {args.cmd}: error: {type(e).__name__}: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except (FileNotFoundError, IsADirectoryError, PermissionError) as e:
        if args.debug:
            raise
        print(f"cz {args.cmd}: error: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT


if __name__ == "__main__":
    sys.exit(main())
