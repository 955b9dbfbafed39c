"""``bench/deep_compression.py --quick`` end to end: train, prune, trained quantization,
Huffman, write the .cz and run it in the C runtime (slow: about two minutes)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

pytest.importorskip("torch")
pytest.importorskip("onnx")

from czmodel.datasets import FASHION_MNIST_DIR  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.slow
@pytest.mark.skipif(not os.path.isdir(FASHION_MNIST_DIR), reason="dataset-fashion-mnist missing")
def test_deep_compression_quick(tmp_path):
    out = tmp_path / "dc"
    subprocess.run([sys.executable, os.path.join(ROOT, "bench", "deep_compression.py"),
                    "--quick", "--no-progress", "--out", str(out)], check=True, timeout=900)
    with open(out / "results.json") as f:
        res = json.load(f)
    assert set(res["networks"]) == {"lenet300", "lenet5"}
    for key, r in res["networks"].items():
        fin = r["final"]
        assert os.path.exists(out / f"{key}.cz") and os.path.exists(out / f"{key}_fp32.onnx")
        assert fin["backend"] in ("c", "numba")
        n = res["meta"]["test_images"]
        # the same number of correct answers on the quick test subset
        assert round(fin["accuracy_cz"] * n) == round(fin["accuracy_torch"] * n), key
        assert fin["ratio"] > 10, (key, fin["ratio"])
        assert round(r["push"]["accuracy_cz"] * n) == round(r["push"]["accuracy_torch"] * n)
        assert r["baseline_accuracy"] > 0.3
    for png in res["plots"]:
        assert (out / png).stat().st_size > 1000
    assert (out / "README.md").read_text().count("| total |") == 4
