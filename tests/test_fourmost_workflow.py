"""The 4MOST pipelines inside the main workflow: planned by a dry run, and run by the demo."""

import json

import pytest

from conftest import copy_workflow, snakemake

RULES = ("qso4m_simulate", "qso4m_ingest", "qso4m_train", "qso4m_score_redshift", "qso4m_score_dla_presence",
         "qso4m_score_dla_location", "qso4m_summary")


def test_dry_run_plans_every_4most_rule(tmp_path):
    workdir = copy_workflow(tmp_path)
    result = snakemake(workdir, "--dry-run", "--cores", "2", "results/4most/demo/summary.md", timeout=300)
    for rule in RULES:
        assert rule in result.stdout


@pytest.mark.slow
def test_demo_runs_the_4most_pipelines(demo_run):
    root = demo_run / "results" / "4most" / "demo"
    assert (root / "summary.md").read_text().count("|") > 20
    for name in ("dense", "gru", "quasarnet"):
        metrics = json.loads((root / "redshift" / name / "metrics.json").read_text())
        assert metrics["n"] > 0
    assert 0 <= json.loads((root / "dla_presence" / "metrics.json").read_text())["auc"] <= 1
    assert (demo_run / "logs" / "4most" / "demo" / "simulate.log").exists()
