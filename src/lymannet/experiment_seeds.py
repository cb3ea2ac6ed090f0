"""Experiments of ``kind: seeds`` (lymannet.experiments; rule `experiment_seeds`): runs trained
with several seeds (``runs[].seeds``, ``.ensemble``), scored on several test sets (default: the
summary's). Per run and test set: the seed-to-seed spread of the P = E score beside the members'
bootstrap intervals, each ensemble against its best member, and the spread of the ensembles of k
seeds (every k-subset of the members) for k = 1..n.

The members' rows and their spread are the compare summary's (`lymannet.summary`).
"""

from __future__ import annotations

from functools import partial
from itertools import combinations
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # headless: cluster nodes have no display
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from .config import seed_groups  # noqa: E402
from .ensemble import ENSEMBLE_LINE, combine_members  # noqa: E402
from .evaluation import evaluate  # noqa: E402
from .figures import save_figure  # noqa: E402
from .fileio import write_text_atomic  # noqa: E402
from .metrics import ScoreOptions  # noqa: E402
from .predict import read_catalogue  # noqa: E402
from .score import read_score  # noqa: E402
from .summary import EXPERIMENT_STYLE, cell, model_facts, seed_spread, summary_table  # noqa: E402

_cell = partial(cell, **EXPERIMENT_STYLE)

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
