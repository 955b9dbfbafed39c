import numpy as np
import pytest

from czmodel.compress.lowrank import svd, tucker2, tucker2_reconstruct, vbmf_rank
from czmodel.errors import EncodeError

RNG = np.random.default_rng(6)


def test_svd_exact_at_full_rank_and_split():
    w = RNG.normal(size=(30, 20)).astype(np.float32)
    u, v = svd(w)
    assert u.shape == (30, 20) and v.shape == (20, 20) and u.dtype == np.float32
    assert np.allclose(u @ v, w, atol=1e-5)
    # singular values split evenly: column norms of U equal row norms of V
    assert np.allclose(np.linalg.norm(u, axis=0), np.linalg.norm(v, axis=1), rtol=1e-4)


def test_svd_rank_selection():
    w = RNG.normal(size=(40, 25))
    assert svd(w, rank=5)[0].shape == (40, 5)
    assert svd(w, rank=100)[0].shape == (40, 25)
    s = np.linalg.svd(w, compute_uv=False)
    u, v = svd(w, energy=0.8)
    r = u.shape[1]
    frac = np.cumsum(s ** 2) / np.sum(s ** 2)
    assert frac[r - 1] >= 0.8 - 1e-12 and (r == 1 or frac[r - 2] < 0.8)
    u, v = svd(w, param_budget=6 * 65 + 10)
    assert u.shape[1] == 6 and u.size + v.size <= 6 * 65 + 10
    with pytest.raises(EncodeError):
        svd(w, param_budget=10)
    with pytest.raises(EncodeError):
        svd(w, rank=3, energy=0.5)
    # best rank-r approximation (Eckart-Young)
    u, v = svd(w, rank=7)
    assert np.isclose(np.linalg.norm(w - u @ v) ** 2, np.sum(s[7:] ** 2))


def test_tucker2_exact_at_full_rank():
    w = RNG.normal(size=(12, 7, 3, 3))
    first, core, last = tucker2(w, (12, 7))
    assert first.shape == (7, 7) and core.shape == (12, 7, 3, 3) and last.shape == (12, 12)
    assert np.allclose(tucker2_reconstruct(first, core, last), w, atol=1e-10)
    manual = np.einsum("oa,abhw,bi->oihw", last, core, first)
    assert np.allclose(manual, w, atol=1e-10)


def test_tucker2_low_rank_recovery_and_hooi():
    core = RNG.normal(size=(4, 3, 3, 3))
    w = np.einsum("oa,abhw,bi->oihw", RNG.normal(size=(32, 4)), core, RNG.normal(size=(3, 16)))
    f, c, l_ = tucker2(w, (4, 3))
    assert np.allclose(tucker2_reconstruct(f, c, l_), w, atol=1e-8)
    noisy = w + 0.3 * RNG.normal(size=w.shape)
    e0 = np.linalg.norm(tucker2_reconstruct(*tucker2(noisy, (3, 2), hooi_iters=0)) - noisy)
    e2 = np.linalg.norm(tucker2_reconstruct(*tucker2(noisy, (3, 2), hooi_iters=3)) - noisy)
    assert e2 <= e0 + 1e-9
    f, c, l_ = tucker2(w + 0.01 * RNG.normal(size=w.shape), "vbmf")
    assert c.shape[:2] == (4, 3)


@pytest.mark.parametrize("noise", [0.01, 0.1, 0.5])
def test_vbmf_recovers_rank(noise):
    a = RNG.normal(size=(200, 10)) @ RNG.normal(size=(10, 100))
    m = a + noise * RNG.normal(size=a.shape)
    assert vbmf_rank(m) == 10
    assert vbmf_rank(m.T) == 10
    assert svd(m, rank="vbmf")[0].shape == (200, 10)


def test_vbmf_pure_noise_is_low():
    assert vbmf_rank(RNG.normal(size=(100, 80))) <= 2
