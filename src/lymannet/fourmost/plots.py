"""Report figures of the 4MOST pipelines."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from ..calibrate import reliability_axes  # noqa: E402
from ..figures import save_figure  # noqa: E402
from ..lines import LYA  # noqa: E402
from .dla_catalogue import RUNGS  # noqa: E402
from .metrics import binned_rate  # noqa: E402


def examples_figure(
    path: str | Path, wave: np.ndarray, spectra: list[tuple[np.ndarray, float, list[tuple[float, float]]]]
) -> None:
    """Simulated spectra with their DLAs marked: [(flux, z_qso, [(z_abs, log_n), ...]), ...]."""
    fig, axes = plt.subplots(len(spectra), 1, figsize=(11, 2.3 * len(spectra)), sharex=True, squeeze=False)
    for ax, (flux, z_qso, dlas) in zip(axes[:, 0], spectra):
        ax.plot(wave, flux, lw=0.3, color="k")
        ax.axvline(LYA * (1 + z_qso), color="tab:blue", ls=":", lw=1)
        for z_abs, log_n in dlas:
            ax.axvline(LYA * (1 + z_abs), color="tab:red", lw=1)
            ax.text(
                LYA * (1 + z_abs),
                0.92,
                f" DLA log N={log_n:.2f}",
                color="tab:red",
                fontsize=8,
                transform=ax.get_xaxis_transform(),
            )
        ax.set_ylabel("flux [1e-17]")
        top = np.percentile(flux, 99.5)
        ax.set_ylim(min(-0.1 * top, np.percentile(flux, 0.5)), 1.15 * top)
        ax.text(
            0.99,
            0.85,
            f"z_QSO = {z_qso:.3f} (dotted: Ly-alpha emission)",
            ha="right",
            transform=ax.transAxes,
            fontsize=8,
        )
    axes[-1, 0].set_xlabel("observed wavelength [A]")
    save_figure(fig, path)


def redshift_figure(
    path: str | Path, name: str, z_true: np.ndarray, z_pred: np.ndarray, dz_cat: float
) -> None:
    dz = z_pred - z_true
    cat = np.abs(dz) > dz_cat
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.3))
    ax = axes[0]
    ax.scatter(z_true[~cat], z_pred[~cat], s=4, alpha=0.5, label="|dz| <= %.2g" % dz_cat)
    ax.scatter(
        z_true[cat], z_pred[cat], s=12, color="tab:red", marker="x", label=f"catastrophic ({cat.sum()})"
    )
    lo, hi = min(z_true.min(), 2.0), max(z_true.max(), 4.0)
    ax.plot([lo, hi], [lo, hi], color="k", lw=0.8)
    ax.set(xlabel="true z", ylabel="predicted z", title=f"{name}: predicted vs true z")
    ax.legend(fontsize=8)
    ax = axes[1]
    edges = np.linspace(lo, hi, 11)
    which = np.clip(np.digitize(z_true, edges) - 1, 0, len(edges) - 2)
    ape = 100 * np.abs(dz) / z_true
    mape_bins = [ape[which == k].mean() if (which == k).any() else np.nan for k in range(len(edges) - 1)]
    ax.step(edges, np.r_[mape_bins, mape_bins[-1]], where="post")
    ax.axhline(1.0, color="tab:red", ls="--", lw=0.8, label="1% target (GRU)")
    ax.axhline(ape.mean(), color="k", ls=":", lw=0.8, label=f"all: {ape.mean():.2f}%")
    ax.set(xlabel="true z", ylabel="MAPE [%]", title="MAPE vs z", yscale="log")
    ax.legend(fontsize=8)
    ax = axes[2]
    ax.hist(np.clip(dz, -0.2, 0.2), bins=80, color="tab:gray")
    ax.axvline(-dz_cat, color="tab:red", ls="--", lw=0.8)
    ax.axvline(dz_cat, color="tab:red", ls="--", lw=0.8)
    ax.set(xlabel="z_pred - z_true (clipped to +-0.2)", ylabel="spectra", title="residuals", yscale="log")
    save_figure(fig, path)


def comparison_figure(path: str | Path, entries: list[tuple[str, np.ndarray, np.ndarray]]) -> None:
    """MAPE vs z of every redshift model, one line each."""
    fig, ax = plt.subplots(figsize=(7, 4.3))
    for name, z_true, z_pred in entries:
        edges = np.linspace(2.0, 4.0, 11)
        which = np.clip(np.digitize(z_true, edges) - 1, 0, len(edges) - 2)
        ape = 100 * np.abs(z_pred - z_true) / z_true
        values = [ape[which == k].mean() if (which == k).any() else np.nan for k in range(len(edges) - 1)]
        ax.step(edges, np.r_[values, values[-1]], where="post", label=f"{name} ({ape.mean():.2f}%)")
    ax.axhline(1.14, color="tab:gray", ls=":", lw=1, label="slides' GRU: 1.14%")
    ax.axhline(1.0, color="tab:red", ls="--", lw=0.8, label="target: 1%")
    ax.set(xlabel="true z", ylabel="MAPE [%]", yscale="log", title="redshift regressors on the test split")
    ax.legend(fontsize=8)
    save_figure(fig, path)


def presence_figure(
    path: str | Path,
    roc_all: tuple[np.ndarray, np.ndarray],
    auc_all: float,
    roc_clean: tuple[np.ndarray, np.ndarray],
    auc_clean: float,
    segments: pd.DataFrame,
    threshold: float,
) -> None:
    """ROC (all segments and unambiguous only), completeness vs log N_HI, purity/completeness vs S/N."""
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.3))
    ax = axes[0]
    ax.plot(*roc_all, label=f"all segments: AUC = {auc_all:.4f}")
    ax.plot(*roc_clean, ls="--", label=f"unambiguous only: AUC = {auc_clean:.4f}")
    ax.plot([0, 1], [0, 1], color="k", lw=0.5, ls=":")
    ax.axhline(np.nan, label="slides: AUC 0.9154", color="tab:gray")
    ax.set(
        xlabel="false-positive rate", ylabel="true-positive rate", title="DLA presence: ROC (test segments)"
    )
    ax.legend(loc="lower right", fontsize=8)
    selected = segments["SCORE"].to_numpy() >= threshold
    positive = segments["LABEL_ANY"].to_numpy() == 1
    ax = axes[1]
    edges = np.array([20.3, 20.5, 21.0, 21.5, 22.5])
    table = binned_rate(segments["LOG_NHI"].to_numpy()[positive], selected[positive], edges)
    centres = 0.5 * (table["lo"] + table["hi"])
    ax.errorbar(centres, table["rate"], yerr=table["error"], xerr=0.5 * (table["hi"] - table["lo"]), fmt="o")
    ax.set(
        xlabel="log N_HI",
        ylabel="completeness",
        ylim=(0, 1.05),
        title=f"completeness vs N_HI (p >= {threshold})",
    )
    ax = axes[2]
    snr = segments["SNR"].to_numpy()
    edges = np.array([0.0, 2.0, 4.0, 8.0, max(16.0, snr.max() + 1e-6)])
    comp = binned_rate(snr[positive], selected[positive], edges)
    pur = binned_rate(snr[selected], positive[selected], edges)
    centres = 0.5 * (comp["lo"] + comp["hi"])
    ax.errorbar(centres, comp["rate"], yerr=comp["error"], fmt="o-", label="completeness")
    ax.errorbar(centres, pur["rate"], yerr=pur["error"], fmt="s--", label="purity")
    ax.set(
        xlabel="continuum S/N per 0.5 A pixel",
        ylabel="fraction",
        ylim=(0, 1.05),
        xscale="symlog",
        title="vs S/N (bins 0-2-4-8-)",
    )
    ax.legend(fontsize=8)
    save_figure(fig, path)


def location_figure(path: str | Path, matched: pd.DataFrame, tolerance: float, snr_min: float) -> None:
    """matched: truth rows with SNR, LOG_NHI, FOUND, DELTA_A (position residual, A), PRED_LOG_NHI."""
    fig, axes = plt.subplots(1, 4, figsize=(19, 4.3))
    found = matched["FOUND"].to_numpy()
    delta = matched["DELTA_A"].to_numpy()
    ax = axes[0]
    ok = np.isfinite(delta)
    ax.hist(np.clip(delta[ok], -3 * tolerance, 3 * tolerance), bins=60, color="tab:gray")
    ax.axvline(-tolerance, color="tab:red", ls="--")
    ax.axvline(tolerance, color="tab:red", ls="--")
    ax.set(
        xlabel="predicted - true centre [A, observed]",
        ylabel="DLAs",
        title="localisation residuals (nearest detection)",
    )
    ax = axes[1]
    m = found
    ax.scatter(matched["LOG_NHI"][m], matched["PRED_LOG_NHI"][m], s=5, alpha=0.6)
    ax.plot([20.3, 22.5], [20.3, 22.5], color="k", lw=0.8)
    err = (matched["PRED_LOG_NHI"] - matched["LOG_NHI"])[m]
    ax.set(
        xlabel="true log N_HI",
        ylabel="predicted log N_HI",
        title=f"N_HI: rms {np.sqrt(np.mean(err**2)):.3f} dex, bias {np.mean(err):+.3f}",
    )
    ax = axes[2]
    true_n = matched["LOG_NHI"][m].to_numpy()
    ax.scatter(true_n, np.clip(err, -1, 1), s=5, alpha=0.5, color="tab:gray")
    edges_r = np.array([20.3, 20.5, 21.0, 21.5, 22.5])
    which = np.digitize(true_n, edges_r) - 1
    means = [
        np.mean(err.to_numpy()[which == k]) if np.any(which == k) else np.nan for k in range(len(edges_r) - 1)
    ]
    ax.step(edges_r, np.r_[means, means[-1]], where="post", color="tab:red", label="mean per bin")
    ax.axhline(0, color="k", lw=0.5)
    ax.set(
        xlabel="true log N_HI",
        ylabel="predicted - true log N_HI [dex]",
        title="N_HI residuals vs N_HI (found DLAs)",
    )
    ax.legend(fontsize=8)
    ax = axes[3]
    snr = matched["SNR"].to_numpy()
    edges = np.unique(np.r_[0, np.percentile(snr, [20, 40, 60, 80]), snr.max() + 1e-6])
    table = binned_rate(snr, found, edges)
    centres = 0.5 * (table["lo"] + table["hi"])
    ax.errorbar(centres, table["rate"], yerr=table["error"], fmt="o-", label="vs S/N")
    edges_n = np.array([20.3, 20.5, 20.7, 21.0, 21.5, 22.5])
    table_n = binned_rate(matched["LOG_NHI"].to_numpy(), found, edges_n)
    ax2 = ax.twiny()
    ax2.errorbar(
        0.5 * (table_n["lo"] + table_n["hi"]),
        table_n["rate"],
        yerr=table_n["error"],
        fmt="s--",
        color="tab:orange",
        label="vs log N_HI (top axis)",
    )
    ax2.set_xlabel("log N_HI", color="tab:orange")
    ax.axvline(snr_min, color="tab:red", ls=":", lw=0.8)
    ax.axhline(0.95, color="tab:red", ls="--", lw=0.8)
    ax.set(
        xlabel="continuum S/N per 0.5 A pixel",
        ylabel=f"fraction found within {tolerance:g} A",
        ylim=(0, 1.05),
    )
    ax.legend(loc="lower left", fontsize=8)
    ax2.legend(loc="lower right", fontsize=8)
    save_figure(fig, path)


def learning_curve_figure(path: str | Path, name: str, history: pd.DataFrame, stop_reason: str) -> None:
    """Loss and accuracy vs epoch, training and validation (the slides' curves)."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    epochs = history["epoch"].to_numpy()
    axes[0].plot(epochs, history["train_loss"], "o-", label="training")
    axes[0].plot(epochs, history["val_loss"], "s--", label="validation")
    axes[0].set(xlabel="epoch", ylabel="loss", title=f"{name}: loss (stop: {stop_reason})")
    if "train_accuracy" in history:
        axes[1].plot(epochs, history["train_accuracy"], "o-", label="training")
        axes[1].plot(epochs, history["val_accuracy"], "s--", label="validation")
    axes[1].set(xlabel="epoch", ylabel="accuracy", ylim=(0, 1.02), title=f"{name}: accuracy")
    for ax in axes:
        ax.legend(fontsize=8)
    save_figure(fig, path)


def study_figure(
    path: str | Path, study: str, table: pd.DataFrame, curves: list[tuple[str, pd.DataFrame]]
) -> None:
    """Validation loss vs epoch per (model, variant), and test MAPE per variant grouped by model."""
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.3))
    for label, history in curves:
        axes[0].plot(history["epoch"], history["val_loss"], marker=".", label=label)
    axes[0].set(xlabel="epoch", ylabel="validation loss", yscale="log", title=f"{study}: validation loss")
    axes[0].legend(fontsize=7)
    models = list(dict.fromkeys(table["model"]))
    variants = list(dict.fromkeys(table["variant"]))
    width = 0.8 / max(len(variants), 1)
    for k, variant in enumerate(variants):
        values = [
            table[(table["model"] == m) & (table["variant"] == variant)]["mape_percent"].mean()
            for m in models
        ]
        bars = axes[1].bar(np.arange(len(models)) + k * width, values, width, label=variant)
        axes[1].bar_label(bars, fmt="%.2f", fontsize=7)
    axes[1].set_xticks(np.arange(len(models)) + 0.4 - width / 2, models)
    axes[1].axhline(1.14, color="tab:gray", ls=":", lw=1, label="slides' GRU: 1.14%")
    axes[1].set(ylabel="test MAPE [%]", title=f"{study}: test MAPE per variant")
    axes[1].legend(fontsize=8)
    save_figure(fig, path)


def dla_reliability_figure(path: str | Path, record: dict, title: str, ladder: bool = False) -> None:
    """Reliability diagrams (network output, prior-corrected, calibrated) of the presence CNN per
    segment and of the DLA catalogue per candidate: from the DLA calibration's validation record
    (``record["presence"]["reliability"]``, ``record["variants"][method]["reliability"]``) or from the
    test metrics (``record["presence"]["reliability"]``, ``record["reliability"]``); with
    ``ladder``, a third panel of purity and completeness per DLA at each step (test metrics)."""
    names = {"raw": "network output", "prior_corrected": "prior-corrected", "calibrated": "calibrated"}
    panels = []
    if record.get("presence", {}).get("reliability"):
        panels.append(("presence CNN, per segment", record["presence"]["reliability"]))
    catalogue = record.get("reliability") or record["variants"][record["bal_method"]]["reliability"]
    panels.append((f"DLA catalogue, per candidate (BAL: {record['bal_method']})", catalogue))
    n = len(panels) + (1 if ladder else 0)
    fig, axes = plt.subplots(1, n, figsize=(5.2 * n, 5), squeeze=False)
    for ax, (label, curves) in zip(axes[0], panels):
        reliability_axes(ax, {names[k]: v for k, v in curves.items() if v.get("mean_probability")})
        ax.set(
            title=label, ylabel="observed frequency of a true DLA", xlabel="probability (10 equal-count bins)"
        )
    if ladder:
        ax = axes[0][-1]
        steps = [key for key, _ in RUNGS if key in record["ladder"]]
        for key, marker, label in (("completeness", "o", "completeness"), ("purity", "s", "purity")):
            values = [record["ladder"][s][key] for s in steps]
            lo = [record["ladder"][s].get(f"{key}_interval", {}).get("lo68") for s in steps]
            hi = [record["ladder"][s].get(f"{key}_interval", {}).get("hi68") for s in steps]
            err = np.array(
                [
                    [v - (l if l is not None else v), (h if h is not None else v) - v]
                    for v, l, h in zip(values, lo, hi)
                ]
            ).T
            ax.errorbar(np.arange(len(steps)), values, yerr=err, marker=marker, label=label, capsize=3)
        ax.axhline(record.get("purity_goal", np.nan), color="0.6", ls=":", label="purity goal (validation)")
        ax.set_xticks(np.arange(len(steps)), steps, rotation=20)
        ax.set(ylim=(0, 1.02), ylabel="per DLA (68% interval)", title="DLA catalogue, each step (test)")
        ax.legend(fontsize=8)
    fig.suptitle(title, fontsize=9)
    save_figure(fig, path)
