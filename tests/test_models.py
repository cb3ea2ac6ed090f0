"""Networks, target encoding/decoding and the loss (thesis eq. 2.1)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from lymannet.grid import Grid
from lymannet.lines import LBG_LINES, QSO_LINES
from lymannet.models import (
    build_model,
    combine_terms,
    count_parameters,
    decode,
    encode_targets,
    fold_batchnorm,
    keras_same_padding,
    loss_terms,
    quasarnet_loss,
)

torch.set_num_threads(1)

LINEAR_800 = Grid.from_config({"kind": "linear", "wave_min": 3600.0, "wave_max": 10000.0, "step": 8.0})

INITIAL = {
    "family": "quasarnet",
    "lines": "lbg",
    "n_boxes": 40,
    "conv": {"layers": 4, "filters": 100, "kernel": 10, "stride": 2, "padding": "valid", "dropout": 0.0},
    "dense_units": 100,
    "offset_activation": "rescaled_sigmoid",
    "snr_channel": False,
}
TINY = {
    "family": "quasarnet",
    "lines": "lbg",
    "n_boxes": 10,
    "conv": {"layers": 2, "filters": 4, "kernel": 5, "stride": 2, "padding": "same", "dropout": 0.0},
    "dense_units": 8,
}


def test_keras_same_padding_puts_the_extra_pixel_right():
    assert keras_same_padding(443, 10, 2) == (4, 5)  # TensorFlow: total 9, left 4, right 5
    assert keras_same_padding(222, 10, 2) == (4, 4)
    assert keras_same_padding(5, 1, 1) == (0, 0)


@pytest.mark.parametrize("length", [443, 444])  # odd: TensorFlow pads 4 left, 5 right; even: 4 and 4
def test_same_padding_block_equals_explicitly_padded_convolution(length):
    from lymannet.models import ConvBlock

    torch.manual_seed(0)
    block = ConvBlock(3, 5, kernel=10, stride=2, padding="same", dropout=0.0).eval()
    x = torch.randn(4, 3, length)
    expected = torch.relu(block.bn(block.conv(torch.nn.functional.pad(x, keras_same_padding(length, 10, 2)))))
    got = block(x)
    assert got.shape == (4, 5, math.ceil(length / 2))
    torch.testing.assert_close(got, expected, rtol=1e-6, atol=1e-6)


def test_folded_batchnorm_is_the_same_function_and_leaves_the_model_alone():
    torch.manual_seed(1)
    model = build_model(dict(TINY, snr_channel=True), LINEAR_800.n_pixels)
    for module in model.modules():  # running statistics far from the initial 0 / 1
        if isinstance(module, torch.nn.BatchNorm1d):
            module.running_mean.uniform_(-2, 2)
            module.running_var.uniform_(0.2, 5)
    model.eval()
    before = {key: value.clone() for key, value in model.state_dict().items()}
    folded = fold_batchnorm(model)
    assert not any(isinstance(m, torch.nn.BatchNorm1d) for m in folded.modules())
    x = torch.randn(16, 2, LINEAR_800.n_pixels)
    with torch.no_grad():
        expected, got = model(x), folded(x)
    for key in expected:
        torch.testing.assert_close(got[key], expected[key], rtol=1e-4, atol=1e-5)
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key]), key


def test_initial_model_parameter_count_matches_thesis_quasarnet():
    # Thesis section 2.2.1: QuasarNET for LBGs (4 x 100 filters, 16 lines x 40 boxes, 800 pixels)
    # has p = 851,780 trainable parameters.
    model = build_model(INITIAL, LINEAR_800.n_pixels)
    assert count_parameters(model) == 851_780


@pytest.mark.parametrize("padding, snr", [("valid", False), ("same", True)])
def test_quasarnet_forward_shapes(padding, snr):
    spec = dict(TINY, snr_channel=snr, conv=dict(TINY["conv"], padding=padding))
    model = build_model(spec, 200).eval()
    x = torch.randn(3, 2 if snr else 1, 200)
    out = model(x)
    assert out["box"].shape == out["offset"].shape == (3, len(LBG_LINES), 10)
    assert torch.all((out["box"] > 0) & (out["box"] < 1))
    assert torch.all((out["offset"] >= -0.1) & (out["offset"] <= 1.1))  # rescaled sigmoid
    assert "z" not in out


def test_variant_families_outputs():
    mlp_z = build_model(dict(TINY, family="quasarnet_mlp_z", mlp_units=[8]), 200).eval()
    out = mlp_z(torch.randn(4, 1, 200))
    assert out["z"].shape == (4,) and out["box"].shape == (4, 16, 10)
    e2e = build_model(dict(TINY, family="end_to_end", mlp_units=[8]), 200).eval()
    out = e2e(torch.randn(4, 1, 200))
    assert set(out) == {"z", "class_logit", "class_prob"} and out["class_prob"].shape == (4,)
    decoded = decode(
        out,
        LBG_LINES,
        Grid.from_config({"kind": "linear", "wave_min": 3600, "wave_max": 10000, "step": 32.0}),
    )
    np.testing.assert_allclose(decoded["z_pred"], out["z"].detach().numpy(), rtol=1e-6)
    np.testing.assert_allclose(decoded["confidence"], out["class_prob"].detach().numpy(), rtol=1e-6)
    assert np.all(decoded["best_line"] == -1) and np.isnan(decoded["c_line"]).all()


def test_detached_mlp_z_does_not_train_the_line_finder():
    torch.manual_seed(0)
    model = build_model(dict(TINY, family="quasarnet_mlp_z", detach_line_finder=True), 200)
    model(torch.randn(4, 1, 200))["z"].sum().backward()
    assert model.line_finder.box.weight.grad is None and model.trunk.dense.weight.grad is None
    assert model.z_mlp[0].weight.grad is not None


@pytest.mark.parametrize(
    "grid, n_boxes, lines", [(LINEAR_800, 40, LBG_LINES), (Grid.quasarnet(), 13, QSO_LINES)]
)
def test_encode_decode_round_trip(grid, n_boxes, lines):
    rng = np.random.default_rng(1)
    z = rng.uniform(2.0, 4.0, 50)
    targets = encode_targets(z, np.ones(50, bool), lines, grid, n_boxes)
    box, offset = targets["box"].numpy(), targets["offset"].numpy()
    rest = np.array([line.wavelength for line in lines])
    observed = (1 + z[:, None]) * rest
    inside = (observed >= grid.wave_min) & (observed < grid.wave_max)
    assert np.array_equal(box.sum(-1), inside.astype(np.float32))  # one box per line on the grid, none off it
    assert np.all((offset >= 0) & (offset < 1))
    # The expected box from the brief's formula.
    position = grid.fractional_index(observed) * n_boxes / grid.n_pixels
    rows, cols = np.nonzero(inside)
    assert np.all(box[rows, cols, np.floor(position[rows, cols]).astype(int)] == 1)

    # Perfect outputs (box confidence 1 in the true box, true offset) decode to z exactly.
    decoded = decode({"box": torch.from_numpy(box), "offset": torch.from_numpy(offset)}, lines, grid)
    np.testing.assert_allclose(
        decoded["z_line"][inside], np.broadcast_to(z[:, None], inside.shape)[inside], atol=1e-5
    )
    np.testing.assert_allclose(decoded["z_pred"], z, atol=1e-5)
    assert np.all(inside[np.arange(50), decoded["best_line"]])
    # Offsets unknown (box centre): z within half a box of quantisation error.
    centre = decode(
        {"box": torch.from_numpy(box), "offset": torch.full_like(targets["offset"], 0.5)}, lines, grid
    )
    half_box = 0.5 * grid.n_pixels / n_boxes
    lam_hi = grid.wavelength_at(grid.fractional_index(observed[rows, cols]) + half_box)  # the wider side
    max_dz = (lam_hi - observed[rows, cols]) / rest[cols]
    assert np.all(np.abs(centre["z_line"][rows, cols] - z[rows]) <= max_dz + 1e-9)


def test_contaminants_get_all_zero_targets():
    targets = encode_targets(np.array([3.0, 3.0]), np.array([True, False]), LBG_LINES, LINEAR_800, 40)
    assert targets["box"][0].sum() > 0
    assert targets["box"][1].abs().sum() == 0 and targets["offset"][1].abs().sum() == 0
    assert targets["is_target"].tolist() == [1.0, 0.0]


def _logit(p):
    return torch.log(torch.tensor(p) / (1 - torch.tensor(p)))


def test_loss_matches_hand_computation():
    # 2 spectra, 2 lines, 2 boxes. Line 0: spectrum 0 has its line in box 0; line 1: no positives.
    p = [[[0.8, 0.3], [0.6, 0.2]], [[0.1, 0.4], [0.5, 0.9]]]
    outputs = {
        "box_logit": _logit(p),
        "box": torch.tensor(p),
        "offset": torch.tensor([[[0.5, 0.9], [0.3, 0.3]], [[0.1, 0.1], [0.2, 0.2]]]),
    }
    targets = {
        "box": torch.tensor([[[1.0, 0.0], [0.0, 0.0]], [[0.0, 0.0], [0.0, 0.0]]]),
        "offset": torch.tensor([[[0.25, 0.0], [0.0, 0.0]], [[0.0, 0.0], [0.0, 0.0]]]),
        "is_target": torch.tensor([1.0, 0.0]),
        "z": torch.tensor([3.0, 0.0]),
    }
    gamma = 2.0
    line0 = -math.log(0.8) / 1 - (math.log(0.7) + math.log(0.9) + math.log(0.6)) / 3 + gamma * 0.25**2 / 1
    line1 = 0.0 - (math.log(0.4) + math.log(0.8) + math.log(0.5) + math.log(0.1)) / 4 + 0.0
    total, parts = quasarnet_loss(outputs, targets, gamma=gamma)
    np.testing.assert_allclose(parts["lines"].numpy(), [line0, line1], rtol=1e-5)
    assert total.item() == pytest.approx(line0 + line1, rel=1e-5)
    # Sums over two half-batches combine to the same loss (how validation is accumulated).
    halves = [
        loss_terms(
            {k: v[i : i + 1] for k, v in outputs.items()}, {k: v[i : i + 1] for k, v in targets.items()}
        )
        for i in (0, 1)
    ]
    summed = {k: halves[0][k] + halves[1][k] for k in halves[0]}
    assert combine_terms(summed, gamma)[0].item() == pytest.approx(total.item(), rel=1e-6)


def test_end_to_end_loss_terms():
    outputs = {"z": torch.tensor([3.0, 2.0, 0.5]), "class_logit": torch.tensor([0.0, 0.0, 0.0])}
    targets = {"z": torch.tensor([3.5, 2.05, 0.1]), "is_target": torch.tensor([1.0, 1.0, 0.0])}
    total, parts = quasarnet_loss(outputs, targets)
    huber = (0.1 * (0.5 - 0.05) + 0.5 * 0.05**2) / 2  # delta 0.1: linear beyond, quadratic inside
    assert parts["z"].item() == pytest.approx(huber, rel=1e-5)
    assert parts["class"].item() == pytest.approx(math.log(2), rel=1e-6)
    assert total.item() == pytest.approx(huber + math.log(2), rel=1e-5)
