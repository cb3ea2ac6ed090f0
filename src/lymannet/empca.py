"""Weighted low-rank factorisation of spectra with missing data: the EM-PCA with noise weights.

Alternating weighted least squares, every pixel weighted by its inverse variance, so that pixels
of weight 0 (no data) simply do not enter the fit (heteroscedastic matrix factorisation, Tsalmantza
& Hogg 2012, ApJ 753, 122; the same fixed point as the EM-PCA with noise weights of Bailey 2012,
PASP 124, 1015): :func:`weighted_mean` is the rank-1 case (a mean spectrum and each spectrum's
amplitude), :func:`weighted_eigenvectors` the eigenvectors of the departures from it, with a ridge
that takes an eigenvector to 0 where too few spectra reach. :mod:`lymannet.learned_templates`
learns the template-fit baseline's templates with them.
"""

from __future__ import annotations

import numpy as np


def _pair_matrix(pairs: np.ndarray, n_basis: int) -> np.ndarray:
    """(..., K(K+1)/2) pair values i <= j (np.triu_indices order) -> symmetric (..., K, K)."""
    i, j = np.triu_indices(n_basis)
    out = np.empty(pairs.shape[:-1] + (n_basis, n_basis), pairs.dtype)
    out[..., i, j] = pairs
    out[..., j, i] = pairs
    return out


def _solve_batched(gram_pairs: np.ndarray, rhs: np.ndarray, n_basis: int, ridge: float = 0.0) -> np.ndarray:
    """Solve (M, K, K) x = (M, K) given the upper triangles (M, K(K+1)/2), plus `ridge` on the
    diagonal and a relative 1e-9 so that a system without data gives 0, not an exception."""
    gram = _pair_matrix(gram_pairs, n_basis)
    scale = np.maximum(np.einsum("mkk->m", gram) / n_basis, 1e-30)
    gram = gram + (1e-9 * scale + ridge)[:, None, None] * np.eye(n_basis)
    return np.linalg.solve(gram, rhs[..., None])[..., 0]


def _pair_products(vectors: np.ndarray) -> np.ndarray:
    """(K, M) -> (K(K+1)/2, M): products of every pair i <= j (np.triu_indices order)."""
    i, j = np.triu_indices(vectors.shape[0])
    return vectors[i] * vectors[j]


def weighted_mean(
    flux: np.ndarray, ivar: np.ndarray, iterations: int = 10
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rank-1 weighted factorisation flux_i ~ a_i mean: (amplitudes (N,), mean (R,), the mean's
    inverse variance sum_i ivar a_i^2 (R,)), alternating least squares from the weighted stack."""
    w = np.asarray(ivar, np.float64)
    wf = w * np.asarray(flux, np.float64)
    mean = wf.sum(axis=0) / np.maximum(w.sum(axis=0), 1e-300)
    amplitude = np.ones(w.shape[0])
    for _ in range(iterations):
        amplitude = (wf @ mean) / np.maximum(w @ (mean * mean), 1e-300)
        information = (amplitude * amplitude) @ w
        mean = np.where(information > 0, (amplitude @ wf) / np.maximum(information, 1e-300), 0.0)
        scale = np.sum(information * mean) / max(
            np.sum(information), 1e-300
        )  # information-weighted mean flux 1
        mean, amplitude = mean / scale, amplitude * scale
    return amplitude, mean, (amplitude * amplitude) @ w


def weighted_eigenvectors(
    resid: np.ndarray,
    weight: np.ndarray,
    n_vectors: int,
    iterations: int,
    rng: np.random.Generator,
    prior_spectra: float = 10.0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[float]]:
    """Weighted PCA with missing data: resid (N, R) ~ C E, minimising sum weight (resid - C E)^2 +
    lambda |E|^2 by alternating least squares (EM-PCA with weights, Bailey 2012; pixels of weight
    0 do not enter), E's rows orthonormalised at each step. The ridge lambda is worth
    `prior_spectra` average spectra without departure from the mean, so that an eigenvector goes
    to 0 where fewer spectra than that reach instead of fitting their noise. Returns (E (n, R) in
    order of decreasing variance, C (N, n), each eigenvector's variance (n,), chi2 per iteration)."""
    r = np.asarray(resid, np.float64)
    v = np.asarray(weight, np.float64)
    vr = v * r
    vr_t, v_t = np.ascontiguousarray(vr.T), np.ascontiguousarray(v.T)
    observations_per_pixel = max(np.count_nonzero(v), 1) / r.shape[1]
    vectors = np.linalg.qr(rng.standard_normal((r.shape[1], n_vectors)))[0].T
    history: list[float] = []
    for _ in range(iterations):
        coeffs = _solve_batched(v @ _pair_products(vectors).T, vr @ vectors.T, n_vectors)  # (N, n)
        gram = v_t @ _pair_products(coeffs.T).T  # (R, n(n+1)/2): per pixel sum_i v c c'
        # one average spectrum's contribution to a pixel's diagonal, times prior_spectra
        average = (
            np.trace(_pair_matrix(gram.sum(axis=0), n_vectors))
            / n_vectors
            / r.shape[1]
            / observations_per_pixel
        )
        vectors = _solve_batched(gram, vr_t @ coeffs, n_vectors, prior_spectra * average).T
        q, upper = np.linalg.qr(vectors.T)
        vectors, coeffs = q.T, coeffs @ upper.T
        history.append(float((v * (r - coeffs @ vectors) ** 2).sum()))
    coeffs = _solve_batched(v @ _pair_products(vectors).T, vr @ vectors.T, n_vectors)
    # within the span, the principal directions of the coefficients' scatter, each spectrum
    # weighted by its information I / (I + median I) so that noisy coefficients do not decide the order
    info = v.sum(axis=1)
    omega = info / (info + max(np.median(info[info > 0]) if (info > 0).any() else 1.0, 1e-300))
    centred = coeffs - omega @ coeffs / max(omega.sum(), 1e-300)
    cov = (centred * omega[:, None]).T @ centred / max(omega.sum(), 1e-300)
    values, rotation = np.linalg.eigh(cov)
    order = np.argsort(values)[::-1]
    return rotation[:, order].T @ vectors, coeffs @ rotation[:, order], values[order].clip(min=0), history
