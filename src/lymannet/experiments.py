"""Named experiments (config `experiments:`, overlays under config/experiments/, rules in
workflow/rules/experiments.smk; README "Experiments").

An experiment gathers what the other stages made into one figure and one table under
``results/experiments/<name>/``:

- ``kind: runs``: trained runs (model, combo), each scored on the same test set with the score
  stage's P = E and |dz| rules (:func:`lymannet.metrics.evaluate`): P/E curves, z_pred vs z_true
  per run (thesis figs 3.2, 3.5, 3.8), efficiency vs true z (fig 4.2), the |dz| distribution
  (fig D.3, section 6.3) and the validation learning curves. ``mark_z`` counts the predictions
  that pile up around one redshift (z = 3.77: Ly-alpha in the 5800 A arm overlap).
- ``kind: gallery``: an original spectrum from its data set's training pool and its copies in
  augmented variant files, one figure per panel (thesis figs 3.3, 3.6, 3.9, 3.10, 3.12).
- ``kind: search_chain``: searches each starting from the previous one's best spec; the table of
  thesis tables 4.1/4.2 (before, 1st search, 2nd search) and the optimisation histories.
- ``kind: seeds``: runs trained with several seeds (``runs[].seeds``, ``.ensemble``), scored on
  several test sets (default: the summary's): the seed-to-seed spread of each P = E score beside
  the members' bootstrap intervals, each ensemble against its best member, and the spread of the
  ensembles of k seeds (every k-subset of the members) for k = 1..n.

Experiment runs are not in `runs:` (Snakemake replaces lists when it merges config files, so an
overlay's `runs:` would drop the demo's): they are listed under their experiment and trained by the
same `train` rule. Their test sets are ordinary `testsets:` entries with `in_summary: false`.
"""

from __future__ import annotations

from itertools import combinations
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # headless: cluster nodes have no display
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from .bootstrap import Interval  # noqa: E402
from .config import seed_groups  # noqa: E402
from .ensemble import ENSEMBLE_LINE, combine_members  # noqa: E402
from .figures import save_figure  # noqa: E402
from .fileio import write_text_atomic  # noqa: E402
from .lines import LYA, votes_by_name  # noqa: E402
from .metrics import ScoreOptions, correct_redshift, evaluate, is_detected  # noqa: E402
from .plan import run_label  # noqa: E402
from .plots import (
    COLORS,
    _interval_bar,
    efficiency_vs_redshift_axes,
    pe_curve_axes,
    redshift_edges,
)  # noqa: E402
from .predict import read_catalogue  # noqa: E402
from .score import model_facts, read_score, seed_spread, summary_table  # noqa: E402
from .spectra import SpectraFile  # noqa: E402

INTERVAL_SUFFIXES = {"_lo": "lo68", "_hi": "hi68", "_lo95": "lo95", "_hi95": "hi95"}
OVERLAP_A = 5800.0


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
        for suffix, key in INTERVAL_SUFFIXES.items():
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
        order = np.argsort(conf[is_target])
        points = ax.scatter(
            z_true[is_target][order],
            z_pred[is_target][order],
            c=conf[is_target][order],
            s=6,
            cmap="viridis",
            vmin=0,
            vmax=1,
        )
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
        _interval_bar(
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


def _cell(value: Any) -> str:
    if value is None or (isinstance(value, float) and not np.isfinite(value)):
        return "-"
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value)


def _with_error(row: Any, column: str) -> str:
    """ "0.943 ± 0.012": the value and the half-width of its 68% interval (<column>_lo/_hi), or the
    value alone where there is none."""
    value, lo, hi = (
        row.get(f"{column}{suffix}") if hasattr(row, "get") else None for suffix in ("", "_lo", "_hi")
    )
    if not all(isinstance(v, (int, float, np.number)) and np.isfinite(v) for v in (value, lo, hi)):
        return _cell(value)
    return f"{value:.3f} ± {0.5 * (hi - lo):.3f}"


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
# kind: seeds

MAX_SUBSETS = 50  # k-subsets of the members scored per k (all of them up to 50; else a seeded sample)


def subset_ensemble_scores(
    catalogues: dict[int, pd.DataFrame], options: Any, seed: int = 0
) -> dict[int, list[float]]:
    """P = E scores of the ensembles of k members, for every k-subset of the members (a seeded
    sample of MAX_SUBSETS where there are more), k = 1..n: k = 1 gives the members' own scores on
    their PROB (the same as on their line confidences: PROB is monotonic in the detection score),
    k = n the full ensemble's. The subsets share members, so the spread at k is that of the
    k-ensembles one could have trained, not of independent ones."""

    seeds = sorted(catalogues)
    rng = np.random.default_rng(seed)
    scores: dict[int, list[float]] = {}
    for k in range(1, len(seeds) + 1):
        subsets = list(combinations(seeds, k))
        if len(subsets) > MAX_SUBSETS:
            subsets = [subsets[i] for i in sorted(rng.choice(len(subsets), MAX_SUBSETS, replace=False))]
        scores[k] = []
        for subset in subsets:
            if k == 1:
                table = catalogues[subset[0]].assign(
                    **{f"C_{ENSEMBLE_LINE.name}": catalogues[subset[0]]["PROB"]}
                )
            else:
                table = combine_members([catalogues[s] for s in subset], list(subset))
            c_line = table[[f"C_{ENSEMBLE_LINE.name}"]].to_numpy(float)
            scores[k].append(float(evaluate(table, c_line, options).summary["score"] or np.nan))
    return scores


def compare_seeds(
    spec: dict[str, Any],
    scores: list[str],
    predictions: list[str],
    model_files: list[str],
    testsets: list[str],
    score_options: dict[str, Any],
    figure: str,
    table_md: str,
    table_csv: str,
    name: str = "",
) -> pd.DataFrame:
    """kind seeds: per run and test set the members' scores (mean, sd, min-max, bootstrap
    half-width), the ensemble against its best member and the spread of k-seed ensembles."""

    options = ScoreOptions.from_config(score_options)
    groups = seed_groups(spec["runs"])
    records = [read_score(path) for path in scores]
    table = summary_table(records, model_facts(list(model_files)), list(testsets))
    spread = seed_spread(table, groups, list(testsets))
    by_path = {}
    for path in predictions:
        model, combo, testset = Path(path).parts[-3], Path(path).parts[-2], Path(path).stem
        by_path[(model, combo, testset)] = path
    rows = []
    for group, (_, summary) in zip(groups, spread.iterrows()):
        for testset in testsets:
            row: dict[str, Any] = {
                "run": f"{group['model']}/{group['combo']}",
                "model": group["model"],
                "combo": group["combo"],
                "testset": testset,
                "seeds": summary["seeds"],
                "n_seeds": summary["n_seeds"],
            }
            for key, column in (
                ("mean", ""),
                ("sd", "_sd"),
                ("min", "_min"),
                ("max", "_max"),
                ("boot68", "_boot68"),
            ):
                row[key] = summary[f"score_{testset}{column}"]
            members = table[
                table["model"].isin([m for m, _ in group["members"]]) & (table["combo"] == group["combo"])
            ]
            for (member, _), seed in zip(group["members"], group["seeds"]):
                hit = members[members["model"] == member]
                row[f"seed{seed}"] = float(hit[f"score_{testset}"].iloc[0]) if len(hit) else np.nan
            if group["ensemble"]:
                row["ensemble"] = summary[f"ensemble_{testset}"]
                row["ensemble_boot68"] = 0.5 * (
                    summary[f"ensemble_{testset}_hi"] - summary[f"ensemble_{testset}_lo"]
                )
                row["best_member"] = summary[f"best_member_{testset}"]
                row["ensemble_minus_best"] = summary[f"ensemble_minus_best_{testset}"]
                row["ensemble_minus_mean"] = row["ensemble"] - row["mean"]
                catalogues = {
                    seed: read_catalogue(by_path[(member, combo, testset)]).table
                    for (member, combo), seed in zip(group["members"], group["seeds"])
                    if (member, combo, testset) in by_path
                }
                if len(catalogues) >= 2:
                    for k, values in subset_ensemble_scores(catalogues, options).items():
                        row[f"k{k}_mean"] = float(np.mean(values))
                        row[f"k{k}_sd"] = float(np.std(values, ddof=1)) if len(values) > 1 else np.nan
                        row[f"k{k}_n"] = len(values)
            rows.append(row)
    result = pd.DataFrame(rows)

    fig, axes = plt.subplots(1, len(testsets), figsize=(3.2 * len(testsets), 4.0), squeeze=False)
    for ax, testset in zip(axes[0], testsets):
        subset = result[result["testset"] == testset].reset_index(drop=True)
        for x, row in subset.iterrows():
            seeds = [c for c in row.index if c.startswith("seed") and c != "seeds" and pd.notna(row[c])]
            values = np.array([row[c] for c in seeds], float)
            ax.errorbar(
                np.full(len(values), x) + np.linspace(-0.15, 0.15, len(values)),
                values,
                yerr=row["boot68"],
                fmt="o",
                color="tab:blue",
                markersize=3,
                capsize=1.5,
                linewidth=0.8,
                label="seeds (± bootstrap 68%)" if x == 0 else None,
            )
            ax.errorbar(
                [x + 0.3],
                [row["mean"]],
                yerr=[row["sd"]],
                fmt="s",
                color="black",
                markersize=4,
                capsize=3,
                label="mean ± sd" if x == 0 else None,
            )
            if pd.notna(row.get("ensemble", np.nan)):
                ax.errorbar(
                    [x + 0.45],
                    [row["ensemble"]],
                    yerr=[row["ensemble_boot68"]],
                    fmt="*",
                    color="crimson",
                    markersize=9,
                    capsize=2,
                    label="ensemble" if x == 0 else None,
                )
        ax.set_xticks(range(len(subset)))
        ax.set_xticklabels(subset["model"], rotation=30, fontsize=8)
        ax.set_title(testset, fontsize=9)
        ax.set_ylabel("P = E score")
        ax.grid(alpha=0.3)
    axes[0, 0].legend(fontsize=7)
    fig.suptitle(spec.get("title") or name, fontsize=11)
    fig.tight_layout()
    save_figure(fig, figure)
    write_text_atomic(table_csv, result.to_csv(index=False, float_format="%.6g"))
    write_text_atomic(table_md, seeds_markdown(result, spec, name))
    return result


def seeds_markdown(result: pd.DataFrame, spec: dict[str, Any], name: str) -> str:
    ks = sorted({int(c[1:-5]) for c in result.columns if c.startswith("k") and c.endswith("_mean")})
    head = [
        "test set",
        "seeds",
        "mean ± sd",
        "min-max",
        "boot ± (members)",
        "ensemble ± boot",
        "best member",
        "ensemble - best",
        "ensemble - mean",
    ] + [f"sd of {k}-seed ensembles" for k in ks]
    lines = [
        f"# {spec.get('title') or name}",
        "",
        "P = E scores of each run's seeds: mean ± standard deviation over the seeds, range, and the mean "
        "half-width of the members' 68% bootstrap intervals (the test set's noise). Ensemble: mean of the "
        "members' calibrated PROB, Z from the most confident member. sd of k-seed ensembles: over every "
        "k-subset of the seeds (k = 1: the members).",
        "",
    ]
    for run, group in result.groupby("run", sort=False):
        lines += [f"## {run}", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for _, row in group.iterrows():
            seeds = " ".join(
                f"{row[c]:.3f}"
                for c in row.index
                if c.startswith("seed") and c != "seeds" and pd.notna(row[c])
            )
            cells = [
                row["testset"],
                seeds,
                f"{_cell(row['mean'])} ± {_cell(row['sd'])}",
                f"{_cell(row['min'])}-{_cell(row['max'])}",
                _cell(row["boot68"]),
            ]
            if pd.notna(row.get("ensemble", np.nan)):
                cells += [
                    f"{_cell(row['ensemble'])} ± {_cell(row['ensemble_boot68'])}",
                    _cell(row["best_member"]),
                    f"{row['ensemble_minus_best']:+.3f}",
                    f"{row['ensemble_minus_mean']:+.3f}",
                ]
            else:
                cells += ["-"] * 4
            cells += [_cell(row.get(f"k{k}_sd", np.nan)) for k in ks]
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------------
# kind: gallery


def _pick_parent(original: pd.DataFrame, variants: list[pd.DataFrame], seed: int = 0) -> int:
    """An LBG present in the original and in every variant: the brightest of those within 0.3 of
    the median redshift (lines and breaks then show best, away from the grid's edges), ties
    broken by TARGETID."""
    parents = set(original["TARGETID"].to_numpy(np.int64))
    for truth in variants:
        parents &= set(truth["PARENT_TARGETID"].to_numpy(np.int64))
    candidates = original[original["TARGETID"].isin(parents)]
    lbg = candidates[candidates["SPECTYPE"].astype(str).str.strip() == "LBG"]
    candidates = lbg if len(lbg) else candidates
    if not len(candidates):
        raise ValueError("no object of the original file has a copy in every variant of the panel")
    z = candidates["Z"].to_numpy(float)
    if np.isfinite(z).any():
        central = np.abs(z - np.nanmedian(z)) < 0.3
        candidates = candidates[central] if central.any() else candidates
    if "MAG_R" in candidates and np.isfinite(candidates["MAG_R"].to_numpy(float)).any():
        candidates = candidates.sort_values(["MAG_R", "TARGETID"])
    return int(candidates["TARGETID"].iloc[0])


def _smooth(flux: np.ndarray, ivar: np.ndarray, width: int = 3) -> np.ndarray:
    kernel = np.ones(width) / width
    return np.convolve(np.where(ivar > 0, flux, 0.0), kernel, mode="same")


def gallery_figure(
    panel: dict[str, Any], original: str, variant_files: list[str], figure: str
) -> dict[str, Any]:
    """One panel: the original spectrum on top, each variant's copy below it (thesis figs 3.3,
    3.6, 3.9, 3.10), the overlap window and the Ly-alpha line marked where asked."""

    with SpectraFile(original) as handle:
        truth0 = handle.truth
        copies = []
        for path in variant_files:
            with SpectraFile(path) as vhandle:
                copies.append(vhandle.truth)
        parent = _pick_parent(truth0, copies)
        row0 = int(np.flatnonzero(truth0["TARGETID"].to_numpy(np.int64) == parent)[0])
        spectra0 = handle.read("network", row0, row0 + 1)
        wave = handle.wavelength_of("network")
    fig, axes = plt.subplots(
        1 + len(variant_files), 1, figsize=(11, 2.6 * (1 + len(variant_files))), sharex=True, squeeze=False
    )
    axes = axes[:, 0]
    z0 = float(truth0["Z"].iloc[row0])

    def draw(ax: Any, flux: np.ndarray, ivar: np.ndarray, z: float, title: str, color: str) -> None:
        ax.plot(wave, _smooth(flux, ivar), color=color, linewidth=0.8)
        if "overlap" in panel.get("mark", []):
            width = 40.0
            ax.axvspan(OVERLAP_A - width / 2, OVERLAP_A + width / 2, color="orange", alpha=0.3, linewidth=0)
        if "lya" in panel.get("mark", []) and np.isfinite(z):
            ax.axvline(LYA * (1 + z), color="crimson", linestyle="--", linewidth=0.8)
            ax.axvspan(LYA * (1 + z) - 20, LYA * (1 + z) + 20, color="crimson", alpha=0.12, linewidth=0)
        ax.set_title(title, fontsize=9, loc="left")
        ax.set_ylabel("network input")
        ax.grid(alpha=0.3)

    draw(
        axes[0],
        spectra0.flux[0],
        spectra0.ivar[0],
        z0,
        f"original (training pool {Path(original).stem}): " f"TARGETID {parent}, z = {z0:.3f}",
        "tab:blue",
    )
    facts = {"parent_targetid": parent, "z_original": z0, "copies": []}
    for ax, path, truth in zip(axes[1:], variant_files, copies):
        row = int(np.flatnonzero(truth["PARENT_TARGETID"].to_numpy(np.int64) == parent)[0])
        with SpectraFile(path) as vhandle:
            spectra = vhandle.read("network", row, row + 1)
        z = float(truth["Z"].iloc[row])
        source = str(truth["SOURCE"].iloc[row]) if "SOURCE" in truth else Path(path).stem
        draw(
            ax,
            spectra.flux[0],
            spectra.ivar[0],
            z,
            f"variant {source!r} ({Path(path).name}): z = {z:.3f}",
            "tab:orange",
        )
        facts["copies"].append({"variant": source, "z": z})
    axes[-1].set_xlabel("observed wavelength [A]")
    fig.suptitle(panel.get("title") or panel["name"], fontsize=11)
    fig.tight_layout()
    save_figure(fig, figure)
    return facts


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
