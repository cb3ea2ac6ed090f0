"""Snakemake `qso4m_score_dla_location`: sliding windows over test sightlines -> merged DLA
catalogue (z_abs, N_HI, confidence) -> matched to the truth within the tolerance."""


import logging
from typing import Any

import numpy as np
import pandas as pd

from lymannet.fileio import atomic_path, write_json_atomic
from lymannet.fourmost import features as ft
from lymannet.fourmost import plots
from lymannet.fourmost.io import read_ingested
from lymannet.fourmost.metrics import match_catalogue, merge_windows, nmad
from lymannet.fourmost.train import dla_inputs, load_model_file, predict_batches
from lymannet.lines import LYA
from lymannet.runtime import run

log = logging.getLogger("lymannet")


def main(ingested: str, model: str, options: dict[str, Any], catalogue: str, matched: str, metrics: str,
         figure: str) -> None:
    data = read_ingested(ingested, parts=("DLA",))
    network, payload = load_model_file(model)
    channels = dla_inputs(data, options)
    length = payload["info"]["n_pixels"]
    rows = data.rows("test")
    windows = ft.sliding_windows(data, rows, length, int(options["slide_stride"]))
    log.info("%d sliding windows over %d test sightlines", len(windows.rows), len(rows))
    out = predict_batches(network, ft.cut_windows(channels, windows.rows, ft.window_starts(windows.centres, length), length))
    probability = 1.0 / (1.0 + np.exp(-out[:, 0]))
    position = windows.centres + out[:, 1] * length / 4.0
    step = float(data.dla_wave[1] - data.dla_wave[0])
    cat = merge_windows(windows.rows, position, out[:, 2] + 20.8, probability, float(options["merge_threshold"]),
                        float(options["merge_radius_angstrom"]) / step)
    lam = ft.wavelength_of(data.dla_wave, cat["POSITION"].to_numpy())
    cat.insert(1, "FILE", data.sightlines["FILE"].to_numpy()[cat["ROW"].to_numpy()] if len(cat) else [])
    cat["Z_ABS"] = lam / LYA - 1
    truth = data.dlas[data.dlas["ROW"].isin(rows)].reset_index(drop=True)
    truth["POSITION"] = ft.pixel_of(data.dla_wave, LYA * (1 + truth["Z_ABS"].to_numpy()))
    tolerance = float(options["match_tolerance_angstrom"]) / step
    truth, cat = match_catalogue(truth, cat, tolerance)
    truth["SNR"] = data.sightlines["SNR"].to_numpy()[truth["ROW"].to_numpy()]
    truth["FOUND"] = truth["MATCH"] >= 0
    truth["DELTA_A"] = truth["DELTA"] * step
    # For the residual histogram: the nearest catalogue entry whatever its distance.
    nearest = []
    for row, pos in zip(truth["ROW"], truth["POSITION"]):
        mine = cat["POSITION"].to_numpy()[cat["ROW"].to_numpy() == row] if len(cat) else np.zeros(0)
        nearest.append((mine[np.argmin(np.abs(mine - pos))] - pos) * step if mine.size else np.nan)
    truth["NEAREST_DELTA_A"] = nearest
    with atomic_path(catalogue) as tmp:
        cat[["FILE", "ROW", "Z_ABS", "LOG_NHI", "CONFIDENCE", "N_WINDOWS", "TRUE_MATCH"]].to_csv(tmp, index=False)
    with atomic_path(matched) as tmp:
        truth.to_csv(tmp, index=False)
    high = truth["SNR"] > float(options["snr_min"])
    found = truth["FOUND"].to_numpy()
    err = (truth["PRED_LOG_NHI"] - truth["LOG_NHI"]).to_numpy()[found]
    dz = truth["DELTA_A"].to_numpy()[found]
    result = {
        "n_true_dlas": int(len(truth)), "n_catalogue": int(len(cat)),
        "fraction_found_within_tolerance": float(found.mean()) if len(truth) else float("nan"),
        "fraction_found_within_tolerance_snr_gt_min": float(found[high].mean()) if high.any() else float("nan"),
        "n_true_dlas_snr_gt_min": int(high.sum()),
        "purity": float((cat["TRUE_MATCH"] >= 0).mean()) if len(cat) else float("nan"),
        "n_false_positives": int((cat["TRUE_MATCH"] < 0).sum()) if len(cat) else 0,
        "position_rms_angstrom": float(np.sqrt(np.mean(dz**2))) if dz.size else float("nan"),
        "position_rms_pixels_native_0.25A": float(np.sqrt(np.mean(dz**2)) / 0.25) if dz.size else float("nan"),
        "log_nhi_rms_dex": float(np.sqrt(np.mean(err**2))) if err.size else float("nan"),
        "log_nhi_nmad_dex": nmad(err), "log_nhi_bias_dex": float(np.mean(err)) if err.size else float("nan"),
        "tolerance_angstrom": float(options["match_tolerance_angstrom"]), "snr_min": float(options["snr_min"]),
        "parameters": payload["parameters"], "train_seconds": payload["train_seconds"],
        "epochs": len(payload["history"]["epoch"]), "n_train": payload["info"].get("n_train"),
    }
    write_json_atomic(metrics, result)
    plot_table = truth.assign(DELTA_A=truth["NEAREST_DELTA_A"])
    plots.location_figure(figure, plot_table, float(options["match_tolerance_angstrom"]), float(options["snr_min"]))


if "snakemake" in globals():
    run(main, snakemake.log[0], ingested=snakemake.input.ingested, model=snakemake.input.model,  # noqa: F821
        options=snakemake.params.options, catalogue=snakemake.output.catalogue, matched=snakemake.output.matched,  # noqa: F821
        metrics=snakemake.output.metrics, figure=snakemake.output.figure)  # noqa: F821
