"""4MOST scoring: the presence CNN's purity and completeness by N_HI bin, the confusers' priority,
the training record beside every score (window decoding and segment labels:
test_fourmost_features.py)."""

import numpy as np

from lymannet.fourmost import score


def test_purity_completeness_by_bin_hand_case():
    from lymannet.fourmost import metrics

    out = metrics.purity_completeness_by_bin(
        np.array([20.4, 20.45, 20.8, 21.5]),
        np.array([True, False, True, True]),
        np.array([20.35, 20.9, 20.9, 21.2]),
        np.array([True, False, True, False]),
        metrics.NHI_EDGES,
    )
    assert list(out) == ["20.3-20.5", "20.5-21", ">21"]
    assert out["20.3-20.5"]["completeness"] == 0.5 and out["20.3-20.5"]["purity"] == 1.0
    assert (
        out["20.5-21"]["completeness"] == 1.0
        and out["20.5-21"]["purity"] == 0.5
        and out["20.5-21"]["n_detected"] == 2
    )
    assert out[">21"]["purity"] == 0.0


def test_confuser_priority():
    from lymannet.fourmost.metrics import confuser_of

    assert confuser_of(19.5, True, True) == "DLA next to it"
    assert confuser_of(19.5, False, True) == "sub-DLA (19-20.3)"
    assert confuser_of(17.5, False, True) == "BAL trough"
    assert confuser_of(17.5, False, False) == "Lyman-limit system (17-19)"
    assert confuser_of(np.nan, False, False) == "none of these"


def test_training_record():
    payload = {
        "parameters": 5,
        "train_seconds": 2.0,
        "history": {"epoch": [1, 2, 3]},
        "info": {"n_train": 40},
    }
    assert score.training_record(payload) == {
        "parameters": 5,
        "train_seconds": 2.0,
        "epochs": 3,
        "n_train": 40,
    }
