"""The 4MOST pipelines inside the main workflow: planned by a dry run, and run by the demo."""

import json

import numpy as np
import pytest

from conftest import REPO, copy_workflow, snakemake

RULES = (
    "fourmost_simulate",
    "fourmost_ingest",
    "fourmost_train",
    "fourmost_score_redshift",
    "fourmost_score_dla_presence",
    "fourmost_calibrate_dla",
    "fourmost_score_dla_location",
    "fourmost_summary",
)


def test_dry_run_plans_every_fourmost_rule(tmp_path):
    workdir = copy_workflow(tmp_path)
    result = snakemake(workdir, "--dry-run", "--cores", "2", "results/fourmost/demo/summary.md", timeout=300)
    for rule in RULES:
        assert rule in result.stdout


@pytest.mark.slow
def test_demo_runs_the_fourmost_pipelines(demo_run):
    root = demo_run / "results" / "fourmost" / "demo"
    assert (root / "summary.md").read_text().count("|") > 20
    for name in ("dense", "gru", "quasarnet"):
        metrics = json.loads((root / "redshift" / name / "metrics.json").read_text())
        assert metrics["n"] > 0
    assert 0 <= json.loads((root / "dla_presence" / "metrics.json").read_text())["auc"] <= 1
    assert (demo_run / "logs" / "fourmost" / "demo" / "simulate.log").exists()
    # the calibrated DLA catalogue (issue 25): the DESI-style file, its header, the ladder in the summary
    import fitsio

    header = fitsio.read_header(str(root / "dla_location" / "dla_catalogue.fits"), ext="DLACAT")
    assert {"WPPROB", "WPGOAL", "LOCHASH", "BALMETH", "PROBFOR", "SNRMIN"} <= set(header.keys())
    calibrated = json.loads((root / "dla_location" / "metrics.json").read_text())["calibrated"]
    assert set(calibrated["ladder"]) == {
        "network",
        "calibrated",
        "working_point",
        "bal",
        "neutral",
        "footprint",
        "footprint_neutral",
    }
    # the footprint: SELECTED only on sightlines of S/N >= SNRMIN
    table = fitsio.read(str(root / "dla_location" / "dla_catalogue.fits"), ext="DLACAT")
    assert header["SNRMIN"] == 2.0 and not np.any(table["SELECTED"] & (table["SNR"] < header["SNRMIN"]))
    assert "ECE of DLA_PROB" in (root / "summary.md").read_text()
    assert (root / "models" / "location_calibrated.pt").exists() and (
        root / "dla_calibration" / "reliability.png"
    ).exists()


def test_medium_overlay_plans_the_calibrated_dla_catalogue(tmp_path):
    """config/fourmost_medium.yaml: the medium size (3,000 spectra, 60/20/20), the DLA pipelines and
    the dense regressor only, both localisers (the BAL handling is chosen on validation)."""
    import yaml
    from snakemake.utils import update_config, validate

    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    update_config(config, yaml.safe_load((REPO / "config" / "fourmost_medium.yaml").read_text()))
    fourmost = config["fourmost"]
    validate(fourmost, str(REPO / "workflow" / "schemas" / "fourmost.schema.yaml"))
    assert fourmost["size"] == "medium" and fourmost["sizes"]["medium"]["n_spectra"] == 3000
    assert fourmost["sizes"]["medium"]["split"]["test"] == 0.2 and fourmost["dla"]["bal"]["method"] == "best"
    workdir = copy_workflow(tmp_path)
    result = snakemake(
        workdir,
        "--dry-run",
        "--cores",
        "2",
        "results/fourmost/medium/summary.md",
        "results/fourmost/medium/dla_location/dla_catalogue.fits",
        "--configfile",
        "config/config.yaml",
        "config/fourmost_medium.yaml",
        timeout=300,
    )
    for planned in (
        "models/location_bal.pt",
        "models/location_calibrated.pt",
        "dla_location/dla_catalogue.fits",
    ):
        assert f"results/fourmost/medium/{planned}" in result.stdout
    assert "models/gru.pt" not in result.stdout


def test_full_overlay_plans_one_localiser(tmp_path):
    """config/fourmost_full.yaml: the full size (10,000 spectra, 80/10/10) with the BAL troughs
    masked, so one localiser trains (no BAL-negatives twin) and no GRU."""
    import yaml
    from snakemake.utils import update_config, validate

    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    update_config(config, yaml.safe_load((REPO / "config" / "fourmost_full.yaml").read_text()))
    fourmost = config["fourmost"]
    validate(fourmost, str(REPO / "workflow" / "schemas" / "fourmost.schema.yaml"))
    assert fourmost["size"] == "full" and fourmost["sizes"]["full"]["n_spectra"] == 10000
    assert fourmost["dla"]["bal"]["method"] == "mask" and fourmost["dla"]["calibration"]["purity"] == 0.85
    workdir = copy_workflow(tmp_path)
    result = snakemake(
        workdir,
        "--dry-run",
        "--cores",
        "2",
        "results/fourmost/full/summary.md",
        "results/fourmost/full/dla_location/dla_catalogue.fits",
        "--configfile",
        "config/config.yaml",
        "config/fourmost_full.yaml",
        timeout=300,
    )
    assert "results/fourmost/full/models/location_calibrated.pt" in result.stdout
    assert "results/fourmost/full/dla_location/dla_catalogue.fits" in result.stdout
    assert "models/location_bal.pt" not in result.stdout and "models/gru.pt" not in result.stdout
