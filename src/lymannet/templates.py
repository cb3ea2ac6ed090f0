"""Synthetic template spectra made continuous in redshift (rule `resample_templates`, thesis 3.5.2).

The template set comes at discrete redshifts (2.0 + 0.1 k); each spectrum is moved to
z1 = z0 + U(-w/2, w/2) by scaling its native wavelengths by (1+z1)/(1+z0) (eq. 3.1) and rebinning,
with the IGM, noise and ends of z1 (:func:`lymannet.reshift.shift_galaxy`, as the `shift` op): even
a 0.05 offset would otherwise leave up to 120 A of empty red end that only template LBGs carry.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .chunks import CHUNK_ROWS, Layout, copy_truth, read_chunk, row_slices
from .config import job_seed
from .errors import ConfigError, InputFileError
from .figures import save_figure
from .fileio import provenance
from .reshift import shift_galaxy
from .runtime import Progress
from .spectra import SpectraFile, SpectraWriter


def resample_templates(
    pool: str | Path,
    output: str | Path,
    plot: str | Path,
    offset_width: float,
    seed: int,
    dataset: str,
    config_slice: Any = None,
    chunk_rows: int = CHUNK_ROWS,
) -> pd.DataFrame:
    """Thesis 3.5.2: z1 = z0 + U(-w/2, w/2) per spectrum, wavelengths scaled by (1+z1)/(1+z0)
    on the native layer (eq. 3.1) with z1's IGM, noise and ends (:func:`lymannet.reshift.shift_galaxy`),
    on the network and native grids (both kept, so that variants can shift again). Returns the
    new truth; plots z before/after."""
    if isinstance(offset_width, bool) or not isinstance(offset_width, (int, float)) or offset_width < 0:
        raise ConfigError(
            f"resample_templates.{dataset}.offset_width must be a number >= 0, not {offset_width!r}"
        )
    label = f"resampled:{dataset}"
    with SpectraFile(pool) as source:
        if not source.has_native:
            raise InputFileError("resample_templates needs the native layer (NATIVE_FLUX)", pool)
        layout = Layout.of(source)
        rng = np.random.default_rng(job_seed(seed, "resample_templates", dataset))
        z0 = source.truth["Z"].to_numpy(np.float64)
        z1 = np.maximum(z0 + rng.uniform(-offset_width / 2, offset_width / 2, len(z0)), 0.0)
        truth = source.truth.copy()
        truth["Z"], truth["Z_ORIG"] = z1, z0
        truth = copy_truth(truth, label, label)
        record = provenance(config_slice, {"pool": pool})
        progress = Progress(len(source), "spectra")
        with SpectraWriter(
            output, len(source), layout.wavelength, layout.grid, layout.native_wavelength, record
        ) as writer:
            for _, start, stop in row_slices(len(source), chunk_rows):
                chunk = read_chunk(source, start, stop, native=True)
                flux, ivar, native_flux, native_ivar, _ = shift_galaxy(
                    layout.native_wavelength,
                    chunk.native_flux,
                    chunk.native_ivar,
                    chunk.ivar,
                    z0[start:stop],
                    z1[start:stop],
                    layout.grid,
                    rng,
                )
                writer.write(flux, ivar, truth.iloc[start:stop], native_flux, native_ivar)
                progress.update(stop - start)
        progress.done()
    plot_redshift_resampling(z0, z1, plot, dataset)
    return truth


def plot_redshift_resampling(z0: np.ndarray, z1: np.ndarray, path: str | Path, dataset: str) -> None:
    """Thesis fig. 3.12: discrete z before, continuous z after."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(7, 4))
    both = np.concatenate([z0, z1]) if len(z0) else np.array([0.0, 1.0])
    bins = np.arange(both.min() - 0.01, both.max() + 0.02, 0.01)
    axis.hist(z0, bins=bins, histtype="step", color="k", label=f"before ({len(z0)})")
    axis.hist(z1, bins=bins, histtype="stepfilled", alpha=0.5, color="tab:orange", label="after resampling")
    axis.set(xlabel="redshift", ylabel="spectra per 0.01", title=f"{dataset}: z before / after resampling")
    axis.legend()
    save_figure(figure, path)
