"""Snakemake `fourmost_score_dla_presence`: the presence CNN on all test segments -> ROC, AUC, rates."""

from typing import Any

from lymannet.fileio import atomic_path, write_json_atomic
from lymannet.fourmost import plots
from lymannet.fourmost.ingest import read_ingested
from lymannet.fourmost.score import PRESENCE_THRESHOLD, presence_roc, score_presence
from lymannet.modelfile import load_fourmost_model_file as load_model_file
from lymannet.runtime import run


def main(ingested: str, model: str, options: dict[str, Any], segments: str, metrics: str, roc: str) -> None:
    network, payload = load_model_file(model)
    table, result = score_presence(read_ingested(ingested, parts=("DLA",)), network, payload, options)
    with atomic_path(segments) as tmp:
        table.to_csv(tmp, index=False)
    write_json_atomic(metrics, result)
    plots.presence_figure(
        roc,
        presence_roc(table),
        result["auc"],
        presence_roc(table, unambiguous=True),
        result["auc_unambiguous"],
        table,
        PRESENCE_THRESHOLD,
    )


if "snakemake" in globals():
    run(
        main,
        snakemake.log[0],
        ingested=snakemake.input.ingested,
        model=snakemake.input.model,  # noqa: F821
        options=snakemake.params.options,
        segments=snakemake.output.segments,  # noqa: F821
        metrics=snakemake.output.metrics,
        roc=snakemake.output.roc,
    )  # noqa: F821
