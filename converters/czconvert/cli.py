"""``cz compress`` / ``cz run`` / ``cz export``: subcommands for ``czmodel/cli/main.py``.

Wire them with ``add_subparsers(sub)`` on the ``sub = parser.add_subparsers(...)`` object; each
subparser sets ``func`` (``cmd_compress`` / ``cmd_run`` / ``cmd_export``), which returns the
exit code. Faults raise ``czmodel.errors`` classes (the CLI prints them as one line).

``cz compress INPUT -o OUT.cz``: INPUT is an ``.onnx`` model (a .cz with graph) or a state dict
``.pt`` / ``.pth`` / ``.safetensors`` (a weights-only .cz). Options build the ``default``
section of a compression config (on top of ``--config FILE`` when given):

* ``--sparsity S``: magnitude pruning to sparsity S;
* ``--bits B``: k-means weight sharing with 2^B centroids;
* ``--int8``: affine int8 weights per output channel, and with ``--calib`` int8 activation
  ranges (ONNX input only);
* ``--rank R``: SVD low rank R;
* ``--entropy``: the entropy stage (huffman, zstd, raw, auto).

Without any of them the weights are stored losslessly. ``--calib DATA.npz`` (arrays named as
the graph inputs) computes activation ranges (``--calib-method``) and stores them.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
from typing import Any

import numpy as np

from czmodel.errors import EncodeError, RuntimeInputError

EXIT_OK = 0
_STATE_DICT_SUFFIXES = (".pt", ".pth", ".bin", ".safetensors")


def build_config(args: argparse.Namespace) -> dict | None:
    """The compression config (a dict, possibly with "activations") from the options."""
    from ._config import load_config_file

    cfg: dict[str, Any] | None = load_config_file(args.config) if args.config else None
    default: dict[str, Any] = {}
    if args.sparsity is not None:
        if not 0.0 <= args.sparsity < 1.0:
            raise EncodeError(f"--sparsity must be in [0, 1), got {args.sparsity}")
        default["prune"] = {"sparsity": args.sparsity}
    if args.bits is not None and args.int8:
        raise EncodeError("--bits (k-means) and --int8 (affine int8) are exclusive")
    if args.bits is not None:
        default["quantize"] = {"method": "kmeans", "bits": args.bits}
    if args.int8:
        default["quantize"] = {"method": "affine", "bits": 8, "per_channel": True}
    if args.rank is not None:
        default["lowrank"] = {"method": "svd", "rank": args.rank}
    if args.entropy is not None:
        default["entropy"] = args.entropy
    if not default and cfg is None:
        return None
    if cfg is None:
        cfg = {"default": {}, "layers": {"*.bias": None}}
    cfg = dict(cfg)
    cfg["default"] = {**(cfg.get("default") or {}), **default}
    if args.int8 and args.calib:
        cfg["activations"] = {"dtype": "int8", "method": args.calib_method}
    return cfg


def _load_npz(path: str) -> dict[str, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: np.asarray(z[k]) for k in z.files}
    except (OSError, ValueError) as e:
        if isinstance(e, FileNotFoundError):
            raise
        raise EncodeError(f"{path}: not a readable .npz of arrays: {e}") from None


def cmd_compress(args: argparse.Namespace) -> int:
    src = args.input
    if not os.path.exists(src):
        raise FileNotFoundError(f"no such file: {src}")
    config = build_config(args)
    low = src.lower()
    conversion = None
    if low.endswith(".onnx"):
        from .onnx_import import onnx_to_cz

        calib = _load_npz(args.calib) if args.calib else None
        rep = onnx_to_cz(src, args.output, config, calib, calib_method=args.calib_method)
        info = rep.conversion
        conversion = dataclasses.asdict(info)
        what = (f"{info.onnx_nodes} ONNX nodes -> {info.nodes} ops "
                f"({info.linear} Linear, {info.bn_folded} BatchNorm folded, {info.folded} "
                f"constants folded)" + (f", {info.calibrated} activation ranges"
                                       if info.calibrated else ""))
    elif low.endswith(_STATE_DICT_SUFFIXES):
        if args.calib:
            raise EncodeError("--calib needs a graph; a state dict gives a weights-only file")
        from .torch_weights import load_state_dict_file, save_arrays

        arrays, dtypes = load_state_dict_file(src)
        rep = save_arrays(arrays, args.output, config, source_dtypes=dtypes)
        what = f"{len(arrays)} tensors (weights only)"
    else:
        raise EncodeError(f"{src}: unknown input kind; give an .onnx model or a state dict "
                          f"({', '.join(_STATE_DICT_SUFFIXES)})")
    if getattr(args, "json", False):
        print(json.dumps({"input": src, "file": args.output, "summary": what,
                          "fp32_bytes": rep.fp32_bytes, "file_bytes": rep.file_bytes,
                          "file_ratio": rep.file_ratio, "conversion": conversion,
                          "report": rep.to_dict()}, indent=2, default=str))
        return EXIT_OK
    if args.report:
        rep.print()
    print(f"{args.output}: {what}; {rep.fp32_bytes} fp32 bytes -> {rep.file_bytes} file bytes "
          f"({rep.file_ratio:.1f}x)")
    return EXIT_OK


def _parse_inputs(items: list[str], names: list[str]) -> dict[str, np.ndarray]:
    feeds: dict[str, np.ndarray] = {}
    for it in items or []:
        if "=" in it:
            name, path = it.split("=", 1)
        elif len(names) == 1:
            name, path = names[0], it
        else:
            raise RuntimeInputError(f"--input {it!r}: write NAME=FILE.npy (the model's inputs "
                                    f"are {names})")
        if path.lower().endswith(".npz"):
            z = _load_npz(path)
            if len(z) != 1:
                raise RuntimeInputError(f"--input {it!r}: the .npz must hold one array")
            arr = next(iter(z.values()))
        else:
            try:
                arr = np.load(path, allow_pickle=False)
            except FileNotFoundError:
                raise
            except (OSError, ValueError) as e:
                raise RuntimeInputError(f"--input {it!r}: not a readable .npy: {e}") from None
        if name in feeds:
            raise RuntimeInputError(f"--input {name!r} given twice")
        feeds[name] = arr
    return feeds


def cmd_run(args: argparse.Namespace) -> int:
    import czmodel.runtime as rt

    with rt.load(args.file, backend=args.backend, threads=args.threads,
                 precise=args.precise) as m:
        feeds = _parse_inputs(args.input, [v.name for v in m.inputs])
        # cast to the declared dtype when the values fit exactly (e.g. float64 .npy files)
        for v in m.inputs:
            x = feeds.get(v.name)
            if x is not None:
                from czmodel.format.header import TENSOR_DTYPES
                want = TENSOR_DTYPES[v.dtype]
                if x.dtype != want and x.dtype.kind == want.kind == "f":
                    feeds[v.name] = x.astype(want)
        out = m.run(feeds)
        if args.output:
            np.savez(args.output, **out)
        if getattr(args, "json", False):
            # with -o the values are in the .npz; without, they are the output
            outs = {k: {"dtype": str(np.asarray(v).dtype), "shape": list(np.shape(v)),
                        **({} if args.output else {"values": np.asarray(v).tolist()})}
                    for k, v in out.items()}
            print(json.dumps({"file": args.file, "backend": m.backend.name,
                              "output": args.output, "outputs": outs}, indent=2))
        elif args.output:
            print(f"{args.output}: {len(out)} outputs ({m.backend.name} backend)")
        else:
            for k, v in out.items():
                flat = np.asarray(v).reshape(-1)
                head = np.array2string(flat[:8], precision=5, separator=", ")
                print(f"{k}: {v.dtype} {list(v.shape)} {head}{' ...' if flat.size > 8 else ''}")
    return EXIT_OK


def cmd_export(args: argparse.Namespace) -> int:
    from .onnx_export import EXPORT_OPSET, cz_to_onnx

    model = cz_to_onnx(args.file, args.output, opset=args.opset or EXPORT_OPSET)
    if getattr(args, "json", False):
        print(json.dumps({"file": args.file, "output": args.output,
                          "onnx_nodes": len(model.graph.node),
                          "opset": model.opset_import[0].version}, indent=2))
        return EXIT_OK
    print(f"{args.output}: {len(model.graph.node)} ONNX nodes, opset "
          f"{model.opset_import[0].version}")
    return EXIT_OK


def add_subparsers(sub: Any) -> None:
    """Add ``compress``, ``run`` and ``export`` to an argparse subparsers object."""
    s = sub.add_parser("compress", help="convert an ONNX model or a state dict to .cz, "
                       "optionally compressing it",
                       epilog="example: cz compress model.onnx -o model.cz --sparsity 0.9 "
                       "--bits 5 --entropy huffman")
    s.add_argument("input", help=".onnx model, or a .pt/.pth/.safetensors state dict")
    s.add_argument("-o", "--output", required=True, help="the .cz file to write")
    s.add_argument("--config", help="compression config (.json/.yaml); options below override "
                   "its 'default' section")
    s.add_argument("--sparsity", type=float, help="magnitude pruning to this sparsity")
    s.add_argument("--bits", type=int, help="k-means weight sharing with 2^BITS centroids")
    s.add_argument("--int8", action="store_true", help="affine int8 weights (per channel); "
                   "with --calib also int8 activation ranges")
    s.add_argument("--rank", type=int, help="SVD low-rank factorisation of rank R")
    s.add_argument("--entropy", choices=("huffman", "zstd", "raw", "auto"),
                   help="entropy stage of every stream")
    s.add_argument("--calib", help=".npz calibration set (arrays named as the graph inputs)")
    s.add_argument("--calib-method", default="minmax", choices=("minmax", "percentile",
                                                                 "entropy"))
    s.add_argument("--report", action="store_true", help="print the per-layer report")
    s.add_argument("--json", action="store_true", help="machine-readable output (includes "
                   "the report and the conversion summary)")
    s.set_defaults(func=cmd_compress)

    s = sub.add_parser("run", help="run a .cz model on .npy inputs",
                       epilog="example: cz run model.cz --input x=x.npy -o out.npz")
    s.add_argument("file")
    s.add_argument("--input", action="append", metavar="NAME=FILE.npy",
                   help="one graph input (repeat for several)")
    s.add_argument("-o", "--output", help="write the outputs to this .npz (else print them)")
    s.add_argument("--backend", default="auto", choices=("auto", "c", "numba", "reference"))
    s.add_argument("--threads", type=int, default=None)
    s.add_argument("--precise", action="store_true",
                   help="float products accumulate in float64 (slower; for comparing a "
                        "lossless conversion with another runtime)")
    s.add_argument("--json", action="store_true", help="machine-readable output (the output "
                   "values too, unless -o writes them to a .npz)")
    s.set_defaults(func=cmd_run)

    s = sub.add_parser("export", help="write a .cz model as fp32 ONNX",
                       epilog="example: cz export model.cz -o model.onnx")
    s.add_argument("file")
    s.add_argument("-o", "--output", required=True)
    s.add_argument("--opset", type=int, default=None, help="ONNX opset (default 20)")
    s.add_argument("--json", action="store_true", help="machine-readable output")
    s.set_defaults(func=cmd_export)


def main(argv: list[str] | None = None) -> int:
    """Standalone entry (``python -m czconvert.cli``): the ``cz`` command itself, which
    registers these subcommands (same parsing and error handling)."""
    from czmodel.cli.main import main as cz_main

    return cz_main(argv)


if __name__ == "__main__":
    sys.exit(main())
