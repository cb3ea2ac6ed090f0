"""Snakemake script: simulate one data set (DESI coadd + truth table) from its config block."""

import logging

from lymannet.runtime import run
from lymannet.simulate import simulate_dataset

log = logging.getLogger("lymannet.simulate")


def main(spec: dict, seed: int, dataset: str, coadd: str, truth: str) -> None:
    summary = simulate_dataset(spec, seed, dataset, coadd, truth)
    log.info("simulated %s: %s", dataset, summary)


if "snakemake" in globals():
    run(
        main,
        snakemake.log[0],
        spec=snakemake.params.spec,
        seed=snakemake.params.seed,  # noqa: F821
        dataset=snakemake.wildcards.dataset,
        coadd=snakemake.output.coadd,
        truth=snakemake.output.truth,
    )  # noqa: F821
