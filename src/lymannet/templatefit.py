"""A classical baseline, chi-square template fitting over redshift and class as Redrock does: its
options and its templates.

The fit itself (coarse and fine redshift scans, Legendre polynomial, ZWARN, Delta-chi2
confidence, a test set's catalogue) is :mod:`lymannet.chi2fit`; here are its options
(:class:`TemplateFitOptions`, the config's ``baseline.template_fit``), the templates it fits on a
network grid (:class:`TemplateSet`), and the simulator's templates (:func:`build_template_set`).

Two template sources share this fit. :func:`build_template_set` (the summary's ``template_fit`` row)
takes the simulator's own noiseless renderers (:data:`lymannet.simulate.RENDERERS`): an oracle on
simulated data, described below. :func:`lymannet.templatefit_learned.build_learned_template_set`
(``template_fit_learned``) learns per class a mean spectrum and eigenvectors from a training split,
as Redrock's templates are made; there each class is a basis of K vectors (models (V, K, Z, P)),
fitted at each redshift by linear least squares with the mean's amplitude >= 0 (or free) and the
eigenvectors free (:func:`lymannet.chi2fit._chi2_basis`); single templates (K = 1) keep the closed
form of :func:`lymannet.chi2fit._chi2`. Everything else (scans, parabola, ZWARN, confidence,
catalogue) is the same code.

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
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from .arms import NativeRebinner
from .errors import ConfigError
from .grid import Grid
from .igm import InoueIGM
from .lines import LYA

log = logging.getLogger("lymannet.templatefit")

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
    (learned, lymannet.templatefit_learned: vector 0 the mean, amplitude >= 0 unless
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
