"""lymannet.search: the search space from dotted paths, specs, config checks that name the culprit,
study names that follow the search's definition."""

from __future__ import annotations

import pytest

from conftest import REPO
from lymannet.errors import ConfigError
from lymannet.models import build_model
from lymannet.search import (
    apply_params,
    check_tune_config,
    merge_spec,
    parse_space,
    search_settings,
    study_name,
)
from lymannet.tune import full_spec
from test_tune import BASE, GRID, SEARCH, SPACE


def test_space_parsing_and_specs_from_dotted_paths():
    space = parse_space(SPACE)
    assert [p.path for p in space] == list(SPACE)
    assert space[0].describe() == "[1, 3] (int)"
    assert space[2].describe() == "[0.001, 0.01] (float, log)"
    assert space[3].describe() == "[sigmoid, rescaled_sigmoid, linear]"
    spec = apply_params(BASE, {"conv.layers": 3, "train.lr": 0.005, "offset_activation": "linear"})
    assert spec["conv"] == {**BASE["conv"], "layers": 3}
    assert spec["train"]["lr"] == 0.005 and spec["offset_activation"] == "linear"
    assert BASE["conv"]["layers"] == 2  # the base spec is not modified
    build_model(spec, GRID.n_pixels)
    for bad in (
        {"x": {"type": "int", "low": 5, "high": 2}},
        {"x": {"type": "categorical"}},
        {"x": {"type": "float", "low": 0.0, "high": 1.0, "log": True}},
        {"x": {"type": "normal", "low": 0, "high": 1}},
    ):
        with pytest.raises(ConfigError):
            parse_space(bad)
    assert merge_spec(BASE, {"train": {"epochs": 50}})["train"] == {**BASE["train"], "epochs": 50}


def test_config_checks_name_the_culprit():
    config = {
        "models": {"base": full_spec(BASE), "hyp": {"from_search": "demo"}},
        "combos": {"easy": {"members": ["x"]}},
        "tune": {"searches": {"demo": SEARCH}},
    }
    check_tune_config(config)
    typo = {**SEARCH, "space": {"conv.filter": {"type": "int", "low": 1, "high": 2}}}
    with pytest.raises(ConfigError, match="conv.filter"):
        check_tune_config({**config, "tune": {"searches": {"demo": typo}}})
    with pytest.raises(ConfigError, match="from_search 'nope'"):
        check_tune_config({**config, "models": {**config["models"], "hyp": {"from_search": "nope"}}})
    with pytest.raises(ConfigError, match="unknown combo"):
        check_tune_config({**config, "tune": {"searches": {"demo": {**SEARCH, "combo": "hard"}}}})


def test_demo_config_validates_with_search_defaults():
    from lymannet.config import load_config

    config = load_config(REPO / "config" / "config.yaml")
    demo = config["tune"]["searches"]["demo"]
    assert demo["stale_after_seconds"] == 600 and demo["storage"] is None
    assert set(config["models"]["hyp_demo"]) <= {"from_search", "train"}  # no model defaults filled in
    # the searched network is defined but not a headline run: 4 trials of 2 epochs do not find one
    # as good as the unsearched networks (config.yaml's hyp_demo comment)
    assert {"model": "hyp_demo", "combo": "initial"} not in config["runs"]


def test_study_name_follows_the_definition_not_the_budget():
    settings = search_settings(SEARCH)
    name = study_name("demo", settings, BASE)
    assert study_name("demo", search_settings({**SEARCH, "n_trials": 40, "workers": 8}), BASE) == name
    assert study_name("demo", search_settings({**SEARCH, "epochs_per_trial": 3}), BASE) != name
