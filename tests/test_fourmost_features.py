"""4MOST DLA features (lymannet.fourmost.features): windows cut and padded, window labels and their
decoding, presence segments, and windows centred on sub-DLAs."""

import numpy as np
import pandas as pd
import pytest

from conftest import dla_ingested as _data
from lymannet.fourmost import features as ft


def test_cut_windows_pads_outside_the_grid():
    channels = np.arange(2 * 10, dtype=np.float32).reshape(1, 2, 10)
    out = ft.cut_windows(channels, np.array([0, 0]), np.array([-2, 7]), 5)
    assert out.shape == (2, 2, 5)
    assert out[0, 0].tolist() == [ft.PAD_FLUX, ft.PAD_FLUX, 0, 1, 2]
    assert out[1, 1].tolist() == [17, 18, 19, ft.PAD_SIGMA, ft.PAD_SIGMA]


def test_window_labels():
    by_row = {0: (np.array([100.0, 300.0]), np.array([20.5, 21.5]))}
    w = ft.label_windows(np.array([0, 0, 0]), np.array([110.0, 290.0, 200.0]), 160, by_row)
    assert w.present.tolist() == [1, 1, 0]
    assert w.offset[:2] == pytest.approx([-10 / 40, 10 / 40])
    assert w.log_n[:2] == pytest.approx([20.5, 21.5])


def test_decode_windows_inverts_label_windows():
    by_row = {0: (np.array([1000.0]), np.array([21.3]))}
    windows = ft.label_windows(np.array([0, 0]), np.array([950.0, 1080.0]), 800, by_row)
    logit = np.where(windows.present == 1, 20.0, -20.0)
    output = np.stack([logit, windows.offset, windows.log_n - ft.LOG_NHI_CENTRE], axis=1).astype(np.float32)
    votes = ft.decode_windows(windows, output, 800)
    assert votes.position == pytest.approx([1000.0, 1000.0], abs=1e-3)
    assert votes.log_n == pytest.approx([21.3, 21.3], abs=1e-5)
    assert votes.probability == pytest.approx([1.0, 1.0])


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


def test_absorber_window_centres_pick_sub_dlas():
    data = _data()
    rows, centres = ft.absorber_window_centres(
        data, np.arange(3), (19.0, 20.3), 2, 800, np.random.default_rng(0)
    )
    assert rows.tolist() == [0, 0]
    assert np.all(np.abs(centres - 2000.0) <= 200.0)
