"""Training (rule `train`): one plain loop and resumable checkpoints.

The whole training set sits on the device as tensors; batches are index slices of a permutation
drawn from a seeded torch.Generator, so there is no per-sample Python data loading. On CUDA the
forward pass runs under bf16 autocast (train.precision: auto); on CPU it is fp32 unless the config
asks for bf16 (precision: bf16: 1.4-1.8x faster on CPUs with AVX-512 BF16 or AMX, but about 30x
slower on AVX2-only CPUs, which emulate it). Either way deterministic: the same config on the same
CPU kernels and thread count gives the same weights bit for bit (lymannet.runtime.pin_cpu_isa makes
the kernels the same on any x86 machine), also across an interruption (SIGTERM/SIGUSR1 -> checkpoint
-> non-zero exit -> the rerun resumes from the checkpoint, mid-epoch if need be).

The trained model goes to a model file (`lymannet.modelfile`), which `predict` loads without the trainer.
"""

from __future__ import annotations

import logging
import math
import resource
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd
import torch
from torch import nn

from .batches import Batches, DeviceData, load_device_data, precompute
from .checkpoint import Checkpoint, StopSignal, TrainingInterrupted
from .config import job_seed
from .errors import ConfigError, InputFileError
from .fileio import atomic_path, config_hash, provenance
from .lines import Line
from .models import build_model, combine_terms, complete_spec, count_parameters, loss_terms
from .modelfile import cpu_copy, write_model_file
from .plots import plot_learning_curve
from .runtime import Progress, configure_torch, cpu_arithmetic, cpu_has_native_bf16, pick_device
from .transfer import freeze_batchnorm_statistics, frozen_modules, set_frozen, transfer_weights

log = logging.getLogger("lymannet")

CHECKPOINT_FORMAT = "lymannet-checkpoint-1"

# `models.<name>.train` defaults (the config schema fills the same ones; tests/test_defaults.py).
TRAIN_DEFAULTS: dict[str, Any] = {
    "epochs": 10,
    "batch_size": 256,
    "lr": 1e-3,
    "amsgrad": False,
    "weight_decay": 0.0,
    "schedule": "plateau",
    "early_stopping": 5,
    "gamma": 1.0,
    "target_class": "LBG",
    "online_augmentation": None,
    "transfer": None,
    "compile": False,
    "threads": 2,
    "precision": "auto",
    "bn_recalibration": 0,
}
PLATEAU_FACTOR, PLATEAU_PATIENCE = 0.5, 2  # ReduceLROnPlateau: halve the lr after 2 flat epochs
EVAL_BATCH = 1024


def train_settings(spec: dict[str, Any]) -> dict[str, Any]:
    settings = {**TRAIN_DEFAULTS, **(spec.get("train") or {})}
    if settings["schedule"] not in ("none", "plateau", "cosine"):
        raise ConfigError(f"train.schedule must be none, plateau or cosine, not {settings['schedule']!r}")
    if settings["precision"] not in ("auto", "fp32", "bf16"):
        raise ConfigError(f"train.precision must be auto, fp32 or bf16, not {settings['precision']!r}")
    transfer = settings["transfer"]
    if transfer is not None:
        if not transfer.get("from"):
            raise ConfigError("train.transfer needs 'from' (a Keras .h5 or a lymannet model.pt)")
        settings["transfer"] = {"freeze_layers": 0, "unfreeze_epochs": 0, **transfer}
    return settings


# ----------------------------------------------------------------------------------------------
# The loop


@dataclass
class LoopState:
    """Everything besides model/optimizer/scheduler/RNG that a resumed run needs."""

    epoch: int = 0  # epochs finished
    batch: int = 0  # batches of the current epoch finished
    permutation: torch.Tensor | None = None
    sums: dict[str, Any] | None = None  # running train-loss sums of the current epoch
    epoch_seconds: float = 0.0
    history: list[dict[str, Any]] | None = None
    best_val: float = math.inf
    best_epoch: int = 0
    best_state: dict[str, torch.Tensor] | None = None
    bad_epochs: int = 0
    stopped: bool = False

    def to_dict(self) -> dict[str, Any]:
        return cpu_copy(dict(self.__dict__))


def uses_bf16(precision: str, device: torch.device) -> bool:
    """bf16 autocast for the forward pass: on CUDA by default, on the CPU only when asked for
    (fp32 stays the CPU default, the reference the tests pin)."""
    return precision == "bf16" or (precision == "auto" and device.type == "cuda")


def _make_scheduler(optimizer: torch.optim.Optimizer, schedule: str, total_epochs: int):
    if schedule == "plateau":
        return torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimizer, factor=PLATEAU_FACTOR, patience=PLATEAU_PATIENCE
        )
    if schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(total_epochs, 1))
    return None


def _add_sums(
    sums: dict[str, Any] | None, loss: torch.Tensor, parts: dict[str, torch.Tensor], n: int
) -> dict:
    """Spectrum-weighted running sums of the batch losses (kept on the device: no sync per batch)."""
    new = {"loss": loss.detach() * n, **{key: value.detach() * n for key, value in parts.items()}, "n": n}
    if sums is None:
        return new
    return {key: (sums[key] + new[key]) for key in new}


def _loss_columns(
    prefix: str, total: float, parts: dict[str, Any], lines: tuple[Line, ...]
) -> dict[str, float]:
    row = {f"{prefix}_loss": total}
    if "lines" in parts:
        values = np.asarray(parts["lines"], dtype=np.float64)
        row.update({f"{prefix}_loss_{line.name}": float(v) for line, v in zip(lines, values)})
    for key in ("z", "class"):
        if key in parts:
            row[f"{prefix}_{key}_loss"] = float(parts[key])
    return row


def evaluate(
    model: nn.Module, data: DeviceData, batches: Batches, gamma: float, bf16: bool
) -> tuple[float, dict]:
    """Validation loss normalised once over the whole set (independent of the batch size)."""
    model.eval()
    totals: dict[str, torch.Tensor] = {}
    with torch.no_grad():
        for start in range(0, len(data), EVAL_BATCH):
            index = torch.arange(start, min(start + EVAL_BATCH, len(data)), device=data.z.device)
            inputs, targets = batches(data, index, train=False)
            with torch.autocast(inputs.device.type, dtype=torch.bfloat16, enabled=bf16):
                outputs = model(inputs)
            for key, value in loss_terms(outputs, targets).items():
                totals[key] = totals[key] + value if key in totals else value
    total, parts = combine_terms(totals, gamma)
    return float(total), {key: value.cpu().numpy() for key, value in parts.items()}


def recalibrate_batchnorm(model: nn.Module, data: DeviceData, batches: Batches, n_batches: int) -> None:
    """BatchNorm's running statistics recomputed over the first `n_batches` training batches of
    EVAL_BATCH spectra with the epoch's final weights, dropout off ("precise BN", Wu & Johnson
    2021). The running means (Keras' momentum 0.99) average ~100 batches of weights that keep
    changing; in a deep network that lag compounds layer after layer, and the network in
    evaluation mode no longer computes what it trained (Hyp Classic's validation loss rose 34 ->
    81 over three epochs while its training loss fell 15 -> 6.5)."""
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not norms or n_batches <= 0:
        return
    momenta = [norm.momentum for norm in norms]
    model.eval()
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None  # a cumulative average over the batches below
        norm.train()
    with torch.no_grad():
        for start in range(0, min(len(data), n_batches * EVAL_BATCH), EVAL_BATCH):
            index = torch.arange(start, min(start + EVAL_BATCH, len(data)), device=data.z.device)
            inputs, _ = batches(data, index, train=False)
            model(inputs)
    for norm, momentum in zip(norms, momenta):
        norm.momentum = momentum
    model.eval()


def train_model(
    model_name: str,
    spec: dict[str, Any],
    train_path: str | Path,
    val_path: str | Path,
    out_model: str | Path,
    out_history: str | Path,
    out_curve: str | Path,
    checkpoint_path: str | Path,
    seed: int,
    device: str = "auto",
    threads: int | None = None,
    epoch_callback: Callable[[int, dict[str, Any]], None] | None = None,
    *,
    combo: str,
) -> dict[str, Any]:
    """Train `spec` on the combo's train/val spectra files; write model.pt, history.csv and the
    learning curve atomically; return a summary. Resumes from `checkpoint_path` if it holds a
    checkpoint of this very job. The RNG seed is job_seed(seed, model_name, combo): the rule's
    `{combo}` wildcard, the folder of results/combos/<combo>/train.fits.

    `epoch_callback(epoch, history_row)`, if given, is called after every finished epoch (once its
    checkpoint is saved); an exception it raises (e.g. optuna.TrialPruned) stops the training and
    propagates. The hyper-parameter search uses it to report validation losses for pruning."""
    spec = complete_spec(spec)
    settings = train_settings(spec)
    torch_device = pick_device(device)
    configure_torch(torch_device, threads or settings["threads"])
    rng_seed = job_seed(seed, model_name, combo)
    checkpoint_path = Path(checkpoint_path)
    bf16 = uses_bf16(settings["precision"], torch_device)
    log.info("precision: %s", "bf16 autocast" if bf16 else "fp32")
    if bf16 and torch_device.type == "cpu" and not cpu_has_native_bf16():
        log.warning(
            "bf16 on a CPU without AVX-512 BF16 or AMX is emulated: expect ~30x slower training than fp32"
        )

    inputs = {"train": train_path, "val": val_path}
    transfer = settings["transfer"]
    if transfer:
        inputs["transfer_from"] = transfer["from"]
    config_slice = {"model": model_name, "combo": combo, "seed": seed, "spec": spec}
    record = provenance(config_slice, inputs=inputs)
    fingerprint = config_hash(
        {
            "config": config_slice,
            "device": torch_device.type,
            "inputs": {k: v["sha256"] for k, v in record["inputs"].items()},
        }
    )

    train_data, grid = load_device_data(train_path, settings["target_class"], torch_device)
    val_data, val_grid = load_device_data(val_path, settings["target_class"], torch_device)
    if val_grid != grid:
        raise InputFileError(f"validation grid {val_grid} differs from the training grid {grid}", val_path)

    torch.manual_seed(rng_seed)
    model = build_model(spec, grid.n_pixels).to(torch_device)
    if transfer:
        transfer_weights(model, transfer["from"])
    frozen = frozen_modules(model, transfer["freeze_layers"]) if transfer else []
    unfreeze_epochs = transfer["unfreeze_epochs"] if transfer else 0
    total_epochs = settings["epochs"] + unfreeze_epochs

    optimizer = torch.optim.Adam(
        model.parameters(),
        lr=settings["lr"],
        amsgrad=settings["amsgrad"],
        weight_decay=settings["weight_decay"],
    )
    scheduler = _make_scheduler(optimizer, settings["schedule"], total_epochs)
    generator = torch.Generator().manual_seed(rng_seed)  # batch order
    augment, augment_generator = None, None
    if settings["online_augmentation"]:
        from .online import OnlineAugmentation  # lazily: only runs that augment need it

        augment = OnlineAugmentation(
            settings["online_augmentation"], grid, target_class=settings["target_class"]
        )
        augment_generator = torch.Generator(device=torch_device).manual_seed(rng_seed ^ 0x5EED)
    batches = Batches(model, grid, spec["snr_channel"], augment, augment_generator)
    if augment is None:
        precompute(train_data, model, grid, spec["snr_channel"])
    precompute(val_data, model, grid, spec["snr_channel"])
    forward = torch.compile(model) if settings["compile"] else model

    checkpoint = Checkpoint(
        checkpoint_path,
        CHECKPOINT_FORMAT,
        fingerprint,
        model,
        optimizer,
        scheduler,
        {"generator": generator, "augment_generator": augment_generator},
    )
    state = _resume(checkpoint)

    deterministic = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    # Bit-identical weights on the CPU, always; on CUDA only if the caller asked for them with
    # torch.use_deterministic_algorithms(True) and CUBLAS_WORKSPACE_CONFIG=:4096:8 (tests/test_gpu.py).
    torch.use_deterministic_algorithms(
        torch_device.type == "cpu" or deterministic, warn_only=deterministic and warn_only
    )
    try:
        with StopSignal() as stop:
            _loop(
                model,
                forward,
                optimizer,
                scheduler,
                generator,
                augment_generator,
                batches,
                train_data,
                val_data,
                settings,
                state,
                frozen,
                total_epochs,
                bf16,
                stop,
                checkpoint,
                epoch_callback,
            )
    finally:
        torch.use_deterministic_algorithms(deterministic, warn_only=warn_only)

    if state.best_state is not None and settings["early_stopping"]:
        model.load_state_dict(state.best_state)  # restore the best weights
    summary = {
        "model": model_name,
        "combo": combo,
        "epochs_run": len(state.history),
        "best_epoch": state.best_epoch,
        "best_val_loss": state.best_val,
        "n_train": len(train_data),
        "n_val": len(val_data),
        "device": torch_device.type,
        "parameters": count_parameters(model, trainable_only=False),
        "final_val_loss": state.history[-1]["val_loss"] if state.history else math.nan,
        "stopped_by": "early stopping" if state.stopped else "epoch limit",
        "val_loss_spread_last3": plateau_spread([row["val_loss"] for row in state.history]),
        "train_seconds": float(sum(row["seconds"] for row in state.history)),
        **peak_memory_mb(torch_device),
        "cpu_arithmetic": cpu_arithmetic(),
    }
    lines = model.lines
    write_model_file(out_model, model, spec, grid, settings["target_class"], config_slice, record, summary)
    history = pd.DataFrame(state.history)
    with atomic_path(out_history) as tmp:
        history.to_csv(tmp, index=False)
    plot_learning_curve(history, lines, out_curve)
    checkpoint_path.unlink(missing_ok=True)  # a finished job needs no resume point
    log.info(
        "trained %s on %s: best val loss %.4f at epoch %d of %d",
        model_name,
        combo,
        state.best_val,
        state.best_epoch,
        len(state.history),
    )
    return summary


def _resume(checkpoint: Checkpoint) -> LoopState:
    saved = checkpoint.load()
    if saved is None:
        return LoopState(history=[])
    state = LoopState(**saved)
    if state.sums is not None:
        device = next(checkpoint.model.parameters()).device
        state.sums = {k: (v.to(device) if isinstance(v, torch.Tensor) else v) for k, v in state.sums.items()}
    log.info("resuming from %s at epoch %d, batch %d", checkpoint.path, state.epoch + 1, state.batch)
    return state


def _loop(
    model,
    forward,
    optimizer,
    scheduler,
    generator,
    augment_generator,
    batches: Batches,
    train_data: DeviceData,
    val_data: DeviceData,
    settings: dict[str, Any],
    state: LoopState,
    frozen: list[nn.Module],
    total_epochs: int,
    bf16: bool,
    stop: StopSignal,
    checkpoint: Checkpoint,
    epoch_callback: Callable[[int, dict[str, Any]], None] | None = None,
) -> None:
    n_train, batch_size = len(train_data), int(settings["batch_size"])
    n_batches = math.ceil(n_train / batch_size)
    device = train_data.z.device
    save = lambda: checkpoint.save(state.to_dict())  # noqa: E731
    while state.epoch < total_epochs and not state.stopped:
        # Transfer learning: layers frozen for the first `epochs`, all trainable afterwards.
        frozen_now = bool(frozen) and state.epoch < settings["epochs"]
        set_frozen(model, frozen, frozen_now)
        if state.permutation is None:
            state.permutation = torch.randperm(n_train, generator=generator)
        start_time = time.perf_counter() - state.epoch_seconds
        progress = Progress(total=n_train, what="spectra", every_seconds=60.0)
        model.train()
        if frozen_now:
            freeze_batchnorm_statistics(frozen)
        for batch in range(state.batch, n_batches):
            index = state.permutation[batch * batch_size : (batch + 1) * batch_size].to(device)
            if len(index) < 2:  # BatchNorm cannot train on a single spectrum
                continue
            inputs, targets = batches(train_data, index, train=True)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
                outputs = forward(inputs)
            loss, parts = combine_terms(loss_terms(outputs, targets), settings["gamma"])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            state.sums = _add_sums(state.sums, loss, parts, len(index))
            state.batch = batch + 1
            progress.update(len(index))
            if stop.signum is not None and state.batch < n_batches:
                state.epoch_seconds = time.perf_counter() - start_time
                save()
                raise TrainingInterrupted(128 + stop.signum)
        if settings["bn_recalibration"] and not frozen_now:
            recalibrate_batchnorm(model, train_data, batches, int(settings["bn_recalibration"]))
        _finish_epoch(
            model,
            batches,
            val_data,
            settings,
            state,
            scheduler,
            optimizer,
            start_time,
            n_train,
            total_epochs,
            bf16,
        )
        save()
        if stop.signum is not None:
            raise TrainingInterrupted(128 + stop.signum)
        if epoch_callback is not None:
            epoch_callback(state.epoch, dict(state.history[-1]))


def _finish_epoch(
    model,
    batches: Batches,
    val_data: DeviceData,
    settings: dict[str, Any],
    state: LoopState,
    scheduler,
    optimizer,
    start_time: float,
    n_train: int,
    total_epochs: int,
    bf16: bool,
) -> None:
    sums = state.sums or {"loss": torch.tensor(math.nan), "n": 1}
    n = sums["n"]
    train_loss = float(sums["loss"]) / n
    train_parts = {key: (value / n).cpu().numpy() for key, value in sums.items() if key not in ("loss", "n")}
    val_loss, val_parts = evaluate(model, val_data, batches, settings["gamma"], bf16)
    seconds = time.perf_counter() - start_time
    lr = optimizer.param_groups[0]["lr"]
    row = {
        "epoch": state.epoch + 1,
        **_loss_columns("train", train_loss, train_parts, model.lines),
        **_loss_columns("val", val_loss, val_parts, model.lines),
        "lr": lr,
        "seconds": seconds,
        "spectra_per_s": n_train / max(seconds, 1e-9),
        **peak_memory_mb(val_data.z.device),
    }
    state.history.append(row)
    if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
        scheduler.step(val_loss)
    elif scheduler is not None:
        scheduler.step()
    state.epoch += 1
    state.batch, state.permutation, state.sums, state.epoch_seconds = 0, None, None, 0.0
    _early_stopping(model, settings, state, val_loss)
    remaining = total_epochs - state.epoch
    mean_seconds = float(np.mean([entry["seconds"] for entry in state.history]))
    log.info(
        "epoch %d/%d: train loss %.4f, val loss %.4f, lr %.2e, %.1fs, %.0f spectra/s, ETA %.0fs",
        state.epoch,
        total_epochs,
        train_loss,
        val_loss,
        lr,
        seconds,
        row["spectra_per_s"],
        0 if state.stopped else remaining * mean_seconds,
    )


def plateau_spread(val_losses: list[float], last: int = 3) -> float:
    """(max - min) / min of the last `last` validation losses: a curve within 2% has plateaued.
    NaN with fewer epochs."""
    if len(val_losses) < last:
        return math.nan
    tail = np.asarray(val_losses[-last:], dtype=np.float64)
    return float((tail.max() - tail.min()) / tail.min())


def peak_memory_mb(device: torch.device) -> dict[str, float]:
    """Peak memory so far, to size a cluster job's `mem`/GPU request from a first run: the
    process's resident set, and on CUDA the largest allocation torch has held."""
    peak = {"peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0}  # KiB on Linux
    peak["peak_gpu_mb"] = (
        torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else math.nan
    )
    return peak


def _early_stopping(model: nn.Module, settings: dict[str, Any], state: LoopState, val_loss: float) -> None:
    if val_loss < state.best_val:
        state.best_val, state.best_epoch, state.bad_epochs = val_loss, state.epoch, 0
        state.best_state = cpu_copy(model.state_dict())
        return
    state.bad_epochs += 1
    patience = settings["early_stopping"]
    if not patience or state.bad_epochs < patience:
        return
    transfer = settings["transfer"] or {}
    if transfer.get("unfreeze_epochs") and state.epoch < settings["epochs"]:
        # Frozen phase stalled: go on from its best weights with everything trainable.
        log.info("early stopping of the frozen phase at epoch %d; unfreezing", state.epoch)
        model.load_state_dict(state.best_state)
        state.epoch, state.bad_epochs = settings["epochs"], 0
    else:
        log.info("early stopping at epoch %d (best %d)", state.epoch, state.best_epoch)
        state.stopped = True
