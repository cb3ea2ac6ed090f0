"""lymannet.compare_plots: the compare stage's figures (P/E curves overlaid, scores per combo)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from lymannet.bootstrap import Interval
from lymannet.compare_plots import (
    _logit_limits,
    _score_label,
    combos_figure,
    compare_pe_figure,
    crossing_from,
)
from lymannet.metrics import Crossing

PNG = b"\x89PNG"


def curve(score: float) -> pd.DataFrame:
    """A P/E curve crossing at (0.5, score): purity rising, efficiency falling through it."""
    threshold = np.linspace(0, 1, 21)
    return pd.DataFrame(
        {
            "THRESHOLD": threshold,
            "PURITY": score + 0.2 * (threshold - 0.5),
            "EFFICIENCY": score - 0.4 * (threshold - 0.5),
        }
    )


def test_crossing_from_a_score_json():
    assert crossing_from(
        {"score": 0.8, "threshold_at_crossing": 0.3, "crossing_on_grid_point": True}
    ) == Crossing(0.8, 0.3, True, "")
    undefined = crossing_from({"score": None, "threshold_at_crossing": None})
    assert np.isnan(undefined.score) and np.isnan(undefined.threshold) and undefined.exact is False


def test_score_label_and_logit_limits():
    crossing = Crossing(0.8, 0.5, False, "")
    interval = Interval(0.8, 0.78, 0.82, 0.76, 0.84, 100)
    assert _score_label(crossing, interval) == "score 0.800 ± 0.020 (68%)"
    assert _score_label(crossing, None) == "score 0.800"
    assert _score_label(Crossing(np.nan, np.nan, False, "no target"), interval) == "score n/a"
    low, high = _logit_limits(0.8, 0.999)
    assert 0 < low < 0.8 and 0.999 < high < 1
    # 1.5 logit units either side
    assert np.log(0.8 / 0.2) - np.log(low / (1 - low)) == pytest.approx(1.5)
    assert _logit_limits(0.0, 1.0) == pytest.approx((1e-6 / np.e**1.5, 1 - 1e-6 / np.e**1.5), rel=1e-3)


def test_compare_pe_figure_draws_runs_with_and_without_scores(tmp_path):
    entries = [
        ("a", curve(0.8), Crossing(0.8, 0.5, False, "")),
        ("b", curve(0.6), Crossing(0.6, 0.5, False, "")),
    ]
    intervals = [Interval(0.8, 0.78, 0.82, 0.76, 0.84, 100), None]
    compare_pe_figure(tmp_path / "two.png", entries, "two runs", chance=[0.1, 0.12], intervals=intervals)
    assert (tmp_path / "two.png").read_bytes()[:4] == PNG
    undefined = [("c", curve(0.5), Crossing(np.nan, np.nan, False, "no target"))]
    compare_pe_figure(tmp_path / "none.png", undefined, "no score", chance=None)
    assert (tmp_path / "none.png").read_bytes()[:4] == PNG


def test_combos_figure_draws_bars_with_intervals_and_an_empty_table(tmp_path):
    table = pd.DataFrame(
        {
            "model": ["m", "m"],
            "combo": ["low", "high"],
            "score_t": [0.5, np.nan],
            "score_t_lo": [0.45, np.nan],
            "score_t_hi": [0.55, np.nan],
            "chance_t": [0.1, 0.1],
        }
    )
    combos_figure(tmp_path / "combos.png", table, ["t"], "scores", chances={"t": 0.1})
    assert (tmp_path / "combos.png").read_bytes()[:4] == PNG
    combos_figure(tmp_path / "empty.png", table.iloc[:0], ["t"], "no scores")
    assert (tmp_path / "empty.png").read_bytes()[:4] == PNG
