"""4MOST networks: output shapes, parameter counts, and a tiny training that learns."""

import numpy as np
import pytest
import torch

from lymannet.fourmost import features as ft
from lymannet.fourmost.models import build, location_loss, mape_loss
from lymannet.models import count_parameters
from lymannet.fourmost.train import fit


@pytest.mark.parametrize("kind, n_pixels, shape", [
    ("dense", 1533, (4,)), ("gru", 1533, (4,)), ("presence", 400, (4,)), ("location", 800, (4, 3)),
])
def test_shapes(kind, n_pixels, shape):
    channels = 1 if kind in ("dense", "gru") else 2
    model = build(kind, None, n_pixels).eval()
    assert model(torch.zeros(4, channels, n_pixels)).shape == shape


def test_parameter_counts_are_small():
    counts = {kind: count_parameters(build(kind, None, n)) for kind, n in
              (("dense", 1533), ("gru", 1533), ("presence", 400), ("location", 800))}
    # dense: 1533*256+256 + 2*256 (BN) + 256*64+64 + 2*64 + 64+1
    assert counts["dense"] == 1533 * 256 + 256 + 512 + 256 * 64 + 64 + 128 + 65
    assert all(count < 1_000_000 for count in counts.values())  # the slides' dense net: 548M


def test_quasarnet_reference_builds():
    pytest.importorskip("lymannet.models")
    model = build("quasarnet", None, 1533).eval()
    out = model(torch.zeros(2, 1, 1533))
    assert out["box"].shape == (2, 6, 20)


def test_mape_and_location_loss():
    assert float(mape_loss(torch.tensor([2.2, 3.6]), torch.tensor([2.0, 4.0]))) == pytest.approx(10.0)
    out = torch.tensor([[10.0, 0.2, 0.5], [-10.0, 5.0, 5.0]])
    loss = location_loss(out, torch.tensor([1.0, 0.0]), torch.tensor([0.2, 0.0]), torch.tensor([21.3, 0.0]))
    assert float(loss) < 1e-3  # the absent window's offset and N_HI do not count


def test_tiny_training_learns():
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    n, p = 384, 128
    z = rng.uniform(2, 4, n).astype(np.float32)
    peak = ((z - 2) / 2 * (p - 20) + 10).astype(int)  # a line whose pixel encodes z
    x = np.zeros((n, 1, p), np.float32) + 0.1 * rng.standard_normal((n, 1, p)).astype(np.float32)
    x[np.arange(n), 0, peak] += 3.0
    data = {"x": torch.from_numpy(x), "z": torch.from_numpy(z)}
    train = {k: v[:320] for k, v in data.items()}
    val = {k: v[320:] for k, v in data.items()}
    model = build("dense", {"hidden": [32]}, p)

    def loss_fn(m, b):
        return mape_loss(3.0 + m(b["x"]), b["z"])
    history = fit(model, train, val, loss_fn, {"epochs": 15, "batch_size": 32, "lr": 3e-3, "max_minutes": 1}, 1)
    assert history["val_loss"].min() < 0.5 * history["val_loss"].iloc[0]
    assert history["val_loss"].min() < 8.0  # percent, from ~16 (predicting the mean)


def test_cut_windows_pads_outside_the_grid():
    channels = np.arange(2 * 10, dtype=np.float32).reshape(1, 2, 10)
    out = ft.cut_windows(channels, np.array([0, 0]), np.array([-2, 7]), 5)
    assert out.shape == (2, 2, 5)
    assert out[0, 0].tolist() == [ft.PAD_FLUX, ft.PAD_FLUX, 0, 1, 2]
    assert out[1, 1].tolist() == [17, 18, 19, ft.PAD_SIGMA, ft.PAD_SIGMA]


def test_window_labels():
    by_row = {0: (np.array([100.0, 300.0]), np.array([20.5, 21.5]))}
    w = ft.label_windows(np.array([0, 0, 0]), np.array([110.0, 290.0, 200.0]), 160, by_row)
    assert w.present.tolist() == [1, 1, 0]
    assert w.offset[:2] == pytest.approx([-10 / 40, 10 / 40])
    assert w.log_n[:2] == pytest.approx([20.5, 21.5])
