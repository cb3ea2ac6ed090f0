"""The chi-square fit of the template-fit baselines: spectra against a template set over redshift
and class, as Redrock does, and a test set's prediction catalogue.

The method of the survey pipelines (Redrock, desihub/redrock; SDSS's spZbest before it): for each
class (SPECTYPE) a few templates are redshifted onto the spectrum's wavelength grid at every trial
redshift, with the Inoue et al. 2014 mean IGM transmission applied (:mod:`lymannet.templatefit`
makes them, a :class:`lymannet.templatefit.TemplateSet`); at each redshift the spectrum is
fitted by weighted linear least squares (normal equations) with a template of non-negative amplitude
plus a Legendre polynomial of low order, whose broadband terms absorb flux calibration and
continuum-slope differences. chi2(z) is scanned on a coarse grid (every ``coarse_factor``-th
redshift of the fine grid) for every template, then on the fine grid around the coarse minimum of
each class (that class's best template), and the minimum is refined by a parabola through the
three fine points around it (Redrock's ``pickz``). The class is the one with the lowest chi2.

Confidence that a spectrum is a target (LBG): Delta = (best chi2 of the other classes) - (best chi2
of the target class), mapped monotonically onto (0, 1) by c = (1 + Delta / (|Delta| + s)) / 2,
s = ``confidence_scale`` (c = 0.5 at Delta = 0, 0.75 at Delta = s). A rational map rather than a
logistic one: a float32 catalogue keeps distinct confidences up to Delta ~ 1e7, so the P = E
threshold scan can still order well-separated spectra. Z_PRED is the target class's best redshift.
ZWARN uses Redrock's bits: SMALL_DELTA_CHI2 (the two best classes within 9 in chi2), Z_FITLIMIT
(minimum at an end of the class's redshift range), BAD_MINFIT (no convex parabola at the
minimum), NODATA (fewer valid pixels than parameters; such a row gets confidence 0, Z_PRED 0).

Single templates (the simulator's) take the closed form of :func:`_chi2`; a learned basis of K
vectors (models (V, K, Z, P)) is solved for at each redshift by :func:`_chi2_basis`. Everything
else is the same code for both template sources.

Cost: one matrix product per class of the (N, P) weighted spectra against the (P, templates x
coarse redshifts) model matrix for each of the K + 2 normal-equation terms; the polynomial block
depends only on the spectrum and is eliminated once per spectrum (Schur complement), so no
per-redshift linear solve is needed for a single template; a basis of K vectors needs the K(K+1)/2
products of its pairs and a K x K Cholesky solve per (spectrum, redshift), vectorised.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from . import __version__
from .errors import ConfigError, InputFileError
from .fileio import provenance
from .predict import CLASS_LINE, PredictOptions, catalogue_rows, write_catalogue
from .runtime import Progress
from .spectra import SpectraFile
from .templatefit import TemplateFitOptions, TemplateSet, build_template_set

log = logging.getLogger("lymannet.chi2fit")

# Redrock's ZWARN bits (redrock.zwarning.ZWarningMask) that this fit sets.
ZWARN_SMALL_DELTA_CHI2 = 2**2
ZWARN_Z_FITLIMIT = 2**5
ZWARN_NODATA = 2**9
ZWARN_BAD_MINFIT = 2**10
SMALL_DELTA_CHI2 = 9.0  # Redrock's threshold for SMALL_DELTA_CHI2


# --------------------------------------------------------------------------------------------
# The fit
# --------------------------------------------------------------------------------------------


def legendre_basis(n_pixels: int, order: int) -> np.ndarray:
    """(order + 1, P) Legendre polynomials over the pixel index mapped onto [-1, 1]."""
    x = np.linspace(-1.0, 1.0, n_pixels)
    return np.polynomial.legendre.legvander(x, order).T.copy()


@dataclass
class _Spectra:
    """Per-spectrum pieces of the normal equations that do not depend on the template."""

    w: np.ndarray  # ivar (N, P)
    wf: np.ndarray  # ivar * flux
    wl: np.ndarray  # ivar * Legendre_k, (N, K, P)
    g: np.ndarray  # Q^-1 d, (N, K): the polynomial-only solution
    q_inv: np.ndarray  # (N, K, K)
    chi2_poly: np.ndarray  # chi2 of the polynomial-only fit (N,)
    nodata: np.ndarray  # (N,) bool


def _prepare(flux: np.ndarray, ivar: np.ndarray, basis: np.ndarray) -> _Spectra:
    flux = np.asarray(flux, np.float64)
    ivar = np.asarray(ivar, np.float64)
    bad = ~np.isfinite(flux) | ~np.isfinite(ivar) | (ivar < 0)
    ivar = np.where(bad, 0.0, ivar)
    flux = np.where(bad, 0.0, flux)
    n_params = basis.shape[0] + 1
    nodata = np.count_nonzero(ivar > 0, axis=1) < 2 * n_params
    ivar[nodata] = 0.0
    wf = ivar * flux
    wl = ivar[:, None, :] * basis[None, :, :]
    q = np.einsum("nkp,lp->nkl", wl, basis)
    q[nodata] = np.eye(basis.shape[0])
    try:
        q_inv = np.linalg.inv(q)
    except np.linalg.LinAlgError:
        q_inv = np.linalg.pinv(q)
    d = wf @ basis.T
    g = np.einsum("nkl,nl->nk", q_inv, d)
    chi2_poly = (wf * flux).sum(axis=1) - np.einsum("nk,nk->n", d, g)
    return _Spectra(ivar, wf, wl, g, q_inv, chi2_poly, nodata)


def _chi2(s: _Spectra, b: np.ndarray, a: np.ndarray, c: np.ndarray) -> np.ndarray:
    """chi2 of template + polynomial with the template amplitude >= 0, from t'Wf (b), t'Wt (a) and
    L'Wt (c, (N, K, ...)): the polynomial block is eliminated (Schur complement)."""
    b_perp = b - np.einsum("nk,nk...->n...", s.g, c)
    qc = np.einsum("nkl,nl...->nk...", s.q_inv, c)
    a_perp = a - np.einsum("nk...,nk...->n...", c, qc)
    with np.errstate(divide="ignore", invalid="ignore"):
        gain = np.where((b_perp > 0) & (a_perp > 1e-9 * np.abs(a)), b_perp**2 / a_perp, 0.0)
    return s.chi2_poly.reshape((-1,) + (1,) * (b.ndim - 1)) - gain


def _chi2_basis(s: _Spectra, b: np.ndarray, a: np.ndarray, c: np.ndarray, mean_amplitude: str) -> np.ndarray:
    """chi2 (N, M) of a basis of K vectors + polynomial at M (template, redshift) points, from
    T'Wf (b, (N, M, K)), T'WT (a, (N, M, K(K+1)/2): the pairs i <= j in np.triu_indices order) and
    L'WT (c, (N, L, M, K)).

    The polynomial is eliminated as in :func:`_chi2` (with Q^-1 = R R', u = R'c: a - c'Q^-1 c =
    a - u'u); the K x K system left is solved by a Cholesky factorisation vectorised over (N, M),
    with vector 0 (the mean) ordered last, so that one forward substitution y = L^-1 b gives both
    the free fit's gain |y|^2 and, in its leading K - 1 terms, the gain of the eigenvectors alone;
    the mean's free amplitude has the sign of y_K. With ``mean_amplitude`` "nonnegative" a fit
    whose mean amplitude comes out negative takes the eigenvectors-alone gain: the exact optimum
    under that one bound (a convex quadratic is minimised on the bound when its free minimum
    violates it). A vector without support on a spectrum's valid pixels (pivot below 1e-10 of its
    diagonal) drops out of that fit."""
    n_basis = b.shape[-1]
    i, j = np.triu_indices(n_basis)
    pair = np.zeros((n_basis, n_basis), np.int64)
    pair[i, j] = pair[j, i] = np.arange(i.size)
    root_q = np.linalg.cholesky(s.q_inv)  # (N, L, L), Q^-1 = R R'
    u = np.ascontiguousarray(np.einsum("nlj,nlmk->kjnm", root_q, c))  # (K, L, N, M): R'c
    b_perp = np.moveaxis(b - np.einsum("nl,nlmk->nmk", s.g, c), -1, 0)  # (K, N, M)
    a_perp = np.ascontiguousarray(np.moveaxis(a, -1, 0))  # (pairs, N, M)
    for p in range(i.size):
        a_perp[p] -= np.einsum("lnm,lnm->nm", u[i[p]], u[j[p]])
    order = list(range(1, n_basis)) + [0]  # the mean last
    lower: dict[tuple[int, int], np.ndarray] = {}
    y: list[np.ndarray] = []
    for r in range(n_basis):
        diagonal = a_perp[pair[order[r], order[r]]]
        pivot = diagonal.copy()
        rhs = b_perp[order[r]].copy()
        for q in range(r):
            pivot -= lower[r, q] ** 2
            rhs -= lower[r, q] * y[q]
        ok = pivot > 1e-10 * np.maximum(diagonal, 0.0) + 1e-300
        root = np.sqrt(np.where(ok, pivot, 1.0))
        y.append(np.where(ok, rhs / root, 0.0))
        for t in range(r + 1, n_basis):
            below = a_perp[pair[order[t], order[r]]].copy()
            for q in range(r):
                below -= lower[t, q] * lower[r, q]
            lower[t, r] = np.where(ok, below / root, 0.0)
    eigen_gain = np.zeros_like(y[-1])
    for v in y[:-1]:
        eigen_gain += v * v
    gain = eigen_gain + y[-1] * y[-1]
    if mean_amplitude == "nonnegative":
        # the mean's amplitude in the free fit has the sign of y_K (its pivot is positive)
        gain = np.where(y[-1] >= 0, gain, eigen_gain)
    gain = np.where(np.isfinite(gain), np.maximum(gain, 0.0), 0.0)
    return s.chi2_poly.reshape((-1,) + (1,) * (gain.ndim - 1)) - gain


def _coarse_scan(s: _Spectra, tset: TemplateSet, spectype: str) -> np.ndarray:
    """chi2 (N, V, Zc) of every template (or basis) of a class at every coarse redshift.

    The products run in float32 (the coarse scan only picks the basin; the fine scan that gives
    the chi2 and z runs in float64), the Schur complement in float64."""
    m, pairs = tset.coarse_matrices(spectype)  # (P, V*Zc*K) float32 models, (P, V*Zc*K(K+1)/2) products
    n_variants, n_basis = tset.basis(spectype).shape[:2]
    n, k, n_p = s.wl.shape
    w32, wf32 = s.w.astype(np.float32), s.wf.astype(np.float32)
    b = (wf32 @ m).astype(np.float64)
    a = (w32 @ pairs).astype(np.float64)
    c = (s.wl.astype(np.float32).reshape(n * k, n_p) @ m).astype(np.float64).reshape(n, k, -1)
    if n_basis == 1:
        return _chi2(s, b, a, c).reshape(n, n_variants, -1)
    b = b.reshape(n, -1, n_basis)
    a = a.reshape(n, b.shape[1], -1)
    c = c.reshape(n, k, -1, n_basis)
    return _chi2_basis(s, b, a, c, tset.mean_amplitude).reshape(n, n_variants, -1)


def _fine_scan(
    s: _Spectra, tset: TemplateSet, spectype: str, variant: np.ndarray, centre: np.ndarray, half_width: int
) -> tuple[np.ndarray, np.ndarray]:
    """chi2 (N, F) of each spectrum's template (or basis) on the fine grid around `centre` (fine indices)."""
    models = tset.basis(spectype)  # (V, K, Z, P)
    n_z = models.shape[2]
    index = np.clip(centre[:, None] + np.arange(-half_width, half_width + 1)[None, :], 0, n_z - 1)
    if models.shape[1] == 1:
        chosen = models[:, 0][variant[:, None], index].astype(np.float64)  # (N, F, P)
        b = np.einsum("np,nfp->nf", s.wf, chosen)
        a = np.einsum("np,nfp->nf", s.w, chosen * chosen)
        c = np.einsum("nkp,nfp->nkf", s.wl, chosen)
        return _chi2(s, b, a, c), index
    # A loop over spectra: each one's (F, K, P) block stays in cache, which beats gathering the
    # (N, F, K, P) array and running batched products over it by several times.
    fine = tset.fine_models(spectype)  # (V, Z, K, P) float64
    n, n_f = index.shape
    n_basis, n_l = models.shape[1], s.wl.shape[1]
    i, j = np.triu_indices(n_basis)
    b = np.empty((n, n_f, n_basis))
    a = np.empty((n, n_f, i.size))
    c = np.empty((n, n_f, n_basis, n_l))
    for row in range(n):
        block = fine[variant[row]][index[row]]  # (F, K, P)
        flat = block.reshape(n_f * n_basis, -1)
        b[row] = (flat @ s.wf[row]).reshape(n_f, n_basis)
        c[row] = (flat @ s.wl[row].T).reshape(n_f, n_basis, n_l)
        a[row] = np.matmul(block * s.w[row], block.transpose(0, 2, 1))[:, i, j]
    return _chi2_basis(s, b, a, np.moveaxis(c, 3, 1), tset.mean_amplitude), index


def _parabola(
    chi2: np.ndarray, index: np.ndarray, x_grid: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Minimum of each row's fine scan refined by a parabola through its three points:
    (ln(1+z), chi2, zwarn)."""
    n, n_f = chi2.shape
    rows = np.arange(n)
    best = np.argmin(chi2, axis=1)
    zwarn = np.zeros(n, np.int64)
    at_limit = (index[rows, best] == 0) | (index[rows, best] == x_grid.size - 1)
    zwarn[at_limit] |= ZWARN_Z_FITLIMIT
    step = x_grid[1] - x_grid[0] if x_grid.size > 1 else 0.0
    inner = np.clip(best, 1, max(n_f - 2, 1))
    y0, ym, yp = chi2[rows, inner], chi2[rows, inner - 1], chi2[rows, np.minimum(inner + 1, n_f - 1)]
    curvature = ym - 2.0 * y0 + yp
    convex = (curvature > 0) & (n_f >= 3) & ~at_limit
    with np.errstate(divide="ignore", invalid="ignore"):
        offset = np.where(convex, 0.5 * (ym - yp) / curvature, 0.0)
    bad_fit = convex & (np.abs(offset) > 1.0)
    zwarn[(~convex & ~at_limit & (n_f >= 3) & (curvature < 0)) | bad_fit] |= ZWARN_BAD_MINFIT
    offset = np.where(bad_fit, 0.0, offset)
    centre = np.where(convex & ~bad_fit, inner, best)
    x = x_grid[index[rows, centre]] + offset * step
    chi2_min = np.where(convex & ~bad_fit, y0 - 0.25 * (ym - yp) * offset, chi2[rows, best])
    return x, chi2_min, zwarn


def chi2_scan(
    tset: TemplateSet,
    flux: np.ndarray,
    ivar: np.ndarray,
    spectype: str,
    options: TemplateFitOptions | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """chi2 (N, V, Z) of every template (or basis) of one class at every fine redshift, in float64
    (for inspection and tests; the fit itself scans the coarse grid, then the fine one near its minimum)."""
    options = options or TemplateFitOptions()
    basis = legendre_basis(np.shape(flux)[-1], options.poly_order)
    s = _prepare(np.atleast_2d(flux), np.atleast_2d(ivar), basis)
    if tset.n_basis(spectype) == 1:
        models = tset.basis(spectype)[:, 0].astype(np.float64)  # (V, Z, P)
        b = np.einsum("np,vzp->nvz", s.wf, models)
        a = np.einsum("np,vzp->nvz", s.w, models * models)
        c = np.einsum("nkp,vzp->nkvz", s.wl, models)
        return tset.z[spectype], _chi2(s, b, a, c)
    models = tset.basis(spectype).astype(np.float64)  # (V, K, Z, P)
    n_v, n_k, n_z, _ = models.shape
    n = s.w.shape[0]
    b = np.einsum("np,vkzp->nvzk", s.wf, models).reshape(n, -1, n_k)
    i, j = np.triu_indices(n_k)
    a = np.einsum("vpzq,nq->nvzp", models[:, i] * models[:, j], s.w).reshape(n, -1, i.size)
    c = np.einsum("nlp,vkzp->nlvzk", s.wl, models).reshape(n, s.wl.shape[1], -1, n_k)
    return tset.z[spectype], _chi2_basis(s, b, a, c, tset.mean_amplitude).reshape(n, n_v, n_z)


def fit_spectra(
    tset: TemplateSet,
    flux: np.ndarray,
    ivar: np.ndarray,
    target_class: str = "LBG",
    options: TemplateFitOptions | None = None,
) -> dict[str, np.ndarray]:
    """Fit (N, P) spectra on the template set's grid: per class chi2, z and template, the best class,
    the target confidence. NaN flux and bad ivar count as masked pixels; a spectrum with too few
    valid pixels is flagged NODATA (confidence 0, Z_PRED 0), never an exception."""
    options = options or TemplateFitOptions()
    flux, ivar = np.atleast_2d(flux), np.atleast_2d(ivar)
    if flux.shape != ivar.shape or flux.shape[1] != tset.wavelength.size:
        raise InputFileError(
            f"spectra of shape {flux.shape} / ivar {ivar.shape} do not match the template grid "
            f"({tset.wavelength.size} pixels)"
        )
    target = target_class.upper()
    if target not in tset.models:
        raise ConfigError(f"target class {target} has no templates; classes: {tset.classes}")
    basis = legendre_basis(flux.shape[1], options.poly_order)
    s = _prepare(flux, ivar, basis)
    n = flux.shape[0]
    out: dict[str, np.ndarray] = {}
    chi2_all, zwarn = [], np.zeros(n, np.int64)
    for spectype in tset.classes:
        z = tset.z[spectype]
        factor = max(1, min(tset.coarse_factor, z.size))
        coarse = _coarse_scan(s, tset, spectype)  # (N, V, Zc)
        flat = coarse.reshape(n, -1).argmin(axis=1)
        variant, coarse_index = np.divmod(flat, coarse.shape[2])
        fine, index = _fine_scan(s, tset, spectype, variant, coarse_index * factor, factor)
        x, chi2_min, warn = _parabola(fine, index, np.log1p(z))
        out[f"CHI2_{spectype}"] = chi2_min
        out[f"Z_{spectype}"] = np.expm1(x)
        out[f"TEMPLATE_{spectype}"] = variant
        out[f"ZWARN_{spectype}"] = warn
        chi2_all.append(chi2_min)
    chi2_all = np.stack(chi2_all, axis=1)  # (N, C)
    order = np.argsort(chi2_all, axis=1)
    rows = np.arange(n)
    best = order[:, 0]
    classes = np.asarray(tset.classes)
    # With one class only, the alternative is the polynomial alone (no template).
    second = chi2_all[rows, order[:, 1]] if len(classes) > 1 else s.chi2_poly
    delta = second - chi2_all[rows, best]
    target_j = tset.classes.index(target)
    others = np.delete(chi2_all, target_j, axis=1)
    delta_target = (others.min(axis=1) if others.size else s.chi2_poly) - chi2_all[:, target_j]
    confidence = 0.5 * (1.0 + delta_target / (np.abs(delta_target) + options.confidence_scale))
    best_warn = np.stack([out[f"ZWARN_{c}"] for c in tset.classes], axis=1)[rows, best]
    zwarn |= best_warn | np.where(delta < SMALL_DELTA_CHI2, ZWARN_SMALL_DELTA_CHI2, 0)
    z_best = np.stack([out[f"Z_{c}"] for c in tset.classes], axis=1)[rows, best]
    z_pred = out[f"Z_{target}"].copy()
    nodata = s.nodata
    zwarn[nodata] = ZWARN_NODATA
    confidence[nodata], z_pred[nodata], z_best[nodata], delta[nodata] = 0.0, 0.0, 0.0, 0.0
    for spectype in tset.classes:
        out[f"CHI2_{spectype}"][nodata] = 0.0
        out[f"Z_{spectype}"][nodata] = 0.0
    out.update(
        confidence=confidence,
        z_pred=z_pred,
        spectype=classes[best],
        z=z_best,
        chi2=chi2_all[rows, best],
        deltachi2=delta,
        delta_chi2_target=delta_target,
        zwarn=zwarn,
        npix=np.count_nonzero(s.w > 0, axis=1),
    )
    return out


DEFAULT_WINDOW = 0.05  # +-0.05 in ln(1+z): +-0.2 at z = 3, ~4 line-finder boxes


def refine_redshifts(
    tset: TemplateSet,
    flux: np.ndarray,
    ivar: np.ndarray,
    z_network: np.ndarray,
    spectype: str,
    window: float = DEFAULT_WINDOW,
    options: TemplateFitOptions | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(z, zerr, refined) of (N, P) spectra: the class's chi-square minimum within +-window in
    ln(1+z) of each network redshift, its Delta chi2 = 1 error, and whether it was found inside
    the window (elsewhere, and where the network's redshift lies outside the class's template
    range, z is the network's and zerr NaN)."""
    if window <= 0:
        raise ConfigError(f"refine window must be > 0 in ln(1+z), not {window}")
    if spectype not in tset.models:
        raise ConfigError(f"refine: class {spectype} has no learned templates; classes: {tset.classes}")
    options = options or TemplateFitOptions()
    z_network = np.asarray(z_network, np.float64)
    s = _prepare(
        np.atleast_2d(flux), np.atleast_2d(ivar), legendre_basis(np.shape(flux)[-1], options.poly_order)
    )
    x_grid = np.log1p(tset.z[spectype])
    step = x_grid[1] - x_grid[0]
    half_width = max(1, int(round(window / step)))
    centre = np.clip(np.round((np.log1p(z_network) - x_grid[0]) / step).astype(np.int64), 0, x_grid.size - 1)
    # one basis group per class unless subtype_classes splits it: scan each group, keep the lowest
    best_chi2 = np.full(len(z_network), np.inf)
    x = np.full(len(z_network), np.nan)
    curvature = np.full(len(z_network), np.nan)
    inside = np.zeros(len(z_network), bool)
    for variant in range(tset.basis(spectype).shape[0]):
        chi2, index = _fine_scan(s, tset, spectype, np.full(len(z_network), variant), centre, half_width)
        x_v, chi2_v, zwarn = _parabola(chi2, index, x_grid)
        best = np.argmin(chi2, axis=1)
        rows = np.arange(len(z_network))
        inner = np.clip(best, 1, chi2.shape[1] - 2)
        curv = chi2[rows, inner - 1] - 2 * chi2[rows, inner] + chi2[rows, inner + 1]
        ok = (zwarn == 0) & (best > 0) & (best < chi2.shape[1] - 1) & (curv > 0)
        better = ok & (chi2_v < best_chi2)
        best_chi2[better], x[better], curvature[better] = chi2_v[better], x_v[better], curv[better]
        inside |= better
    # outside the class's learned redshift range there is nothing to refine against
    x_network = np.log1p(z_network)
    inside &= ~s.nodata & (x_network >= x_grid[0]) & (x_network <= x_grid[-1])
    z = np.where(inside, np.expm1(x), z_network)
    # chi2 ~ chi2_min + a (x - x0)^2 with a = curvature / (2 step^2): Delta chi2 = 1 at 1/sqrt(a)
    with np.errstate(divide="ignore", invalid="ignore"):
        zerr = np.where(inside, (1.0 + z) * step * np.sqrt(2.0 / curvature), np.nan)
    return z, zerr, inside


# --------------------------------------------------------------------------------------------
# Test sets -> prediction catalogues (the format of lymannet.predict)
# --------------------------------------------------------------------------------------------


def catalogue_columns(fit: dict[str, np.ndarray], classes: list[str]) -> dict[str, np.ndarray]:
    """The template fit's own columns (Redrock names where there is one), beside the CNN columns."""
    columns = {
        "SPECTYPE_FIT": np.asarray(fit["spectype"]).astype("U8"),
        "Z_FIT": fit["z"].astype(np.float32),
        "CHI2": fit["chi2"].astype(np.float32),
        "DELTACHI2": fit["deltachi2"].astype(np.float32),
        "DELTACHI2_TARGET": fit["delta_chi2_target"].astype(np.float32),
        "ZWARN": fit["zwarn"].astype(np.int64),
        "NPIXELS": fit["npix"].astype(np.int32),
    }
    for spectype in classes:
        columns[f"CHI2_{spectype}"] = fit[f"CHI2_{spectype}"].astype(np.float32)
        columns[f"ZFIT_{spectype}"] = fit[f"Z_{spectype}"].astype(np.float32)
    return columns


def template_set_sha(tset: TemplateSet, options: TemplateFitOptions) -> str:
    """A hash standing in for a model file's: the options and the models' bytes."""
    digest = hashlib.sha256(json.dumps(asdict(options), sort_keys=True, default=str).encode())
    for spectype in tset.classes:
        digest.update(spectype.encode())
        digest.update(np.ascontiguousarray(tset.models[spectype]).tobytes())
    return digest.hexdigest()


def predict_testset_templatefit(
    testset: str | Path,
    output: str | Path,
    fit_options: dict[str, Any] | None = None,
    predict_options: dict[str, Any] | None = None,
    name: str = "template_fit",
    template_source: Any = None,
    source_inputs: dict[str, str | Path] | None = None,
    source_config: dict[str, Any] | None = None,
) -> pd.DataFrame:
    """Fit every spectrum of a test set, write a prediction catalogue the score rule reads unchanged.

    `template_source(grid, options) -> TemplateSet` gives the templates (default
    :func:`lymannet.templatefit.build_template_set`, the simulator's); `source_inputs` (files it
    read, hashed into the provenance) and `source_config` (its options) describe it."""
    opts = TemplateFitOptions.from_dict(fit_options)
    popts = PredictOptions.from_dict(predict_options)
    target = str((predict_options or {}).get("target_class", "LBG")).upper()
    chunks = []
    with SpectraFile(testset) as spectra_file:
        grid = spectra_file.grid
        if grid is None:
            raise InputFileError("network layer has no grid header (GRIDKIND)", testset)
        tset = (template_source or build_template_set)(grid, opts)
        progress = Progress(len(spectra_file), what="spectra", logger=log)
        started = time.perf_counter()
        for chunk in spectra_file.iter_chunks("network", opts.chunk_rows):
            fit = fit_spectra(tset, chunk.flux, chunk.ivar, target, opts)
            outputs = {
                "c_line": fit["confidence"][:, None],
                "z_line": fit["z_pred"][:, None],
                "z_pred": fit["z_pred"],
                "best_line": np.zeros(len(chunk), np.int64),
                "confidence": fit["confidence"],
            }
            table = catalogue_rows(chunk.truth, outputs, [CLASS_LINE.name], target, popts)
            for key, values in catalogue_columns(fit, tset.classes).items():
                table[key] = values
            chunks.append(table)
            progress.update(len(chunk))
        fit_seconds = time.perf_counter() - started
        progress.done()
    if not chunks:
        raise InputFileError("test set has no spectra", testset)
    catalogue = pd.concat(chunks, ignore_index=True)
    config = {"baseline": asdict(opts), "predict": dict(predict_options or {})}
    if source_config is not None:
        config["templates"] = source_config
    record = provenance(config, {"testset": testset, **(source_inputs or {})})
    record["template_set"] = {"source": tset.source, "mean_amplitude": tset.mean_amplitude, **tset.describe()}
    record["timing"] = {
        "build_seconds": round(tset.build_seconds, 3),
        "fit_seconds": round(fit_seconds, 3),
        "spectra_per_second": round(len(catalogue) / max(fit_seconds, 1e-9), 1),
    }
    sha = template_set_sha(tset, opts)
    header = [
        {
            "name": "MODEL",
            "value": f"{name} (lymannet.templatefit)",
            "comment": (
                "chi2 template fit, no trained model"
                if tset.source == "simulator"
                else "chi2 fit, templates learned from a training set"
            ),
        },
        {"name": "MODELSHA", "value": sha, "comment": "sha256 of the template set and options"},
        {"name": "TESTSET", "value": str(testset), "comment": "test set spectra file"},
        {"name": "TARGCLS", "value": target, "comment": "class the fit detects"},
        {"name": "CTHRESH", "value": popts.c_th, "comment": "confidence threshold of IS_*"},
        {"name": "MINLINES", "value": 1, "comment": "one pseudo-line: the class confidence"},
        {"name": "NLINES", "value": 1, "comment": "lines of the model (see LINES HDU)"},
        {"name": "NTEMPL", "value": tset.n_templates, "comment": "templates in the fit"},
        {"name": "CFGHASH", "value": record.get("config_hash", ""), "comment": "hash of the fit options"},
        {"name": "LNVER", "value": __version__, "comment": "lymannet version"},
        {
            "name": "GITREV",
            "value": record.get("git_revision", "unknown"),
            "comment": "git describe of the code",
        },
    ]
    write_catalogue(output, catalogue, (CLASS_LINE,), header, record)
    n_target = int(catalogue[f"IS_{target}"].sum())
    log.info(
        "wrote %s: %d spectra (%.0f spectra/s after a %.1f s template build), %d flagged %s, %d NODATA",
        output,
        len(catalogue),
        record["timing"]["spectra_per_second"],
        tset.build_seconds,
        n_target,
        target,
        int(((catalogue["ZWARN"] & ZWARN_NODATA) > 0).sum()),
    )
    return catalogue
