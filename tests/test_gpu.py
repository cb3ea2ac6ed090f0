"""Training and prediction on CUDA: device placement, bf16 losses, resume (tests marked `gpu`).

They skip where torch.cuda.is_available() is False (every CPU-only machine); run them alone on a
GPU machine with `python -m pytest -m gpu tests/test_gpu.py`. One test here runs everywhere: that
train_model leaves the caller's deterministic-algorithms setting as it found it.

CUDA and bitwise repeatability: by default a GPU run is not bit-reproducible (cuDNN picks kernels
by timing, cuBLAS and some kernels reduce in a varying order). The resume test asks for
deterministic kernels the way a user would: CUBLAS_WORKSPACE_CONFIG=:4096:8 in the environment
before CUDA starts and torch.use_deterministic_algorithms(True) before train_model, which then
keeps that mode on CUDA and turns cuDNN's benchmark off (see docs/design.md, Conventions).
"""

from __future__ import annotations

import math
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from lymannet.modelfile import load_model_file
from lymannet.models import build_model
from lymannet.batches import load_device_data
from lymannet.train import train_model, uses_bf16

from test_train import (
    TINY,
    interrupt_after_first_checkpoint,
    make_spectra,
)  # noqa: E402 - tests/ is on sys.path under pytest

# cuBLAS reads its workspace configuration when CUDA starts: set it before any test touches CUDA.
os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")

REPO = Path(__file__).resolve().parents[1]
NO_CUDA = "no CUDA device here (torch.cuda.is_available() is False); these tests need a GPU machine"


def needs_cuda(test):
    return pytest.mark.gpu(pytest.mark.skipif(not torch.cuda.is_available(), reason=NO_CUDA)(test))


@pytest.fixture(scope="module")
def combo(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("gpu_combos") / "easy"
    folder.mkdir()
    make_spectra(folder / "train.fits", 384, seed=1)
    make_spectra(folder / "val.fits", 192, seed=2)
    return folder


def _train(combo: Path, out: Path, spec: dict, device: str = "cuda") -> dict:
    return train_model(
        "tiny",
        spec,
        combo / "train.fits",
        combo / "val.fits",
        out / "model.pt",
        out / "history.csv",
        out / "learning_curve.png",
        out / "ckpt" / "train.ckpt",
        seed=7,
        device=device,
        combo=combo.name,
    )


@needs_cuda
def test_data_model_and_outputs_live_on_the_gpu(combo, tmp_path):
    data, grid = load_device_data(combo / "train.fits", "LBG", torch.device("cuda"))
    assert data.flux.is_cuda and data.ivar.is_cuda and data.z.is_cuda and data.is_target.is_cuda
    model = build_model(TINY, grid.n_pixels).to("cuda")
    outputs = model(torch.randn(4, 1, grid.n_pixels, device="cuda"))
    assert all(value.is_cuda for value in outputs.values())

    summary = _train(combo, tmp_path, dict(TINY, train=dict(TINY["train"], epochs=1)))
    assert summary["device"] == "cuda"
    assert summary["peak_gpu_mb"] > 0
    history = pd.read_csv(tmp_path / "history.csv")
    assert np.isfinite(history["peak_gpu_mb"]).all() and (history["peak_gpu_mb"] > 0).all()

    loaded = load_model_file(tmp_path / "model.pt", device="cuda")
    assert loaded.device.type == "cuda"
    assert all(parameter.is_cuda for parameter in loaded.model.parameters())
    test = make_spectra(tmp_path / "test.fits", 50, seed=3)
    predictions = loaded.predict(test.flux, test.ivar, batch_size=16)
    assert all(len(value) == 50 for value in predictions.values())
    on_cpu = load_model_file(tmp_path / "model.pt").predict(test.flux, test.ivar, batch_size=16)
    # Same weights on both devices: TF32 convolutions on the GPU differ from fp32 by ~1e-3.
    np.testing.assert_allclose(predictions["c_line"], on_cpu["c_line"], atol=2e-2)


@needs_cuda
@pytest.mark.parametrize("compile", [False, True], ids=["eager", "compiled"])
def test_bf16_training_on_cuda_gives_finite_losses_and_learns(combo, tmp_path, compile):
    assert uses_bf16("auto", torch.device("cuda"))  # the default on a GPU
    conv = dict(TINY["conv"], dropout=0.0) if compile else TINY["conv"]
    spec = dict(TINY, conv=conv, train=dict(TINY["train"], epochs=4, precision="bf16", compile=compile))
    summary = _train(combo, tmp_path, spec)
    history = pd.read_csv(tmp_path / "history.csv")
    losses = history.filter(regex=r"_loss").to_numpy(dtype=float)
    assert np.isfinite(losses).all(), history
    assert math.isfinite(summary["final_val_loss"])
    assert history["val_loss"].iloc[-1] < history["val_loss"].iloc[0]
    loaded = load_model_file(tmp_path / "model.pt", device="cuda")
    assert all(p.dtype == torch.float32 for p in loaded.model.parameters())  # weights stay fp32


RUNNER = textwrap.dedent("""
    import sys, torch
    from pathlib import Path
    torch.use_deterministic_algorithms(True, warn_only=True)
    from lymannet.runtime import setup_logging
    from lymannet.train import train_model
    sys.path.insert(0, {tests!r})
    from test_train import TINY
    setup_logging()
    spec = dict(TINY, train=dict(TINY["train"], epochs={epochs}, schedule="cosine"))
    out, combo = {out!r}, {combo!r}
    train_model("tiny", spec, combo + "/train.fits", combo + "/val.fits", out + "/model.pt", out + "/history.csv",
                out + "/curve.png", out + "/train.ckpt", seed=7, device="cuda", combo=Path(combo).name)
""")


def _runner(tmp_path: Path, name: str, combo: Path, epochs: int) -> Path:
    script = tmp_path / f"{name}.py"
    script.write_text(
        RUNNER.format(tests=str(REPO / "tests"), epochs=epochs, out=str(tmp_path / name), combo=str(combo))
    )
    return script


def _nondeterminism_warnings(*stderrs: str) -> str:
    lines = {line.strip() for text in stderrs for line in text.splitlines() if re.search("determinis", line)}
    return "\n".join(sorted(lines)) or "(none)"


@needs_cuda
def test_gpu_kill_and_resume_gives_the_uninterrupted_weights(combo, tmp_path):
    epochs = 20  # a TINY epoch takes tens of ms on a GPU: leave room to stop it mid-run
    env = dict(
        os.environ,
        CUBLAS_WORKSPACE_CONFIG=":4096:8",
        PYTHONPATH=os.pathsep.join([str(REPO / "src"), os.environ.get("PYTHONPATH", "")]),
    )
    script = _runner(tmp_path, "run", combo, epochs)
    checkpoint = tmp_path / "run" / "train.ckpt"
    killed_stderr = interrupt_after_first_checkpoint(script, env, checkpoint, timeout=120)
    assert not (tmp_path / "run" / "model.pt").exists()
    assert torch.load(checkpoint, weights_only=True)["state"]["epoch"] < epochs

    resumed = subprocess.run(
        [sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=300
    )
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming from" in resumed.stderr
    reference_script = _runner(tmp_path, "ref", combo, epochs)
    reference = subprocess.run(
        [sys.executable, str(reference_script)], env=env, capture_output=True, text=True, timeout=300
    )
    assert reference.returncode == 0, reference.stderr

    ours = load_model_file(tmp_path / "run" / "model.pt").model.state_dict()
    theirs = load_model_file(tmp_path / "ref" / "model.pt").model.state_dict()
    warnings = _nondeterminism_warnings(killed_stderr, resumed.stderr, reference.stderr)
    for key in theirs:
        difference = (
            (ours[key].double() - theirs[key].double()).abs().max().item() if ours[key].numel() else 0
        )
        assert torch.equal(
            ours[key], theirs[key]
        ), f"{key}: max |difference| {difference:.3g}; warnings about nondeterministic ops:\n{warnings}"
    history = pd.read_csv(tmp_path / "run" / "history.csv")
    assert history["epoch"].tolist() == list(range(1, epochs + 1))
    np.testing.assert_array_equal(
        history["val_loss"], pd.read_csv(tmp_path / "ref" / "history.csv")["val_loss"]
    )


def test_train_model_restores_the_callers_deterministic_setting(combo, tmp_path):
    """Runs on the CPU too: train_model turns deterministic algorithms on for its loop (always on
    the CPU, on CUDA when the caller did) and gives the caller's setting back, warn_only included."""
    before = (
        torch.are_deterministic_algorithms_enabled(),
        torch.is_deterministic_algorithms_warn_only_enabled(),
    )
    spec = dict(TINY, train=dict(TINY["train"], epochs=1))
    try:
        for setting in ((False, False), (True, True)):
            torch.use_deterministic_algorithms(setting[0], warn_only=setting[1])
            _train(combo, tmp_path / str(setting[0]), spec, device="cpu")
            after = (
                torch.are_deterministic_algorithms_enabled(),
                torch.is_deterministic_algorithms_warn_only_enabled(),
            )
            assert after == setting
    finally:
        torch.use_deterministic_algorithms(before[0], warn_only=before[1])
