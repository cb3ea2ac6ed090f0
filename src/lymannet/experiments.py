"""Named experiments (config `experiments:`, overlays under config/experiments/, rules in
workflow/rules/experiments.smk; README "Experiments").

An experiment gathers what the other stages made into one figure and one table under
``results/experiments/<name>/``:

- ``kind: runs``: trained runs (model, combo), each scored on the same test set with the score
  stage's P = E and |dz| rules (:func:`lymannet.evaluation.evaluate`): P/E curves, z_pred vs z_true
  per run (thesis figs 3.2, 3.5, 3.8), efficiency vs true z (fig 4.2), the |dz| distribution
  (fig D.3, section 6.3) and the validation learning curves. ``mark_z`` counts the predictions
  that pile up around one redshift (z = 3.77: Ly-alpha in the 5800 A arm overlap).
- ``kind: gallery`` (`lymannet.experiment_gallery`): an original spectrum from its data set's
  training pool and its copies in augmented variant files, one figure per panel (thesis figs 3.3,
  3.6, 3.9, 3.10, 3.12).
- ``kind: search_chain``: searches each starting from the previous one's best spec; the table of
  thesis tables 4.1/4.2 (before, 1st search, 2nd search) and the optimisation histories.
- ``kind: seeds`` (`lymannet.experiment_seeds`): runs trained with several seeds (``runs[].seeds``,
  ``.ensemble``), scored on several test sets (default: the summary's): the seed-to-seed spread of
  each P = E score beside the members' bootstrap intervals, each ensemble against its best member,
  and the spread of the ensembles of k seeds (every k-subset of the members) for k = 1..n.

Experiment runs are not in `runs:` (Snakemake replaces lists when it merges config files, so an
overlay's `runs:` would drop the demo's): they are listed under their experiment and trained by the
same `train` rule. Their test sets are ordinary `testsets:` entries with `in_summary: false`.
"""

from __future__ import annotations

from functools import partial
from typing import Any

import matplotlib

matplotlib.use("Agg")  # headless: cluster nodes have no display
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from .bootstrap import Interval  # noqa: E402
from .compare_plots import interval_bar  # noqa: E402
from .evaluation import evaluate  # noqa: E402
from .figures import save_figure  # noqa: E402
from .fileio import write_text_atomic  # noqa: E402
from .lines import votes_by_name  # noqa: E402
from .metrics import ScoreOptions, correct_redshift, is_detected  # noqa: E402
from .plan import run_label  # noqa: E402
from .plots import (  # noqa: E402
    COLORS,
    confidence_scatter,
    efficiency_vs_redshift_axes,
    pe_curve_axes,
    redshift_edges,
)
from .predict import read_catalogue  # noqa: E402
from .summary import EXPERIMENT_STYLE, INTERVAL_COLUMNS, cell, with_error  # noqa: E402

_cell = partial(cell, **EXPERIMENT_STYLE)
_with_error = partial(with_error, **EXPERIMENT_STYLE)


# ----------------------------------------------------------------------------------------------
# kind: runs


def run_metrics(
    table: pd.DataFrame, c_line: np.ndarray, options: Any, mark_z: float | None = None, mark_dz: float = 0.03
) -> tuple[dict[str, Any], Any]:
    """The score stage's numbers for one run (P = E score, efficiency at the default threshold,
    |dz| of true targets) plus, with mark_z, the pile-up around it: true targets predicted within
    mark_dz of mark_z while their true z is not (wrong redshifts landing there), against true
    targets whose true z is there."""

    evaluation = evaluate(table, c_line, options, intervals=True)
    summary = evaluation.summary
    z_true, z_pred = table["Z"].to_numpy(float), table["Z_PRED"].to_numpy(float)
    is_target = (
        table["SPECTYPE"].astype(str).str.strip().str.upper().to_numpy() == options.target_class.upper()
    )
    dz = np.abs(z_pred - z_true)[is_target]
    detected = is_detected(c_line, options.c_th, options.min_lines)[is_target]
    row = {
        "score": summary["score"],
        "threshold_at_crossing": summary["threshold_at_crossing"],
        "efficiency_at_default": summary["efficiency_at_default"],
        "purity_at_default": summary["purity_at_default"],
        "n_targets": summary["n_targets"],
        "n_contaminants": summary["n_contaminants"],
        "median_abs_dz": float(np.median(dz)) if len(dz) else np.nan,
        "frac_dz_gt_max": float(np.mean(dz > options.dz_max)) if len(dz) else np.nan,
        "frac_dz_gt_max_detected": (
            float(np.mean(dz[detected] > options.dz_max)) if detected.any() else np.nan
        ),
        "p90_abs_dz": float(np.quantile(dz, 0.9)) if len(dz) else np.nan,
    }
    # bootstrap intervals (lymannet.bootstrap): <figure>_lo/_hi (68%), _lo95/_hi95
    for figure in ("score", "efficiency_at_default", "purity_at_default"):
        interval = summary.get(f"{figure}_interval") or {}
        for suffix, key in INTERVAL_COLUMNS.items():
            row[f"{figure}{suffix}"] = np.nan if interval.get(key) is None else interval[key]
    row["n_resamples"] = (summary.get("bootstrap") or {}).get("n_resamples", 0)
    if mark_z is not None:
        zt, zp = z_true[is_target], z_pred[is_target]
        near_pred = np.abs(zp - mark_z) < mark_dz
        near_true = np.abs(zt - mark_z) < mark_dz
        row["n_pred_near_mark"] = int(near_pred.sum())
        row["n_true_near_mark"] = int(near_true.sum())
        row["n_wrong_into_mark"] = int((near_pred & ~near_true & (np.abs(zp - zt) > options.dz_max)).sum())
        row["frac_wrong_into_mark"] = float(row["n_wrong_into_mark"] / max(1, len(zt)))
    return row, evaluation


def _history_axes(ax: Any, histories: list[tuple[str, pd.DataFrame]], colors: list[str]) -> None:
    for (label, history), color in zip(histories, colors):
        epochs = history["epoch"] if "epoch" in history else np.arange(1, len(history) + 1)
        ax.plot(epochs, history["val_loss"], "o-", color=color, markersize=3, label=f"{label} (validation)")
        if "train_loss" in history:
            ax.plot(epochs, history["train_loss"], ":", color=color, label=f"{label} (training)")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    ax.set_yscale("log")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)


def compare_runs(
    spec: dict[str, Any],
    predictions: list[str],
    histories: list[str],
    score_options: dict[str, Any],
    figure: str,
    table_md: str,
    table_csv: str,
    name: str = "",
) -> pd.DataFrame:
    """kind runs: the figure and the table of runs scored on one test set."""

    options = ScoreOptions.from_config(score_options)
    runs = spec["runs"]
    if not (len(runs) == len(predictions) == len(histories)):
        raise ValueError("one prediction and one history per run")
    mark_z, mark_dz = spec.get("mark_z"), float(spec.get("mark_dz", 0.03))
    zoom = spec.get("zoom")
    rows, loaded = [], []
    for run, prediction, history in zip(runs, predictions, histories):
        catalogue = read_catalogue(prediction)
        votes = votes_by_name(catalogue.line_names)
        c_line = catalogue.c_line[:, votes]
        row, evaluation = run_metrics(catalogue.table, c_line, options, mark_z, mark_dz)
        hist = pd.read_csv(history)
        row = {
            "run": run_label(run),
            "model": run["model"],
            "combo": run["combo"],
            **row,
            "epochs": int(len(hist)),
            "best_val_loss": float(hist["val_loss"].min()),
        }
        rows.append(row)
        loaded.append((run_label(run), catalogue.table, c_line, evaluation, hist))
    table = pd.DataFrame(rows)

    n = len(runs)
    colors = [COLORS[i % len(COLORS)] for i in range(n)]
    ncols = max(n, 4)
    fig, axes = plt.subplots(2, ncols, figsize=(4.2 * ncols, 8.2), squeeze=False)
    for j, ((label, tab, c_line, evaluation, _), color) in enumerate(zip(loaded, colors)):
        ax = axes[0, j]
        z_true, z_pred = tab["Z"].to_numpy(float), tab["Z_PRED"].to_numpy(float)
        is_target = (
            tab["SPECTYPE"].astype(str).str.strip().str.upper().to_numpy() == options.target_class.upper()
        )
        conf = np.sort(c_line, axis=1)[:, -options.min_lines]
        points = confidence_scatter(ax, z_true, z_pred, conf, is_target, size=6)
        lo, hi = zoom if zoom else (np.nanmin(z_true[is_target]), np.nanmax(z_true[is_target]))
        lo = np.nanmin(z_true[is_target]) if lo is None else lo
        hi = np.nanmax(z_true[is_target]) if hi is None else hi
        line = np.array([lo, hi])
        ax.plot(line, line, color="crimson", linewidth=1)
        ax.fill_between(
            line, line - options.dz_max, line + options.dz_max, color="crimson", alpha=0.15, linewidth=0
        )
        if mark_z is not None:
            ax.axhspan(mark_z - mark_dz, mark_z + mark_dz, color="orange", alpha=0.25, linewidth=0)
            ax.text(
                0.98,
                0.02,
                f"$z_{{pred}}$ within {mark_dz:g} of {mark_z:g} with wrong z: "
                f"{rows[j]['n_wrong_into_mark']}",
                transform=ax.transAxes,
                ha="right",
                va="bottom",
                fontsize=8,
            )
        if zoom:
            ax.set_xlim(lo, hi)
            ax.set_ylim(lo - 0.5, hi + 0.5)
        ax.set_title(
            f"{label}\nscore {_with_error(rows[j], 'score')}, "
            f"|dz|>{options.dz_max:g}: {rows[j]['frac_dz_gt_max']:.1%}",
            fontsize=9,
        )
        ax.set_xlabel("true redshift")
        ax.set_ylabel("predicted redshift")
        ax.grid(alpha=0.3)
        fig.colorbar(points, ax=ax, pad=0.01, label="confidence" if j == n - 1 else None)
    for j in range(n, ncols):
        axes[0, j].axis("off")
    ax_pe, ax_eff, ax_dz, ax_hist = axes[1, 0], axes[1, 1], axes[1, 2], axes[1, 3]
    all_true = np.concatenate(
        [
            t["Z"].to_numpy(float)[
                t["SPECTYPE"].astype(str).str.strip().str.upper().to_numpy() == options.target_class.upper()
            ]
            for _, t, *_ in loaded
        ]
    )
    edges = redshift_edges(all_true, 0.1)
    dz_edges = np.logspace(-4, np.log10(max(3.0, 10 * options.dz_max)), 40)
    for (label, tab, c_line, evaluation, hist), color in zip(loaded, colors):
        pe_curve_axes(ax_pe, evaluation.curve, evaluation.crossing, label=label, color=color, annotate=False)
        interval_bar(
            ax_pe, evaluation.crossing, Interval.from_dict(evaluation.summary.get("score_interval")), color
        )
        is_target = (
            tab["SPECTYPE"].astype(str).str.strip().str.upper().to_numpy() == options.target_class.upper()
        )
        good = (
            is_detected(c_line, options.c_th, options.min_lines)
            & correct_redshift(tab["Z_PRED"], tab["Z"], options.dz_max, options.dv_max_kms)
        )[is_target]
        efficiency_vs_redshift_axes(
            ax_eff, tab["Z"].to_numpy(float)[is_target], good, edges, label=label, color=color
        )
        dz = np.abs(tab["Z_PRED"].to_numpy(float) - tab["Z"].to_numpy(float))[is_target]
        ax_dz.hist(
            np.clip(dz, 1e-4, None), bins=dz_edges, histtype="step", color=color, linewidth=1.5, label=label
        )
    ax_pe.set_title("purity (solid) and efficiency (dashed); P = E with its 68% interval", fontsize=9)
    ax_pe.legend(fontsize=6, ncol=1)
    ax_eff.set_title(f"efficiency vs true z at $c_{{th}}$ = {options.c_th:g}", fontsize=9)
    ax_dz.axvline(options.dz_max, color="crimson", linestyle="--", linewidth=1)
    ax_dz.set_xscale("log")
    ax_dz.set_xlabel("$|z_{pred} - z_{true}|$ of true targets")
    ax_dz.set_ylabel("number")
    ax_dz.set_title("|dz| distribution", fontsize=9)
    ax_dz.legend(fontsize=7)
    ax_dz.grid(alpha=0.3)
    _history_axes(ax_hist, [(label, hist) for label, *_, hist in loaded], colors)
    ax_hist.set_title("learning curves", fontsize=9)
    for j in range(4, ncols):
        axes[1, j].axis("off")
    testset = spec.get("testset", "")
    fig.suptitle(f"{spec.get('title') or name} (test set {testset})", fontsize=11)
    fig.tight_layout()
    save_figure(fig, figure)

    write_text_atomic(table_csv, table.to_csv(index=False, float_format="%.6g"))
    write_text_atomic(table_md, runs_markdown(table, spec, name, options))
    return table


def runs_markdown(table: pd.DataFrame, spec: dict[str, Any], name: str, options: Any) -> str:
    columns = ["run", "score", "efficiency_at_default", "median_abs_dz", "frac_dz_gt_max", "epochs"]
    headers = [
        "run",
        "P=E score",
        f"efficiency at c_th={options.c_th:g}",
        "median |dz|",
        f"share |dz|>{options.dz_max:g}",
        "epochs",
    ]
    if "n_wrong_into_mark" in table:
        columns += ["n_pred_near_mark", "n_true_near_mark", "n_wrong_into_mark"]
        mark = f"{spec['mark_z']:g}+-{spec.get('mark_dz', 0.03):g}"
        headers += [f"z_pred in {mark}", f"z_true in {mark}", f"wrong z_pred in {mark}"]
    n_resamples = int(table["n_resamples"].max()) if "n_resamples" in table and len(table) else 0
    note = (
        f" ± is the half-width of the 68% interval of a percentile bootstrap over the test objects "
        f"({n_resamples} resamples, targets and contaminants resampled separately); the table's CSV gives "
        f"the 68% (_lo, _hi) and 95% (_lo95, _hi95) bounds."
        if n_resamples
        else ""
    )
    lines = [
        f"# {spec.get('title') or name}",
        "",
        f"Test set `{spec.get('testset')}`: {int(table['n_targets'].iloc[0])} targets, "
        f"{int(table['n_contaminants'].iloc[0])} contaminants.{note}",
        "",
        "| " + " | ".join(headers) + " |",
        "|" + "|".join("---" for _ in headers) + "|",
    ]
    for _, row in table.iterrows():
        lines.append(
            "| "
            + " | ".join(
                _with_error(row, c) if c in ("score", "efficiency_at_default") else _cell(row[c])
                for c in columns
            )
            + " |"
        )
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------------------------
# kind: search_chain


def chain_table(searches: list[str], tables: list[pd.DataFrame]) -> pd.DataFrame:
    """Thesis tables 4.1/4.2: hyper-parameter, search range (one per search, "a / b", where the
    searches' ranges differ), value before the first search, then the best value of each search
    ("X": not searched)."""
    order: list[str] = []
    for table in tables:
        order += [p for p in table["hyper-parameter"] if p not in order]
    rows = []
    for param in order:
        row: dict[str, Any] = {"hyper-parameter": param, "search range": "", "before search": ""}
        ranges = []
        for search, table in zip(searches, tables):
            hit = table[table["hyper-parameter"] == param]
            if len(hit):
                ranges.append(str(hit["search range"].iloc[0]))
                row["before search"] = row["before search"] or str(hit["before search"].iloc[0])
                row[search] = str(hit["best"].iloc[0])
            else:
                ranges.append("X")
                row[search] = "X"
        searched = [r for r in ranges if r != "X"]
        row["search range"] = searched[0] if len(set(searched)) == 1 else " / ".join(ranges)
        rows.append(row)
    return pd.DataFrame(rows)


def compare_searches(
    spec: dict[str, Any],
    tables: list[str],
    trials: list[str],
    figure: str,
    table_md: str,
    table_csv: str,
    name: str = "",
) -> pd.DataFrame:

    searches = spec["searches"]
    table = chain_table(searches, [pd.read_csv(path, dtype=str) for path in tables])
    fig, axes = plt.subplots(1, len(searches), figsize=(5 * len(searches), 3.8), squeeze=False)
    counts = []
    for ax, search, path in zip(axes[0], searches, trials):
        frame = pd.read_csv(path)
        done = frame[frame["state"] == "COMPLETE"] if "state" in frame else frame
        counts.append((len(frame), len(done), float(done["value"].min()) if len(done) else np.nan))
        ax.plot(done["number"], done["value"], "o", label="trial")
        ax.plot(done["number"], done["value"].cummin(), "-", label="best so far")
        ax.set_title(f"search {search}: {len(frame)} trials", fontsize=9)
        ax.set_xlabel("trial")
        ax.set_ylabel("objective")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(spec.get("title") or name, fontsize=11)
    fig.tight_layout()
    save_figure(fig, figure)
    write_text_atomic(table_csv, table.to_csv(index=False))
    header = "| " + " | ".join(table.columns) + " |"
    rule = "|" + "|".join("---" for _ in table.columns) + "|"
    rows = ["| " + " | ".join(str(v) for v in row) + " |" for row in table.itertuples(index=False)]
    notes = [
        f"- search `{s}`: {n} trials ({c} complete), best objective {b:.4g}"
        for s, (n, c, b) in zip(searches, counts)
    ]
    text = "\n".join(
        [
            f"# {spec.get('title') or name}",
            "",
            header,
            rule,
            *rows,
            "",
            "X: not searched (the value of the previous search is kept).",
            "",
            *notes,
            "",
        ]
    )
    write_text_atomic(table_md, text)
    return table
