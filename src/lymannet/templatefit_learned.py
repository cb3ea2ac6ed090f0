"""The learned-template baseline (``template_fit_learned``): the bases learned from a training split
(:mod:`lymannet.learned_templates`) as a template set for the chi-square fit (:mod:`lymannet.chi2fit`),
and a test set's prediction catalogue.

**Fit** (:func:`build_learned_template_set`): a class's basis vectors are interpolated at each
network pixel centre moved to the rest frame of every trial redshift (they already carry the
observed pixels' width: no further bin averaging), over the class's redshift range in the
training split (``z_ranges`` overrides it) narrowed so that every trial redshift sees the
template over the whole observed range. Coefficients: the mean's amplitude >= 0 and the
eigenvectors free (``mean_amplitude: nonnegative``, default), or all free as Redrock does
(``free``).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .chi2fit import predict_testset_templatefit
from .errors import ConfigError, InputFileError
from .grid import Grid
from .learned_templates import LearnedBasis, LearnedTemplates, load_learned
from .templatefit import TemplateFitOptions, TemplateSet, z_grid

log = logging.getLogger("lymannet.templatefit_learned")

MEAN_AMPLITUDES = ("nonnegative", "free")


def class_z_range(
    spectype: str, bases: list[LearnedBasis], options: TemplateFitOptions
) -> tuple[float, float]:
    """The configured range, else the class's training redshifts narrowed to those at which every
    basis covers the observed range with data: lambda_obs,max / rest_max - 1 <= z <= lambda_obs,min / rest_min - 1.
    """
    if spectype in options.z_ranges:
        lo, hi = (float(v) for v in options.z_ranges[spectype])
        if hi < lo or lo <= -1:
            raise ConfigError(
                f"baseline.learned_templates.z_ranges.{spectype} must be [low, high] with -1 < low <= high"
            )
        return lo, hi
    lo = min(b.z_range[0] for b in bases)
    hi = max(b.z_range[1] for b in bases)
    fit_lo = max(b.observed[1] / b.rest_wave[-1] - 1 for b in bases)
    fit_hi = min(b.observed[0] / b.rest_wave[0] - 1 for b in bases)
    if max(lo, fit_lo) <= min(hi, fit_hi):
        lo, hi = max(lo, fit_lo), min(hi, fit_hi)
    else:
        log.warning(
            "%s: no redshift sees its templates over the whole observed range; fitting its training "
            "range %.3f-%.3f with the templates' end values beyond them",
            spectype,
            lo,
            hi,
        )
    return lo, hi


def build_learned_template_set(
    grid: Grid,
    learned: LearnedTemplates | str | Path,
    options: TemplateFitOptions | dict[str, Any] | None = None,
    mean_amplitude: str = "nonnegative",
) -> TemplateSet:
    """Every learned class's basis on `grid` over its fine redshift grid (no IGM: the training
    spectra carried theirs): models (V, K, Z, P), V the class's SUBTYPE groups (1 without)."""
    started = time.perf_counter()
    source = (
        str(learned)
        if not isinstance(learned, LearnedTemplates)
        else learned.meta.get("train", {}).get("path")
    )
    learned = learned if isinstance(learned, LearnedTemplates) else load_learned(learned)
    options = options if isinstance(options, TemplateFitOptions) else TemplateFitOptions.from_dict(options)
    if mean_amplitude not in MEAN_AMPLITUDES:
        raise ConfigError(
            f"baseline.learned_templates.mean_amplitude must be one of {MEAN_AMPLITUDES}, "
            f"not {mean_amplitude!r}"
        )
    classes = [c.upper() for c in options.classes] or learned.classes
    missing = sorted(set(classes) - set(learned.classes))
    if missing:
        raise ConfigError(
            f"baseline.learned_templates.classes: {missing} have no learned template; "
            f"learned: {learned.classes}"
        )
    trained_on = learned.meta.get("grid")
    if trained_on and Grid(**trained_on) != grid:
        log.warning(
            "templates learned on grid %s, fitted on %s: they carry the training grid's pixel width",
            trained_on,
            grid.to_dict(),
        )
    ln_centres = np.log(np.asarray(grid.centres, np.float64))
    z_by_class, models, labels = {}, {}, {}
    for spectype in classes:
        bases = learned.of_class(spectype)
        z = z_grid(*class_z_range(spectype, bases, options), options.z_step)
        n_basis = {b.basis.shape[0] for b in bases}
        if len(n_basis) != 1:
            raise InputFileError(
                f"{spectype}: its groups have different numbers of basis vectors {n_basis}", source
            )
        out = np.empty((len(bases), n_basis.pop(), z.size, grid.n_pixels), np.float32)
        ln_rest = ln_centres[None, :] - np.log1p(z)[:, None]  # (Z, P)
        for v, b in enumerate(bases):
            x = np.log(np.asarray(b.rest_wave, np.float64))
            for k in range(b.basis.shape[0]):
                out[v, k] = np.interp(ln_rest, x, b.basis[k].astype(np.float64))
        z_by_class[spectype], models[spectype], labels[spectype] = z, out, [b.label for b in bases]
    tset = TemplateSet(
        np.asarray(grid.wavelength, float),
        z_by_class,
        models,
        labels,
        options.coarse_factor,
        mean_amplitude=mean_amplitude,
        source=f"learned from {source}",
    )
    for spectype in classes:
        tset.coarse_matrices(spectype)  # built here, so that the fit's timing is the fit's alone
        tset.fine_models(spectype)
    tset.build_seconds = time.perf_counter() - started
    log.info(
        "learned template set: %s on a %d-pixel grid, built in %.1f s",
        ", ".join(
            f"{c} {models[c].shape[0]}x{models[c].shape[1]} vectors x {z_by_class[c].size} z "
            f"({z_by_class[c][0]:.3f}-{z_by_class[c][-1]:.3f})"
            for c in classes
        ),
        grid.n_pixels,
        tset.build_seconds,
    )
    return tset


def predict_testset_learned(
    testset: str | Path,
    templates: str | Path,
    output: str | Path,
    fit_options: dict[str, Any] | None = None,
    predict_options: dict[str, Any] | None = None,
    name: str = "template_fit_learned",
) -> pd.DataFrame:
    """The template fit of :func:`lymannet.chi2fit.predict_testset_templatefit` with learned templates."""
    fit_options = dict(fit_options or {})
    mean_amplitude = str(fit_options.pop("mean_amplitude", "nonnegative"))
    learned = load_learned(templates)

    def source(grid: Grid, opts: TemplateFitOptions) -> TemplateSet:
        return build_learned_template_set(grid, learned, opts, mean_amplitude)

    config = {
        "mean_amplitude": mean_amplitude,
        "learned": {k: learned.meta.get(k) for k in ("options", "train", "groups")},
    }
    return predict_testset_templatefit(
        testset,
        output,
        fit_options,
        predict_options,
        name,
        template_source=source,
        source_inputs={"templates": templates},
        source_config=config,
    )
