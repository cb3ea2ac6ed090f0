"""Snakemake `fourmost_ingest`: truth list + per-file spectra -> one ingested FITS on the analysis grids."""

import logging
from typing import Any

from lymannet.fileio import provenance
from lymannet.fourmost.ingest import IngestOptions, ingest
from lymannet.runtime import run


def main(truth: str, dlas: str, ingested: str, options: dict[str, Any], seed: int) -> None:
    opts = IngestOptions(
        z_grid=options["z_grid"],
        dla_rebin=int(options["dla_rebin"]),
        split=options["split"],
        chunk=int(options["chunk"]),
        seed=seed,
    )
    record = provenance({"ingest": options, "seed": seed}, {"truth": truth, "dlas": dlas})
    counts = ingest(truth, dlas, ingested, opts, record)
    logging.getLogger("lymannet").info("split sizes: %s", counts)


if "snakemake" in globals():
    run(
        main,
        snakemake.log[0],
        truth=snakemake.input.truth,
        dlas=snakemake.input.dlas,  # noqa: F821
        ingested=snakemake.output.ingested,
        options=snakemake.params.options,
        seed=snakemake.params.seed,
    )  # noqa: F821
