"""lymannet.experiment_seeds: the seed-to-seed spread, the ensembles against their members and the
k-seed ensembles (kind: seeds)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from lymannet.ensemble import ensemble_file
from lymannet.experiment_seeds import compare_seeds
from lymannet.lines import Line
from lymannet.predict import write_catalogue
from lymannet.score import score_catalogue

LINE = Line("LYA", 1215.67, "emission")


def test_seeds_experiment_tables_the_spread_and_the_k_seed_ensembles(tmp_path):
    testsets = ["test_z3"]
    rng = np.random.default_rng(3)
    predictions, scores = [], []
    members = {"m": 0, "m.seed1": 1, "m.seed2": 2}
    truth_z = np.r_[rng.uniform(2.5, 3.5, 40), rng.uniform(0.1, 1.0, 60)]
    spectype = ["LBG"] * 40 + ["ELG"] * 60
    for model in list(members) + ["m.ensemble"]:
        folder = tmp_path / "predictions" / model / "c"
        folder.mkdir(parents=True)
        path = folder / "test_z3.fits"
        if model == "m.ensemble":
            ensemble_file(predictions, [0, 1, 2], path, "m.ensemble/c")
        else:
            prob = np.clip(np.r_[rng.normal(0.7, 0.2, 40), rng.normal(0.3, 0.2, 60)], 0, 1)
            z = np.where(rng.random(100) < 0.9, truth_z, truth_z + 0.5)
            table = pd.DataFrame(
                {
                    "TARGETID": np.arange(100),
                    "Z": truth_z,
                    "SPECTYPE": spectype,
                    "Z_PRED": z,
                    "BEST_LINE": "LYA",
                    "C_BEST": prob,
                    "IS_LBG": prob > 0.5,
                    "PROB": prob,
                    "ZERR": np.full(100, 0.01),
                    "C_LYA": prob,
                    "Z_LYA": z,
                }
            )
            write_catalogue(path, table, (LINE,), [{"name": "MODEL", "value": model}], {})
            predictions.append(str(path))
        out = [str(tmp_path / f"{model}.{e}") for e in ("json", "csv", "png")]
        score_catalogue(str(path), {"bootstrap": {"n_resamples": 50}}, model, "c", "test_z3", *out)
        scores.append(out[0])
    spec = {
        "kind": "seeds",
        "title": "seeds",
        "runs": [{"model": "m", "combo": "c", "seeds": 3, "ensemble": True}],
    }
    paths = [str(tmp_path / n) for n in ("fig.png", "table.md", "table.csv")]
    result = compare_seeds(spec, scores, predictions, [], testsets, {}, *paths, name="seeds")
    row = result.iloc[0]
    member_scores = [row[f"seed{k}"] for k in range(3)]
    assert row["mean"] == pytest.approx(np.mean(member_scores))
    assert row["sd"] == pytest.approx(np.std(member_scores, ddof=1))
    assert row["ensemble_minus_best"] == pytest.approx(row["ensemble"] - max(member_scores))
    # k = 1: the members' own scores (PROB ranks as their confidences); k = 3: the full ensemble
    assert row["k1_mean"] == pytest.approx(row["mean"]) and row["k1_n"] == 3
    assert row["k3_mean"] == pytest.approx(row["ensemble"]) and row["k2_n"] == 3
    assert "| test_z3 |" in Path(paths[1]).read_text()
    assert Path(paths[0]).read_bytes()[:4] == b"\x89PNG"
