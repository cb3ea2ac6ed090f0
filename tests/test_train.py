"""Training loop: learning, determinism, kill-and-resume, model files, bf16, transfer learning."""

from __future__ import annotations

import copy
import os
import signal
import subprocess
import sys
import textwrap
import time
import types
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from lymannet.errors import ConfigError
from lymannet.grid import Grid
from lymannet.lines import LBG_LINES, LYA
from lymannet.modelfile import load_model_file
from lymannet.metrics import is_detected
from lymannet.models import build_model, combine_terms, encode_targets, loss_terms
from lymannet.preprocess import network_input
from lymannet.spectra import SpectrumSet, read_spectra, write_spectra
from lymannet.train import TrainingInterrupted, train_model

torch.set_num_threads(1)

REPO = Path(__file__).resolve().parents[1]
FIXTURES = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "quasarnp"
GRID = Grid.from_config({"kind": "linear", "wave_min": 3600.0, "wave_max": 10000.0, "step": 32.0})  # 200 px

TINY = {
    "family": "quasarnet",
    "lines": "lbg",
    "n_boxes": 10,
    "conv": {"layers": 2, "filters": 8, "kernel": 5, "stride": 2, "padding": "same", "dropout": 0.1},
    "dense_units": 16,
    "offset_activation": "rescaled_sigmoid",
    "snr_channel": False,
    "train": {
        "epochs": 4,
        "batch_size": 32,
        "lr": 1e-2,
        "schedule": "none",
        "early_stopping": None,
        "threads": 1,
    },
}


def make_spectra(path: Path, n: int, seed: int) -> SpectrumSet:
    """Easy synthetic spectra: LBGs have a strong Ly-alpha emission line and a flux break blueward
    of it; contaminants (QSO/ELG labels) are featureless sloped continua."""
    rng = np.random.default_rng(seed)
    wavelength = GRID.centres
    is_lbg = rng.random(n) < 0.5
    z = np.where(is_lbg, rng.uniform(2.2, 3.8, n), rng.uniform(0.05, 3.0, n))
    slope = rng.uniform(-0.3, 0.3, n)[:, None]
    flux = 1.0 + slope * (wavelength[None, :] - 6800) / 3200
    lya = (1 + z[:, None]) * LYA
    line = 4.0 * np.exp(-0.5 * ((wavelength[None, :] - lya) / 25.0) ** 2)
    flux = np.where(is_lbg[:, None], np.where(wavelength[None, :] < lya, 0.4 * flux, flux) + line, flux)
    sigma = 0.3
    flux = flux + rng.normal(0, sigma, flux.shape)
    ivar = np.full_like(flux, 1 / sigma**2)
    truth = pd.DataFrame(
        {
            "TARGETID": np.arange(n) + 1000 * seed,
            "Z": z,
            "SPECTYPE": np.where(is_lbg, "LBG", np.where(rng.random(n) < 0.5, "QSO", "ELG")),
        }
    )
    spectra = SpectrumSet(GRID.wavelength, flux.astype(np.float32), ivar.astype(np.float32), truth, GRID)
    write_spectra(path, spectra)
    return spectra


@pytest.fixture(scope="module")
def combo(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("combos") / "easy"
    folder.mkdir()
    make_spectra(folder / "train.fits", 384, seed=1)
    make_spectra(folder / "val.fits", 192, seed=2)
    return folder


def _train(combo: Path, out: Path, spec: dict = TINY, name: str = "tiny") -> dict:
    return train_model(
        name,
        spec,
        combo / "train.fits",
        combo / "val.fits",
        out / "model.pt",
        out / "history.csv",
        out / "learning_curve.png",
        out / "ckpt" / "train.ckpt",
        seed=7,
        device="cpu",
        combo=combo.name,
    )


@pytest.fixture(scope="module")
def trained(combo, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("trained")
    _train(combo, out, dict(TINY, train=dict(TINY["train"], epochs=6)))
    return out


def test_training_learns_the_easy_task(trained, combo):
    history = pd.read_csv(trained / "history.csv")
    assert len(history) == 6
    assert history["val_loss"].iloc[-1] < 0.7 * history["val_loss"].iloc[0]
    assert history["train_loss"].iloc[-1] < history["train_loss"].iloc[0]
    loaded = load_model_file(trained / "model.pt")
    from lymannet.spectra import read_spectra

    val = read_spectra(combo / "val.fits")
    predicted = loaded.predict(val.flux, val.ivar)
    truth_lbg = (val.truth["SPECTYPE"] == "LBG").to_numpy()
    accuracy = np.mean(is_detected(predicted["c_line"], 0.5) == truth_lbg)
    assert accuracy > 0.8  # chance is ~0.5
    good_z = np.abs(predicted["z_pred"] - val.truth["Z"].to_numpy())[truth_lbg] < 0.05
    assert good_z.mean() > 0.5


def test_outputs_are_self_describing(trained):
    history = pd.read_csv(trained / "history.csv")
    for column in (
        "epoch",
        "train_loss",
        "val_loss",
        "lr",
        "seconds",
        "spectra_per_s",
        "train_loss_LYA",
        "val_loss_LYA",
        "val_loss_NV1240",
        "peak_rss_mb",
        "peak_gpu_mb",
    ):
        assert column in history
    assert (history["peak_rss_mb"] > 50).all() and history["peak_gpu_mb"].isna().all()  # CPU run
    per_line = history[[f"val_loss_{line.name}" for line in LBG_LINES]].sum(axis=1)
    np.testing.assert_allclose(per_line, history["val_loss"], rtol=1e-5)
    assert (trained / "learning_curve.png").read_bytes()[:4] == b"\x89PNG"
    assert not (trained / "ckpt" / "train.ckpt").exists()  # a finished job leaves no checkpoint
    loaded = load_model_file(trained / "model.pt")
    assert not loaded.model.training
    assert loaded.grid == GRID and loaded.lines == LBG_LINES and loaded.n_boxes == 10
    assert loaded.snr_channel is False and loaded.target_class == "LBG"
    assert loaded.spec["conv"]["filters"] == 8
    assert set(loaded.provenance["inputs"]) == {"train", "val"}
    assert len(loaded.provenance["inputs"]["train"]["sha256"]) == 64
    assert len(loaded.sha256) == 64
    # Why training ended and what it cost, for the summary table and for sizing cluster jobs.
    last3 = history["val_loss"].iloc[-3:]
    assert loaded.training["stopped_by"] == "epoch limit" and loaded.training["epochs_run"] == 6
    assert loaded.training["val_loss_spread_last3"] == pytest.approx(
        (last3.max() - last3.min()) / last3.min()
    )
    assert loaded.training["train_seconds"] == pytest.approx(history["seconds"].sum())
    assert loaded.training["peak_rss_mb"] >= history["peak_rss_mb"].iloc[-1]
    assert loaded.training["cpu_arithmetic"]["capability"] in ("DEFAULT", "AVX2", "AVX512", "ZVECTOR", "VSX")
    keys = set(loaded.predict(np.ones((3, GRID.n_pixels)), np.ones((3, GRID.n_pixels))))
    assert keys == {"c_line", "z_line", "z_pred", "best_line", "confidence"}


def test_bf16_prediction_close_to_fp32(trained, combo):
    from lymannet.spectra import read_spectra

    val = read_spectra(combo / "val.fits")
    loaded = load_model_file(trained / "model.pt")
    fp32 = loaded.predict(val.flux, val.ivar, batch_size=64)
    bf16 = loaded.predict(val.flux, val.ivar, batch_size=64, bf16=True)
    assert np.abs(fp32["c_line"] - bf16["c_line"]).max() < 0.02
    assert np.abs(fp32["confidence"] - bf16["confidence"]).max() < 0.02


def test_same_config_gives_bit_identical_weights(combo, tmp_path):
    spec = dict(TINY, train=dict(TINY["train"], epochs=2, schedule="plateau", early_stopping=1))
    _train(combo, tmp_path / "a", spec)
    _train(combo, tmp_path / "b", spec)
    a = load_model_file(tmp_path / "a" / "model.pt").model.state_dict()
    b = load_model_file(tmp_path / "b" / "model.pt").model.state_dict()
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_bf16_training_on_cpu_learns_and_is_deterministic(combo, tmp_path):
    """precision: bf16 runs the forward pass under CPU autocast: it learns as fp32 does, repeats
    bit for bit, and really is another arithmetic (its weights differ from the fp32 run's)."""
    spec = dict(TINY, train=dict(TINY["train"], epochs=6))
    bf16_spec = dict(TINY, train=dict(TINY["train"], epochs=6, precision="bf16"))
    _train(combo, tmp_path / "fp32", spec)
    _train(combo, tmp_path / "a", bf16_spec)
    _train(combo, tmp_path / "b", bf16_spec)
    fp32_history = pd.read_csv(tmp_path / "fp32" / "history.csv")
    history = pd.read_csv(tmp_path / "a" / "history.csv")
    assert history["val_loss"].iloc[-1] < 0.7 * history["val_loss"].iloc[0]
    assert history["val_loss"].iloc[-1] < 1.2 * fp32_history["val_loss"].iloc[-1]
    fp32, a, b = (load_model_file(tmp_path / run / "model.pt") for run in ("fp32", "a", "b"))
    assert a.spec["train"]["precision"] == "bf16"
    for key, value in a.model.state_dict().items():
        assert torch.equal(value, b.model.state_dict()[key]), key
    differs = [not torch.equal(v, fp32.model.state_dict()[k]) for k, v in a.model.state_dict().items()]
    assert any(differs)


def test_unknown_precision_is_a_config_error(combo, tmp_path):
    with pytest.raises(ConfigError, match="precision"):
        _train(combo, tmp_path, dict(TINY, train=dict(TINY["train"], precision="fp16")))


FP32_EPS = float(torch.finfo(torch.float32).eps)


@pytest.mark.parametrize("threads", [1, 2])
def test_compiled_training_step_matches_eager_to_fp32_rounding(combo, threads):
    """What torch.compile must preserve: from the same weights, one training step's loss and
    gradients (and the eval-mode outputs) are eager's up to fp32 reordering. Fused kernels sum in
    another order, so each float sum may differ by about sqrt(K) * eps for a reduction of K terms;
    the longest here is BatchNorm's over batch x pixels (40 x 200), hence the tolerance, on any
    x86 vector width and thread count. Whole training runs are not compared: over hundreds of
    steps, rounding differences grow chaotically (another machine saw 3.4% in val_loss)."""
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        spectra = read_spectra(combo / "train.fits")
        spec = dict(TINY, conv=dict(TINY["conv"], dropout=0.0))  # compiled dropout draws other masks
        torch.manual_seed(7)
        eager = build_model(spec, GRID.n_pixels)
        twin = copy.deepcopy(eager)
        compiled = torch.compile(twin)
        inputs = torch.from_numpy(network_input(spectra.flux, spectra.ivar))
        is_lbg = torch.from_numpy((spectra.truth["SPECTYPE"] == "LBG").to_numpy(dtype=bool, copy=True))
        z = torch.from_numpy(spectra.truth["Z"].to_numpy(np.float64))
        targets = encode_targets(z, is_lbg, eager.lines, GRID, eager.n_boxes)
        tolerance = np.sqrt(40 * GRID.n_pixels) * FP32_EPS  # ~1.1e-5

        for batch_size in (40, 24):  # 24: the smaller last batch recompiles
            batch = {key: value[:batch_size] for key, value in targets.items()}
            losses, gradients = [], []
            for module, weights in ((eager, eager), (compiled, twin)):
                module.train()
                weights.zero_grad()
                loss, _ = combine_terms(loss_terms(module(inputs[:batch_size]), batch))
                loss.backward()
                losses.append(loss.item())
                gradients.append(torch.cat([p.grad.flatten() for p in weights.parameters()]))
            assert abs(losses[1] - losses[0]) <= tolerance * abs(losses[0])
            assert (gradients[1] - gradients[0]).norm() <= tolerance * gradients[0].norm()

        eager.eval()
        twin.eval()
        with torch.no_grad():
            expected, got = eager(inputs), compiled(inputs)
        for key in expected:
            scale = expected[key].abs().max()
            assert (got[key] - expected[key]).abs().max() <= tolerance * scale, key
    finally:
        torch.set_num_threads(previous_threads)


def test_compiled_training_runs_learns_and_saves_the_plain_module(combo, tmp_path):
    """train.compile: true (meant for GPU nodes) runs the whole loop on the CPU: the uneven last
    batch (384 rows, batch 40) recompiles, the network learns, and the model file holds the plain
    module's state_dict (no `_orig_mod.` keys)."""
    conv = dict(TINY["conv"], dropout=0.0)
    spec = dict(TINY, conv=conv, train=dict(TINY["train"], epochs=3, batch_size=40, compile=True))
    _train(combo, tmp_path, spec)
    history = pd.read_csv(tmp_path / "history.csv")
    assert len(history) == 3 and np.isfinite(history[["train_loss", "val_loss"]].to_numpy()).all()
    assert history["train_loss"].iloc[-1] < 0.8 * history["train_loss"].iloc[0]
    assert history["val_loss"].iloc[-1] < history["val_loss"].iloc[0]
    loaded = load_model_file(tmp_path / "model.pt")
    assert loaded.spec["train"]["compile"] is True
    assert not any(key.startswith("_orig_mod") for key in loaded.model.state_dict())


RUNNER = textwrap.dedent("""
    import sys, torch
    from pathlib import Path
    torch.set_num_threads(1)
    from lymannet.runtime import setup_logging
    from lymannet.train import train_model
    sys.path.insert(0, {tests!r})
    from test_train import TINY
    setup_logging()
    spec = dict(TINY, train=dict(TINY["train"], epochs={epochs}, schedule="cosine"))
    out, combo = {out!r}, {combo!r}
    train_model("tiny", spec, combo + "/train.fits", combo + "/val.fits", out + "/model.pt", out + "/history.csv",
                out + "/curve.png", out + "/train.ckpt", seed=7, device="cpu", combo=Path(combo).name)
""")


def interrupt_after_first_checkpoint(script: Path, env: dict, checkpoint: Path, timeout: float) -> str:
    """Run a training script, SIGTERM it once its first checkpoint exists; its stderr."""
    process = subprocess.Popen([sys.executable, str(script)], env=env, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + timeout
    while not checkpoint.exists() and process.poll() is None and time.time() < deadline:
        time.sleep(0.002)
    assert process.poll() is None, "training ended before its first checkpoint appeared"
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=timeout)
    assert process.returncode == 128 + signal.SIGTERM, stderr
    return stderr


def test_kill_and_resume_gives_the_uninterrupted_weights(combo, tmp_path):
    epochs = 8
    script = tmp_path / "runner.py"
    script.write_text(
        RUNNER.format(tests=str(REPO / "tests"), epochs=epochs, out=str(tmp_path / "run"), combo=str(combo))
    )
    env = dict(os.environ, OMP_NUM_THREADS="1")
    checkpoint = tmp_path / "run" / "train.ckpt"
    stderr = interrupt_after_first_checkpoint(script, env, checkpoint, timeout=60)
    assert "received signal" in stderr and checkpoint.exists()
    assert not (tmp_path / "run" / "model.pt").exists()
    assert torch.load(checkpoint, weights_only=True)["state"]["epoch"] < epochs  # stopped mid-run

    resumed = subprocess.run(
        [sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=120
    )
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming from" in resumed.stderr

    spec = dict(TINY, train=dict(TINY["train"], epochs=epochs, schedule="cosine"))
    train_model(
        "tiny",
        spec,
        combo / "train.fits",
        combo / "val.fits",
        tmp_path / "ref" / "model.pt",
        tmp_path / "ref" / "history.csv",
        tmp_path / "ref" / "curve.png",
        tmp_path / "ref" / "train.ckpt",
        seed=7,
        device="cpu",
        combo=combo.name,
    )
    ours = load_model_file(tmp_path / "run" / "model.pt").model.state_dict()
    reference = load_model_file(tmp_path / "ref" / "model.pt").model.state_dict()
    for key in reference:
        assert torch.equal(ours[key], reference[key]), key
    history = pd.read_csv(tmp_path / "run" / "history.csv")
    assert history["epoch"].tolist() == list(range(1, epochs + 1))
    np.testing.assert_array_equal(
        history["val_loss"], pd.read_csv(tmp_path / "ref" / "history.csv")["val_loss"]
    )


def test_in_process_signal_mid_epoch_saves_and_exits_nonzero(combo, tmp_path, monkeypatch):
    import lymannet.train as train_module

    calls = {"n": 0}
    original = train_module._add_sums

    def add_sums_then_signal(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:  # mid-epoch 1 (12 batches per epoch)
            os.kill(os.getpid(), signal.SIGUSR1)
        return original(*args, **kwargs)

    monkeypatch.setattr(train_module, "_add_sums", add_sums_then_signal)
    with pytest.raises(TrainingInterrupted) as stopped:
        _train(combo, tmp_path)
    assert stopped.value.code == 128 + signal.SIGUSR1
    checkpoint = torch.load(tmp_path / "ckpt" / "train.ckpt", weights_only=True)
    assert checkpoint["state"]["epoch"] == 0 and checkpoint["state"]["batch"] == 3


def test_transfer_learning_freezes_the_first_blocks(trained, combo, tmp_path):
    source = load_model_file(trained / "model.pt").model.state_dict()
    spec = dict(
        TINY,
        train=dict(TINY["train"], epochs=2, transfer={"from": str(trained / "model.pt"), "freeze_layers": 1}),
    )
    _train(combo, tmp_path, spec)
    tuned = load_model_file(tmp_path / "model.pt").model.state_dict()
    for key in source:
        if key.startswith("trunk.blocks.0."):  # frozen: weights and BatchNorm statistics unchanged
            assert torch.equal(tuned[key], source[key]), key
    assert not torch.equal(tuned["trunk.blocks.1.conv.weight"], source["trunk.blocks.1.conv.weight"])
    assert not torch.equal(tuned["line_finder.box.weight"], source["line_finder.box.weight"])


def test_transfer_then_unfreeze_trains_everything(trained, combo, tmp_path):
    source = load_model_file(trained / "model.pt").model.state_dict()
    spec = dict(
        TINY,
        train=dict(
            TINY["train"],
            epochs=1,
            transfer={"from": str(trained / "model.pt"), "freeze_layers": 1, "unfreeze_epochs": 1},
        ),
    )
    summary = _train(combo, tmp_path, spec)
    assert summary["epochs_run"] == 2
    tuned = load_model_file(tmp_path / "model.pt").model.state_dict()
    assert not torch.equal(tuned["trunk.blocks.0.conv.weight"], source["trunk.blocks.0.conv.weight"])


@pytest.mark.skipif(not FIXTURES.is_dir(), reason=f"QuasarNP fixtures not found at {FIXTURES}")
def test_transfer_from_keras_quasarnet(combo, tmp_path):
    # QSO-trained QuasarNET (25 filters, kernel 10, valid): conv trunk transfers to our 200-pixel
    # grid; the dense layer (other flatten size) and the heads (other lines) are re-initialised.
    from lymannet.keras_import import load_keras_quasarnet

    keras, _ = load_keras_quasarnet(FIXTURES / "test_weights.h5")
    spec = dict(
        TINY,
        conv={"layers": 3, "filters": 25, "kernel": 10, "stride": 2, "padding": "valid", "dropout": 0.0},
        train=dict(
            TINY["train"], epochs=1, transfer={"from": str(FIXTURES / "test_weights.h5"), "freeze_layers": 2}
        ),
    )
    _train(combo, tmp_path, spec)
    tuned = load_model_file(tmp_path / "model.pt").model.state_dict()
    for key, value in keras.state_dict().items():
        if key.startswith(("trunk.blocks.0.", "trunk.blocks.1.")):
            assert torch.equal(tuned[key], value), key
    assert not torch.equal(
        tuned["trunk.blocks.2.conv.weight"], keras.state_dict()["trunk.blocks.2.conv.weight"]
    )


@pytest.mark.parametrize("family", ["quasarnet_mlp_z", "end_to_end"])
def test_end_to_end_variants_train(family, combo, tmp_path):
    spec = dict(TINY, family=family, mlp_units=[16], train=dict(TINY["train"], epochs=1))
    _train(combo, tmp_path, spec, name=family)
    history = pd.read_csv(tmp_path / "history.csv")
    assert "val_z_loss" in history and np.isfinite(history["val_loss"]).all()
    loaded = load_model_file(tmp_path / "model.pt")
    predicted = loaded.predict(np.ones((2, GRID.n_pixels)), np.ones((2, GRID.n_pixels)))
    assert predicted["z_pred"].shape == (2,) and np.isfinite(predicted["z_pred"]).all()
    if family == "end_to_end":
        assert "val_class_loss" in history and "val_loss_LYA" not in history


def test_online_augmentation_is_applied_per_batch(combo, tmp_path, monkeypatch):
    calls = []

    class FakeOnlineAugmentation:  # stands in for lymannet.online's class
        def __init__(self, spec, grid, target_class="LBG"):
            assert spec == {"noise": 0.1} and grid == GRID and target_class == "LBG"

        def __call__(self, flux, ivar, z, generator, shiftable=None, spectype=None):
            assert shiftable is not None and shiftable.dtype == torch.bool and len(shiftable) == len(z)
            assert spectype is not None and len(spectype) == len(
                z
            )  # SPECTYPE codes: where each class may move
            calls.append(len(z))
            noise = torch.randn(flux.shape, generator=generator, device=flux.device)
            return flux + 0.1 * noise, ivar, z

    monkeypatch.setitem(
        sys.modules, "lymannet.online", types.SimpleNamespace(OnlineAugmentation=FakeOnlineAugmentation)
    )
    spec = dict(TINY, train=dict(TINY["train"], epochs=1, online_augmentation={"noise": 0.1}))
    _train(combo, tmp_path, spec)
    assert sum(calls) == 384 and len(calls) == 12


def test_auto_device_and_thread_count(combo, tmp_path):
    """What the train rule asks for: device auto (the CPU here) and the rule's thread count."""
    spec = dict(TINY, train=dict(TINY["train"], epochs=1))
    train_model(
        "tiny",
        spec,
        train_path=combo / "train.fits",
        val_path=combo / "val.fits",
        out_model=tmp_path / "m" / "model.pt",
        out_history=tmp_path / "m" / "history.csv",
        out_curve=tmp_path / "m" / "curve.png",
        checkpoint_path=tmp_path / "c" / "ckpt",
        seed=7,
        device="auto",
        threads=1,
        combo=combo.name,
    )
    assert (tmp_path / "m" / "model.pt").exists() and (tmp_path / "m" / "curve.png").exists()
    assert torch.get_num_threads() == 1


def test_batchnorm_recalibration_recomputes_running_statistics_without_dropout():
    """train.bn_recalibration ("precise BN"): the running mean and variance become the exact
    statistics of the first n x 1,024 training spectra under the current weights, dropout off,
    whatever they were; the modules keep their momentum."""
    from torch import nn

    from lymannet.train import EVAL_BATCH, recalibrate_batchnorm

    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv1d(1, 4, 5),
        nn.BatchNorm1d(4, momentum=0.01),
        nn.ReLU(),
        nn.Dropout(0.5),
        nn.Conv1d(4, 3, 5),
        nn.BatchNorm1d(3, momentum=0.01),
    )
    flux = 5.0 + 2.0 * torch.randn(2500, 1, 40)
    data = type("Data", (), {"z": torch.zeros(2500), "__len__": lambda self: 2500})()
    batches = lambda d, index, train: (flux[index], {})  # noqa: E731
    for norm in (model[1], model[5]):
        norm.running_mean.fill_(100.0)
        norm.running_var.fill_(1e-4)
    recalibrate_batchnorm(model, data, batches, 2)
    used = flux[: 2 * EVAL_BATCH]
    with torch.no_grad():
        first = model[0](used)
        second = model[4](model[2](model[1](first)))  # eval mode: dropout off, the new statistics
    for norm, x in ((model[1], first), (model[5], model[4](model[2](model[1](first))))):
        torch.testing.assert_close(norm.running_mean, x.mean(dim=(0, 2)), rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(norm.running_var, x.var(dim=(0, 2)), rtol=1e-3, atol=1e-4)
        assert norm.momentum == 0.01
    assert not model.training and second.shape == (2 * EVAL_BATCH, 3, 32)
    recalibrate_batchnorm(model, data, batches, 0)  # 0: off, nothing changes
    torch.testing.assert_close(model[1].running_mean, first.mean(dim=(0, 2)), rtol=1e-4, atol=1e-4)
