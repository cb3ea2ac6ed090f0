"""Figures of the score stage, in the style of the LBG thesis (Taran 2023); the compare stage's
are `lymannet.compare_plots`'s, drawn with the axes and styles of this one.

Each ``*_axes`` function draws on a given matplotlib Axes, so panels compose; the ``plot_*`` /
``*_figure`` functions build a whole figure and write it atomically (Agg backend, PNG).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import matplotlib

matplotlib.use("Agg")  # headless: cluster nodes have no display

import matplotlib.pyplot as plt  # noqa: E402
import matplotlib.ticker  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from .figures import save_figure  # noqa: E402
from .lines import LYA, Line  # noqa: E402
from .metrics import Crossing, binned_efficiency  # noqa: E402
from .simulated_figure import smooth  # noqa: E402

PURITY_STYLE = {"linestyle": "-"}
EFFICIENCY_STYLE = {"linestyle": "--"}
COLORS = plt.rcParams["axes.prop_cycle"].by_key()["color"]


def empty_axes(ax: plt.Axes, message: str) -> None:
    ax.text(0.5, 0.5, message, ha="center", va="center", transform=ax.transAxes, color="0.4", wrap=True)
    ax.set_xticks([])
    ax.set_yticks([])


def note_figure(path: str | Path, message: str) -> None:
    """A figure that only says why there is nothing to draw (an output the rule must still write)."""
    fig, ax = plt.subplots(figsize=(6, 2))
    empty_axes(ax, message)
    save_figure(fig, path)


CHANCE_STYLE = {"color": "0.35", "linestyle": ":", "linewidth": 1.2}


def distinct_chance_levels(chance: float | Sequence[float] | None) -> list[float]:
    """The distinct finite chance levels (to 3 decimals) of one value or several (one per run)."""
    values = [] if chance is None else np.atleast_1d(np.asarray(chance, float)).tolist()
    return sorted({round(v, 3) for v in values if np.isfinite(v)})


def chance_label(chance: float | Sequence[float] | None) -> str:
    """Legend text of the chance level(s): a random guess's score under the same rules."""
    levels = distinct_chance_levels(chance)
    if len(levels) == 1:
        return f"chance level {levels[0]:.3f} (random guess)"
    return f"chance levels {levels[0]:.3f}-{levels[-1]:.3f} (random guess; its N(z) is per run)"


def chance_line(ax: plt.Axes, chance: float | Sequence[float] | None) -> None:
    """The score of a random guess (random confidence, redshift drawn from the training N(z);
    lymannet.metrics), a dotted line; one per distinct level where runs differ."""
    for k, level in enumerate(distinct_chance_levels(chance)):
        ax.axhline(level, label=chance_label(chance) if k == 0 else "_chance", **CHANCE_STYLE)


def pe_curve_axes(
    ax: plt.Axes,
    curve: pd.DataFrame,
    crossing: Crossing,
    label: str | None = None,
    color: str | None = None,
    annotate: bool = True,
) -> None:
    """Purity (solid) and efficiency (dashed) vs c_th, the P = E point marked (thesis fig 3.2, 5.1)."""
    color = color or COLORS[0]
    prefix = f"{label}: " if label else ""
    ax.plot(curve["THRESHOLD"], curve["PURITY"], color=color, label=f"{prefix}purity", **PURITY_STYLE)
    ax.plot(
        curve["THRESHOLD"], curve["EFFICIENCY"], color=color, label=f"{prefix}efficiency", **EFFICIENCY_STYLE
    )
    if np.isfinite(crossing.score):
        ax.plot(
            [crossing.threshold],
            [crossing.score],
            "o",
            color=color,
            markersize=7,
            markeredgecolor="black",
            zorder=5,
        )
        if annotate:
            # in the empty lower middle of the axes (the curves run along the top), boxed
            ax.annotate(
                f"score: P = E = {crossing.score:.3f}\nat $c_{{th}}$ = {crossing.threshold:.3f}",
                (crossing.threshold, crossing.score),
                textcoords="axes fraction",
                xytext=(0.42, 0.12),
                fontsize=9,
                bbox={"boxstyle": "round", "facecolor": "white", "edgecolor": "0.7"},
                arrowprops={"arrowstyle": "-", "color": "0.5"},
            )
    ax.set_xlabel("confidence threshold $c_{th}$")
    ax.set_ylabel("purity / efficiency")
    ax.set_xlim(float(curve["THRESHOLD"].min()), float(curve["THRESHOLD"].max()))
    ax.set_ylim(0, 1.03)
    ax.grid(alpha=0.3)


def plot_pe_curve(
    path: str | Path, curve: pd.DataFrame, crossing: Crossing, title: str, chance: float | None = None
) -> None:
    """The purity/efficiency curve of one model on one test set, on its own."""
    fig, ax = plt.subplots(figsize=(6.4, 4.8))
    pe_curve_axes(ax, curve, crossing)
    chance_line(ax, chance)
    ax.legend(loc="lower left")
    ax.set_title(title, fontsize=10)
    save_figure(fig, path)


def efficiency_vs_redshift_axes(
    ax: plt.Axes,
    z_true: np.ndarray,
    is_good: np.ndarray,
    edges: np.ndarray,
    label: str = "model",
    color: str | None = None,
) -> None:
    """Efficiency in bins of true redshift, mean efficiency in the legend (thesis fig 4.2, left)."""
    if not len(z_true):
        empty_axes(ax, "no true target in this test set")
        return
    table = binned_efficiency(z_true, is_good, edges)
    shown = table["N"] > 0
    mean = float(np.mean(is_good))
    ax.errorbar(
        table["CENTER"][shown],
        table["EFFICIENCY"][shown],
        yerr=table["ERROR"][shown],
        fmt="o-",
        color=color or COLORS[0],
        markersize=4,
        capsize=2,
        label=f"{label} (mean eff. {mean:.3f})",
    )
    ax.set_xlabel("true redshift $z$")
    ax.set_ylabel("efficiency")
    ax.set_ylim(0, 1.03)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower left", fontsize=9)


def redshift_edges(z_true: np.ndarray, width: float = 0.1) -> np.ndarray:
    """Bins of ``width`` covering the true redshifts (rounded outwards)."""
    if not len(z_true):
        return np.array([0.0, width])
    low = np.floor(np.nanmin(z_true) / width) * width
    high = np.ceil(np.nanmax(z_true) / width + 1e-9) * width
    return np.arange(low, high + width / 2, width) if high > low else np.array([low, low + width])


def confidence_scatter(
    ax: plt.Axes,
    z_true: np.ndarray,
    z_pred: np.ndarray,
    confidence: np.ndarray,
    is_target: np.ndarray,
    size: float,
    label: str | None = None,
) -> Any:
    """Predicted vs true redshift of the true targets, coloured by confidence (0 to 1, viridis),
    the confident points drawn last, on top; returns the scatter for a colorbar."""
    order = np.argsort(confidence[is_target])
    return ax.scatter(
        z_true[is_target][order],
        z_pred[is_target][order],
        c=confidence[is_target][order],
        s=size,
        cmap="viridis",
        vmin=0,
        vmax=1,
        label=label,
    )


def redshift_scatter_axes(
    ax: plt.Axes,
    z_true: np.ndarray,
    z_pred: np.ndarray,
    confidence: np.ndarray,
    is_target: np.ndarray,
    dz_max: float,
    target_class: str,
) -> None:
    """Predicted vs true redshift, true targets coloured by confidence (thesis figs 3.5, 3.8)."""
    others = ~is_target
    if others.any():
        ax.scatter(
            z_true[others],
            z_pred[others],
            s=6,
            marker="x",
            color="0.65",
            linewidths=0.6,
            label=f"contaminants ({int(others.sum())})",
        )
    points = confidence_scatter(
        ax, z_true, z_pred, confidence, is_target, size=7, label=f"{target_class} ({int(is_target.sum())})"
    )
    lo = float(np.nanmin(np.concatenate([z_true, z_pred]))) if len(z_true) else 0.0
    hi = float(np.nanmax(np.concatenate([z_true, z_pred]))) if len(z_true) else 1.0
    line = np.array([lo, hi])
    ax.plot(line, line, color="crimson", linewidth=1, label="$z_{pred} = z_{true}$")
    ax.fill_between(
        line,
        line - dz_max,
        line + dz_max,
        color="crimson",
        alpha=0.15,
        linewidth=0,
        label=f"$|\\Delta z| < {dz_max:g}$",
    )
    ax.set_xlabel("true redshift $z_{true}$")
    ax.set_ylabel("predicted redshift $z_{pred}$")
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", fontsize=8, markerscale=2)
    plt.colorbar(points, ax=ax, label="confidence of the best line", pad=0.01)


def dz_histogram_axes(ax: plt.Axes, dz: np.ndarray, dz_max: float, target_class: str) -> None:
    """|z_pred - z_true| of true targets on log-log axes: the core and the catastrophic tail both show."""
    dz = np.abs(np.asarray(dz, float))
    if not len(dz):
        empty_axes(ax, "no true target in this test set")
        return
    floor = 1e-4  # |dz| below this (incl. exact 0) goes in the first bin
    top = max(float(dz.max()), 10 * dz_max)
    edges = np.logspace(np.log10(floor), np.log10(top * 1.01), 50)
    ax.hist(np.clip(dz, floor, None), bins=edges, color=COLORS[0], alpha=0.85)
    ax.axvline(dz_max, color="crimson", linestyle="--", linewidth=1, label=f"$|\\Delta z|$ = {dz_max:g}")
    share = float(np.mean(dz > dz_max))
    ax.text(
        0.97,
        0.95,
        f"$|\\Delta z| > {dz_max:g}$: {share:.1%}\nof {len(dz)} {target_class}",
        ha="right",
        va="top",
        transform=ax.transAxes,
        fontsize=9,
    )
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel(f"$|z_{{pred}} - z_{{true}}|$ (true targets; < {floor:g} in the first bin)")
    ax.set_ylabel("number of spectra")
    ax.legend(loc="upper left", fontsize=9)
    ax.grid(alpha=0.3, which="major")


def best_line_axes(ax: plt.Axes, counts: pd.DataFrame) -> None:
    """For each line, how often it was the most / second most confident one (thesis fig 6.1)."""
    x = np.arange(len(counts))
    ax.bar(x - 0.2, counts["N_FIRST"], width=0.4, color=COLORS[0], label="highest confidence")
    ax.bar(x + 0.2, counts["N_SECOND"], width=0.4, color=COLORS[1], label="second highest")
    ax.set_xticks(x)
    ax.set_xticklabels(counts["LINE"], rotation=60, ha="right", fontsize=8)
    ax.set_ylabel("number of true targets")
    ax.legend(fontsize=9)
    ax.grid(alpha=0.3, axis="y")


def magnitude_edges(mag: np.ndarray, max_levels: int = 12) -> np.ndarray:
    """Bins centred on the discrete magnitude levels of synthetic sets, else 0.25-mag bins."""
    levels = np.unique(mag[np.isfinite(mag)])
    if 1 < len(levels) <= max_levels:
        mids = 0.5 * (levels[:-1] + levels[1:])
        return np.concatenate(
            [[levels[0] - (mids[0] - levels[0])], mids, [levels[-1] + (levels[-1] - mids[-1])]]
        )
    if len(levels) == 1:
        return np.array([levels[0] - 0.125, levels[0] + 0.125])
    return np.arange(np.floor(levels.min() * 4) / 4, np.ceil(levels.max() * 4) / 4 + 0.25, 0.25)


def efficiency_vs_magnitude_axes(
    ax: plt.Axes, truth: pd.DataFrame, is_good: np.ndarray, z_split: float = 3.0
) -> None:
    """Efficiency vs r magnitude per template, below/above z_split (thesis fig 6.3).

    ``truth`` holds the true targets only (TEMPLATE, MAG_R, Z); templates < 0 are unknown.
    """
    known = truth["TEMPLATE"].to_numpy() >= 0 if "TEMPLATE" in truth else np.zeros(len(truth), bool)
    known &= np.isfinite(truth["MAG_R"].to_numpy(float)) if "MAG_R" in truth else False
    if not known.any():
        empty_axes(ax, "no TEMPLATE / MAG_R for the targets\nof this test set")
        return
    mag, template = truth["MAG_R"].to_numpy(float), truth["TEMPLATE"].to_numpy()
    z = truth["Z"].to_numpy(float)
    edges = magnitude_edges(mag[known])
    for k, value in enumerate(sorted(np.unique(template[known]))):
        for below, style in ((True, "-"), (False, ":")):
            rows = known & (template == value) & ((z < z_split) if below else (z >= z_split))
            if not rows.any():
                continue
            table = binned_efficiency(mag[rows], is_good[rows], edges)
            shown = table["N"] > 0
            zlabel = f"z < {z_split:g}" if below else f"z ≥ {z_split:g}"
            ax.plot(
                table["CENTER"][shown],
                table["EFFICIENCY"][shown],
                style,
                marker="o",
                markersize=3,
                color=COLORS[k % len(COLORS)],
                label=f"template {value}, {zlabel}",
            )
    ax.set_xlabel("r magnitude (fainter →)")
    ax.set_ylabel("efficiency")
    ax.set_ylim(0, 1.03)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=2, loc="lower left")


def score_figure(
    path: str | Path,
    *,
    curve: pd.DataFrame,
    crossing: Crossing,
    table: pd.DataFrame,
    is_target: np.ndarray,
    is_good_default: np.ndarray,
    line_counts: pd.DataFrame,
    dz_max: float,
    target_class: str,
    c_th: float,
    title: str,
    chance: float | None = None,
) -> None:
    """The six-panel summary of one (model, combo, test set)."""
    fig, axes = plt.subplots(2, 3, figsize=(18, 10.5))
    z_true = table["Z"].to_numpy(float)
    z_pred = table["Z_PRED"].to_numpy(float)
    targets = table[is_target]

    pe_curve_axes(axes[0, 0], curve, crossing)
    chance_line(axes[0, 0], chance)
    axes[0, 0].legend(loc="lower left", fontsize=9)
    axes[0, 0].set_title("purity and efficiency vs confidence threshold")

    efficiency_vs_redshift_axes(
        axes[0, 1],
        z_true[is_target],
        is_good_default[is_target],
        redshift_edges(z_true[is_target]),
        label=f"$c_{{th}}$ = {c_th:g}",
    )
    axes[0, 1].set_title(f"efficiency vs true redshift ($c_{{th}}$ = {c_th:g})")

    redshift_scatter_axes(
        axes[0, 2], z_true, z_pred, table["C_BEST"].to_numpy(float), is_target, dz_max, target_class
    )
    axes[0, 2].set_title("predicted vs true redshift")

    dz_histogram_axes(axes[1, 0], z_pred[is_target] - z_true[is_target], dz_max, target_class)
    axes[1, 0].set_title("redshift errors of true targets")

    best_line_axes(axes[1, 1], line_counts)
    axes[1, 1].set_title(f"most confident lines ({len(targets)} true targets)")

    efficiency_vs_magnitude_axes(axes[1, 2], targets, is_good_default[is_target])
    axes[1, 2].set_title(f"efficiency vs magnitude per template ($c_{{th}}$ = {c_th:g})")

    fig.suptitle(title, fontsize=13)
    fig.tight_layout()
    save_figure(fig, path)


def false_positive_figure(
    path: str | Path,
    wavelength: np.ndarray,
    flux: np.ndarray,
    ivar: np.ndarray,
    rows: pd.DataFrame,
    title: str,
) -> None:
    """The most confident false positives of a model, one panel each: the spectrum as the network
    sees it (8-pixel inverse-variance bins), its true population and redshift, and where the
    model put Ly-alpha (``Z_PRED``), so a person can see what fooled it."""
    fig, axes = plt.subplots(max(1, len(rows)), 1, figsize=(11, 2.2 * max(1, len(rows))), squeeze=False)
    if rows.empty:
        empty_axes(axes[0, 0], "no false positive at the P = E threshold")
    for ax, (k, row) in zip(axes[:, 0], enumerate(rows.itertuples(index=False))):
        wave, binned, sigma = smooth(wavelength, flux[k], ivar[k])
        ax.plot(wave, binned, color="k", lw=0.7)
        ax.plot(wave, sigma, color="tab:red", lw=0.6, alpha=0.8)
        lya = LYA * (1 + row.Z_PRED)
        if wave[0] < lya < wave[-1]:
            ax.axvline(lya, color="tab:blue", ls="--", lw=0.8)
        ax.set_title(
            f"{row.POPULATION} at z = {row.Z:.3f} (r = {row.MAG_R:.2f}): detected with c = {row.C_DETECT:.3f},"
            f" Ly-alpha put at z = {row.Z_PRED:.3f} (dashed)",
            fontsize=8,
        )
        ax.tick_params(labelsize=7)
    axes[-1, 0].set_xlabel("observed wavelength [A]; black: flux, red: 1-sigma noise")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    save_figure(fig, path)


def plot_learning_curve(history: pd.DataFrame, lines: tuple[Line, ...], path: str | Path) -> None:
    """Total train/val loss, and the validation loss of every line (thesis fig. 6.2)."""
    fig, (ax_total, ax_lines) = plt.subplots(1, 2, figsize=(12, 4.5))
    if len(history):
        ax_total.plot(history["epoch"], history["train_loss"], "o-", label="train")
        ax_total.plot(history["epoch"], history["val_loss"], "s-", label="validation")
        colours = plt.get_cmap("tab20")
        for i, line in enumerate(lines):
            for prefix, style in (("val", "-"), ("train", ":")):
                column = f"{prefix}_loss_{line.name}"
                if column in history:
                    label = line.name if prefix == "val" else None
                    ax_lines.plot(
                        history["epoch"], history[column], style, color=colours(i % 20), label=label
                    )
    ax_total.set(xlabel="epoch", ylabel="loss", title="total loss")
    ax_total.legend()
    ax_lines.set(xlabel="epoch", ylabel="loss", title="per-line loss (val solid, train dotted)")
    for ax in (ax_total, ax_lines):
        ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))  # epochs are whole
    if ax_lines.lines:
        ax_lines.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    save_figure(fig, path, dpi=100, tight=False)
