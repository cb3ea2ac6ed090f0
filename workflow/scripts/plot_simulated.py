"""Snakemake `plot_simulated` rule: example spectra of a simulated data set, lines marked.

snakemake: input.coadd, input.truth (the simulator's outputs); output.png; log[0].
"""

from lymannet.runtime import run
from lymannet.simulated_figure import plot_simulated_examples

if "snakemake" in globals():
    run(
        plot_simulated_examples,
        snakemake.log[0],
        coadd=snakemake.input.coadd,
        truth=snakemake.input.truth,
        png=snakemake.output.png,
    )
