"""One deterministic training loop for the 4MOST networks (CPU or GPU), task set-up and prediction.

The whole training set is resident as tensors on the device; each epoch shuffles with a seeded
generator, logs one line (losses, accuracy, learning rate, examples/s, ETA), reduces the learning
rate on a validation plateau (the slides' scheduler) and stops early after `patience` epochs
without improvement, restoring the best weights. A run ends on `epochs` or early stopping, so the
same config gives the same model; `max_minutes` (default none) is only a safety: when it fires the
log says so with a warning and the history records stop_reason "max_minutes".

On a cluster it behaves as rule `train` (:mod:`lymannet.train`): SIGTERM/SIGUSR1 (Slurm's time
limit, preemption) saves a checkpoint after the batch in progress and exits non-zero
(:class:`lymannet.checkpoint.TrainingInterrupted`); the rerun resumes from that checkpoint, mid-epoch,
bit-identical on the CPU (and on a GPU under torch.use_deterministic_algorithms with
CUBLAS_WORKSPACE_CONFIG set, which :func:`lymannet.runtime.configure_torch` does when deterministic). A checkpoint is also written at
every epoch's end and removed when the run finishes. Model files are self-describing: kind, spec,
state dict, input description, history (with per-epoch accuracy), stop reason, provenance.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from pathlib import Path
from typing import Any, Callable

import pandas as pd
import torch
from torch import nn

from ..checkpoint import Checkpoint, StopSignal, TrainingInterrupted
from ..config import job_seed
from ..modelfile import cpu_copy
from ..models import count_parameters
from ..runtime import pick_device
from .ingest import Ingested
from .settings import TRAIN_DEFAULTS
from .tasks import Tensors, _batches, make_task

log = logging.getLogger("lymannet.fourmost")


CHECKPOINT_FORMAT = "lymannet-4most-checkpoint-1"


def evaluate(
    model: nn.Module,
    data: Tensors,
    loss_fn: Callable,
    accuracy_fn: Callable | None = None,
    batch_size: int = 512,
) -> tuple[float, float]:
    """(mean loss, mean accuracy or NaN) over `data` in eval mode."""
    model.eval()
    n = len(next(iter(data.values())))
    total, correct = 0.0, 0.0
    with torch.no_grad():
        for index in _batches(n, batch_size, None):
            batch = {k: v[index.to(v.device)] for k, v in data.items()}
            total += float(loss_fn(model, batch)) * len(index)
            if accuracy_fn is not None:
                correct += float(accuracy_fn(model, batch)) * len(index)
    n = max(n, 1)
    return total / n, (correct / n if accuracy_fn is not None else float("nan"))


def evaluate_loss(model: nn.Module, data: Tensors, loss_fn: Callable, batch_size: int = 512) -> float:
    return evaluate(model, data, loss_fn, None, batch_size)[0]


def _fingerprint(settings: dict[str, Any], seed: int, n_train: int, n_params: int) -> str:
    text = json.dumps(
        {"settings": settings, "seed": seed, "n_train": n_train, "n_params": n_params},
        sort_keys=True,
        default=str,
    )
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def fit(
    model: nn.Module,
    train: Tensors,
    val: Tensors,
    loss_fn: Callable[[nn.Module, Tensors], torch.Tensor],
    settings: dict[str, Any],
    seed: int,
    what: str = "spectra",
    accuracy_fn: Callable | None = None,
    device: str | torch.device = "cpu",
    checkpoint_path: str | Path | None = None,
    batch_callback: Callable[[int, int], None] | None = None,
) -> pd.DataFrame:
    """Train in place (best-validation weights restored, model left on the CPU); returns the
    per-epoch history (epoch, train/val loss, train/val accuracy, lr, seconds) with
    ``history.attrs["stop_reason"]`` in {"epochs", "early_stopping", "max_minutes"}.

    `checkpoint_path`: resume from it if it holds this very run's checkpoint; written at every
    epoch's end and on SIGTERM/SIGUSR1 (then TrainingInterrupted is raised), removed at the end.
    `batch_callback(epoch, batch)` runs after every optimiser step (tests use it to send a signal)."""
    settings = {**TRAIN_DEFAULTS, **settings}
    device = torch.device(device) if not isinstance(device, torch.device) else device
    model.to(device)
    train = {k: v.to(device) for k, v in train.items()}
    val = {k: v.to(device) for k, v in val.items()}
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=settings["lr"], weight_decay=settings["weight_decay"]
    )
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
        optimizer, factor=settings["lr_factor"], patience=settings["lr_patience"]
    )
    n, batch_size, epochs = (
        len(next(iter(train.values()))),
        int(settings["batch_size"]),
        int(settings["epochs"]),
    )
    n_batches = -(-n // batch_size)
    fingerprint = _fingerprint(
        {k: v for k, v in settings.items() if k != "max_minutes"}, seed, n, count_parameters(model)
    )
    state: dict[str, Any] = {
        "epoch": 0,
        "batch": 0,
        "order": None,
        "total": 0.0,
        "rows": [],
        "best": float("inf"),
        "best_state": cpu_copy(model.state_dict()),
        "stale": 0,
        "seconds": 0.0,
        "stop_reason": None,
    }
    checkpoint = (
        Checkpoint(
            Path(checkpoint_path),
            CHECKPOINT_FORMAT,
            fingerprint,
            model,
            optimizer,
            scheduler,
            {"generator": generator},
        )
        if checkpoint_path
        else None
    )
    if checkpoint is not None:
        saved = checkpoint.load(weights_only=False)  # the loop state holds the history rows
        if saved is not None:
            state = saved
            log.info(
                "resuming from %s at epoch %d, batch %d", checkpoint.path, state["epoch"] + 1, state["batch"]
            )

    def save() -> None:
        if checkpoint is not None:
            checkpoint.save(state)

    with StopSignal() as stop:
        while state["epoch"] < epochs and state["stop_reason"] is None:
            epoch = state["epoch"] + 1
            if state["order"] is None:
                state["order"], state["batch"], state["total"] = (
                    torch.randperm(n, generator=generator),
                    0,
                    0.0,
                )
            started = time.perf_counter() - state.get("epoch_seconds", 0.0)
            model.train()
            for batch in range(state["batch"], n_batches):
                index = state["order"][batch * batch_size : (batch + 1) * batch_size].to(device)
                loss = loss_fn(model, {k: v[index] for k, v in train.items()})
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                nn.utils.clip_grad_norm_(model.parameters(), 5.0)
                optimizer.step()
                state["total"] += float(loss.detach()) * len(index)
                state["batch"] = batch + 1
                if batch_callback is not None:
                    batch_callback(epoch, batch + 1)
                if stop.signum is not None:
                    state["epoch_seconds"] = time.perf_counter() - started
                    save()
                    log.warning(
                        "signal %d: checkpoint saved at epoch %d, batch %d; exiting to be resumed",
                        stop.signum,
                        epoch,
                        batch + 1,
                    )
                    raise TrainingInterrupted(128 + stop.signum)
            epoch_time = time.perf_counter() - started
            train_loss = state["total"] / n
            val_loss, val_acc = evaluate(model, val, loss_fn, accuracy_fn)
            train_acc = float("nan")
            if accuracy_fn is not None:  # on (at most) as many training examples as validation ones
                m = min(n, max(len(next(iter(val.values()))), 256))
                _, train_acc = evaluate(model, {k: v[:m] for k, v in train.items()}, loss_fn, accuracy_fn)
            scheduler.step(val_loss)
            state["seconds"] += epoch_time
            state["rows"].append(
                {
                    "epoch": epoch,
                    "train_loss": train_loss,
                    "val_loss": val_loss,
                    "train_accuracy": train_acc,
                    "val_accuracy": val_acc,
                    "lr": optimizer.param_groups[0]["lr"],
                    "seconds": state["seconds"],
                }
            )
            log.info(
                "epoch %d/%d train %.4f val %.4f, accuracy train %.3f val %.3f, lr %.1e, %.0f %s/s, elapsed %.0fs, "
                "ETA <= %.0fs",
                epoch,
                epochs,
                train_loss,
                val_loss,
                train_acc,
                val_acc,
                optimizer.param_groups[0]["lr"],
                n / max(epoch_time, 1e-9),
                what,
                state["seconds"],
                epoch_time * (epochs - epoch),
            )
            if val_loss < state["best"] - 1e-6:
                state["best"], state["best_state"], state["stale"] = val_loss, cpu_copy(model.state_dict()), 0
            else:
                state["stale"] += 1
            state["epoch"], state["order"], state["batch"], state["total"], state["epoch_seconds"] = (
                epoch,
                None,
                0,
                0.0,
                0.0,
            )
            if state["stale"] >= settings["patience"]:
                state["stop_reason"] = "early_stopping"
                log.info("early stopping: no validation improvement for %d epochs", state["stale"])
            elif epoch >= epochs:
                state["stop_reason"] = "epochs"
                log.info("stopping: %d epochs done", epochs)
            elif settings.get("max_minutes") and state["seconds"] + epoch_time > 60 * float(
                settings["max_minutes"]
            ):
                state["stop_reason"] = "max_minutes"
                log.warning(
                    "max_minutes=%s safety fired after epoch %d: this run did NOT end on epochs or early "
                    "stopping, so it depends on the machine's speed",
                    settings["max_minutes"],
                    epoch,
                )
            save()
    model.load_state_dict(state["best_state"])
    model.to("cpu")
    if checkpoint is not None:
        checkpoint.path.unlink(missing_ok=True)
    history = pd.DataFrame(state["rows"])
    history.attrs["stop_reason"] = state["stop_reason"] or "epochs"
    return history


def train_network(
    kind: str,
    spec: dict[str, Any],
    settings: dict[str, Any],
    options: dict[str, Any],
    seed: int,
    data: Ingested,
    device: str = "auto",
    checkpoint_path: str | Path | None = None,
) -> tuple[nn.Module, dict[str, Any], pd.DataFrame, float]:
    """Build and fit one network; returns (network on the CPU, input description with n_train and
    stop_reason, history, seconds). `settings["n_train"]` trains on the first n_train training
    spectra only (the sample-size study)."""
    settings = {**TRAIN_DEFAULTS, **settings}
    model_seed = job_seed(seed, "fourmost", "train", kind)
    torch.manual_seed(model_seed)  # the weights' initialisation
    network, train, val, loss_fn, info, accuracy_fn = make_task(
        kind, spec, data, {**options, "n_train": settings["n_train"]}, seed
    )
    n_train = len(next(iter(train.values())))
    torch_device = pick_device(device)
    log.info(
        "%s: %d trainable parameters, %d training / %d validation examples, on %s",
        kind,
        count_parameters(network),
        n_train,
        len(next(iter(val.values()))),
        torch_device,
    )
    start = time.perf_counter()
    history = fit(
        network,
        train,
        val,
        loss_fn,
        settings,
        model_seed,
        what="spectra" if info["task"] == "redshift" else "windows",
        accuracy_fn=accuracy_fn,
        device=torch_device,
        checkpoint_path=checkpoint_path,
    )
    seconds = time.perf_counter() - start
    log.info(
        "%s trained in %.1f s (%d epochs, stop: %s)",
        kind,
        seconds,
        len(history),
        history.attrs["stop_reason"],
    )
    return (
        network,
        {
            **info,
            "n_train": n_train,
            "stop_reason": history.attrs["stop_reason"],
            "device": str(torch_device),
        },
        history,
        seconds,
    )
