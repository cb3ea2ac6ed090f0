"""Snakemake `fourmost_summary`: every 4MOST figure of merit in one CSV + Markdown table, and the
MAPE-vs-z comparison of the redshift regressors."""

import json
from pathlib import Path

import pandas as pd

from lymannet.fileio import atomic_path, write_text_atomic
from lymannet.fourmost import plots
from lymannet.fourmost.dla_catalogue import summary_rows
from lymannet.fourmost.summary import summary_markdown, summary_table
from lymannet.runtime import run


def _load(path: str | None) -> dict | None:
    return json.loads(Path(path).read_text()) if path else None


def main(
    redshift: list[str],
    presence: str | None,
    location: str | None,
    size: str,
    csv: str,
    md: str,
    comparison: str,
) -> None:
    metrics = _load(location)
    # the DLA catalogue at nature's incidence (lymannet.fourmost.dla_catalogue), when calibrated
    catalogue = summary_rows(metrics) if metrics and "calibrated" in metrics else []
    table = summary_table([_load(path) for path in redshift], _load(presence), metrics, catalogue)
    with atomic_path(csv) as tmp:
        table.to_csv(tmp, index=False)
    write_text_atomic(md, summary_markdown(table, size))
    predictions = [pd.read_csv(Path(path).with_name("predictions.csv")) for path in redshift]
    plots.comparison_figure(
        comparison,
        [
            (_load(path)["model"], p["Z_TRUE"].to_numpy(), p["Z_PRED"].to_numpy())
            for path, p in zip(redshift, predictions)
        ],
    )


if "snakemake" in globals():
    run(
        main,
        snakemake.log[0],
        redshift=list(snakemake.input.redshift),  # noqa: F821
        presence=snakemake.input.get("presence"),
        location=snakemake.input.get("location"),  # noqa: F821
        size=snakemake.params.size,
        csv=snakemake.output.csv,
        md=snakemake.output.md,  # noqa: F821
        comparison=snakemake.output.comparison,
    )  # noqa: F821
