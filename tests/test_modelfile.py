"""lymannet.modelfile: both wings' model files written and read back to the same network and
outputs, the calibration travelling with the weights, and clear errors for files that are not
model files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from lymannet.errors import InputFileError
from lymannet.grid import Grid
from lymannet.modelfile import (
    load_fourmost_model_file,
    load_model_file,
    write_calibrated_model_file,
    write_fourmost_model_file,
    write_model_file,
)
from lymannet.models import build_model, complete_spec

GRID = Grid.from_config({"kind": "linear", "wave_min": 3600.0, "wave_max": 9800.0, "step": 20.0})
SPEC = complete_spec(
    {"family": "quasarnet", "lines": "lbg", "n_boxes": 10, "conv": {"layers": 2, "filters": 8, "kernel": 5}}
)


def line_finder_file(path: Path) -> torch.nn.Module:
    torch.manual_seed(3)
    model = build_model(SPEC, GRID.n_pixels).eval()
    write_model_file(path, model, SPEC, GRID, "LBG", {"model": "tiny"}, {"git_revision": "x"}, {"epochs": 1})
    return model


def test_line_finder_round_trip(tmp_path):
    model = line_finder_file(tmp_path / "model.pt")
    loaded = load_model_file(tmp_path / "model.pt")
    assert loaded.grid == GRID and loaded.target_class == "LBG" and loaded.n_boxes == 10
    assert [line.name for line in loaded.lines] == [line.name for line in model.lines]
    rng = np.random.default_rng(0)
    flux = rng.normal(1, 0.2, (4, GRID.n_pixels)).astype(np.float32)
    ivar = np.full_like(flux, 25.0)
    x = torch.from_numpy(rng.normal(0, 1, (4, 1, GRID.n_pixels)).astype(np.float32))
    with torch.no_grad():
        for ours, theirs in zip(model(x).values(), loaded.model(x).values()):
            torch.testing.assert_close(ours, theirs)
    outputs = loaded.predict(flux, ivar, batch_size=2)
    assert np.isfinite(np.asarray(outputs["c_line"])).all()
    assert loaded.calibration is None and loaded.training == {"epochs": 1}


def test_calibration_travels_with_the_weights(tmp_path):
    line_finder_file(tmp_path / "model.pt")
    write_calibrated_model_file(tmp_path / "model.pt", tmp_path / "calibrated.pt", {"beta": [1.0, 2.0, 0.5]})
    calibrated = load_model_file(tmp_path / "calibrated.pt")
    plain = load_model_file(tmp_path / "model.pt")
    assert calibrated.calibration == {"beta": [1.0, 2.0, 0.5]} and plain.calibration is None
    for key, value in plain.model.state_dict().items():
        torch.testing.assert_close(calibrated.model.state_dict()[key], value)


def test_fourmost_round_trip(tmp_path):
    from lymannet.fourmost.models import build

    torch.manual_seed(5)
    network = build("dense", {}, 200).eval()
    history = pd.DataFrame({"epoch": [1, 2], "val_loss": [0.5, 0.4]})
    write_fourmost_model_file(
        tmp_path / "dense.pt", network, "dense", {}, {"n_pixels": 200}, history, 1.5, {}
    )
    loaded, payload = load_fourmost_model_file(tmp_path / "dense.pt")
    x = torch.randn(3, 200)  # the dense regressor reads flat spectra
    with torch.no_grad():
        expected, got = network(x), loaded(x)
    torch.testing.assert_close(expected, got)
    assert payload["kind"] == "dense" and payload["history"]["val_loss"] == [0.5, 0.4]


def test_files_that_are_not_model_files(tmp_path):
    with pytest.raises(InputFileError, match="does not exist"):
        load_model_file(tmp_path / "missing.pt")
    (tmp_path / "text.pt").write_text("not a model")
    with pytest.raises(InputFileError, match="not a readable torch model file"):
        load_model_file(tmp_path / "text.pt")
    torch.save({"format": "something-else"}, tmp_path / "other.pt")
    with pytest.raises(InputFileError, match="not a lymannet model file"):
        load_model_file(tmp_path / "other.pt")
    with pytest.raises(InputFileError, match="not a lymannet 4MOST model file"):
        load_fourmost_model_file(tmp_path / "other.pt")
    line_finder_file(tmp_path / "model.pt")
    with pytest.raises(InputFileError, match="not a lymannet 4MOST model file"):
        load_fourmost_model_file(tmp_path / "model.pt")  # the other wing's file
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes((tmp_path / "model.pt").read_bytes()[:200])
    with pytest.raises(InputFileError):
        load_model_file(truncated)
