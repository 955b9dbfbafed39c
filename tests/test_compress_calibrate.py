import numpy as np
import pytest

from czmodel.compress.calibrate import (
    HistogramCalibrator,
    entropy,
    kl_threshold_bin,
    minmax,
    percentile,
)
from czmodel.errors import EncodeError

RNG = np.random.default_rng(5)
BULK = RNG.normal(size=1_000_000)
X = np.concatenate([BULK, [50.0, -50.0, 49.0, -48.0]])


def _q(x, r):
    return np.clip(np.rint(x / r.scale), -127, 127) * r.scale


def test_kl_finds_clipping_point():
    r = entropy(X)
    assert r.method == "entropy" and r.zero_point == 0
    assert np.isclose(r.scale, r.max / 127) and r.min == -r.max
    assert r.max < 0.2 * 50.0          # far below the outliers
    assert 3.0 < r.max < 9.0           # near the bulk's extent (|x| <~ 5 for 1e6 normals)
    mm = minmax(X)
    assert mm.max == 50.0
    assert np.mean((_q(X, r) - X) ** 2) < np.mean((_q(X, mm) - X) ** 2)
    assert np.mean((_q(BULK, r) - BULK) ** 2) < 0.05 * np.mean((_q(BULK, mm) - BULK) ** 2)


def test_batched_calibrator_matches_and_rebins():
    cal = HistogramCalibrator()
    order = RNG.permutation(X.size)
    parts = np.array_split(X[order], 7)
    parts.sort(key=lambda p: np.abs(p).max())  # growing range forces rebinning
    for p in parts:
        cal.update(p)
    assert cal.hist.sum() == X.size and cal.hist.size == 2048
    assert cal.width * 2048 >= 50.0
    r = cal.compute("entropy")
    assert 3.0 < r.max < 9.0
    assert cal.compute("minmax").max == 50.0
    a = cal.compute("minmax", symmetric=False)
    assert a.zero_point == 128 and np.isclose(a.scale, 100 / 255)
    p = cal.compute("percentile", p=99.9)
    assert abs(p.max - np.percentile(np.abs(X), 99.9)) < 2 * cal.width


def test_kl_on_synthetic_histograms():
    # all mass inside the first 128 bins: 128 levels represent it exactly -> smallest i
    h = np.zeros(2048)
    h[:100] = RNG.integers(1, 1000, 100)
    assert kl_threshold_bin(h) == 128
    # fewer bins than levels: nothing to search
    assert kl_threshold_bin(np.ones(64)) == 64
    # a smooth decaying bulk plus a far, tiny blip: the blip gets clipped
    h = np.exp(-np.arange(2048) / 60.0) * 1e6
    h[h < 1] = 0
    h[2000] = 1.0
    i = kl_threshold_bin(h)
    assert 128 <= i < 1500


def test_minmax_percentile_asymmetric():
    x = RNG.uniform(-1.0, 3.0, 10000)
    r = minmax(x, symmetric=False)
    assert np.isclose(r.scale, (x.max() - x.min()) / 255)
    assert r.zero_point == round(-x.min() / r.scale)
    p = percentile(x, 99.0, symmetric=False)
    assert p.max < x.max() and p.min > x.min()
    ps = percentile(X, 99.99)
    assert ps.max < 10


def test_errors():
    with pytest.raises(EncodeError):
        HistogramCalibrator().compute()
    with pytest.raises(EncodeError):
        HistogramCalibrator(num_bins=1000)
    cal = HistogramCalibrator()
    cal.update(np.zeros(10))
    assert cal.compute("entropy").scale == 1.0
    with pytest.raises(EncodeError):
        cal.compute("mse")
