"""Snakemake `fourmost_simulate`: 4MOST-like quasar spectra, one FITS file each, + truth list + DLA table."""

from typing import Any

from lymannet.fourmost import plots
from lymannet.fourmost.io import write_simulation
from lymannet.fourmost.spectrograph import wavelength_grid
from lymannet.runtime import run


def main(spec: dict[str, Any], seed: int, spectra: str, truth: str, dlas: str, examples: str) -> None:
    plots.examples_figure(examples, wavelength_grid(), write_simulation(spec, seed, spectra, truth, dlas))


if "snakemake" in globals():
    run(
        main,
        snakemake.log[0],
        spec=snakemake.params.spec,
        seed=snakemake.params.seed,  # noqa: F821
        spectra=snakemake.output.spectra,
        truth=snakemake.output.truth,
        dlas=snakemake.output.dlas,  # noqa: F821
        examples=snakemake.output.examples,
    )  # noqa: F821
