"""lymannet.holdout: held-out objects stratified by SPECTYPE, copies kept together, test sets from
their members."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import make_truth, write_spectra_file, read_both
from lymannet.errors import ConfigError
from lymannet.holdout import build_testset, split_holdout
from lymannet.spectra import SpectraFile, read_spectra

# ---------------------------------------------------------------------------------------------
# holdout, test sets, resampled templates


def test_holdout_stratified_by_spectype(tmp_path):
    truth = make_truth(200, z=3.0, spectype=["LBG"] * 120 + ["QSO"] * 40 + ["ELG"] * 40)
    source = write_spectra_file(tmp_path / "ingested.fits", truth)
    counts = split_holdout(source, tmp_path / "pool.fits", tmp_path / "hold.fits", 0.25, 1, "survey")
    assert counts == {"pool": 150, "holdout": 50}
    pool, pool_native = read_both(tmp_path / "pool.fits")
    held, held_native = read_both(tmp_path / "hold.fits")
    assert pool_native is not None and held_native is not None  # both layers kept
    assert held.truth["SPECTYPE"].value_counts().to_dict() == {"LBG": 30, "QSO": 10, "ELG": 10}
    assert set(pool.truth["TARGETID"]).isdisjoint(held.truth["TARGETID"])
    assert len(set(pool.truth["TARGETID"]) | set(held.truth["TARGETID"])) == 200
    before = read_spectra(source)
    row = int(np.flatnonzero(before.truth["TARGETID"] == held.truth["TARGETID"][0])[0])
    np.testing.assert_array_equal(held.flux[0], before.flux[row])
    split_holdout(source, tmp_path / "pool0.fits", tmp_path / "hold0.fits", 0.0, 1, "survey")
    assert (
        len(read_spectra(tmp_path / "hold0.fits")) == 0 and len(read_spectra(tmp_path / "pool0.fits")) == 200
    )
    # A test-only data set: every object held out, an empty (valid) training pool.
    assert split_holdout(source, tmp_path / "pool1.fits", tmp_path / "hold1.fits", 1.0, 1, "survey") == {
        "pool": 0,
        "holdout": 200,
    }
    assert (
        len(read_spectra(tmp_path / "pool1.fits")) == 0 and len(read_spectra(tmp_path / "hold1.fits")) == 200
    )


def test_holdout_keeps_copies_of_one_object_together(tmp_path):
    truth = make_truth(60, z=3.0)
    truth["PARENT_TARGETID"] = np.repeat(np.arange(20), 3)  # three spectra per object
    source = write_spectra_file(tmp_path / "ingested.fits", truth, native=False)
    split_holdout(source, tmp_path / "pool.fits", tmp_path / "hold.fits", 0.3, 2, "survey")
    held = read_spectra(tmp_path / "hold.fits").truth
    assert len(held) == 18 and held["PARENT_TARGETID"].value_counts().eq(3).all()


def test_testset_from_members(tmp_path):
    templates = make_truth(20, z=np.linspace(2.0, 3.9, 20), first_id=1, TEMPLATE=1, EXPTIME=7200.0)
    survey = make_truth(30, z=0.1, spectype=["LBG", "QSO", "ELG"] * 10, first_id=500)
    holdouts = {
        "templates": str(write_spectra_file(tmp_path / "t.fits", templates)),
        "survey": str(write_spectra_file(tmp_path / "s.fits", survey)),
    }
    members = [
        {"dataset": "templates", "select": {"spectype": ["LBG"], "z": [None, 2.6], "exptime": [7200]}},
        {"dataset": "survey", "select": {"spectype": ["QSO", "ELG"]}},
    ]
    output = tmp_path / "test_lowz.fits"
    assert build_testset(members, holdouts, 1, "test_lowz", output) == 7 + 20
    test = read_spectra(output)
    assert test.truth["TARGETID"].tolist()[:7] == list(range(1, 8))  # TARGETIDs kept
    with SpectraFile(output) as spectra_file:
        assert not spectra_file.has_native
    with pytest.raises(ConfigError, match="templatez"):
        build_testset([{"dataset": "templatez"}], holdouts, 1, "t", tmp_path / "x.fits")
