"""The summary table of every 4MOST figure of merit (one row per figure, with its bootstrap
interval and the slides' value beside it), as CSV columns and as Markdown.

It reads the metrics dictionaries the scoring rules wrote (:mod:`.score`, :mod:`.localisation`) and
the calibrated DLA catalogue's rows (:func:`.dla_catalogue.summary_rows`).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from ..bootstrap import N_RESAMPLES, Interval
from .score import PRESENCE_THRESHOLD

# What the slides report for each model, quoted beside ours in the summary.
SLIDES = {
    "dense": "test loss 0.0441, 548M parameters, 6,776 s",
    "gru": "MAPE 1.14%, 7,548 s",
    "quasarnet": "(not in the slides)",
    "dense_slides": "test loss 0.0441 (quantile-transformed target), 548M parameters, 6,776 s",
    "presence": "AUC 0.9154, 84,865 parameters",
    "location": "accuracy ~90%",
}
INTERVAL_KEYS = ("lo68", "hi68", "lo95", "hi95")


def _row(
    pipeline: str,
    model: str,
    figure: str,
    value: float,
    m: dict[str, Any],
    catastrophic: str = "",
    interval: dict[str, Any] | None = None,
) -> dict:
    """One summary row; ``interval``: the figure's bootstrap interval (Interval.to_dict()), its
    bounds in columns lo68, hi68, lo95, hi95 (NaN without one)."""
    bounds = {
        key: float("nan") if not interval or interval.get(key) is None else float(interval[key])
        for key in INTERVAL_KEYS
    }
    return {
        "pipeline": pipeline,
        "model": model,
        "figure": figure,
        "value": value,
        **bounds,
        "catastrophic (|dz|>0.1)": catastrophic,
        "parameters": m["parameters"],
        "train_seconds": m["train_seconds"],
        "epochs": m["epochs"],
        "slides": SLIDES[model],
    }


def _catastrophic_detail(m: dict[str, Any]) -> str:
    """ "3/100" and, with its interval, "3/100 (0.030 ± 0.017)"."""
    text = f"{m['n_catastrophic']}/{m['n']}"
    interval = Interval.from_dict(m.get("catastrophic_fraction_interval"))
    return f"{text} ({interval.text(digits=3)})" if interval is not None else text


def summary_table(
    redshift: list[dict[str, Any]],
    presence: dict[str, Any] | None,
    location: dict[str, Any] | None,
    catalogue_rows: list[dict[str, Any]] | None = None,
) -> pd.DataFrame:
    """One row per figure of merit (from the scoring rules' metrics), with the slides' value: the
    headline first, then the breakdowns (S/N, BAL, log N_HI bins) under the same pipeline; then
    `catalogue_rows`, the calibrated DLA catalogue's (:func:`.dla_catalogue.summary_rows`)."""
    rows = []
    for m in redshift:
        rows.append(
            _row(
                "redshift",
                m["model"],
                "MAPE [%]",
                m["mape_percent"],
                m,
                _catastrophic_detail(m),
                m.get("mape_percent_interval"),
            )
        )
        for group in ("by_snr", "by_bal"):
            for name, g in m.get(group, {}).items():
                rows.append(
                    _row(
                        "redshift",
                        m["model"],
                        f"MAPE [%], {name} (n={g['n']})",
                        g["mape_percent"],
                        m,
                        f"{g['catastrophic_fraction']:.3g}",
                    )
                )
    if presence:
        m = presence
        rows.append(
            _row("dla_presence", "presence", "AUC, all segments", m["auc"], m, interval=m.get("auc_interval"))
        )
        rows.append(
            _row(
                "dla_presence",
                "presence",
                "AUC, unambiguous segments only",
                m.get("auc_unambiguous", float("nan")),
                m,
            )
        )
        rows.append(
            _row(
                "dla_presence",
                "presence",
                f"completeness at p>={m.get('threshold', PRESENCE_THRESHOLD):g}",
                m.get("completeness", float("nan")),
                m,
                interval=m.get("completeness_interval"),
            )
        )
        rows.append(
            _row(
                "dla_presence",
                "presence",
                "purity",
                m.get("purity", float("nan")),
                m,
                interval=m.get("purity_interval"),
            )
        )
        for name, g in m.get("completeness_by_log_nhi", {}).items():
            rows.append(
                _row(
                    "dla_presence",
                    "presence",
                    f"completeness, log N_HI {name} (n={g['n_true']})",
                    g["completeness"],
                    m,
                )
            )
        for name, g in m.get("by_snr", {}).items():
            rows.append(
                _row(
                    "dla_presence",
                    "presence",
                    f"completeness / purity, S/N {name}",
                    g["completeness"],
                    m,
                    f"purity {g['purity']:.3g}",
                )
            )
        if m.get("main_false_positive_cause"):
            rows.append(
                _row(
                    "dla_presence",
                    "presence",
                    f"false positives: most on {m['main_false_positive_cause']}",
                    m["false_positive_causes"][m["main_false_positive_cause"]]
                    / max(sum(m["false_positive_causes"].values()), 1),
                    m,
                    str(m["false_positive_causes"]),
                )
            )
    if location:
        m = location
        rows.append(
            _row(
                "dla_location",
                "location",
                f"catalogue completeness (per DLA, {m['tolerance_angstrom']:g} A)",
                m["fraction_found_within_tolerance"],
                m,
                interval=m.get("fraction_found_within_tolerance_interval"),
            )
        )
        rows.append(
            _row(
                "dla_location",
                "location",
                "catalogue purity (per DLA)",
                m["purity"],
                m,
                interval=m.get("purity_interval"),
            )
        )
        for key, figure in (
            ("sightline_completeness", "sightline completeness"),
            ("sightline_purity", "sightline purity"),
        ):
            if key in m:
                rows.append(
                    _row("dla_location", "location", figure, m[key], m, interval=m.get(f"{key}_interval"))
                )
        for figure, key in (
            (
                f"found within {m['tolerance_angstrom']:g} A, S/N>{m['snr_min']:g}",
                "fraction_found_within_tolerance_snr_gt_min",
            ),
            ("position rms [A]", "position_rms_angstrom"),
            ("log N_HI rms [dex]", "log_nhi_rms_dex"),
        ):
            rows.append(_row("dla_location", "location", figure, m[key], m))
        for name, g in m.get("by_log_nhi", {}).items():
            rows.append(
                _row(
                    "dla_location",
                    "location",
                    f"completeness / purity, log N_HI {name}",
                    g["completeness"],
                    m,
                    f"purity {g['purity']:.3g}",
                )
            )
        for name, g in m.get("by_snr", {}).items():
            rows.append(
                _row(
                    "dla_location",
                    "location",
                    f"completeness / purity, S/N {name}",
                    g["completeness"],
                    m,
                    f"purity {g['purity']:.3g}",
                )
            )
        for name, g in m.get("log_nhi_residual_by_log_nhi", {}).items():
            rows.append(
                _row(
                    "dla_location",
                    "location",
                    f"log N_HI bias [dex], true {name}",
                    g["bias_dex"],
                    m,
                    f"rms {g['rms_dex']:.3g}",
                )
            )
        if m.get("main_false_positive_cause"):
            total = max(sum(m["false_positive_causes"].values()), 1)
            rows.append(
                _row(
                    "dla_location",
                    "location",
                    f"false positives: most on {m['main_false_positive_cause']}",
                    m["false_positive_causes"][m["main_false_positive_cause"]] / total,
                    m,
                    str(m["false_positive_causes"]),
                )
            )
    rows += catalogue_rows or []
    table = pd.DataFrame(rows).rename(columns={"catastrophic (|dz|>0.1)": "detail"})
    if len(table):  # the slides' figure once per model, on its headline row
        table.loc[table.duplicated(["pipeline", "model"]), "slides"] = ""
    return table


def summary_markdown(table: pd.DataFrame, size: str) -> str:
    """The summary table as Markdown, floats to 4 significant digits; a value with a bootstrap
    interval as "value ± half-width of the 68% interval" (the bounds stay in the CSV)."""
    columns = [c for c in table.columns if c not in INTERVAL_KEYS]
    lines = [f"# 4MOST quasar pipelines: {size} set (test split)", ""]
    if all(k in table for k in INTERVAL_KEYS) and np.isfinite(table["lo68"].to_numpy(float)).any():
        lines += [
            f"± is the half-width of the 68% interval of a percentile bootstrap ({N_RESAMPLES} resamples) "
            "over the test sightlines: whole sightlines resampled, since the segments and windows of one "
            "sightline overlap; the CSV gives the 68% (lo68, hi68) and 95% (lo95, hi95) bounds.",
            "",
        ]
    lines += ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for _, r in table.iterrows():
        cells = []
        for c in columns:
            v = r[c]
            if (
                c == "value"
                and isinstance(v, float)
                and np.isfinite([r.get("lo68", np.nan), r.get("hi68", np.nan)]).all()
            ):
                cells.append(f"{v:.4g} ± {0.5 * (r['hi68'] - r['lo68']):.2g}")
            else:
                cells.append(f"{v:.4g}" if isinstance(v, float) else str(v))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
