"""The classical baseline's templates (lymannet.templatefit): the simulator's templates of every
class, the options, and the workflow's baseline row; the fit itself is test_chi2fit's."""

from __future__ import annotations

import numpy as np

from conftest import GRID
from lymannet.simulate import RENDERERS
from lymannet.templatefit import TemplateFitOptions


def test_every_simulator_class_gets_templates(tset):
    assert set(tset.classes) == set(RENDERERS)
    assert [label.split(":")[1] for label in tset.labels["LBG"]] == [
        "0",
        "1",
        "2",
        "3",
    ]  # the four EW classes
    for spectype in tset.classes:
        models = tset.models[spectype]
        assert models.shape[0] == TemplateFitOptions().templates_per_class
        assert models.shape[2] == GRID.n_pixels and np.isfinite(models).all()
    # The IGM: an LBG template at z = 3.5 is dark blueward of the Lyman limit.
    lbg, wave = tset.models["LBG"][0], GRID.centres
    j = np.argmin(np.abs(tset.z["LBG"] - 3.5))
    continuum = lbg[j, (wave > 1300 * 4.5) & (wave < 1500 * 4.5)].mean()
    assert lbg[j, wave < 890 * 4.5].mean() < 0.1 * continuum


def test_defaults_equal_the_schema():
    from pathlib import Path

    import yaml

    schema = yaml.safe_load(
        (Path(__file__).resolve().parents[1] / "workflow/schemas/config.schema.yaml").read_text()
    )
    properties = schema["properties"]["baseline"]["properties"]["template_fit"]["properties"]
    defaults = {
        name: prop["default"] for name, prop in properties.items() if name not in ("enabled", "name", "combo")
    }
    assert {name: getattr(TemplateFitOptions(), name) for name in defaults} == defaults


def test_the_dag_predicts_and_scores_the_baseline_on_every_test_set(tmp_path):
    from conftest import copy_workflow
    from test_workflow import planned_jobs, write_config

    workdir = copy_workflow(tmp_path)
    config = yaml_config(workdir)
    testsets = {name for name, spec in config["testsets"].items() if spec.get("in_summary", True)}
    jobs = planned_jobs(workdir)
    assert {w["testset"] for rule, w in jobs if rule == "predict_templatefit"} == testsets
    scored = {w["testset"] for rule, w in jobs if rule == "score" and w["model"] == "template_fit"}
    assert scored == testsets and all(
        w["combo"] == "simulator_templates"
        for rule, w in jobs
        if rule == "score" and w["model"] == "template_fit"
    )
    edited = write_config(
        workdir, lambda c: c.setdefault("baseline", {}).setdefault("template_fit", {}).update(enabled=False)
    )
    jobs = planned_jobs(workdir, "--configfile", edited)
    assert not [w for rule, w in jobs if rule == "predict_templatefit" or w.get("model") == "template_fit"]


def yaml_config(workdir):
    import yaml

    return yaml.safe_load((workdir / "config" / "config.yaml").read_text())
