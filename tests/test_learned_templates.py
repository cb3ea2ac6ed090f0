"""Learning templates (lymannet.learned_templates): the combo's fill windows are not learned, and
the options are checked and default to the schema's (the learned templates fitted and scored:
test_templatefit_learned.py)."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import GRID
from conftest import SIMULATED_TRUTH_COLUMNS as COLUMNS
from conftest import simulated
from lymannet.learned_templates import LearnOptions, fill_windows, read_training
from lymannet.spectra import SpectrumSet, write_spectra
from lymannet.templatefit import TemplateFitOptions


def test_fill_windows_of_the_combo_are_not_learned(tmp_path):
    variants = {
        "tmg": {
            "source": "survey",
            "ops": [
                {"select": {"spectype": ["LBG"]}},
                {"mask_line": {"line": 1215.67, "width": 40}},
                {"mask_region": {"center": 5800, "width": 40}},
            ],
        },
        "shifted": {
            "source": "survey",
            "ops": [{"mask_region": {"center": 5800, "width": 40}}, {"shift": {"ratio": "5/4"}}],
        },
        "plain": {"source": "survey", "ops": []},
    }
    windows = fill_windows(variants)
    assert windows == {"tmg": [("rest", 1215.67, 20.0), ("observed", 5800.0, 20.0)]}
    flux, ivar, truth = simulated({"LBG": {"n": 4, "z": [2.8, 3.2]}}, seed=26)
    truth = truth.assign(SOURCE=["tmg", "tmg", "plain", "shifted"])
    path = tmp_path / "train.fits"
    write_spectra(path, SpectrumSet(GRID.wavelength, flux, ivar, truth[[*COLUMNS[:3], "SOURCE"]], GRID))
    _, masked, truth, grid = read_training(path, windows)
    centres = grid.centres
    for row in range(4):
        lya = np.abs(centres - 1215.67 * (1 + truth["Z"].iloc[row])) < 16
        region = np.abs(centres - 5800) < 16
        assert (masked[row, lya] == 0).all() == (row < 2)
        assert (masked[row, region] == 0).all() == (row < 2)


def test_options_are_checked_and_defaults_equal_the_schema():
    from pathlib import Path

    import yaml

    from lymannet.errors import ConfigError

    with pytest.raises(ConfigError, match="min_spectra"):
        LearnOptions.from_dict({"components": 30, "min_spectra": 10})
    schema = yaml.safe_load(
        (Path(__file__).resolve().parents[1] / "workflow/schemas/config.schema.yaml").read_text()
    )
    properties = schema["properties"]["baseline"]["properties"]["learned_templates"]["properties"]
    defaults = {name: prop["default"] for name, prop in properties.items()}
    assert {k: getattr(LearnOptions(), k) for k in LearnOptions.__dataclass_fields__ if k != "seed"} == {
        k: defaults[k] for k in LearnOptions.__dataclass_fields__ if k != "seed"
    }
    fit_keys = set(defaults) & set(TemplateFitOptions.__dataclass_fields__)
    assert fit_keys >= {"z_step", "coarse_factor", "poly_order", "confidence_scale", "z_ranges", "chunk_rows"}
    assert {k: getattr(TemplateFitOptions(), k) for k in fit_keys - {"classes"}} == {
        k: defaults[k] for k in fit_keys - {"classes"}
    }
    assert defaults["mean_amplitude"] == "nonnegative" and defaults["name"] == "template_fit_learned"
