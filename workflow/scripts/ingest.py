"""Ingest DESI coadd files and their truth catalogue into one spectra file on the network grid.

snakemake: input.coadds (list of coadd FITS), input.truth (optional; FITS or CSV), output[0]
(results/ingested/<dataset>.fits), params.grid (config `grid:`), params.options (config `ingest:`),
wildcards.dataset, log[0].
"""

import logging
from typing import Any

from lymannet.grid import Grid
from lymannet.ingest import ingest
from lymannet.runtime import run

log = logging.getLogger("lymannet.ingest")


def main(
    coadds: list[str], truth: str | None, grid: dict, options: dict[str, Any], dataset: str, output: str
) -> None:
    config_slice = {"dataset": dataset, "grid": dict(grid), "ingest": dict(options)}
    counts = ingest(
        list(coadds),
        truth or None,
        Grid.from_config(grid),
        output,
        dataset,
        dict(options),
        config_slice=config_slice,
    )
    log.info("%s: kept %d of %d spectra read", dataset, counts["kept"], counts["read"])


if "snakemake" in globals():
    run(
        main,
        snakemake.log[0],
        coadds=list(snakemake.input.coadds),
        truth=snakemake.input.get("truth"),
        grid=snakemake.params.grid,
        options=snakemake.params.options,
        dataset=snakemake.wildcards.dataset,
        output=snakemake.output[0],
    )
