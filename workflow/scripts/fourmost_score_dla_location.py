"""Snakemake `fourmost_score_dla_location`: sliding windows over test sightlines -> merged DLA
catalogue (z_abs, N_HI, confidence) -> matched to the truth within the tolerance; then the
calibrated catalogue (DLA_PROB at nature's incidence, the validation working point, BAL handling,
NHI_ERR) with its scores before and after each step, written in the DESI DLA-catalogue style."""

from pathlib import Path
from typing import Any

import torch

from lymannet.fileio import atomic_path, write_json_atomic
from lymannet.fourmost import plots
from lymannet.fourmost.dla_catalogue import (
    catalogue_header,
    catalogue_table,
    score_dla_catalogue,
    write_catalogue,
)
from lymannet.fourmost.ingest import read_ingested
from lymannet.fourmost.localisation import CATALOGUE_COLUMNS, score_location, window_votes
from lymannet.modelfile import load_fourmost_model_file as load_model_file
from lymannet.runtime import run


def main(
    ingested: str,
    model: str,
    localisers: list[str],
    calibrated: str,
    presence: str | None,
    options: dict[str, Any],
    catalogue: str,
    matched: str,
    metrics: str,
    dla_catalogue: str,
    figure: str,
    reliability: str,
) -> None:
    data = read_ingested(ingested, parts=("DLA",))
    network, payload = load_model_file(model)
    votes = {"location": window_votes(data, network, payload["info"]["n_pixels"], options, data.rows("test"))}
    result = score_location(data, network, payload, options, votes=votes["location"])
    with atomic_path(catalogue) as tmp:
        result.catalogue[CATALOGUE_COLUMNS].to_csv(tmp, index=False)
    with atomic_path(matched) as tmp:
        result.truth.to_csv(tmp, index=False)
    plots.location_figure(
        figure,
        result.truth.assign(DELTA_A=result.truth["NEAREST_DELTA_A"]),
        float(options["match_tolerance_angstrom"]),
        float(options["snr_min"]),
    )
    record = torch.load(calibrated, map_location="cpu", weights_only=False)["calibration"]
    models = {Path(path).stem: load_model_file(path) for path in localisers}
    cat, _, calibrated_metrics = score_dla_catalogue(
        data, models, record, options, load_model_file(presence) if presence else None, votes
    )
    write_catalogue(dla_catalogue, catalogue_table(data, cat), catalogue_header(record, "test"))
    write_json_atomic(metrics, {**result.metrics, "calibrated": calibrated_metrics})
    plots.dla_reliability_figure(
        reliability, calibrated_metrics, "test split, nature's DLA incidence", ladder=True
    )


if "snakemake" in globals():
    run(
        main,
        snakemake.log[0],
        ingested=snakemake.input.ingested,
        model=snakemake.input.model,  # noqa: F821
        localisers=list(snakemake.input.localisers),
        calibrated=snakemake.input.calibrated,  # noqa: F821
        presence=snakemake.input.get("presence"),
        options=snakemake.params.options,  # noqa: F821
        catalogue=snakemake.output.catalogue,
        matched=snakemake.output.matched,  # noqa: F821
        metrics=snakemake.output.metrics,
        dla_catalogue=snakemake.output.dla_catalogue,  # noqa: F821
        figure=snakemake.output.figure,
        reliability=snakemake.output.reliability,
    )  # noqa: F821
