"""A survey run (lymannet.survey): bad files listed with their reason and the others classified,
counted and merged into one catalogue (one file's classification: test_classify.py)."""

from __future__ import annotations

import numpy as np
import torch

from conftest import QUASARNP_WEIGHTS as WEIGHTS
from conftest import needs_quasarnp
from conftest import read_qn_catalogue as read_catalogue
from lymannet.coadd import ZWARN_BITS
from lymannet.survey import classify_survey

torch.set_num_threads(1)


@needs_quasarnp
def test_bad_files_are_listed_and_the_others_classified(survey_folder, tmp_path):
    out = tmp_path / "out"
    summary = classify_survey(WEIGHTS, [str(survey_folder / "*/*/*/*/coadd-*.fits")], out, {"device": "cpu"})
    failures = (out / "failures.tsv").read_text().splitlines()
    assert failures[0] == "file\treason" and len(failures) == 4
    reasons = dict(line.split("\t") for line in failures[1:])
    assert "truncated" in reasons[str(survey_folder / "main/dark/100/10017/coadd-main-dark-10017.fits")]
    assert (
        "not a readable FITS file"
        in reasons[str(survey_folder / "main/dark/100/10018/coadd-main-dark-10018.fits")]
    )
    assert (
        "missing HDU R_IVAR" in reasons[str(survey_folder / "main/dark/100/10019/coadd-main-dark-10019.fits")]
    )
    catalogue, header = read_catalogue(out / "catalogue.fits")
    assert header["NFILES"] == 6 and header["NFAILED"] == 3
    # Each good coadd mirrored below the output, and counted: 25 + 5 + 5 fibres read, the EDR
    # files' sky fibres and negative TARGETIDs left out (as ingestion does), row 11 without data.
    for name in (
        "sv3/dark/260/26065/coadd-sv3-dark-26065.fits",
        "main/dark/100/10016/coadd-main-dark-10016.fits",
    ):
        assert (out / name).is_file()
    counts = dict(summary.table())
    assert counts["coadd files"] == 6 and counts["files that failed (failures.tsv)"] == 3
    # One row per fibre read; the rows not classified carry their reason in ZWARN.
    classified = catalogue["ZWARN"] == 0
    assert counts["fibres read"] == 35 == len(catalogue) and counts["spectra classified"] == classified.sum()
    not_science = (catalogue["ZWARN"] & (ZWARN_BITS["NOT_TARGET"] | ZWARN_BITS["BAD_FIBERSTATUS"])) > 0
    assert counts["non-science fibres left out"] == not_science.sum() > 0
    assert (
        counts["spectra without valid pixels, left out"]
        == ((catalogue["ZWARN"] & ZWARN_BITS["NODATA"]) > 0).sum()
    )
    assert np.isnan(catalogue["Z"][~classified]).all() and (catalogue["IS_QSO_QN"][~classified] == 0).all()
    from_edr = np.char.startswith(np.char.strip(catalogue["COADD"].astype(str)), "sv") & classified
    assert from_edr.sum() == 35 - 25 - counts["non-science fibres left out"]  # test_coadd: 24 + 1 empty
    assert (catalogue["TARGETID"][from_edr] > 0).all() and np.isfinite(catalogue["TARGET_RA"][from_edr]).all()
    assert (catalogue["TARGETID"][not_science & ~from_edr] <= 0).any() or not_science.any()
    assert (out / "summary.png").stat().st_size > 10_000 and "QSO (IS_QSO_QN = 1)" in (
        out / "summary.md"
    ).read_text()
    # No temporary file is left behind anywhere.
    assert not [p for p in out.rglob("*") if p.name.endswith(".part")]
