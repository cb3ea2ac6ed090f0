"""The calibration stage (rule `calibrate`) and what the score stage reports of a calibration.

- :func:`calibrate_model`: a trained model file + its combo's validation split -> the calibrated
  model file (`lymannet.calibration.Calibration` stored under ``calibration``), a JSON record and
  the validation split's reliability diagram.
- :func:`calibration_report`: on a test set's catalogue, ECE before/after (and after the prior
  correction to the test set's own class mix), purity and efficiency at the working point, ZERR
  coverage and N(z) of the selected objects against the truth, with the largest excess and the
  line finder's box edge nearest to it; :func:`calibration_figure` draws them.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .bootstrap import Interval, bootstrap_interval
from .calibration import (
    Calibration,
    detection_score,
    fit_calibration,
    line_spread,
    prior_shift,
    reliability,
    zerr_coverage,
)
from .errors import LymannetError
from .fileio import atomic_path, write_json_atomic
from .lines import LYA, votes_by_name  # LYA: box edges are shown in Ly-alpha's redshift
from .metrics import ScoreOptions, correct_redshift
from .modelfile import load_model_file, write_calibrated_model_file
from .predict import PredictOptions, has_line_finder, predict_testset

log = logging.getLogger("lymannet.calibrate")

NZ_BIN = 0.02  # N(z) bins of the selected objects against the truth


def calibrate_model(
    model: str,
    val: str,
    out_model: str,
    out_json: str,
    out_figure: str,
    score: dict[str, Any],
    predict: dict[str, Any],
    working_point: dict[str, float],
) -> Calibration:
    """Fit PROB, the working point and ZERR on the validation split `val`; write the calibrated
    model file, the record and the reliability diagram."""
    opts = ScoreOptions.from_config(score)
    loaded = load_model_file(model)
    table = predict_testset(loaded, val, PredictOptions.from_dict(predict), model)
    line_names = [c[2:] for c in table.columns if c.startswith("C_") and c != "C_BEST"]
    c_line, z_line = table[[f"C_{n}" for n in line_names]].to_numpy(float), table[
        [f"Z_{n}" for n in line_names]
    ].to_numpy(float)
    votes = votes_by_name(line_names)
    is_target = _is_target(table, opts)
    is_good = is_target & correct_redshift(table["Z_PRED"], table["Z"], opts.dz_max, opts.dv_max_kms)
    score_values = detection_score(c_line, votes, opts.min_lines)
    spread = (
        line_spread(c_line[:, votes], z_line[:, votes], c_line[:, votes].argmax(axis=1))
        if has_line_finder(loaded)
        else np.zeros(len(table))
    )
    calibration = fit_calibration(
        score_values,
        is_target,
        is_good,
        table["Z_PRED"].to_numpy(float),
        table["Z"].to_numpy(float),
        spread,
        working_point,
        opts.min_lines,
        opts.dz_max,
        opts.dv_max_kms,
    )
    write_calibrated_model_file(model, out_model, calibration.to_dict())
    record = {k: v for k, v in calibration.to_dict().items() if k != "counts"}
    record.update(
        model=str(model),
        validation_file=str(val),
        reliability_before=reliability(score_values, is_good),
        reliability_after=reliability(calibration.probability(score_values), is_good),
    )
    write_json_atomic(out_json, record)
    reliability_figure(
        out_figure,
        {"CONFIDENCE (before)": record["reliability_before"], "PROB (after)": record["reliability_after"]},
        f"{Path(model).parent.parent.name} on {Path(model).parent.name}: validation split "
        f"({len(table):,} spectra)",
    )
    v = calibration.validation
    log.info(
        "calibrated %s: beta %s, ECE %.3f -> %.3f on validation; working point %s at c > %.4f (PROB > %.3f): "
        "purity %.3f, efficiency %.3f; ZERR a=%.3g b=%.3g covers %.2f / %.2f",
        model,
        np.round(calibration.beta, 3).tolist(),
        v["ece_before"],
        v["ece_after"],
        calibration.working_point,
        calibration.threshold,
        calibration.threshold_prob,
        v["purity_at_working_point"],
        v["efficiency_at_working_point"],
        *calibration.zerr,
        v["zerr_coverage"]["within_1"],
        v["zerr_coverage"]["within_2"],
    )
    return calibration


def _is_target(table: pd.DataFrame, opts: ScoreOptions) -> np.ndarray:
    return table["SPECTYPE"].astype(str).str.strip().str.upper().to_numpy() == opts.target_class.upper()


def calibration_report(
    table: pd.DataFrame,
    c_line: np.ndarray,
    calibration: Calibration,
    opts: ScoreOptions,
    box_edges_wavelength: list[float],
) -> dict[str, Any]:
    """What a calibrated catalogue reaches on a test set (see the module docstring); `c_line` holds
    the voting lines' confidences."""
    if "PROB" not in table or "ZERR" not in table:
        raise LymannetError("a calibrated model's catalogue lacks PROB/ZERR: predict it again")
    is_target = _is_target(table, opts)
    z_true, z_pred = table["Z"].to_numpy(float), table["Z_PRED"].to_numpy(float)
    is_good = is_target & correct_redshift(z_pred, z_true, opts.dz_max, opts.dv_max_kms)
    prob = table["PROB"].to_numpy(float)
    test_fraction = float(is_target.mean())
    selected = (
        detection_score(c_line, np.ones(c_line.shape[1], bool), calibration.min_lines) > calibration.threshold
    )
    n_selected, n_good_selected = int(selected.sum()), int((selected & is_good).sum())
    good_selected = selected & is_good
    dz = z_pred - z_true
    intervals = working_point_intervals(selected, is_good, is_target)
    report = {
        "prob_outcome": f"target with {opts.correct_redshift_rule}",
        "validation_target_fraction": calibration.target_fraction,
        "test_target_fraction": test_fraction,
        "ece_before": reliability(
            detection_score(c_line, np.ones(c_line.shape[1], bool), calibration.min_lines), is_good
        )["ece"],
        "ece_after": reliability(prob, is_good)["ece"],
        "ece_after_prior_correction": reliability(
            prior_shift(prob, calibration.target_fraction, test_fraction), is_good
        )["ece"],
        "working_point": calibration.working_point,
        "working_point_threshold": calibration.threshold,
        "working_point_prob": calibration.threshold_prob,
        "n_selected_at_working_point": n_selected,
        "purity_at_working_point": n_good_selected / n_selected if n_selected else None,
        "efficiency_at_working_point": n_good_selected / int(is_target.sum()) if is_target.any() else None,
        "purity_at_working_point_interval": intervals["purity"].to_dict(),
        "efficiency_at_working_point_interval": intervals["efficiency"].to_dict(),
        "expected_purity_at_working_point": float(prob[selected].mean()) if n_selected else None,
        "zerr_coverage": zerr_coverage(dz[good_selected], table["ZERR"].to_numpy(float)[good_selected]),
        "zerr_median": (
            float(np.median(table["ZERR"].to_numpy(float)[good_selected])) if good_selected.any() else None
        ),
        "nz": nz_excess(z_pred[selected], z_true[is_target], box_edges_wavelength),
        "prior_check": prior_check(prob, is_target, is_good, calibration.target_fraction),
    }
    return report


PRIOR_CHECK_FRACTION = 0.6  # target fraction of the prior check's subsample


def prior_check(
    prob: np.ndarray,
    is_target: np.ndarray,
    is_good: np.ndarray,
    validation_fraction: float,
    fraction: float = PRIOR_CHECK_FRACTION,
    seed: int = 0,
) -> dict[str, Any]:
    """Does the prior correction work where only the class mix differs? The test set is subsampled
    (contaminants, or targets, dropped at random) to another target fraction; the ECE of PROB as
    it is and of PROB corrected from the validation's fraction to the subsample's are compared."""
    rng = np.random.default_rng(seed)
    targets, others = np.flatnonzero(is_target), np.flatnonzero(~is_target)
    if len(targets) < 10 or len(others) < 10:
        return {}
    n_others = int(round(len(targets) * (1 - fraction) / fraction))
    if n_others <= len(others):
        keep = np.concatenate([targets, rng.choice(others, n_others, replace=False)])
    else:
        keep = np.concatenate(
            [rng.choice(targets, int(round(len(others) * fraction / (1 - fraction))), replace=False), others]
        )
    sub_fraction = float(is_target[keep].mean())
    corrected = prior_shift(prob[keep], validation_fraction, sub_fraction)
    return {
        "target_fraction": sub_fraction,
        "n": int(len(keep)),
        "ece_uncorrected": reliability(prob[keep], is_good[keep])["ece"],
        "ece_corrected": reliability(corrected, is_good[keep])["ece"],
    }


def working_point_intervals(
    selected: np.ndarray, is_good: np.ndarray, is_target: np.ndarray
) -> dict[str, Interval]:
    """Bootstrap intervals (over test objects, by class) of purity and efficiency at the working point."""
    good_selected = selected & is_good

    def purity(rows: np.ndarray) -> np.ndarray:
        n = selected[rows].sum(axis=1)
        return np.where(n > 0, good_selected[rows].sum(axis=1) / np.maximum(n, 1), np.nan)

    def efficiency(rows: np.ndarray) -> np.ndarray:
        return good_selected[rows].sum(axis=1) / max(int(is_target.sum()), 1)

    return {
        name: bootstrap_interval(statistic, len(selected), strata=is_target, batched=True)
        for name, statistic in (("purity", purity), ("efficiency", efficiency))
    }


def calibration_columns(record: dict[str, Any], testset: str) -> dict[str, Any]:
    """The summary's calibration columns of one score record (empty for an uncalibrated run)."""
    report = record.get("calibration")
    if not report:
        return {}
    columns = {
        f"ece_before_{testset}": report["ece_before"],
        f"ece_after_{testset}": report["ece_after"],
        f"ece_prior_{testset}": report["ece_after_prior_correction"],
        f"wp_purity_{testset}": report["purity_at_working_point"],
        f"wp_efficiency_{testset}": report["efficiency_at_working_point"],
        f"zerr_within1_{testset}": report["zerr_coverage"]["within_1"],
        f"zerr_within2_{testset}": report["zerr_coverage"]["within_2"],
    }
    for figure in ("purity", "efficiency"):
        interval = Interval.from_dict(report.get(f"{figure}_at_working_point_interval"))
        if interval is not None:
            columns[f"wp_{figure}_{testset}_lo"], columns[f"wp_{figure}_{testset}_hi"] = (
                interval.lo68,
                interval.hi68,
            )
    return columns


def calibration_markdown(records: list[dict[str, Any]], testsets: list[str]) -> list[str]:
    """Per test set: ECE before/after, purity and efficiency reached at the working point (68%
    interval), ZERR coverage and the largest N(z) excess, one row per calibrated run."""
    calibrated = [r for r in records if r.get("calibration")]
    if not calibrated:
        return []
    lines = [
        "## Calibration, working point and redshift errors",
        "",
        "PROB is each network's detection score calibrated on its own validation split (beta calibration); "
        "ECE: expected calibration error in 10 equal-count bins, of the raw CONFIDENCE (before), of PROB "
        "(after) and of PROB corrected to the test set's target fraction (prior). The working point is chosen "
        "on the validation split; purity and efficiency are what it reaches on the test set (± the 68% "
        "bootstrap interval). ZERR: share of the correct selections with |dz| < ZERR and < 2 ZERR (goal "
        "0.68 and 0.95). N(z): the largest excess of the selected objects' N(z) over the true targets' "
        f"(bins of {NZ_BIN}) and its distance to the nearest Ly-alpha box edge of the line finder.",
        "",
    ]
    for testset in testsets:
        rows = [r for r in calibrated if r["testset"] == testset]
        if not rows:
            continue
        lines += [
            f"### {testset}",
            "",
            "| model | combo | working point | ECE before | ECE after | ECE prior | purity "
            "| efficiency | ZERR 1 / 2 | N(z) excess |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        for record in rows:
            c = record["calibration"]
            peak = c["nz"]["largest_excess"] or {}
            edge = peak.get("nearest_lya_box_edge_z")
            nz = (
                f"+{peak['excess']} at z {peak['z']:.2f}"
                + (f" (edge {edge:.2f})" if edge is not None else "")
                if peak
                else "n/a"
            )
            cells = [
                record["model"],
                record["combo"],
                ", ".join(f"{k} {v}" for k, v in c["working_point"].items()),
                f"{c['ece_before']:.3f}",
                f"{c['ece_after']:.3f}",
                f"{c['ece_after_prior_correction']:.3f}",
                _with_interval(c, "purity"),
                _with_interval(c, "efficiency"),
                f"{c['zerr_coverage']['within_1']:.2f} / {c['zerr_coverage']['within_2']:.2f}",
                nz,
            ]
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    return lines


def _with_interval(report: dict[str, Any], figure: str) -> str:
    interval = Interval.from_dict(report.get(f"{figure}_at_working_point_interval"))
    value = report.get(f"{figure}_at_working_point")
    if value is None:
        return "n/a"
    return interval.text() if interval is not None else f"{value:.3f}"


def nz_excess(
    z_selected: np.ndarray, z_targets: np.ndarray, box_edges_wavelength: list[float]
) -> dict[str, Any]:
    """N(z) of the selected objects (at their predicted z) against the true targets' N(z) in bins
    of NZ_BIN: the largest excess, and the Ly-alpha box edge nearest to it (DESI users have seen
    QuasarNET's box grid imprint features on N(z))."""
    if len(z_targets) == 0 or len(z_selected) == 0:
        return {"bin": NZ_BIN, "edges": [], "selected": [], "true": [], "largest_excess": None}
    low = np.floor(min(z_selected.min(), z_targets.min()) / NZ_BIN) * NZ_BIN
    high = max(z_selected.max(), z_targets.max()) + NZ_BIN
    edges = np.arange(low, high + NZ_BIN / 2, NZ_BIN)
    selected = np.histogram(z_selected, edges)[0]
    true = np.histogram(z_targets, edges)[0]
    excess = selected - true
    peak = int(np.argmax(excess))
    z_peak = float((edges[peak] + edges[peak + 1]) / 2)
    box_z = np.asarray(box_edges_wavelength, float) / LYA - 1.0
    nearest = float(box_z[np.argmin(np.abs(box_z - z_peak))]) if len(box_z) else None
    box_width = float(np.median(np.diff(box_z))) if len(box_z) > 1 else None
    return {
        "bin": NZ_BIN,
        "edges": edges.round(6).tolist(),
        "selected": selected.tolist(),
        "true": true.tolist(),
        "lya_box_edges_z": box_z.round(6).tolist(),
        "largest_excess": {
            "z": z_peak,
            "selected": int(selected[peak]),
            "true": int(true[peak]),
            "excess": int(excess[peak]),
            "poisson_sigma": float(excess[peak] / np.sqrt(max(true[peak], 1))),
            "nearest_lya_box_edge_z": nearest,
            "distance_in_box_widths": (
                abs(z_peak - nearest) / box_width if nearest is not None and box_width else None
            ),
        },
    }


# --------------------------------------------------------------------------- figures


def reliability_axes(ax: Any, curves: dict[str, dict[str, Any]]) -> None:
    ax.plot([0, 1], [0, 1], color="0.6", linestyle=":", label="perfectly calibrated")
    for (label, curve), marker in zip(curves.items(), "osD^"):
        ax.plot(
            curve["mean_probability"],
            curve["frequency"],
            marker=marker,
            linestyle="-",
            label=f"{label}: ECE {curve['ece']:.3f}",
        )
    ax.set(
        xlim=(0, 1),
        ylim=(0, 1),
        xlabel="predicted probability (10 equal-count bins)",
        ylabel="observed frequency of targets with a correct z",
        title="reliability",
    )
    ax.legend(fontsize=8, loc="upper left")


def reliability_figure(path: str, curves: dict[str, dict[str, Any]], title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .figures import save_figure

    fig, ax = plt.subplots(figsize=(5.2, 5))
    reliability_axes(ax, curves)
    fig.suptitle(title, fontsize=9)
    save_figure(fig, path)


def calibration_figure(
    path: str,
    table: pd.DataFrame,
    c_line: np.ndarray,
    calibration: Calibration,
    report: dict[str, Any],
    opts: ScoreOptions,
    title: str,
) -> None:
    """Reliability (before, after, after the prior correction), |dz| / ZERR of the correct
    selections, and N(z) selected vs true with the Ly-alpha box edges."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .figures import save_figure

    is_target = _is_target(table, opts)
    z_true, z_pred = table["Z"].to_numpy(float), table["Z_PRED"].to_numpy(float)
    is_good = is_target & correct_redshift(z_pred, z_true, opts.dz_max, opts.dv_max_kms)
    prob = table["PROB"].to_numpy(float)
    score = detection_score(c_line, np.ones(c_line.shape[1], bool), calibration.min_lines)
    fig, (ax_r, ax_z, ax_n) = plt.subplots(1, 3, figsize=(15, 4.6))
    reliability_axes(
        ax_r,
        {
            "CONFIDENCE": reliability(score, is_good),
            "PROB": reliability(prob, is_good),
            f"PROB for this mix ({report['test_target_fraction']:.2f})": reliability(
                prior_shift(prob, calibration.target_fraction, report["test_target_fraction"]), is_good
            ),
        },
    )
    good_selected = is_good & (score > calibration.threshold)
    ratio = np.abs(z_pred - z_true)[good_selected] / table["ZERR"].to_numpy(float)[good_selected]
    coverage = report["zerr_coverage"]
    ax_z.hist(np.clip(ratio, 0, 5), np.linspace(0, 5, 51), histtype="stepfilled", alpha=0.7)
    for k, share, style in ((1, coverage["within_1"], "--"), (2, coverage["within_2"], ":")):
        ax_z.axvline(k, color="k", linestyle=style, label=f"{100 * share:.0f}% within {k} ZERR")
    ax_z.legend(fontsize=8)
    ax_z.set(
        xlabel="|z - z_true| / ZERR (correct selections; last bin >= 5)",
        ylabel="targets",
        title=f"ZERR coverage (goal 68% / 95%), {coverage['n']} objects",
    )
    nz = report["nz"]
    if nz["edges"]:
        ax_n.stairs(nz["true"], nz["edges"], label="true targets", color="k")
        ax_n.stairs(nz["selected"], nz["edges"], label="selected at the working point (predicted z)")
        for z_edge in nz["lya_box_edges_z"]:
            if nz["edges"][0] <= z_edge <= nz["edges"][-1]:
                ax_n.axvline(z_edge, color="0.8", linewidth=0.6, zorder=0)
        peak = nz["largest_excess"]
        ax_n.annotate(
            f"largest excess +{peak['excess']}",
            (peak["z"], peak["selected"]),
            xytext=(0, 12),
            textcoords="offset points",
            ha="center",
            fontsize=8,
            arrowprops={"arrowstyle": "->"},
        )
        ax_n.legend(fontsize=8)
    ax_n.set(xlabel=f"z (bins of {NZ_BIN}; grey: Ly-alpha box edges)", ylabel="objects", title="N(z)")
    fig.suptitle(
        f"{title}: working point {calibration.working_point} -> purity "
        f"{_fmt(report['purity_at_working_point'])}, efficiency {_fmt(report['efficiency_at_working_point'])}",
        fontsize=10,
    )
    save_figure(fig, path)


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def select_model(models: list[str], out_model: str, out_json: str) -> str:
    """The run with the lowest best validation loss (`classify` model {best_by: val_loss}): its
    calibrated model file copied to `out_model`, every candidate's loss in `out_json`. The losses
    are each run's own validation split's, so this compares like with like only for runs on the
    same combo; across combos it prefers the combo with the easier validation split."""
    candidates = []
    for path in models:
        loaded = load_model_file(path)
        candidates.append(
            {
                "model_file": str(path),
                "best_val_loss": float((loaded.training or {}).get("best_val_loss", np.inf)),
                "run": f"{(loaded.config or {}).get('model', '?')} on "
                f"{(loaded.config or {}).get('combo', '?')}",
            }
        )
    if not candidates:
        raise LymannetError("no model to select from")
    best = min(candidates, key=lambda c: c["best_val_loss"])
    with atomic_path(out_model) as tmp:
        shutil.copyfile(best["model_file"], tmp)
    write_json_atomic(
        out_json, {"selected": best, "criterion": "lowest best validation loss", "candidates": candidates}
    )
    log.info(
        "selected %s (best validation loss %.4f) among %d runs",
        best["run"],
        best["best_val_loss"],
        len(candidates),
    )
    return best["model_file"]
