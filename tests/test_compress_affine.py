import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from czmodel.compress.affine import dequantize_affine, quantize_affine
from czmodel.compress.outlier import outlier_quantize, split_outliers
from czmodel.errors import EncodeError

RNG = np.random.default_rng(4)


def _bound(scale, shape, axis, group):
    s = np.asarray(scale, np.float64)
    if group is not None:
        cols = int(np.prod(shape[1:]))
        return np.repeat(s, group, axis=1)[:, :cols].reshape(shape)
    if axis is not None:
        sh = [1] * len(shape)
        sh[axis] = -1
        return np.broadcast_to(s.reshape(sh), shape)
    return np.broadcast_to(s, shape)


@settings(max_examples=60, deadline=None)
@given(w=arrays(np.float32, st.tuples(st.integers(1, 6), st.integers(1, 9)),
                elements=st.floats(-50, 50, width=32)),
       bits=st.integers(2, 8), symmetric=st.booleans(),
       layout=st.sampled_from([(None, None), (0, None), (1, None), (-1, None), (None, 4),
                               (None, 1), (None, 100)]))
def test_round_trip_error_at_most_half_scale(w, bits, symmetric, layout):
    axis, group = layout
    q, scale, zp = quantize_affine(w, bits, symmetric, axis=axis, group_size=group)
    assert q.shape == w.shape
    assert q.dtype == (np.int8 if symmetric else np.uint8)
    if symmetric:
        assert np.all(zp == 0)
        assert q.min() >= -(2 ** (bits - 1) - 1) and q.max() <= 2 ** (bits - 1) - 1
    rec = dequantize_affine(q, scale, zp, axis=axis, group_size=group)
    b = _bound(scale, w.shape, axis, group)
    err = np.abs(rec.astype(np.float64) - w)
    assert np.all(err <= b / 2 * (1 + 1e-5) + 1e-6)
    assert np.all(rec[w == 0] == 0)  # zero is exactly representable


def test_symmetric_int8_range_and_shapes():
    w = RNG.normal(size=(16, 8, 3, 3)).astype(np.float32)
    q, s, z = quantize_affine(w, 8, axis=0)
    assert q.dtype == np.int8 and s.shape == (16,) and z.shape == (16,)
    assert q.min() >= -127 and q.max() <= 127
    assert (np.abs(q).reshape(16, -1).max(axis=1) == 127).all()  # each channel uses full range
    q4, s4, _ = quantize_affine(w, 4, axis=0)
    assert q4.min() >= -7 and q4.max() <= 7
    q, s, z = quantize_affine(w, 8, axis=None)
    assert s.shape == () and z.shape == ()
    q, s, z = quantize_affine(w, 4, group_size=32)
    assert s.shape == (16, 3)  # 72 columns -> ceil(72/32) groups
    q, s, z = quantize_affine(w, 8, axis=1)
    assert s.shape == (8,)


def test_asymmetric_zero_exact():
    w = np.concatenate([RNG.uniform(0.3, 2.0, 100), [0.0]]).astype(np.float32)
    q, s, z = quantize_affine(w, 8, symmetric=False)
    assert q.dtype == np.uint8 and q.max() == 255
    rec = dequantize_affine(q, s, z)
    assert rec[-1] == 0.0
    w2 = RNG.uniform(-1.0, 3.0, 500)
    q, s, z = quantize_affine(w2, 4, symmetric=False, axis=None)
    assert q.min() >= 0 and q.max() <= 15 and dequantize_affine(np.array(z), s, z) == 0


def test_zero_point_none_and_bad_args():
    w = RNG.normal(size=(4, 6))
    q, s, _ = quantize_affine(w, 8, axis=0)
    ref = dequantize_affine(q, s, 0 * s, axis=0)
    assert np.array_equal(dequantize_affine(q, s, None, axis=0), ref)
    with pytest.raises(EncodeError):
        quantize_affine(w, 8, axis=0, group_size=2)
    with pytest.raises(EncodeError):
        quantize_affine(w, 8, axis=2)
    with pytest.raises(EncodeError):
        quantize_affine(w, 1)
    with pytest.raises(EncodeError):
        dequantize_affine(q, s[:2], None, axis=0)


def test_stochastic_rounding():
    w = np.full(20000, 0.25)
    w[0] = 1.0
    q, s, z = quantize_affine(w, 2, rounding="stochastic", seed=5)
    assert abs(dequantize_affine(q, s, z)[1:].mean() - 0.25) < 0.02


def test_split_outliers():
    w = RNG.standard_t(2, size=(20, 50))
    bulk, m = split_outliers(w, 0.01)
    assert m.sum() == 10
    assert np.abs(w[m]).min() >= np.abs(w[~m]).max()
    assert np.all(bulk[m] == 0) and np.array_equal(bulk[~m], w[~m])


def test_outlier_quantize_beats_plain_4bit_on_heavy_tails():
    w = RNG.standard_t(2, size=(64, 256)).astype(np.float32) * 0.02
    oq = outlier_quantize(w, 0.01, bits=4, axis=0)
    rec = oq.dequantize()
    err_o = np.mean((rec - w) ** 2)
    q, s, z = quantize_affine(w, 4, axis=0)
    err_p = np.mean((dequantize_affine(q, s, z, axis=0) - w) ** 2)
    assert err_o < 0.5 * err_p
    assert oq.outlier_values.dtype == np.float16
    assert np.allclose(rec[oq.outlier_mask], w[oq.outlier_mask], rtol=1e-3)
