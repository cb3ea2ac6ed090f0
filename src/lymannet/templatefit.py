"""A classical baseline: chi-square template fitting over redshift and class, as Redrock does.

The method of the survey pipelines (Redrock, desihub/redrock; SDSS's spZbest before it): for each
class (SPECTYPE) a few templates are redshifted onto the spectrum's wavelength grid at every trial
redshift, with the Inoue et al. 2014 mean IGM transmission applied; at each redshift the spectrum is
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

Two template sources share this fit. :func:`build_template_set` (the summary's ``template_fit`` row)
takes the simulator's own noiseless renderers (:data:`lymannet.simulate.RENDERERS`): an oracle on
simulated data, described below. :func:`lymannet.learned_templates.build_learned_template_set`
(``template_fit_learned``) learns per class a mean spectrum and eigenvectors from a training split,
as Redrock's templates are made; there each class is a basis of K vectors (models (V, K, Z, P)),
fitted at each redshift by linear least squares with the mean's amplitude >= 0 (or free) and the
eigenvectors free (:func:`_chi2_basis`); single templates (K = 1) keep the closed form of
:func:`_chi2`. Everything else (scans, parabola, ZWARN, confidence, catalogue) is the same code.

The simulator's templates come from its own noiseless renderers (:data:`lymannet.simulate.RENDERERS`),
so every SPECTYPE the simulator draws gets templates without code here. Per class: one typical
object per (TEMPLATE, SUBTYPE) group of a draw of the simulator's priors (its float parameters set
to the group's median: the LBG Ly-alpha EW classes, star types, BAL or not), then further random
draws up to ``templates_per_class``. Each object is rendered at a few redshifts whose rest-frame
coverages overlap and stitched into one rest-frame template (the renderers are redshift-invariant
in the rest frame: equivalent widths and velocities), then shifted to each trial redshift on the
native grid, multiplied by the mean IGM and averaged into the network grid's bins, as ingestion
averages the native pixels. Caveat: these are the simulator's own spectral models, so on simulated
data this baseline knows the generative model up to the per-object scatter and the IGM
fluctuations: an oracle, an upper reference rather than a classical method's score (the learned
templates give that). On real DESI data Redrock's templates would take their place.

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
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .coadd import NativeRebinner
from .errors import ConfigError, InputFileError
from .grid import Grid
from .igm import InoueIGM
from .lines import LYA

log = logging.getLogger("lymannet.templatefit")

# Redrock's ZWARN bits (redrock.zwarning.ZWarningMask) that this fit sets.
ZWARN_SMALL_DELTA_CHI2 = 2**2
ZWARN_Z_FITLIMIT = 2**5
ZWARN_NODATA = 2**9
ZWARN_BAD_MINFIT = 2**10
SMALL_DELTA_CHI2 = 9.0  # Redrock's threshold for SMALL_DELTA_CHI2
RENDER_OVERLAP = 0.97  # consecutive rest-frame renders overlap by 3% of the native range
IGM_BLOCK = 256  # trial redshifts per block when building the model matrices (bounded memory)
# Columns of a drawn object that are not its spectral shape: never replaced by a group median.
IDENTITY_COLUMNS = {
    "TARGETID",
    "Z",
    "Z_GRID",
    "MAG_R",
    "EXPTIME",
    "TARGET_RA",
    "TARGET_DEC",
    "TEMPLATE",
    "LINE_SEED",
}


def options_of(cls: Any, options: dict[str, Any]) -> Any:
    """An options dataclass from a config slice: its own keys that are set (None: the default)."""
    return cls(**{k: options[k] for k in cls.__dataclass_fields__ if options.get(k) is not None})


@dataclass
class TemplateFitOptions:
    """The config's ``baseline.template_fit`` slice (defaults as in config.schema.yaml)."""

    z_step: float = 5e-4  # fine redshift grid step in ln(1 + z)
    coarse_factor: int = 4  # coarse grid = every coarse_factor-th fine redshift
    templates_per_class: int = 4
    poly_order: int = 2  # Legendre polynomial order (poly_order + 1 terms)
    confidence_scale: float = 25.0  # Delta chi2 at which the confidence is 0.75
    classes: list[str] = field(default_factory=list)  # empty: every SPECTYPE of simulate.RENDERERS
    z_ranges: dict[str, list[float]] = field(default_factory=dict)  # per class; default the simulator's
    chunk_rows: int = 512
    seed: int = 20230728

    @classmethod
    def from_dict(cls, options: dict[str, Any] | None) -> "TemplateFitOptions":
        options = dict(options or {})
        opts = options_of(cls, options)
        if opts.z_step <= 0 or opts.coarse_factor < 1 or opts.templates_per_class < 1 or opts.poly_order < 0:
            raise ConfigError(
                f"baseline.template_fit: z_step > 0, coarse_factor >= 1, templates_per_class >= 1 "
                f"and poly_order >= 0 needed, got {options}"
            )
        if opts.confidence_scale <= 0:
            raise ConfigError(
                f"baseline.template_fit.confidence_scale must be positive, got {opts.confidence_scale}"
            )
        return opts


# --------------------------------------------------------------------------------------------
# The template set
# --------------------------------------------------------------------------------------------


@dataclass
class TemplateSet:
    """Templates on one network grid, per class on a fine z grid: either single templates, models
    (V, Z, P) (the simulator's, each of amplitude >= 0), or bases of K vectors, models (V, K, Z, P)
    (learned, lymannet.learned_templates: vector 0 the mean, amplitude >= 0 unless
    ``mean_amplitude`` is "free", the others eigenvectors of free amplitude)."""

    wavelength: np.ndarray  # network grid (P,)
    z: dict[str, np.ndarray]  # class -> fine trial redshifts (Z,), uniform in ln(1 + z)
    models: dict[str, np.ndarray]  # class -> (V, Z, P) or (V, K, Z, P) float32
    labels: dict[str, list[str]]  # class -> V template (or basis) names
    coarse_factor: int
    build_seconds: float = 0.0
    mean_amplitude: str = "nonnegative"  # or "free": the sign of basis vector 0's amplitude
    source: str = "simulator"  # where the templates come from (describe(), catalogue provenance)

    def basis(self, spectype: str) -> np.ndarray:
        """(V, K, Z, P) models of a class; K = 1 for single templates (a view, no copy)."""
        models = self.models[spectype]
        return models if models.ndim == 4 else models[:, None]

    def n_basis(self, spectype: str) -> int:
        return self.basis(spectype).shape[1]

    def fine_models(self, spectype: str) -> np.ndarray:
        """(V, Z, K, P) float64 bases (cached): the fine scan gathers a (K, P) block per redshift."""
        cache = self.__dict__.setdefault("_fine", {})
        if spectype not in cache:
            cache[spectype] = np.ascontiguousarray(np.swapaxes(self.basis(spectype), 1, 2), np.float64)
        return cache[spectype]

    def coarse_matrices(self, spectype: str) -> tuple[np.ndarray, np.ndarray]:
        """(P, V x Zc x K) float32 models at the coarse redshifts and (P, V x Zc x K(K+1)/2) the
        products of each pair of basis vectors i <= j (cached); K = 1: the models and their squares.

        Each coarse model is the mean of the fine models over the redshifts its coarse point
        stands for (coarse_factor fine steps, centred on it): narrow lines, smeared over that
        interval, are caught by the nearest coarse point instead of falling between two."""
        cache = self.__dict__.setdefault("_coarse", {})
        if spectype not in cache:
            models = self.basis(spectype)
            n_z = models.shape[2]
            factor = max(1, min(self.coarse_factor, n_z))
            centres = np.arange(0, n_z, factor)
            offsets = np.arange(-(factor // 2), factor // 2 + 1)
            window = np.clip(centres[:, None] + offsets[None, :], 0, n_z - 1)
            coarse = np.stack(
                [models[:, k][:, window, :].mean(axis=2, dtype=np.float32) for k in range(models.shape[1])],
                axis=2,
            )  # (V, Zc, K, P)
            i, j = np.triu_indices(models.shape[1])
            m = np.ascontiguousarray(coarse.reshape(-1, coarse.shape[3]).T)
            pairs = coarse[:, :, i, :] * coarse[:, :, j, :]
            cache[spectype] = (m, np.ascontiguousarray(pairs.reshape(-1, pairs.shape[3]).T))
        return cache[spectype]

    @property
    def classes(self) -> list[str]:
        return list(self.models)

    @property
    def n_templates(self) -> int:
        return sum(m.shape[0] for m in self.models.values())

    def describe(self) -> dict[str, Any]:
        return {
            c: {
                "templates": self.labels[c],
                "basis_vectors": self.n_basis(c),
                "z": [float(self.z[c][0]), float(self.z[c][-1])],
                "n_z": int(self.z[c].size),
            }
            for c in self.classes
        }


def class_z_range(spectype: str, options: TemplateFitOptions) -> tuple[float, float]:
    from .simulate import POPULATION_Z_LIMITS

    if spectype in options.z_ranges:
        lo, hi = (float(v) for v in options.z_ranges[spectype])
    elif spectype in POPULATION_Z_LIMITS:
        lo, hi = POPULATION_Z_LIMITS[spectype]
    else:
        raise ConfigError(
            f"baseline.template_fit: no redshift range for class {spectype}; "
            f"give one in baseline.template_fit.z_ranges"
        )
    if hi < lo or lo <= -1:
        raise ConfigError(
            f"baseline.template_fit.z_ranges.{spectype} must be [low, high] with -1 < low <= high"
        )
    return lo, hi


def z_grid(lo: float, hi: float, step: float) -> np.ndarray:
    """Trial redshifts uniform in ln(1 + z), both ends included."""
    x_lo, x_hi = math.log1p(lo), math.log1p(hi)
    n = max(1, int(math.ceil((x_hi - x_lo) / step - 1e-9)) + 1)
    return np.expm1(np.linspace(x_lo, x_hi, n)) if n > 1 else np.array([lo])


def template_objects(spectype: str, options: TemplateFitOptions) -> pd.DataFrame:
    """The objects whose noiseless spectra are the class's templates (rows of simulate.draw_objects).

    One typical object per (TEMPLATE, SUBTYPE) group, its float shape parameters at the group's
    median, then random draws until ``templates_per_class``. Column LABEL names each."""
    from .simulate import POPULATION_Z_LIMITS, draw_objects

    n_draw = max(64, 16 * options.templates_per_class)
    z_lo, z_hi = POPULATION_Z_LIMITS.get(spectype, class_z_range(spectype, options))
    spec = {
        "mode": "continuous",
        "exptime": [7200],
        "populations": {spectype: {"n": n_draw, "z": [z_lo, z_hi]}},
    }
    objects = draw_objects(spec, options.seed, f"templatefit-{spectype}").reset_index(drop=True)
    keys = [c for c in ("TEMPLATE", "SUBTYPE") if c in objects and objects[c].nunique() > 1]
    shape_columns = [c for c in objects.columns if c not in IDENTITY_COLUMNS and objects[c].dtype.kind == "f"]
    chosen, labels, used = [], [], set()
    groups = objects.groupby(keys, sort=True) if keys else [((), objects)]
    for key, group in groups:
        row = group.iloc[[0]].copy()
        with np.errstate(all="ignore"):
            for column in shape_columns:
                values = group[column].to_numpy(float)
                row[column] = np.nanmedian(values) if np.isfinite(values).any() else np.nan
        key = key if isinstance(key, tuple) else (key,)
        chosen.append(row)
        labels.append(":".join([spectype, *(str(k) for k in key if str(k) not in ("", "-1")), "typical"]))
        used.add(int(group.index[0]))
    extra = [i for i in range(len(objects)) if i not in used][
        : max(0, options.templates_per_class - len(chosen))
    ]
    for k, i in enumerate(extra):
        chosen.append(objects.iloc[[i]].copy())
        group = ":".join(str(objects.at[i, c]) for c in keys if str(objects.at[i, c]) not in ("", "-1"))
        labels.append(":".join(p for p in (spectype, group, f"draw{k}") if p))
    table = pd.concat(chosen, ignore_index=True)
    table["LABEL"] = labels
    return table


def render_redshifts(z_lo: float, z_hi: float, wave_lo: float, wave_hi: float) -> list[float]:
    """Redshifts whose native-range rest-frame coverages, overlapping, span what a fit over
    [z_lo, z_hi] sees: [wave_lo / (1 + z_hi), wave_hi / (1 + z_lo)]."""
    needed_hi = wave_hi / (1.0 + z_lo)
    zs = [z_hi]
    while wave_hi / (1.0 + zs[-1]) < needed_hi * (1.0 - 1e-9):
        zs.append(max(z_lo, wave_lo * (1.0 + zs[-1]) / (RENDER_OVERLAP * wave_hi) - 1.0))
    return zs


def rest_templates(spectype: str, options: TemplateFitOptions) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Rest-frame templates of a class: (rest wavelength (R,), flux (V, R) with unit mean, labels)."""
    from .simulate import RENDERERS, instrument

    objects = template_objects(spectype, options)
    wave = instrument().wave
    z_lo, z_hi = class_z_range(spectype, options)
    zs = render_redshifts(z_lo, z_hi, float(wave[0]), float(wave[-1]))
    starts = [wave[0] / (1.0 + z) for z in zs] + [np.inf]
    rest_wave, rest_flux = [], []
    for j, z in enumerate(zs):
        rows = objects.assign(Z=z)
        with np.errstate(over="ignore", under="ignore"):  # exp() tails of smooth steps far from them
            flux = np.asarray(RENDERERS[spectype](rows), np.float64)
        rest = wave / (1.0 + z)
        keep = (rest >= starts[j]) & (rest < starts[j + 1])
        rest_wave.append(rest[keep])
        rest_flux.append(flux[:, keep])
    rest_wave, rest_flux = np.concatenate(rest_wave), np.concatenate(rest_flux, axis=1)
    scale = np.abs(rest_flux).mean(axis=1, keepdims=True)
    if not np.all(np.isfinite(rest_flux)) or np.any(scale <= 0):
        raise ConfigError(
            f"baseline.template_fit: the simulator's {spectype} renderer gave empty or non-finite "
            "templates"
        )
    return rest_wave, rest_flux / scale, list(objects["LABEL"])


def _binned_igm(grid: Grid, native: np.ndarray, z: np.ndarray) -> np.ndarray | None:
    """Mean I14 transmission (Z, P) averaged over the native pixels of each network bin; None when
    no trial redshift puts Ly-alpha inside the native range (z < 3600 / 1215.67 - 1)."""
    n_forest = int(np.searchsorted(native, LYA * (1.0 + z.max()), side="right"))
    if n_forest == 0:
        return None
    rebinner = NativeRebinner(grid, native[:n_forest])
    has_forest = np.zeros(grid.n_pixels, bool)
    has_forest[rebinner.targets] = True
    igm = InoueIGM(native[:n_forest])
    out = np.ones((z.size, grid.n_pixels), np.float32)
    for start in range(0, z.size, IGM_BLOCK):
        block = z[start : start + IGM_BLOCK]
        transmission = igm.transmission(block).astype(np.float32)
        binned = rebinner.rebin_sums(transmission, np.ones_like(transmission))[0]
        out[start : start + block.size] = np.where(has_forest, binned, 1.0)
    return out


def build_template_set(grid: Grid, options: TemplateFitOptions | dict[str, Any] | None = None) -> TemplateSet:
    """Every class's templates on `grid` over its fine redshift grid (mean IGM applied)."""
    import time

    from .simulate import RENDERERS, instrument

    started = time.perf_counter()
    options = options if isinstance(options, TemplateFitOptions) else TemplateFitOptions.from_dict(options)
    classes = list(options.classes) or list(RENDERERS)
    unknown = sorted(set(classes) - set(RENDERERS))
    if unknown:
        raise ConfigError(
            f"baseline.template_fit.classes: {unknown} have no renderer in the simulator; "
            f"valid: {sorted(RENDERERS)}"
        )
    native = instrument().wave
    edges = np.asarray(grid.edges, np.float64)
    # Network bins that receive native pixels (ingestion leaves the others at ivar 0): models 0 there.
    covered = np.zeros(grid.n_pixels, bool)
    covered[NativeRebinner(grid, native).targets] = True
    z_by_class, models, labels = {}, {}, {}
    for spectype in classes:
        rest_wave, rest_flux, names = rest_templates(spectype, options)
        # Bin means are exact integrals of the rest template: a cumulative (trapezoid) integral
        # evaluated at each bin's edges moved to the rest frame, (Z, P + 1) interpolations per template.
        cumulative = np.zeros_like(rest_flux)
        cumulative[:, 1:] = np.cumsum(
            0.5 * (rest_flux[:, 1:] + rest_flux[:, :-1]) * np.diff(rest_wave), axis=1
        )
        z = z_grid(*class_z_range(spectype, options), options.z_step)
        transmission = _binned_igm(grid, native, z)
        out = np.empty((len(names), z.size, grid.n_pixels), np.float32)
        for start in range(0, z.size, IGM_BLOCK):
            block = slice(start, start + IGM_BLOCK)
            rest_edges = edges[None, :] / (1.0 + z[block, None])
            width = np.diff(rest_edges, axis=1)
            for v in range(len(names)):
                mean = np.diff(np.interp(rest_edges, rest_wave, cumulative[v]), axis=1) / width
                if transmission is not None:
                    mean *= transmission[block]
                out[v, block] = np.where(covered, mean, 0.0)
        z_by_class[spectype], models[spectype], labels[spectype] = z, out, names
    tset = TemplateSet(np.asarray(grid.wavelength, float), z_by_class, models, labels, options.coarse_factor)
    for spectype in classes:
        tset.coarse_matrices(spectype)  # built here, so that the fit's timing is the fit's alone
    tset.build_seconds = time.perf_counter() - started
    log.info(
        "template set: %d templates in %d classes (%s) on a %d-pixel grid, built in %.1f s",
        tset.n_templates,
        len(classes),
        ", ".join(f"{c} {models[c].shape[0]}x{z_by_class[c].size} z" for c in classes),
        grid.n_pixels,
        tset.build_seconds,
    )
    return tset


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
    :func:`build_template_set`, the simulator's); `source_inputs` (files it read, hashed into the
    provenance) and `source_config` (its options) describe it."""
    import time

    from . import __version__
    from .fileio import provenance
    from .predict import CLASS_LINE, PredictOptions, catalogue_rows, write_catalogue
    from .runtime import Progress
    from .spectra import SpectraFile

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
