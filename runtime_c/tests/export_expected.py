"""Turn the golden vectors into files the C unit test reads without a JSON/npz parser.

    python export_expected.py VECTORS_DIR OUT_DIR

OUT_DIR/manifest.txt, tab-separated lines:
    V <file.cz> <ntensors>                       a valid vector, followed by its tensors:
    T <name> <dtype> <nbytes> <binfile> <tol>    expected bytes (little-endian, bool as u8);
                                                 tol 0 = bit-exact, else relative tolerance
    I <file.cz> <ErrorClass> <message>           an invalid vector, its Python error class and
                                                 a substring of the Python message
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

DT = {"float64": "f64", "float32": "f32", "float16": "f16", "int64": "i64", "int32": "i32",
      "int16": "i16", "int8": "i8", "uint8": "u8", "uint16": "u16", "uint32": "u32",
      "bool": "bool"}


def inexact_codecs(vectors: Path, name: str) -> set[str]:
    """Tensor names whose tree contains svd/tucker2 (summation order unspecified)."""
    sys.path.insert(0, str(vectors.resolve().parents[1]))
    try:
        from czmodel.format.reader import CzFile
    except Exception:  # noqa: BLE001 - without the package, compare everything with a tolerance
        return {"*"}
    out = set()

    def walk(n):
        return n.codec in ("svd", "tucker2") or any(walk(c) for c in n.children.values())

    with CzFile(str(vectors / "valid" / name)) as f:
        for t in f:
            if walk(f.entry(t).enc):
                out.add(t)
    return out


def main() -> None:
    vec, out = Path(sys.argv[1]), Path(sys.argv[2])
    out.mkdir(parents=True, exist_ok=True)
    lines = []
    for cz in sorted((vec / "valid").glob("*.cz")):
        z = np.load(cz.with_suffix(".npz"))
        loose = inexact_codecs(vec, cz.name)
        lines.append(f"V\t{cz.name}\t{len(z.files)}")
        for i, k in enumerate(z.files):
            a = np.ascontiguousarray(z[k])
            dt = DT[a.dtype.name]
            b = a.astype(a.dtype.newbyteorder("<")).tobytes()
            fn = f"{cz.stem}.{i}.bin"
            (out / fn).write_bytes(b)
            tol = "1e-5" if (k in loose or "*" in loose) else "0"
            lines.append(f"T\t{k}\t{dt}\t{len(b)}\t{fn}\t{tol}")
    man = json.loads((vec / "invalid" / "manifest.json").read_text())
    for name in sorted(man):
        msg = man[name].get("message", "").replace("\t", " ").replace("\n", " ")
        lines.append(f"I\t{name}\t{man[name]['error']}\t{msg}")
    (out / "manifest.txt").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
