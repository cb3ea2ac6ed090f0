"""Snakemake `fourmost_calibrate_dla`: the DLA networks on the validation split reweighted to nature's
DLA incidence -> prior correction, beta calibration, the working point, BAL handling (mask or taught,
measured), NHI_ERR; the calibrated model files, the record and the reliability diagrams."""

from pathlib import Path
from typing import Any

import torch

from lymannet.fileio import atomic_path, write_json_atomic
from lymannet.fourmost import plots
from lymannet.fourmost.dla_calibration import calibrate_dla, sha256_short
from lymannet.fourmost.ingest import read_ingested
from lymannet.modelfile import load_fourmost_model_file as load_model_file
from lymannet.runtime import run


def write_calibrated(source: str, path: str, calibration: dict[str, Any]) -> None:
    """The model file `source` with the calibration under ``calibration`` (written atomically)."""
    payload = torch.load(source, map_location="cpu", weights_only=False)
    payload["calibration"] = calibration
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)


def main(
    ingested: str,
    localisers: list[str],
    presence: str | None,
    options: dict[str, Any],
    simulate: dict[str, Any],
    location_out: str,
    presence_out: str | None,
    record_out: str,
    figure: str,
) -> None:
    data = read_ingested(ingested, parts=("DLA",))
    models = {Path(path).stem: load_model_file(path) for path in localisers}
    hashes = {
        Path(path).stem: sha256_short(path) for path in list(localisers) + ([presence] if presence else [])
    }
    loaded_presence = load_model_file(presence) if presence else None
    record = calibrate_dla(data, loaded_presence, models, options, simulate, hashes)
    chosen = record["variants"][record["bal_method"]]["model"]
    write_calibrated(localisers[[Path(p).stem for p in localisers].index(chosen)], location_out, record)
    if presence and presence_out:
        write_calibrated(presence, presence_out, record["presence"])
    write_json_atomic(record_out, record)
    plots.dla_reliability_figure(figure, record, "validation split, weighted to nature's DLA incidence")


if "snakemake" in globals():
    run(
        main,
        snakemake.log[0],
        ingested=snakemake.input.ingested,
        localisers=list(snakemake.input.localisers),  # noqa: F821
        presence=snakemake.input.get("presence"),
        options=snakemake.params.options,  # noqa: F821
        simulate=snakemake.params.simulate,
        location_out=snakemake.output.location,  # noqa: F821
        presence_out=snakemake.output.get("presence"),
        record_out=snakemake.output.record,  # noqa: F821
        figure=snakemake.output.figure,
    )  # noqa: F821
