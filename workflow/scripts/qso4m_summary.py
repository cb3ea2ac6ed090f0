"""Snakemake `qso4m_summary`: every 4MOST figure of merit in one CSV + Markdown table, and the
MAPE-vs-z comparison of the redshift regressors."""


import json
from pathlib import Path

import pandas as pd

from lymannet.fileio import atomic_path, write_text_atomic
from lymannet.fourmost import plots
from lymannet.runtime import run

SLIDES = {"dense": "test loss 0.0441, 548M parameters, 6,776 s", "gru": "MAPE 1.14%, 7,548 s",
          "quasarnet": "(not in the slides)", "presence": "AUC 0.9154, 84,865 parameters",
          "location": "accuracy ~90%"}


def _load(path: str) -> dict:
    return json.loads(Path(path).read_text())


def main(redshift: list[str], presence: str | None, location: str | None, size: str, csv: str, md: str,
         comparison: str) -> None:
    rows, entries = [], []
    for path in redshift:
        m = _load(path)
        rows.append({"pipeline": "redshift", "model": m["model"], "figure": "MAPE [%]", "value": m["mape_percent"],
                     "catastrophic (|dz|>0.1)": f"{m['n_catastrophic']}/{m['n']}", "parameters": m["parameters"],
                     "train_seconds": m["train_seconds"], "epochs": m["epochs"], "slides": SLIDES[m["model"]]})
        predictions = pd.read_csv(Path(path).with_name("predictions.csv"))
        entries.append((m["model"], predictions["Z_TRUE"].to_numpy(), predictions["Z_PRED"].to_numpy()))
    if presence:
        m = _load(presence)
        rows.append({"pipeline": "dla_presence", "model": "presence", "figure": "AUC", "value": m["auc"],
                     "catastrophic (|dz|>0.1)": "", "parameters": m["parameters"], "train_seconds": m["train_seconds"],
                     "epochs": m["epochs"], "slides": SLIDES["presence"]})
    if location:
        m = _load(location)
        for figure, key in ((f"found within {m['tolerance_angstrom']:g} A, S/N>{m['snr_min']:g}",
                             "fraction_found_within_tolerance_snr_gt_min"),
                            ("log N_HI rms [dex]", "log_nhi_rms_dex"), ("catalogue purity", "purity")):
            rows.append({"pipeline": "dla_location", "model": "location", "figure": figure, "value": m[key],
                         "catastrophic (|dz|>0.1)": "", "parameters": m["parameters"],
                         "train_seconds": m["train_seconds"], "epochs": m["epochs"], "slides": SLIDES["location"]})
    table = pd.DataFrame(rows)
    with atomic_path(csv) as tmp:
        table.to_csv(tmp, index=False)
    lines = [f"# 4MOST quasar pipelines: {size} set (test split)", "",
             "| " + " | ".join(table.columns) + " |", "|" + "---|" * len(table.columns)]
    for _, r in table.iterrows():
        cells = [f"{v:.4g}" if isinstance(v, float) else str(v) for v in r]
        lines.append("| " + " | ".join(cells) + " |")
    write_text_atomic(md, "\n".join(lines) + "\n")
    plots.comparison_figure(comparison, entries)


if "snakemake" in globals():
    run(main, snakemake.log[0], redshift=list(snakemake.input.redshift),  # noqa: F821
        presence=snakemake.input.get("presence"), location=snakemake.input.get("location"),  # noqa: F821
        size=snakemake.params.size, csv=snakemake.output.csv, md=snakemake.output.md,  # noqa: F821
        comparison=snakemake.output.comparison)  # noqa: F821
