"""The 4MOST pipelines inside the main workflow: planned by a dry run, and run by the demo."""

import json

import pytest

from conftest import copy_workflow, snakemake

RULES = ("fourmost_simulate", "fourmost_ingest", "fourmost_train", "fourmost_score_redshift", "fourmost_score_dla_presence",
         "fourmost_score_dla_location", "fourmost_summary")


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
