"""lymannet.selection: the `select` criteria of variant recipes and their errors."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from conftest import make_truth, write_spectra_file, read_both, run_variant
from lymannet.errors import ConfigError
from lymannet.selection import select_rows, validate_select

# ---------------------------------------------------------------------------------------------
# selection


@pytest.fixture
def mixed_truth() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    n = 2000
    return pd.DataFrame(
        {
            "TARGETID": np.arange(n),
            "Z": np.round(rng.uniform(0, 4, n), 1),
            "SPECTYPE": rng.choice(["LBG", "QSO", "ELG"], n),
            "TEMPLATE": rng.integers(0, 4, n),
            "MAG_R": rng.uniform(22, 25, n),
            "EXPTIME": rng.choice([1800.0, 7200.0], n),
        }
    )


def test_select_by_each_criterion(mixed_truth):
    rng = np.random.default_rng(0)
    t = mixed_truth

    def rows(**criteria):
        return select_rows(t, validate_select(criteria, "test"), rng)

    np.testing.assert_array_equal(rows(spectype=["QSO", "ELG"]), t["SPECTYPE"].isin(["QSO", "ELG"]))
    np.testing.assert_array_equal(rows(z=[2.6, None]), t["Z"] >= 2.6 - 1e-9)
    np.testing.assert_array_equal(rows(z=[None, 2.6]), t["Z"] <= 2.6 + 1e-9)  # 2.6 itself is in
    assert rows(z=[None, 2.6]).sum() > (t["Z"] < 2.6).sum()
    np.testing.assert_array_equal(rows(template=[0, 3]), t["TEMPLATE"].isin([0, 3]))
    np.testing.assert_array_equal(rows(mag_r=[23, 24]), t["MAG_R"].between(23, 24))
    np.testing.assert_array_equal(rows(exptime=[7200]), t["EXPTIME"] == 7200)
    both = rows(spectype=["LBG"], z=[2.7, None])
    np.testing.assert_array_equal(both, (t["SPECTYPE"] == "LBG") & (t["Z"] >= 2.7 - 1e-9))
    half = rows(spectype=["LBG"], fraction=0.5)
    assert half.sum() == round(0.5 * (t["SPECTYPE"] == "LBG").sum())
    assert (t["SPECTYPE"][half] == "LBG").all()
    third = rows(fraction=0.3333333)
    assert third.sum() == round(len(t) / 3)


@pytest.mark.parametrize(
    "criteria",
    [{"z": [3, 2]}, {"z": 3}, {"fraction": 1.5}, {"fraction": 0}, {"colour": ["red"]}, {"exptime": ["long"]}],
)
def test_bad_selection_raises(criteria):
    with pytest.raises(ConfigError):
        validate_select(criteria, "variant 'x'")


def test_select_and_simulated_ops_in_a_recipe(tmp_path):
    truth = make_truth(24, z=np.tile([2.0, 3.0, 4.0], 8))
    truth["TEMPLATE"] = np.repeat([0, 1, 2, 3], 6)
    truth["EXPTIME"] = np.tile([1800.0, 7200.0], 12)
    source = write_spectra_file(tmp_path / "templates.fits", truth, native=False)
    network, _ = read_both(
        run_variant(
            tmp_path,
            source,
            [{"simulated": {"exptime": [7200], "templates": [1, 2]}}, {"select": {"z": [2.5, None]}}],
        )
    )
    t = network.truth
    assert len(t) == 4 and (t["EXPTIME"] == 7200).all() and t["TEMPLATE"].isin([1, 2]).all()
    assert (t["Z"] >= 2.5).all()
    half, _ = read_both(
        run_variant(
            tmp_path, source, [{"simulated": {"exptime": [1800]}}, {"select": {"fraction": 0.5}}], name="half"
        )
    )
    assert len(half) == 6
