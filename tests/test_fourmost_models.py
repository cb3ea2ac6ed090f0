"""4MOST networks: output shapes, parameter counts, and a tiny training that learns."""

import numpy as np
import pytest
import torch

from lymannet.fourmost.models import build, location_loss, mape_loss
from lymannet.models import count_parameters
from lymannet.fourmost.train import fit


@pytest.mark.parametrize(
    "kind, n_pixels, shape",
    [("dense", 1533, (4,)), ("gru", 1533, (4,)), ("presence", 400, (4,)), ("location", 800, (4, 3))],
)
def test_shapes(kind, n_pixels, shape):
    channels = 1 if kind in ("dense", "gru") else 2
    model = build(kind, None, n_pixels).eval()
    assert model(torch.zeros(4, channels, n_pixels)).shape == shape


def test_parameter_counts_are_small():
    counts = {
        kind: count_parameters(build(kind, None, n))
        for kind, n in (("dense", 1533), ("gru", 1533), ("presence", 400), ("location", 800))
    }
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

    history = fit(
        model, train, val, loss_fn, {"epochs": 15, "batch_size": 32, "lr": 3e-3, "max_minutes": 1}, 1
    )
    assert history["val_loss"].min() < 0.5 * history["val_loss"].iloc[0]
    assert history["val_loss"].min() < 8.0  # percent, from ~16 (predicting the mean)


def _toy_task(n=256, p=64, seed=0):
    rng = np.random.default_rng(seed)
    z = rng.uniform(2, 4, n).astype(np.float32)
    peak = ((z - 2) / 2 * (p - 20) + 10).astype(int)
    x = (0.1 * rng.standard_normal((n, 1, p))).astype(np.float32)
    x[np.arange(n), 0, peak] += 3.0
    data = {"x": torch.from_numpy(x), "z": torch.from_numpy(z)}
    return {k: v[:192] for k, v in data.items()}, {k: v[192:] for k, v in data.items()}


def _loss(m, b):
    return mape_loss(3.0 + m(b["x"]), b["z"])


def _accuracy(m, b):
    return (((3.0 + m(b["x"])) - b["z"]).abs() / (1 + b["z"]) < 0.01).float().mean()


def test_training_ends_on_epochs_or_early_stopping_and_records_accuracy():
    train, val = _toy_task()
    torch.manual_seed(0)
    history = fit(
        build("dense", {"hidden": [16]}, 64),
        train,
        val,
        _loss,
        {"epochs": 3, "batch_size": 32},
        1,
        accuracy_fn=_accuracy,
    )
    assert history.attrs["stop_reason"] == "epochs" and len(history) == 3
    assert {"train_accuracy", "val_accuracy"} <= set(history.columns)
    assert history["val_accuracy"].between(0, 1).all()
    torch.manual_seed(0)
    history = fit(
        build("dense", {"hidden": [16]}, 64),
        train,
        val,
        _loss,
        {"epochs": 50, "batch_size": 32, "lr": 0.5, "patience": 1},
        1,
    )
    assert history.attrs["stop_reason"] == "early_stopping" and len(history) < 50


def test_max_minutes_is_a_logged_safety(caplog):
    train, val = _toy_task()
    torch.manual_seed(0)
    with caplog.at_level("WARNING", logger="lymannet.fourmost"):
        history = fit(
            build("dense", {"hidden": [16]}, 64),
            train,
            val,
            _loss,
            {"epochs": 5, "batch_size": 32, "max_minutes": 1e-9},
            1,
        )
    assert history.attrs["stop_reason"] == "max_minutes" and len(history) == 1
    assert "max_minutes=1e-09 safety fired after epoch 1" in caplog.text


def test_sigterm_checkpoint_then_resume_is_bit_identical(tmp_path):
    import os
    import signal

    from lymannet.train import TrainingInterrupted

    train, val = _toy_task()
    settings = {"epochs": 3, "batch_size": 32}

    def run(callback=None, checkpoint=None):
        torch.manual_seed(0)
        model = build("dense", {"hidden": [16], "dropout": 0.3}, 64)
        history = fit(
            model, train, val, _loss, settings, 1, checkpoint_path=checkpoint, batch_callback=callback
        )
        return model, history

    reference, ref_history = run()
    checkpoint = tmp_path / "ckpt.pt"

    def kill(epoch, batch):
        if (epoch, batch) == (2, 3):
            os.kill(os.getpid(), signal.SIGTERM)

    with pytest.raises(TrainingInterrupted) as stopped:
        run(kill, checkpoint)
    assert stopped.value.code == 128 + signal.SIGTERM and checkpoint.exists()
    resumed, history = run(None, checkpoint)
    assert not checkpoint.exists()  # a finished run needs no resume point
    for name, tensor in reference.state_dict().items():
        assert torch.equal(tensor, resumed.state_dict()[name]), name
    assert history["val_loss"].tolist() == ref_history["val_loss"].tolist()


def test_slides_dense_architecture_and_quantile_target():
    from lymannet.fourmost.tasks import quantile_forward, quantile_inverse, quantile_table

    model = build("dense_slides", {"width": 32}, 500).eval()
    assert model(torch.zeros(3, 1, 500)).shape == (3,)
    # Dense(500 -> 32) + 3 x [Dense(10) + BN] + Dense(10 -> 1): the slides' layer list
    assert count_parameters(model) == (500 * 32 + 32) + (32 * 10 + 10 + 20) + 2 * (10 * 10 + 10 + 20) + 11
    z = np.random.default_rng(0).uniform(2, 4, 5000)
    table = quantile_table(z, 1000)
    u = quantile_forward(z, table)
    assert u.min() == 0.0 and u.max() == 1.0 and np.mean(u < 0.25) == pytest.approx(0.25, abs=0.002)
    assert np.allclose(quantile_inverse(u, table), z, atol=1e-9)
