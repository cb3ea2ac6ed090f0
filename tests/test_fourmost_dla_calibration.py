"""DLA calibration (lymannet.fourmost.dla_calibration): the S/N footprint the catalogue is scored
on, and NHI_ERR fitted on validation to cover 68%."""

import numpy as np
import pandas as pd
import pytest

from conftest import dla_calibration_record as _record
from conftest import dla_candidates as _candidates
from lymannet.fourmost import dla_calibration as dc
from lymannet.fourmost import dla_catalogue as dcat
from lymannet.fourmost import dla_probability as dp
from lymannet.fourmost import dla_rates


def test_footprint_keeps_the_sightlines_of_high_snr_and_scores_only_them():
    data, truth, cat = _candidates()  # sightline S/N 1, 5, 9; the DLA on sightline 0
    assert dc.in_footprint(data, np.arange(3), 2.0).tolist() == [1, 2]
    assert dc.in_footprint(data, np.array([0, 2]), 0.0).tolist() == [0, 2]
    inside, in_cat, in_truth = dc.footprint_of(data, np.arange(3), 2.0, cat, truth)
    assert in_cat.tolist() == [False, False, False, True] and len(in_truth) == 0
    rates = dla_rates.catalogue_rates(in_truth, cat, in_cat, inside)
    # the footprint holds one candidate (the false one on the BAL sightline) and no DLA
    assert rates["n_true"] == 0 and rates["n_selected"] == 1 and rates["purity"] == 0.0
    assert np.isnan(rates["completeness"])
    record = _record() | {"footprint_snr_min": 2.0}
    header = {card["name"]: card["value"] for card in dcat.catalogue_header(record, "test")}
    assert header["SNRMIN"] == 2.0


def test_fit_nhi_err_reaches_68_percent_on_validation():
    rng = np.random.default_rng(4)
    n = 400
    spread = rng.uniform(0.02, 0.3, n)
    sigma = np.hypot(0.1, 1.5 * spread)
    cat = pd.DataFrame(
        {"LOG_NHI_SPREAD": spread, "LOG_NHI": 20.8 + rng.normal(0, sigma), "TRUE_LOG_NHI": 20.8}
    )
    a, b = dc.fit_nhi_err(cat, np.ones(n, bool))
    cat["NHI_ERR"] = dc.nhi_err(cat, (a, b))
    coverage = dc.nhi_err_coverage(cat, np.ones(n, bool))
    assert coverage["within_1"] == pytest.approx(0.68, abs=0.03)
    assert coverage["within_2"] == pytest.approx(0.95, abs=0.04)
    assert dc.fit_nhi_err(cat.iloc[:3], np.ones(3, bool)) == dp.DEFAULT_NHI_ERR  # too few: the default
