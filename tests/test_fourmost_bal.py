"""BAL masking (lymannet.fourmost.bal): the troughs' pixel ranges, the vote mask, and training
windows centred in the troughs."""

import numpy as np
import pytest

from conftest import dla_ingested as _data
from lymannet.fourmost import bal as balmod
from lymannet.fourmost import features as ft
from lymannet.lines import LYA
from lymannet.physics import C_KMS


def test_trough_ranges_and_the_vote_mask():
    data = _data()
    ranges = balmod.trough_pixel_ranges(data)
    assert set(ranges) == {1}  # only the flagged sightline
    lo, hi = ranges[1][3]  # Ly-alpha trough: 15000 .. 5000 km/s blueward of 1215.67 (1 + z)
    assert ft.wavelength_of(data.dla_wave, lo) == pytest.approx(LYA * (1 - 15000 / C_KMS) * 4.0)
    assert ft.wavelength_of(data.dla_wave, hi) == pytest.approx(LYA * (1 - 5000 / C_KMS) * 4.0)
    # a flagged sightline without trough velocities gets the default outflow range
    no_table = balmod.trough_pixel_ranges(_data(bals_table=False))
    assert ft.wavelength_of(data.dla_wave, no_table[1][3][0]) == pytest.approx(
        LYA * (1 - 25000 / C_KMS) * 4.0
    )
    windows = ft.Windows(np.array([1, 1, 0]), np.zeros(3), np.zeros(3), np.zeros(3), np.zeros(3))
    inside = 0.5 * (lo + hi)
    votes = ft.WindowVotes(np.ones(3), np.array([inside, lo - 200.0, inside]), np.full(3, 21.0))
    keep = balmod.vote_mask(data, margin_angstrom=10.0)(windows, votes)
    assert keep.tolist() == [False, True, True]  # the BAL sightline's trough vote only
    just_outside = ft.WindowVotes(
        np.ones(1), np.array([lo - 10.0]), np.full(1, 21.0)
    )  # 5 A outside: in the margin
    assert not balmod.vote_mask(data, 10.0)(ft.Windows(np.array([1]), *np.zeros((4, 1))), just_outside)[0]


def test_trough_window_centres_fall_inside_the_forest_part_of_the_troughs():
    data = _data()
    rows, centres = balmod.trough_window_centres(data, np.arange(3), 5, np.random.default_rng(0))
    assert rows.tolist() == [1] * 5
    ranges = balmod.trough_pixel_ranges(data)[1]
    lo_f, hi_f = ft.forest_pixels(data.dla_wave, data.sightlines["Z_QSO"].to_numpy())
    for c in centres:
        assert lo_f[1] - 1 <= c <= hi_f[1] + 1
        assert any(lo - 1 <= c <= hi + 1 for lo, hi in ranges)
