"""The package's defaults equal the config schemas' (workflow/schemas/config.schema.yaml and
fourmost.schema.yaml): the schemas fill the workflow's config, the package's copies serve callers
without a config (the tests, `lymannet classify`, a model file's spec). The package cannot read the
schemas itself: they are not part of an installed wheel."""

from pathlib import Path

import yaml

from lymannet.fourmost.simulate import DEFAULTS
from lymannet.fourmost.settings import TRAIN_DEFAULTS as FOURMOST_TRAIN_DEFAULTS
from lymannet.metrics import ScoreOptions
from lymannet.models import MODEL_DEFAULTS
from lymannet.predict import PredictOptions
from lymannet.search import SEARCH_DEFAULTS
from lymannet.train import TRAIN_DEFAULTS

SCHEMAS = Path(__file__).resolve().parents[1] / "workflow" / "schemas"


def _schema(name: str) -> dict:
    return yaml.safe_load((SCHEMAS / name).read_text())


def _defaults(properties: dict) -> dict:
    """Each property's default, nested objects filled from their own properties."""
    out = {}
    for name, prop in properties.items():
        if "properties" in prop and isinstance(prop.get("default", {}), dict):
            out[name] = {**prop.get("default", {}), **_defaults(prop["properties"])}
        elif "default" in prop:
            out[name] = prop["default"]
    return out


def test_training_defaults_equal_the_schema():
    train = _defaults(_schema("config.schema.yaml")["$defs"]["train"]["properties"])
    assert TRAIN_DEFAULTS == train


def test_model_defaults_equal_the_schema():
    model = _defaults(_schema("config.schema.yaml")["$defs"]["model"]["properties"])
    # `train` is a $ref filled by TRAIN_DEFAULTS (above); `family` has no default
    assert model.pop("train") == {}
    assert MODEL_DEFAULTS == model


def test_search_defaults_equal_the_schema():
    search = _defaults(_schema("config.schema.yaml")["$defs"]["search"]["properties"])
    assert SEARCH_DEFAULTS == search


def test_score_and_predict_defaults_equal_the_schema():
    properties = _schema("config.schema.yaml")["properties"]
    score = _defaults(properties["score"]["properties"])
    assert ScoreOptions() == ScoreOptions.from_config({}) == ScoreOptions.from_config(score)
    predict = _defaults(properties["predict"]["properties"])
    assert {k: getattr(PredictOptions(), k) for k in predict} == predict


def test_fourmost_simulator_defaults_equal_the_schema():
    schema = _schema("fourmost.schema.yaml")
    simulate = _defaults(schema["properties"]["simulate"]["properties"])
    # the set size comes from `sizes:`; the package's default is the full (slides') set
    # the split comes from `ingest.split` (the rule passes it), the set size from `sizes:`
    assert {k: v for k, v in DEFAULTS.items() if k not in ("n_spectra", "split")} == simulate
    assert DEFAULTS["n_spectra"] == schema["properties"]["sizes"]["default"]["full"]["n_spectra"]


def test_fourmost_training_defaults_equal_the_schema():
    schema = _schema("fourmost.schema.yaml")
    train = _defaults(schema["$defs"]["train"]["properties"])
    # `loss` is configured per task (fourmost.redshift.loss), not per model's train block
    assert {k: v for k, v in FOURMOST_TRAIN_DEFAULTS.items() if k != "loss"} == train
    assert (
        FOURMOST_TRAIN_DEFAULTS["loss"] == schema["properties"]["redshift"]["properties"]["loss"]["default"]
    )


def test_one_detection_threshold_name_and_default():
    """c_th is the one name of the line-confidence threshold (config score.c_th, CTHRESH in the
    catalogues), with one default, which the schema, scoring, prediction and classify share."""
    from lymannet.classify import ClassifyOptions
    from lymannet.metrics import DEFAULT_C_TH

    score = _defaults(_schema("config.schema.yaml")["properties"]["score"]["properties"])
    assert "default_threshold" not in score
    assert score["c_th"] == DEFAULT_C_TH == ScoreOptions().c_th == PredictOptions().c_th
    assert ScoreOptions.from_config({}).c_th == DEFAULT_C_TH
    assert ClassifyOptions().default_c_th == DEFAULT_C_TH
