"""Snakemake `qso4m_score_dla_presence`: the presence CNN on all test segments -> ROC, AUC, rates."""


from typing import Any

import numpy as np
import pandas as pd

from lymannet.fileio import atomic_path, write_json_atomic
from lymannet.fourmost import features as ft
from lymannet.fourmost import plots
from lymannet.fourmost.io import read_ingested
from lymannet.fourmost.metrics import auc, roc_curve
from lymannet.fourmost.train import dla_inputs, load_model_file, predict_batches
from lymannet.runtime import run


def main(ingested: str, model: str, options: dict[str, Any], segments: str, metrics: str, roc: str) -> None:
    data = read_ingested(ingested, parts=("DLA",))
    network, payload = load_model_file(model)
    channels = dla_inputs(data, options)
    length = payload["info"]["n_pixels"]
    seg = ft.presence_segments(data, data.rows("test"), length, int(options["segment_stride"]), int(options["edge_pixels"]))
    logits = predict_batches(network, ft.cut_windows(channels, seg.rows, seg.starts, length))
    score = 1.0 / (1.0 + np.exp(-logits))
    table = pd.DataFrame({"ROW": seg.rows, "START": seg.starts, "LABEL": seg.label.astype(int), "AMBIGUOUS": seg.ambiguous,
                          "LOG_NHI": seg.log_n, "SNR": data.sightlines["SNR"].to_numpy()[seg.rows], "SCORE": score})
    with atomic_path(segments) as tmp:
        table.to_csv(tmp, index=False)
    clean = ~seg.ambiguous
    # Balanced like the slides' test set: every clean positive and as many clean negatives.
    balanced = ft.balance(seg, np.random.default_rng(0))
    predicted = score >= 0.5
    positive = seg.label == 1
    result = {
        "auc": auc(score[clean], seg.label[clean]),
        "auc_all_segments_ambiguous_included": auc(score, seg.label),
        "auc_balanced": auc(score[balanced], seg.label[balanced]),
        "n_segments": int(len(seg.rows)), "n_ambiguous": int(seg.ambiguous.sum()),
        "n_positive": int((positive & clean).sum()),
        "completeness_at_0.5": float(predicted[clean & positive].mean()) if (clean & positive).any() else float("nan"),
        "purity_at_0.5": float(positive[clean & predicted].mean()) if (clean & predicted).any() else float("nan"),
        "accuracy_balanced_at_0.5": float((predicted[balanced] == positive[balanced]).mean()),
        "parameters": payload["parameters"], "train_seconds": payload["train_seconds"],
        "epochs": len(payload["history"]["epoch"]), "n_train": payload["info"].get("n_train"),
    }
    write_json_atomic(metrics, result)
    fpr, tpr, _ = roc_curve(score[clean], seg.label[clean])
    plots.presence_figure(roc, fpr, tpr, result["auc"], table[clean], 0.5)


if "snakemake" in globals():
    run(main, snakemake.log[0], ingested=snakemake.input.ingested, model=snakemake.input.model,  # noqa: F821
        options=snakemake.params.options, segments=snakemake.output.segments,  # noqa: F821
        metrics=snakemake.output.metrics, roc=snakemake.output.roc)  # noqa: F821
