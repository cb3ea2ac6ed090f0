"""DLA catalogue rates (lymannet.fourmost.dla_rates): strict and sub-DLA-neutral purity and
completeness, per S/N bin, and with sightlines weighted."""

import numpy as np
import pytest

from conftest import dla_candidates as _candidates
from lymannet.fourmost import dla_rates


def test_sub_dla_neutral_scoring():
    data, truth, cat = _candidates()
    assert cat["TRUE_MATCH"].tolist() == [0, -1, -1, -1]
    assert cat["NEUTRAL"].tolist() == [False, True, False, False]
    everything = np.ones(4, bool)
    strict = dla_rates.catalogue_rates(truth, cat, everything, np.arange(3))
    neutral = dla_rates.catalogue_rates(truth, cat, everything, np.arange(3), neutral=True)
    assert strict["purity"] == pytest.approx(1 / 4) and strict["n_false"] == 3
    assert neutral["purity"] == pytest.approx(1 / 3) and neutral["n_false"] == 2 and neutral["n_neutral"] == 1
    assert strict["completeness"] == neutral["completeness"] == 1.0
    assert strict["sightline_purity"] == pytest.approx(1 / 2)  # sightlines 0 (a true one) and 1 (false only)
    cut = dla_rates.catalogue_rates(
        truth, cat, np.array([False, True, True, True]), np.arange(3), intervals=True
    )
    assert cut["completeness"] == 0.0 and cut["purity"] == 0.0  # the true DLA's candidate not selected
    assert cut["completeness_interval"]["value"] == 0.0
    by_snr = dla_rates.rates_by_bin(truth, cat, everything, np.arange(3), False, "SNR", (0.0, 2.0, 8.0, 99.0))
    assert (
        by_snr["0-2"]["n_true"] == 1
        and by_snr["0-2"]["completeness"] == 1.0
        and by_snr["0-2"]["n_selected"] == 3
    )
    assert by_snr["2-8"]["n_selected"] == 1 and by_snr["2-8"]["purity"] == 0.0


def test_weighted_rates_count_each_sightline_by_its_weight():
    data, truth, cat = _candidates()
    weights = np.array([2.0, 1.0, 1.0])
    rates = dla_rates.catalogue_rates(truth, cat, np.ones(4, bool), np.arange(3), weights=weights)
    assert rates["purity"] == pytest.approx(2.0 / (3 * 2.0 + 1.0))
