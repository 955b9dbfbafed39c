"""Low-rank factorizations: truncated SVD for matrices, Tucker-2 for conv kernels.

SVD: W (m x n) ~= U @ V with U = U_r sqrt(S_r), V = sqrt(S_r) V_r^T — splitting the
singular values evenly keeps both factors on the same scale, which quantizes better.
Tucker-2 (Kim et al. 2016): a conv (O, I, kh, kw) becomes 1x1 (I -> r_in), a core
(r_in -> r_out, kh x kw) and 1x1 (r_out -> O). Ranks can come from Empirical Variational
Bayes Matrix Factorization (Nakajima et al. 2013), which estimates the noise level and
the rank analytically with no tuning knob.
"""

from __future__ import annotations

import numpy as np

from czmodel.errors import EncodeError

from ._util import as_float_array, check_fraction, check_int


def _svd(a: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return np.linalg.svd(a.astype(np.float64), full_matrices=False)


def svd(w2d: np.ndarray, rank: int | str | None = None, energy: float | None = None,
        param_budget: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Truncated SVD ``w2d ~= U @ V`` with U (m x r), V (r x n).

    Give at most one of: ``rank`` (an int, or "vbmf" for :func:`vbmf_rank`, at least 1);
    ``energy`` (keep the smallest r whose squared
    singular values reach that fraction of the total); ``param_budget`` (largest r with
    r * (m + n) <= budget). None of them means full rank (exact up to rounding).
    Factors keep the input's float dtype (float32 for non-float input).
    """
    a = as_float_array(w2d, "w2d")
    if a.ndim != 2:
        raise EncodeError(f"svd needs a 2-D matrix, got shape {a.shape}")
    given = [k for k, v in (("rank", rank), ("energy", energy),
                            ("param_budget", param_budget)) if v is not None]
    if len(given) > 1:
        raise EncodeError(f"give at most one of rank, energy, param_budget (got {given})")
    m, n = a.shape
    u, s, vt = _svd(a)
    full = s.size
    if isinstance(rank, str):
        if rank != "vbmf":
            raise EncodeError(f"rank must be an int >= 1 or 'vbmf', got {rank!r}")
        r = max(1, vbmf_rank(a))
    elif rank is not None:
        r = min(check_int(rank, "rank", 1), full)
    elif energy is not None:
        e = check_fraction(energy, "energy")
        cum = np.cumsum(s ** 2)
        total = cum[-1]
        r = full if total == 0 else int(np.searchsorted(cum, e * total * (1 - 1e-12))) + 1
        r = max(1, min(r, full))
    elif param_budget is not None:
        b = check_int(param_budget, "param_budget", 1)
        r = min(b // (m + n), full)
        if r < 1:
            raise EncodeError(f"param_budget {b} is below one rank-1 term ({m + n} params)")
    else:
        r = full
    root = np.sqrt(s[:r])
    dt = a.dtype
    return (u[:, :r] * root).astype(dt), (root[:, None] * vt[:r]).astype(dt)


def _leading(mat: np.ndarray, r: int) -> np.ndarray:
    """Leading r left singular vectors (orthonormal columns)."""
    u, _, _ = _svd(mat)
    return u[:, :r]


def tucker2(w4d: np.ndarray, ranks: tuple[int, int] | str = "vbmf",
            hooi_iters: int = 2) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Tucker-2 decomposition of a conv weight (O, I, kh, kw) on its channel modes.

    Returns ``(first (r_in, I), core (r_out, r_in, kh, kw), last (O, r_out))`` with
    ``W[o,i,h,w] ~= sum_{a,b} last[o,a] core[a,b,h,w] first[b,i]``: first is a 1x1 conv
    I -> r_in, core a kh x kw conv r_in -> r_out, last a 1x1 conv r_out -> O.
    ``ranks="vbmf"`` picks each rank with :func:`vbmf_rank` on the mode-0 / mode-1
    unfoldings (Kim et al. 2016). Factors start from HOSVD; ``hooi_iters`` HOOI sweeps
    then refine them (each sweep can only lower the error).
    """
    a = as_float_array(w4d, "w4d")
    if a.ndim != 4:
        raise EncodeError(f"tucker2 needs a 4-D conv weight (O, I, kh, kw), got {a.shape}")
    hooi_iters = check_int(hooi_iters, "hooi_iters", 0)
    o, i = a.shape[:2]
    x = a.astype(np.float64)
    unf0 = x.reshape(o, -1)
    unf1 = np.moveaxis(x, 1, 0).reshape(i, -1)
    if isinstance(ranks, str):
        if ranks != "vbmf":
            raise EncodeError(f"ranks must be (r_out, r_in) or 'vbmf', got {ranks!r}")
        r_out, r_in = max(1, vbmf_rank(unf0)), max(1, vbmf_rank(unf1))
    else:
        if not isinstance(ranks, (tuple, list)) or len(ranks) != 2:
            raise EncodeError(f"ranks must be (r_out, r_in) or 'vbmf', got {ranks!r}")
        r_out = min(check_int(ranks[0], "ranks[0]", 1), o)
        r_in = min(check_int(ranks[1], "ranks[1]", 1), i)
    u_out = _leading(unf0, r_out)
    u_in = _leading(unf1, r_in)
    for _ in range(hooi_iters):
        # Project on the other mode's subspace, then take the best subspace for this one.
        y = np.einsum("oihw,ib->obhw", x, u_in)
        u_out = _leading(y.reshape(o, -1), r_out)
        y = np.einsum("oihw,oa->aihw", x, u_out)
        u_in = _leading(np.moveaxis(y, 1, 0).reshape(i, -1), r_in)
    core = np.einsum("oihw,oa,ib->abhw", x, u_out, u_in)
    dt = a.dtype
    return u_in.T.astype(dt), core.astype(dt), u_out.astype(dt)


def tucker2_reconstruct(first: np.ndarray, core: np.ndarray, last: np.ndarray) -> np.ndarray:
    """``W[o,i,h,w] = sum_{a,b} last[o,a] core[a,b,h,w] first[b,i]``."""
    return np.einsum("oa,abhw,bi->oihw", last, core, first)


def _tau(x: np.ndarray, alpha: float) -> np.ndarray:
    return 0.5 * (x - (1 + alpha) + np.sqrt(np.maximum((x - (1 + alpha)) ** 2 - 4 * alpha, 0)))


def _evb_objective(sigma2: float, L: int, M: int, s: np.ndarray, residual: float,
                   xubar: float) -> float:
    """Negative free energy (up to constants) of EVBMF as a function of the noise
    variance (Nakajima et al. 2013, eq. for the global analytic solution)."""
    H = s.size
    alpha = L / M
    x = s ** 2 / (M * sigma2)
    z1 = x[x > xubar]
    z2 = np.maximum(x[x <= xubar], 1e-300)  # exact zeros: log(0) would give -inf
    tau1 = _tau(z1, alpha)
    return float(np.sum(z2 - np.log(z2)) + np.sum(z1 - tau1)
                 + np.sum(np.log((tau1 + 1) / z1)) + alpha * np.sum(np.log(tau1 / alpha + 1))
                 + residual / (M * sigma2) + (L - H) * np.log(sigma2))


def vbmf_rank(matrix: np.ndarray, sigma2: float | None = None) -> int:
    """Rank chosen by analytic Empirical VBMF (Nakajima, Sugiyama, Babacan, Tomioka 2013).

    The noise variance is estimated by minimising the EVB free energy over a bounded
    interval (unless ``sigma2`` is given); the rank is the number of singular values
    above the EVB threshold sqrt(M sigma2 (1 + tau)(1 + alpha / tau)).
    """
    a = as_float_array(matrix, "matrix").astype(np.float64)
    if a.ndim != 2:
        raise EncodeError(f"vbmf_rank needs a 2-D matrix, got shape {a.shape}")
    if a.shape[0] > a.shape[1]:
        a = a.T  # the analysis assumes L <= M
    L, M = a.shape
    alpha = L / M
    tauubar = 2.5129 * np.sqrt(alpha)  # solution of the paper's threshold equation
    s = np.linalg.svd(a, compute_uv=False)
    H = L
    residual = 0.0  # all L singular values are kept in the model (H = L)
    xubar = (1 + tauubar) * (1 + alpha / tauubar)
    if sigma2 is None:
        total = float(np.sum(s ** 2))
        if total == 0.0:
            return 0
        e_h_ub = int(min(np.ceil(L / (1 + alpha)) - 1, H)) - 1
        upper = (total + residual) / (L * M)
        tail = s[e_h_ub + 1:] if e_h_ub + 1 < H else s[-1:]
        lower = max(tail[0] ** 2 / (M * xubar), float(np.mean(tail ** 2)) / M)
        lower = max(lower, upper * 1e-12)
        if lower >= upper:
            sigma2 = upper
        else:
            try:  # scipy is optional (the dev extra); only VBMF rank selection needs it
                from scipy.optimize import minimize_scalar
            except ImportError:
                raise EncodeError("VBMF rank selection (rank='vbmf') needs scipy: "
                                  "pip install scipy, or give the rank") from None
            res = minimize_scalar(_evb_objective, args=(L, M, s, residual, xubar),
                                  bounds=(lower, upper), method="bounded")
            sigma2 = float(res.x)
    elif not np.isfinite(sigma2) or sigma2 <= 0:
        raise EncodeError(f"sigma2 must be a positive number, got {sigma2!r}")
    threshold = np.sqrt(M * sigma2 * (1 + tauubar) * (1 + alpha / tauubar))
    return int(np.sum(s > threshold))
