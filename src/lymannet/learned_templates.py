"""A classical baseline that does not know the answer: chi-square templates learned from a training split.

The ``template_fit`` baseline (:mod:`lymannet.templatefit`) fits templates rendered by the
simulator's own noiseless models: on simulated data it knows the generating model, an oracle.
Here the templates come from the spectra of a training split only, as Redrock's do (PCA bases of
archetype spectra), and the fit is the same code (:func:`lymannet.chi2fit.fit_spectra`: coarse
and fine redshift scan, Legendre polynomial, ZWARN, Delta-chi2 confidence); only the template
source differs. Nothing here calls the simulator or reads a test set.

**Learning** (:func:`learn_templates`), per class (SPECTYPE of the training truth; with
``subtype_classes``, one basis per SUBTYPE of those classes, e.g. the star types):

1. Each training spectrum (network grid, flux and ivar) is moved to the rest frame, lambda / (1 + Z),
   onto a common grid uniform in ln(lambda) (``rest_step``, finer than any observed pixel): a rest
   pixel takes the flux of the observed pixel that contains it and that pixel's ivar times the
   fraction of the pixel it covers (its information shared out, so that a spectrum is not counted
   more where the rest grid oversamples it). Pixels without data (ivar 0: beyond the instrument,
   masks) and pixels the augmentation replaced by continuum + noise (``mask_region`` /
   ``mask_line`` windows of the combo's variants, :func:`fill_windows`: they hold no spectral
   information, only noise) get weight 0. The LBG and QSO spectra carry their IGM absorption, so
   the stack carries its mean and, in the eigenvectors, its scatter: no IGM is applied to these
   templates. The rest grid spans the rest wavelengths that at least ``min_coverage`` spectra
   reach.
2. A weighted rank-K factorisation F ~ C B (K = 1 + ``components``), every pixel weighted by its
   ivar, by alternating weighted least squares (heteroscedastic matrix factorisation, Tsalmantza
   & Hogg 2012, ApJ 753, 122; the same fixed point as the EM-PCA with noise weights of Bailey 2012,
   PASP 124, 1015; :mod:`lymannet.empca`). Each spectrum has its own K coefficients, so its
   normalisation is fitted, not guessed from a rest range it may only partly cover, and pixels
   without data simply do not enter its fit: gaps are handled by the weights, not filled. Rest
   pixels that fewer than ``min_coverage`` spectra reach take the basis interpolated from their
   neighbours.
3. The subspace is written as Redrock writes a template: vector 0 the mean spectrum (the
   S/N-weighted mean of every spectrum's model normalised to unit norm over the rest grid, gaps
   thus filled by its own model), then ``components`` eigenvectors of the scatter of those
   normalised models about it, orthogonal to the mean (ordered by variance, fraction of the
   scatter in ``explained``). Same span as the factorisation, so the fit's chi2 does not depend on this
   rotation, except through the sign constraint on the mean.

Why weighted PCA and not NMF: the fit solves, at every trial redshift, a linear least-squares
problem in the basis coefficients (a K x K Cholesky solve vectorised over spectra and redshifts);
PCA's signed eigenvectors need nothing more, and IGM-absorbed LBG and QSO spectra and absorption-
line galaxies need signed departures from a mean. NMF's non-negative components pay off only
with non-negative coefficients, a non-negative least-squares solve per spectrum and redshift,
many times the cost of the scan. Redrock uses PCA for the same reason.

The fit of these templates (a template set on the network grid, a test set's catalogue) is
:mod:`lymannet.templatefit_learned`.
"""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .empca import weighted_eigenvectors, weighted_mean
from .errors import ConfigError, InputFileError
from .fileio import atomic_path, file_sha256
from .grid import Grid
from .spectra import SpectraFile
from .templatefit import options_of

log = logging.getLogger("lymannet.learned_templates")

FORMAT = "lymannet-learned-templates-1"
RIDGE_SPECTRA = 10.0  # eigenvector ridge: worth this many average spectra without departure from the mean
MIN_INFORMATION = (
    1e-3  # rest pixels where the mean's inverse variance is below this x its median are not learned
)


@dataclass
class LearnOptions:
    """The config's ``baseline.learned_templates`` slice that shapes the templates (defaults as in
    config.schema.yaml)."""

    components: int = 4  # eigenvectors besides the mean
    rest_step: float = 5e-4  # rest-frame grid step in ln(lambda)
    iterations: int = 30  # alternating least-squares iterations
    min_spectra: int = 20  # a class (or SUBTYPE group) with fewer training spectra gets no template
    max_spectra: int = 4000  # a random subset of at most this many per class or group
    min_coverage: int = 3  # spectra with data that a rest pixel needs to be learned from them
    subtype_classes: list[str] = field(default_factory=list)  # one basis per SUBTYPE of these classes
    classes: list[str] = field(default_factory=list)  # empty: every SPECTYPE of the training split
    seed: int = 20230728

    @classmethod
    def from_dict(cls, options: dict[str, Any] | None) -> "LearnOptions":
        options = dict(options or {})
        opts = options_of(cls, options)
        if opts.components < 0 or opts.rest_step <= 0 or opts.iterations < 1 or opts.min_coverage < 1:
            raise ConfigError(
                f"baseline.learned_templates: components >= 0, rest_step > 0, iterations >= 1 and "
                f"min_coverage >= 1 needed, got {options}"
            )
        if opts.min_spectra < opts.components + 2 or opts.max_spectra < opts.min_spectra:
            raise ConfigError(
                f"baseline.learned_templates: min_spectra must be at least components + 2 "
                f"({opts.components + 2}) and max_spectra at least min_spectra, got {options}"
            )
        opts.classes = [str(c).upper() for c in opts.classes]
        opts.subtype_classes = [str(c).upper() for c in opts.subtype_classes]
        return opts


@dataclass
class LearnedBasis:
    """One class's (or SUBTYPE group's) basis on a rest-frame grid uniform in ln(lambda)."""

    spectype: str
    label: str  # "LBG", or "STAR:K" for a SUBTYPE group
    rest_wave: np.ndarray  # (R,) Angstrom
    basis: np.ndarray  # (K, R): the mean (unit mean flux), then eigenvectors (orthogonal to it, unit rms)
    coverage: np.ndarray  # (R,) training spectra with data at each rest pixel
    explained: np.ndarray  # (K - 1,) fraction of the normalised spectra's scatter per eigenvector
    n_spectra: int
    z_range: tuple[float, float]  # the group's training redshifts
    observed: tuple[float, float]  # observed wavelengths with data in its training spectra


@dataclass
class LearnedTemplates:
    bases: list[LearnedBasis]
    meta: dict[str, Any]

    @property
    def classes(self) -> list[str]:
        return list(dict.fromkeys(b.spectype for b in self.bases))

    def of_class(self, spectype: str) -> list[LearnedBasis]:
        return [b for b in self.bases if b.spectype == spectype]


# --------------------------------------------------------------------------------------------
# Training data
# --------------------------------------------------------------------------------------------


def fill_windows(variants: dict[str, dict[str, Any]] | None) -> dict[str, list[tuple[str, float, float]]]:
    """Per variant name (the truth's SOURCE), the windows its ``mask_region`` / ``mask_line`` ops
    replaced by continuum + noise, as (frame, centre, half width): ("observed", A, A) for a region,
    ("rest", line, half width in observed A) for a line (divided by 1 + Z where applied; the width
    doubled when a shift follows, which stretches the window by an unknown ratio), or
    ("rest_fixed", line, half width in rest A) for a line with rest_frame: true. A region followed
    by a shift moved to an unknown place: it is left in (logged; 40 A of local continuum + noise,
    no line).
    """
    windows: dict[str, list[tuple[str, float, float]]] = {}
    for name, spec in (variants or {}).items():
        ops = [
            (next(iter(op)), next(iter(op.values())) or {})
            for op in (spec or {}).get("ops") or []
            if isinstance(op, dict) and op
        ]
        found = []
        for i, (kind, params) in enumerate(ops):
            shifted_after = any(k == "shift" for k, _ in ops[i + 1 :])
            if kind == "mask_region":
                if shifted_after:
                    log.warning(
                        "variant %r: a mask_region before a shift cannot be placed; its window is kept", name
                    )
                    continue
                found.append(("observed", float(params["center"]), 0.5 * float(params["width"])))
            elif kind == "mask_line":
                half = 0.5 * float(params["width"]) * (2.0 if shifted_after else 1.0)
                found.append(
                    ("rest_fixed" if params.get("rest_frame") else "rest", float(params["line"]), half)
                )
        if found:
            windows[name] = found
    return windows


def _mask_windows(
    ivar: np.ndarray, centres: np.ndarray, z: np.ndarray, windows: list[tuple[str, float, float]]
) -> None:
    """Zero `ivar` (N, P) in place inside each window (observed-frame pixel centres `centres`)."""
    for frame, centre, half in windows:
        if frame == "observed":
            lo = np.full(z.shape, centre - half)
            hi = np.full(z.shape, centre + half)
        elif frame == "rest":
            lo, hi = centre * (1 + z) - half, centre * (1 + z) + half
        else:
            lo, hi = (centre - half) * (1 + z), (centre + half) * (1 + z)
        inside = (centres[None, :] >= lo[:, None]) & (centres[None, :] < hi[:, None])
        ivar[inside] = 0.0


def read_training(
    path: str | Path, windows: dict[str, list] | None = None, chunk_rows: int = 4096
) -> tuple[np.ndarray, np.ndarray, pd.DataFrame, Grid]:
    """(flux, ivar, truth, grid) of a training split, bad pixels and fill windows at ivar 0."""
    with SpectraFile(path) as spectra_file:
        grid = spectra_file.grid
        if grid is None:
            raise InputFileError("network layer has no grid header (GRIDKIND)", path)
        parts = list(spectra_file.iter_chunks("network", chunk_rows))
    if not parts or not sum(len(p) for p in parts):
        raise InputFileError("training split has no spectra", path)
    flux = np.concatenate([p.flux for p in parts]).astype(np.float32)
    ivar = np.concatenate([p.ivar for p in parts]).astype(np.float32)
    truth = pd.concat([p.truth for p in parts], ignore_index=True)
    for column in ("SPECTYPE", "Z"):
        if column not in truth:
            raise InputFileError(f"truth table has no {column} column", path)
    bad = ~np.isfinite(flux) | ~np.isfinite(ivar) | (ivar < 0)
    ivar[bad], flux[bad] = 0.0, 0.0
    if windows and "SOURCE" in truth:
        z = truth["Z"].to_numpy(np.float64)
        source = truth["SOURCE"].astype(str).str.strip().to_numpy()
        for name, found in windows.items():
            rows = np.flatnonzero(source == name)
            if rows.size:
                part = ivar[rows]
                _mask_windows(part, grid.centres, z[rows], found)
                ivar[rows] = part
    return flux, ivar, truth, grid


def to_rest_frame(
    flux: np.ndarray,
    ivar: np.ndarray,
    z: np.ndarray,
    grid: Grid,
    ln_start: float,
    step: float,
    n_rest: int,
    chunk_rows: int = 1024,
) -> tuple[np.ndarray, np.ndarray]:
    """(N, R) flux and ivar on the rest grid exp(ln_start + step (j + 1/2)): each rest pixel takes
    the observed pixel that contains it, its ivar times the share of that pixel it covers."""
    rest = np.exp(ln_start + step * (np.arange(n_rest) + 0.5))
    widths = np.diff(grid.edges)
    rest_flux = np.zeros((len(z), n_rest), np.float32)
    rest_ivar = np.zeros((len(z), n_rest), np.float32)
    for start in range(0, len(z), chunk_rows):
        part = slice(start, start + chunk_rows)
        observed = rest[None, :] * (1.0 + z[part, None])  # (n, R)
        index = grid.pixel_index(observed)
        inside = (index >= 0) & (index < grid.n_pixels)
        index = np.clip(index, 0, grid.n_pixels - 1)
        rows = np.arange(observed.shape[0])[:, None]
        share = np.minimum(observed * step / widths[index], 1.0)  # rest pixel width / observed pixel width
        rest_flux[part] = np.where(inside, flux[part][rows, index], 0.0)
        rest_ivar[part] = np.where(inside, ivar[part][rows, index] * share, 0.0)
    return rest_flux, rest_ivar


# --------------------------------------------------------------------------------------------
# Learning from a training split
# --------------------------------------------------------------------------------------------


def _interpolate_columns(basis: np.ndarray, x: np.ndarray, poor: np.ndarray) -> np.ndarray:
    """Columns of `basis` (K, R) flagged `poor` replaced by linear interpolation over `x` from the rest."""
    if not poor.any() or poor.all():
        return basis
    good = ~poor
    out = basis.copy()
    for k in range(basis.shape[0]):
        out[k, poor] = np.interp(x[poor], x[good], basis[k, good])
    return out


def learn_basis(
    flux: np.ndarray,
    ivar: np.ndarray,
    z: np.ndarray,
    grid: Grid,
    options: LearnOptions,
    spectype: str,
    label: str,
    rng: np.random.Generator,
) -> LearnedBasis:
    """One class's (or group's) basis from its training spectra (network grid, bad pixels at ivar 0)."""
    edges = np.asarray(grid.edges, np.float64)
    has_data = ivar > 0
    any_data = has_data.any(axis=0)
    if not any_data.any():
        raise ConfigError(f"learned templates: the {label} training spectra have no valid pixel")
    observed = (float(edges[np.argmax(any_data)]), float(edges[grid.n_pixels - np.argmax(any_data[::-1])]))
    first = np.argmax(has_data, axis=1)
    last = grid.n_pixels - 1 - np.argmax(has_data[:, ::-1], axis=1)
    ln_start = math.log(float(np.min(edges[first] / (1 + z))))
    n_rest = int(
        math.ceil((math.log(float(np.max(edges[last + 1] / (1 + z)))) - ln_start) / options.rest_step)
    )
    rest_flux, rest_ivar = to_rest_frame(flux, ivar, z, grid, ln_start, options.rest_step, n_rest)
    x = ln_start + options.rest_step * (np.arange(n_rest) + 0.5)
    # 1. The mean, with every spectrum's amplitude. Its rest grid: where at least min_coverage
    #    spectra reach and the mean's inverse variance is at least MIN_INFORMATION x its median;
    #    pixels inside that fall short are interpolated, not learned.
    coverage = np.count_nonzero(rest_ivar > 0, axis=0)
    _, _, information = weighted_mean(rest_flux, rest_ivar)
    enough = coverage >= options.min_coverage
    enough &= information >= MIN_INFORMATION * np.median(information[enough]) if enough.any() else enough
    well = np.flatnonzero(enough)
    if well.size < 2:
        raise ConfigError(
            f"learned templates: no rest wavelength of {label} has data in min_coverage "
            f"({options.min_coverage}) training spectra"
        )
    span = slice(int(well[0]), int(well[-1]) + 1)
    rest_flux, rest_ivar, coverage, x = rest_flux[:, span], rest_ivar[:, span], coverage[span], x[span]
    poor = ~enough[span]
    rest_ivar[:, poor] = 0.0
    amplitude, mean, _ = weighted_mean(rest_flux, rest_ivar)
    mean = _interpolate_columns(mean[None], x, poor)[0]
    mean = mean / mean.mean()
    amplitude = (rest_ivar * rest_flux) @ mean / np.maximum(rest_ivar @ (mean * mean), 1e-300)
    # 2. Eigenvectors of the departures from it, flux / amplitude - mean with weight ivar x
    #    amplitude^2 (a spectrum whose amplitude is not positive holds no shape to learn).
    positive = amplitude > 0
    n_used = int(np.count_nonzero(positive & (rest_ivar > 0).any(axis=1)))
    if n_used < options.components + 2:
        raise ConfigError(
            f"learned templates: {label} has {n_used} spectra with data and a positive amplitude, "
            f"too few for {options.components} eigenvectors"
        )
    vectors = np.zeros((0, x.size))
    explained = np.zeros(0)
    chi2: list[float] = []
    if options.components:
        a = np.where(positive, amplitude, 1.0)[:, None]
        weight = np.where(positive[:, None], rest_ivar * a * a, 0.0)
        resid = np.where(weight > 0, rest_flux / a - mean[None, :], 0.0)
        vectors, _, variance, chi2 = weighted_eigenvectors(
            resid, weight, options.components, options.iterations, rng, RIDGE_SPECTRA
        )
        vectors = _interpolate_columns(vectors, x, poor)
        # orthogonal to the mean (a scale, not a shape), rms 1, sign by the largest component
        unit = mean / np.linalg.norm(mean)
        vectors = vectors - np.outer(vectors @ unit, unit)
        vectors = vectors / np.maximum(np.sqrt(np.mean(vectors * vectors, axis=1, keepdims=True)), 1e-300)
        vectors *= np.sign(vectors[np.arange(len(vectors)), np.argmax(np.abs(vectors), axis=1)])[:, None]
        explained = variance / max(variance.sum(), 1e-300)
    rest_wave = np.exp(x)
    log.info(
        "%s: %d spectra, z %.3f-%.3f, rest %.0f-%.0f A (%d pixels, %d interpolated), residual chi2 %s over "
        "%d iterations, eigenvectors hold %s of the departures' variance",
        label,
        len(z),
        z.min(),
        z.max(),
        rest_wave[0],
        rest_wave[-1],
        rest_wave.size,
        int(poor.sum()),
        f"{chi2[0]:.6g} -> {chi2[-1]:.6g}" if chi2 else "-",
        len(chi2),
        ", ".join(f"{v:.2f}" for v in explained),
    )
    return LearnedBasis(
        spectype,
        label,
        rest_wave,
        np.vstack([mean, vectors]).astype(np.float32),
        coverage.astype(np.int32),
        explained,
        int(len(z)),
        (float(z.min()), float(z.max())),
        observed,
    )


def learn_templates(
    train: str | Path,
    options: LearnOptions | dict[str, Any] | None = None,
    variants: dict[str, dict[str, Any]] | None = None,
) -> LearnedTemplates:
    """Every class's basis from a training split (a lymannet spectra file): the only file read."""
    started = time.perf_counter()
    options = options if isinstance(options, LearnOptions) else LearnOptions.from_dict(options)
    windows = fill_windows(variants)
    flux, ivar, truth, grid = read_training(train, windows)
    spectype = truth["SPECTYPE"].astype(str).str.strip().str.upper().to_numpy()
    subtype = (
        truth["SUBTYPE"].astype(str).str.strip().to_numpy()
        if "SUBTYPE" in truth
        else np.full(len(truth), "", object)
    )
    z = truth["Z"].to_numpy(np.float64)
    valid = np.isfinite(z) & (z > -1) & ((ivar > 0).sum(axis=1) > 0)
    classes = options.classes or sorted(set(spectype[valid]))
    rng = np.random.default_rng(options.seed)
    bases, skipped = [], {}
    for cls in classes:
        rows = np.flatnonzero(valid & (spectype == cls))
        groups = [(cls, rows)]
        if cls in options.subtype_classes:
            groups = [
                (f"{cls}:{s}" if s not in ("", "-1", "nan", "None") else cls, rows[subtype[rows] == s])
                for s in sorted(set(subtype[rows]))
            ]
            if any(len(g) < options.min_spectra for _, g in groups):
                log.warning(
                    "%s: a SUBTYPE group has fewer than %d spectra (%s): one basis for the class",
                    cls,
                    options.min_spectra,
                    {label: len(g) for label, g in groups},
                )
                groups = [(cls, rows)]
        for label, group in groups:
            if len(group) < options.min_spectra:
                skipped[label] = int(len(group))
                continue
            if len(group) > options.max_spectra:
                group = np.sort(rng.choice(group, options.max_spectra, replace=False))
            bases.append(learn_basis(flux[group], ivar[group], z[group], grid, options, cls, label, rng))
    if skipped:
        log.warning(
            "no template for %s: fewer than min_spectra (%d) training spectra", skipped, options.min_spectra
        )
    if not bases:
        raise ConfigError(
            f"learned templates: no class of {train} has min_spectra ({options.min_spectra}) spectra"
        )
    meta = {
        "format": FORMAT,
        "options": asdict(options),
        "grid": grid.to_dict(),
        "train": {"path": str(train), "sha256": file_sha256(train), "n_spectra": int(len(truth))},
        "fill_windows": {k: [list(w) for w in v] for k, v in windows.items()},
        "skipped": skipped,
        "seconds": round(time.perf_counter() - started, 2),
    }
    return LearnedTemplates(bases, meta)


def save_learned(path: str | Path, learned: LearnedTemplates, record: dict[str, Any] | None = None) -> None:
    """An .npz: per basis b<i>_<field>, and a JSON 'meta' (options, training file, provenance)."""
    arrays: dict[str, Any] = {}
    groups = []
    for i, b in enumerate(learned.bases):
        for name in ("rest_wave", "basis", "coverage", "explained"):
            arrays[f"b{i}_{name}"] = getattr(b, name)
        groups.append(
            {
                "spectype": b.spectype,
                "label": b.label,
                "n_spectra": b.n_spectra,
                "z_range": list(b.z_range),
                "observed": list(b.observed),
            }
        )
    meta = {**learned.meta, "groups": groups, "provenance": record or {}}
    arrays["meta"] = np.array(json.dumps(meta, sort_keys=True, default=str))
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as handle:
            np.savez_compressed(handle, **arrays)


def load_learned(path: str | Path) -> LearnedTemplates:
    try:
        with np.load(path, allow_pickle=False) as data:
            meta = json.loads(str(data["meta"]))
            if meta.get("format") != FORMAT:
                raise InputFileError(f"not a learned-templates file (format {meta.get('format')!r})", path)
            bases = [
                LearnedBasis(
                    g["spectype"],
                    g["label"],
                    data[f"b{i}_rest_wave"],
                    data[f"b{i}_basis"],
                    data[f"b{i}_coverage"],
                    data[f"b{i}_explained"],
                    int(g["n_spectra"]),
                    tuple(g["z_range"]),
                    tuple(g["observed"]),
                )
                for i, g in enumerate(meta["groups"])
            ]
    except (OSError, ValueError, KeyError) as error:
        raise InputFileError(f"unreadable learned-templates file ({error})", path) from None
    return LearnedTemplates(bases, meta)
