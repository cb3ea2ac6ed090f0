"""Snakemake `fourmost_score_dla_location`: sliding windows over test sightlines -> merged DLA
catalogue (z_abs, N_HI, confidence) -> matched to the truth within the tolerance."""


from typing import Any

from lymannet.fileio import atomic_path, write_json_atomic
from lymannet.fourmost import plots
from lymannet.fourmost.io import read_ingested
from lymannet.fourmost.score import CATALOGUE_COLUMNS, score_location
from lymannet.fourmost.train import load_model_file
from lymannet.runtime import run


def main(ingested: str, model: str, options: dict[str, Any], catalogue: str, matched: str, metrics: str,
         figure: str) -> None:
    network, payload = load_model_file(model)
    result = score_location(read_ingested(ingested, parts=("DLA",)), network, payload, options)
    with atomic_path(catalogue) as tmp:
        result.catalogue[CATALOGUE_COLUMNS].to_csv(tmp, index=False)
    with atomic_path(matched) as tmp:
        result.truth.to_csv(tmp, index=False)
    write_json_atomic(metrics, result.metrics)
    plots.location_figure(figure, result.truth.assign(DELTA_A=result.truth["NEAREST_DELTA_A"]),
                          float(options["match_tolerance_angstrom"]), float(options["snr_min"]))


if "snakemake" in globals():
    run(main, snakemake.log[0], ingested=snakemake.input.ingested, model=snakemake.input.model,  # noqa: F821
        options=snakemake.params.options, catalogue=snakemake.output.catalogue, matched=snakemake.output.matched,  # noqa: F821
        metrics=snakemake.output.metrics, figure=snakemake.output.figure)  # noqa: F821
