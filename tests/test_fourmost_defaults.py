"""The 4MOST package's defaults equal the config schema's (workflow/schemas/fourmost.schema.yaml):
the schema fills the workflow's config, the package's copies serve callers without a config."""

from pathlib import Path

import yaml

from lymannet.fourmost.simulate import DEFAULTS
from lymannet.fourmost.train import TRAIN_DEFAULTS

SCHEMA = Path(__file__).resolve().parents[1] / "workflow" / "schemas" / "fourmost.schema.yaml"


def _defaults(properties: dict) -> dict:
    """Each property's default, nested objects filled from their own properties."""
    out = {}
    for name, prop in properties.items():
        if "properties" in prop:
            out[name] = {**prop.get("default", {}), **_defaults(prop["properties"])}
        elif "default" in prop:
            out[name] = prop["default"]
    return out


def test_simulator_defaults_equal_the_schema():
    schema = yaml.safe_load(SCHEMA.read_text())
    simulate = _defaults(schema["properties"]["simulate"]["properties"])
    # the set size comes from `sizes:`; the package's default is the full (slides') set
    assert {k: v for k, v in DEFAULTS.items() if k != "n_spectra"} == simulate
    assert DEFAULTS["n_spectra"] == schema["properties"]["sizes"]["default"]["full"]["n_spectra"]


def test_training_defaults_equal_the_schema():
    schema = yaml.safe_load(SCHEMA.read_text())
    train = _defaults(schema["$defs"]["train"]["properties"])
    # `loss` is configured per task (fourmost.redshift.loss), not per model's train block
    assert {k: v for k, v in TRAIN_DEFAULTS.items() if k != "loss"} == train
    assert TRAIN_DEFAULTS["loss"] == schema["properties"]["redshift"]["properties"]["loss"]["default"]
