"""Figures of the compare stage: several runs' P/E curves on one test set (thesis figs 5.1-5.3)
and their scores per model and training combination (appendix C), each P = E score with its 68%
bootstrap interval and the chance level beside it.

The axes they compose (P/E curves, the chance line, the styles) are `lymannet.plots`'s.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import matplotlib

matplotlib.use("Agg")  # headless: cluster nodes have no display

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402

from .figures import save_figure  # noqa: E402
from .metrics import Crossing  # noqa: E402
from .plots import (  # noqa: E402
    CHANCE_STYLE,
    COLORS,
    EFFICIENCY_STYLE,
    PURITY_STYLE,
    chance_label,
    chance_line,
    distinct_chance_levels,
    empty_axes,
    pe_curve_axes,
)


def compare_pe_figure(
    path: str | Path,
    entries: list[tuple[str, pd.DataFrame, Crossing]],
    title: str,
    zoom: bool = True,
    chance: float | Sequence[float] | None = None,
    intervals: Sequence[Any] | None = None,
) -> None:
    """Several models' P/E curves on one test set (thesis figs 5.1-5.3), with a zoom on the crossings
    and the chance level (a random guess's score) as a dotted line. ``intervals``: each entry's
    score Interval (lymannet.bootstrap) or None; its 68% interval is an error bar on the P = E point."""
    intervals = list(intervals) if intervals is not None else [None] * len(entries)
    ncols = 2 if zoom else 1
    fig, axes = plt.subplots(1, ncols, figsize=(6.6 * ncols, 5.2), squeeze=False)
    for ax in axes[0]:
        chance_line(ax, chance)
        for k, (label, curve, crossing) in enumerate(entries):
            score = f"{crossing.score:.3f}" if np.isfinite(crossing.score) else "n/a"
            pe_curve_axes(
                ax,
                curve,
                crossing,
                label=f"{label} [score {score}]",
                color=COLORS[k % len(COLORS)],
                annotate=False,
            )
            interval_bar(ax, crossing, intervals[k], COLORS[k % len(COLORS)])
    axes[0, 0].set_title(title, fontsize=11)
    _compact_legend(axes[0, 0], entries, chance, intervals)
    if zoom:
        scores = [c.score for _, _, c in entries if np.isfinite(c.score)]
        thresholds = [c.threshold for _, _, c in entries if np.isfinite(c.threshold)]
        if scores:
            ax = axes[0, 1]
            ax.set_ylim(max(0.0, min(scores) - 0.1), min(1.02, max(scores) + 0.06))
            # A logit axis: crossings at 0.8 and at 0.999 are both readable.
            ax.set_xscale("logit")
            ax.set_xlim(*_logit_limits(min(thresholds), max(thresholds)))
            ax.set_title("zoom on the P = E points (logit axis)", fontsize=11)
        else:
            empty_axes(axes[0, 1], "no model has a defined P = E score")
    fig.tight_layout()
    save_figure(fig, path)


def interval_bar(ax: plt.Axes, crossing: Crossing, interval: Any, color: str) -> None:
    """The 68% interval of a P = E score, a vertical error bar on its point."""
    if (
        interval is None
        or not np.isfinite(crossing.score)
        or not np.isfinite([interval.lo68, interval.hi68]).all()
    ):
        return
    ax.errorbar(
        [crossing.threshold],
        [crossing.score],
        yerr=[[max(0.0, crossing.score - interval.lo68)], [max(0.0, interval.hi68 - crossing.score)]],
        fmt="none",
        ecolor=color,
        elinewidth=1.5,
        capsize=4,
        zorder=4,
    )


def _score_label(crossing: Crossing, interval: Any) -> str:
    if not np.isfinite(crossing.score):
        return "score n/a"
    if interval is not None and np.isfinite([interval.lo68, interval.hi68]).all():
        return f"score {interval.text()} (68%)"
    return f"score {crossing.score:.3f}"


def _compact_legend(
    ax: plt.Axes,
    entries: list[tuple[str, pd.DataFrame, Crossing]],
    chance: float | Sequence[float] | None = None,
    intervals: Sequence[Any] | None = None,
) -> None:
    """One legend entry per model (colour) plus the two line styles, instead of 2 per model."""
    intervals = list(intervals) if intervals is not None else [None] * len(entries)
    handles = [
        Line2D(
            [],
            [],
            color=COLORS[k % len(COLORS)],
            marker="o",
            markeredgecolor="black",
            label=f"{label}: {_score_label(c, intervals[k])}",
        )
        for k, (label, _, c) in enumerate(entries)
    ]
    handles += [
        Line2D([], [], color="black", label="purity", **PURITY_STYLE),
        Line2D([], [], color="black", label="efficiency", **EFFICIENCY_STYLE),
    ]
    if distinct_chance_levels(chance):
        handles.append(Line2D([], [], label=chance_label(chance), **CHANCE_STYLE))
    ax.legend(handles=handles, loc="lower left", fontsize=8)


def combos_figure(
    path: str | Path,
    table: pd.DataFrame,
    testsets: list[str],
    title: str,
    chances: dict[str, float] | None = None,
) -> None:
    """Grouped bars: one group per (model, combo), one bar per test set (thesis appendix C), each
    bar with its 68% interval (columns score_<test set>_lo/_hi, where the table has them) and its
    chance level drawn across it (the row's chance_<test set>, else ``chances``)."""
    fig, ax = plt.subplots(figsize=(max(6.4, 1.3 * len(table) * max(1, len(testsets)) / 2 + 2), 4.8))
    if table.empty:
        empty_axes(ax, "no scores")
        save_figure(fig, path)
        return
    labels = [f"{m}\n{c}" for m, c in zip(table["model"], table["combo"])]
    x = np.arange(len(table))
    width = 0.8 / max(1, len(testsets))
    for k, testset in enumerate(testsets):
        values = pd.to_numeric(table.get(f"score_{testset}"), errors="coerce").to_numpy(float)
        lo, hi = (
            (
                pd.to_numeric(table[f"score_{testset}{s}"], errors="coerce").to_numpy(float)
                if f"score_{testset}{s}" in table
                else np.full(len(table), np.nan)
            )
            for s in ("_lo", "_hi")
        )
        error = np.where(
            np.isfinite(lo) & np.isfinite(hi) & np.isfinite(values),
            [np.clip(values - lo, 0, None), np.clip(hi - values, 0, None)],
            0.0,
        )
        bars = ax.bar(
            x - 0.4 + width * (k + 0.5),
            np.nan_to_num(values),
            width,
            label=testset,
            color=COLORS[k % len(COLORS)],
            yerr=error,
            error_kw={"elinewidth": 1, "capsize": 2},
        )
        row_chances = (
            pd.to_numeric(table[f"chance_{testset}"], errors="coerce").to_numpy(float)
            if f"chance_{testset}" in table
            else np.full(len(table), (chances or {}).get(testset, np.nan))
        )
        for bar, value, chance, top in zip(bars, values, row_chances, np.nan_to_num(values) + error[1]):
            if chance is not None and np.isfinite(chance):
                ax.hlines(chance, bar.get_x(), bar.get_x() + bar.get_width(), label="_chance", **CHANCE_STYLE)
            text = f"{value:.2f}" if np.isfinite(value) else "n/a"
            ax.text(bar.get_x() + bar.get_width() / 2, top + 0.01, text, ha="center", va="bottom", fontsize=8)
    ax.set_xticks(x)
    ax.set_xticklabels(labels, fontsize=9)
    ax.set_ylabel("score (purity = efficiency)")
    ax.set_ylim(0, 1.1)
    ax.set_title(title, fontsize=11)
    handles, names = ax.get_legend_handles_labels()
    if chances and any(np.isfinite(v) for v in chances.values()):
        handles, names = handles + [Line2D([], [], **CHANCE_STYLE)], names + [
            "chance level (dotted, random guess)"
        ]
    ax.legend(handles, names, title="test set", fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    ax.grid(alpha=0.3, axis="y")
    fig.tight_layout()
    save_figure(fig, path)


def _logit_limits(low: float, high: float, pad: float = 1.5) -> tuple[float, float]:
    """Axis limits around [low, high] padded by `pad` in logit units, inside (1e-6, 1 - 1e-6)."""
    low, high = np.clip([low, high], 1e-6, 1 - 1e-6)
    logit = lambda p: np.log(p / (1 - p))  # noqa: E731
    expit = lambda x: 1 / (1 + np.exp(-x))  # noqa: E731
    return float(expit(logit(low) - pad)), float(expit(logit(high) + pad))


def crossing_from(summary: dict[str, Any]) -> Crossing:
    """A Crossing back from a score JSON (None -> NaN)."""
    score = summary.get("score")
    threshold = summary.get("threshold_at_crossing")
    return Crossing(
        np.nan if score is None else float(score),
        np.nan if threshold is None else float(threshold),
        bool(summary.get("crossing_on_grid_point", False)),
        "",
    )
