"""Snakemake `fourmost_study`: one of the slides' studies (batch size, sample size) -> table + figure."""

import json
from pathlib import Path

import pandas as pd

from lymannet.fileio import atomic_path
from lymannet.fourmost import plots
from lymannet.runtime import run


def main(metrics: list[str], histories: list[str], labels: list, study: str, csv: str, figure: str) -> None:
    rows, curves = [], []
    for (model, variant), metrics_path, history_path in zip(labels, metrics, histories):
        m = json.loads(Path(metrics_path).read_text())
        history = pd.read_csv(history_path)
        rows.append(
            {
                "study": study,
                "model": model,
                "variant": variant,
                "mape_percent": m["mape_percent"],
                "catastrophic_fraction": m["catastrophic_fraction"],
                "n_train": m.get("n_train"),
                "epochs": m["epochs"],
                "train_seconds": m["train_seconds"],
                "stop_reason": history["stop_reason"].iloc[-1] if "stop_reason" in history else "",
            }
        )
        curves.append((f"{model} {variant}", history))
    table = pd.DataFrame(rows)
    with atomic_path(csv) as tmp:
        table.to_csv(tmp, index=False)
    plots.study_figure(figure, study, table, curves)


if "snakemake" in globals():
    run(
        main,
        snakemake.log[0],
        metrics=list(snakemake.input.metrics),
        histories=list(snakemake.input.histories),  # noqa: F821
        labels=[tuple(x) for x in snakemake.params.labels],
        study=snakemake.params.study,  # noqa: F821
        csv=snakemake.output.csv,
        figure=snakemake.output.figure,
    )  # noqa: F821
