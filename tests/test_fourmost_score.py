"""4MOST scoring: window decoding inverts the labels, the presence CNN's bins and segment labels,
the training record beside every score."""

import numpy as np
import pandas as pd
import pytest

from lymannet.fourmost import features as ft
from lymannet.fourmost import score


def test_decode_windows_inverts_label_windows():
    by_row = {0: (np.array([1000.0]), np.array([21.3]))}
    windows = ft.label_windows(np.array([0, 0]), np.array([950.0, 1080.0]), 800, by_row)
    logit = np.where(windows.present == 1, 20.0, -20.0)
    output = np.stack([logit, windows.offset, windows.log_n - ft.LOG_NHI_CENTRE], axis=1).astype(np.float32)
    votes = ft.decode_windows(windows, output, 800)
    assert votes.position == pytest.approx([1000.0, 1000.0], abs=1e-3)
    assert votes.log_n == pytest.approx([21.3, 21.3], abs=1e-5)
    assert votes.probability == pytest.approx([1.0, 1.0])


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


def test_segment_labels_count_edge_dlas_in_label_any():
    from types import SimpleNamespace

    wave = 3600.0 + 0.5 * np.arange(4000)
    z_qso = 3.0
    # DLA centres 5 px and 150 px after the first segment's start (forest starts at Ly-beta)
    lo = ft.pixel_of(wave, 1025.72 * (1 + z_qso))
    first = int(lo) - 100
    centres = np.array([first + 5.0, first + 150.0])
    z_abs = ft.wavelength_of(wave, centres) / 1215.67 - 1
    data = SimpleNamespace(
        dla_wave=wave,
        sightlines=pd.DataFrame({"Z_QSO": [z_qso]}),
        dlas=pd.DataFrame({"ROW": [0, 0], "Z_ABS": z_abs, "LOG_NHI": [20.5, 21.0]}),
    )
    seg = ft.presence_segments(data, np.array([0]), 400, 200, 20)
    assert seg.starts[0] == first
    assert seg.label[0] == 1 and seg.label_any[0] == 1 and seg.ambiguous[0]
    assert seg.log_n[0] == pytest.approx(21.0)


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
