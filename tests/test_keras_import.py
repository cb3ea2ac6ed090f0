"""QuasarNET Keras weights reproduce the TensorFlow outputs of desihub/QuasarNP's test model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from lymannet.errors import InputFileError
from lymannet.grid import Grid
from lymannet.keras_import import load_keras_quasarnet
from lymannet.lines import QSO_BAL_LINE, QSO_LINES
from lymannet.models import decode

torch.set_num_threads(1)

FIXTURES = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "quasarnp"
pytestmark = pytest.mark.skipif(
    not FIXTURES.is_dir(),
    reason=f"QuasarNP fixtures not found at {FIXTURES} (no ../shared beside this checkout)",
)


def _coadd_x() -> torch.Tensor:
    return torch.tensor(np.load(FIXTURES / "coadd_x.npy"), dtype=torch.float32)[:, None, :]  # (24, 1, 443)


def test_six_layer_model_reproduces_tensorflow_outputs():
    model, spec = load_keras_quasarnet(FIXTURES / "test_weights_6_layer.h5")
    assert spec["conv"] == {
        "layers": 6,
        "filters": 100,
        "kernel": 10,
        "stride": 2,
        "padding": "same",
        "dropout": 0.2,
    }
    assert spec["lines"] == "qso_bal" and spec["n_boxes"] == 13 and spec["n_pixels"] == 443
    assert spec["offset_activation"] == "rescaled_sigmoid"
    assert model.lines == QSO_LINES + (QSO_BAL_LINE,)
    expected = np.load(FIXTURES / "qnet_output_6_layer.npy")  # (7 heads, 24, 13 boxes + 13 offsets)
    with torch.no_grad():
        out = model(_coadd_x())
    box = out["box"].numpy().transpose(1, 0, 2)
    offset = out["offset"].numpy().transpose(1, 0, 2)
    assert np.abs(box - expected[..., :13]).max() < 1e-4
    assert np.abs(offset - expected[..., 13:]).max() < 1e-4


def test_six_layer_decoding_matches_reference_where_unambiguous():
    model, _ = load_keras_quasarnet(FIXTURES / "test_weights_6_layer.h5")
    expected = np.load(FIXTURES / "qnet_output_6_layer.npy")
    with torch.no_grad():
        ours = decode(model(_coadd_x()), model.lines, Grid.quasarnet())
    reference = decode(
        {
            "box": torch.tensor(expected[..., :13].transpose(1, 0, 2)),
            "offset": torch.tensor(expected[..., 13:].transpose(1, 0, 2)),
        },
        model.lines,
        Grid.quasarnet(),
    )
    np.testing.assert_allclose(ours["c_line"], reference["c_line"], atol=1e-4)
    # Near-tied boxes may flip between frameworks: compare z only where the best box is clear.
    top2 = np.sort(expected[..., :13], axis=-1)[..., -2:].transpose(1, 0, 2)
    clear = (top2[..., 1] - top2[..., 0]) > 1e-3
    np.testing.assert_allclose(ours["z_line"][clear], reference["z_line"][clear], atol=1e-4)


def test_four_layer_valid_padding_model_loads_and_runs():
    model, spec = load_keras_quasarnet(FIXTURES / "test_weights.h5")
    assert (
        spec["conv"]["layers"] == 4 and spec["conv"]["filters"] == 25 and spec["conv"]["padding"] == "valid"
    )
    assert model.trunk.n_flat == 20 * 25  # 443 -> 217 -> 104 -> 48 -> 20 pixels
    with torch.no_grad():
        out = model(_coadd_x())
    assert out["box"].shape == (24, 7, 13)
    assert torch.isfinite(out["box"]).all() and torch.isfinite(out["offset"]).all()


def test_missing_or_wrong_file_is_a_clear_error(tmp_path):
    with pytest.raises(InputFileError, match="does not exist"):
        load_keras_quasarnet(tmp_path / "nope.h5")
    import h5py

    with h5py.File(tmp_path / "empty.h5", "w"):
        pass
    with pytest.raises(InputFileError, match="model_config"):
        load_keras_quasarnet(tmp_path / "empty.h5")
