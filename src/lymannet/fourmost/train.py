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

import copy
import hashlib
import json
import logging
import os
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd
import torch
from torch import nn

from ..checkpoint import StopSignal, TrainingInterrupted, load_checkpoint, save_checkpoint
from ..config import job_seed
from ..fileio import atomic_path
from ..grid import Grid
from ..lines import line_set
from . import features as ft
from .bal import trough_window_centres
from .io import Ingested
from ..models import count_parameters
from ..modelfile import cpu_copy
from ..runtime import pick_device
from .models import REDSHIFT_KINDS, build, complete_spec, location_loss, mape_loss
from .settings import TRAIN_DEFAULTS

log = logging.getLogger("lymannet.fourmost")

CHECKPOINT_FORMAT = "lymannet-4most-checkpoint-1"
SUBDLA_RANGE = (19.0, 20.3)  # log N_HI of the sub-DLAs the localiser may be shown as hard negatives
REDSHIFT_ACCURACY_DZ = 0.01  # a redshift counts as right when |dz| / (1 + z) < this (the "accuracy" curve)
Tensors = dict[str, torch.Tensor]


def _batches(n: int, batch_size: int, generator: torch.Generator | None):
    order = torch.randperm(n, generator=generator) if generator is not None else torch.arange(n)
    for start in range(0, n, batch_size):
        yield order[start:start + batch_size]


def evaluate(model: nn.Module, data: Tensors, loss_fn: Callable, accuracy_fn: Callable | None = None,
             batch_size: int = 512) -> tuple[float, float]:
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
    text = json.dumps({"settings": settings, "seed": seed, "n_train": n_train, "n_params": n_params}, sort_keys=True,
                      default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def fit(model: nn.Module, train: Tensors, val: Tensors, loss_fn: Callable[[nn.Module, Tensors], torch.Tensor],
        settings: dict[str, Any], seed: int, what: str = "spectra", accuracy_fn: Callable | None = None,
        device: str | torch.device = "cpu", checkpoint_path: str | Path | None = None,
        batch_callback: Callable[[int, int], None] | None = None) -> pd.DataFrame:
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
    optimizer = torch.optim.AdamW(model.parameters(), lr=settings["lr"], weight_decay=settings["weight_decay"])
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, factor=settings["lr_factor"],
                                                           patience=settings["lr_patience"])
    n, batch_size, epochs = len(next(iter(train.values()))), int(settings["batch_size"]), int(settings["epochs"])
    n_batches = -(-n // batch_size)
    fingerprint = _fingerprint({k: v for k, v in settings.items() if k != "max_minutes"}, seed, n, count_parameters(model))
    state: dict[str, Any] = {"epoch": 0, "batch": 0, "order": None, "total": 0.0, "rows": [], "best": float("inf"),
                             "best_state": cpu_copy(model.state_dict()), "stale": 0, "seconds": 0.0, "stop_reason": None}
    checkpoint_path = Path(checkpoint_path) if checkpoint_path else None
    generators = {"generator": generator}
    if checkpoint_path is not None:
        saved = load_checkpoint(checkpoint_path, CHECKPOINT_FORMAT, fingerprint, model, optimizer, scheduler, generators,
                                weights_only=False)  # the loop state holds the history rows
        if saved is not None:
            state = saved
            log.info("resuming from %s at epoch %d, batch %d", checkpoint_path, state["epoch"] + 1, state["batch"])

    def save() -> None:
        if checkpoint_path is not None:
            save_checkpoint(checkpoint_path, CHECKPOINT_FORMAT, fingerprint, model, optimizer, scheduler, generators,
                            state)

    with StopSignal() as stop:
        while state["epoch"] < epochs and state["stop_reason"] is None:
            epoch = state["epoch"] + 1
            if state["order"] is None:
                state["order"], state["batch"], state["total"] = torch.randperm(n, generator=generator), 0, 0.0
            started = time.perf_counter() - state.get("epoch_seconds", 0.0)
            model.train()
            for batch in range(state["batch"], n_batches):
                index = state["order"][batch * batch_size:(batch + 1) * batch_size].to(device)
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
                    log.warning("signal %d: checkpoint saved at epoch %d, batch %d; exiting to be resumed",
                                stop.signum, epoch, batch + 1)
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
            state["rows"].append({"epoch": epoch, "train_loss": train_loss, "val_loss": val_loss,
                                  "train_accuracy": train_acc, "val_accuracy": val_acc,
                                  "lr": optimizer.param_groups[0]["lr"], "seconds": state["seconds"]})
            log.info("epoch %d/%d train %.4f val %.4f, accuracy train %.3f val %.3f, lr %.1e, %.0f %s/s, elapsed %.0fs, "
                     "ETA <= %.0fs", epoch, epochs, train_loss, val_loss, train_acc, val_acc, optimizer.param_groups[0]["lr"],
                     n / max(epoch_time, 1e-9), what, state["seconds"], epoch_time * (epochs - epoch))
            if val_loss < state["best"] - 1e-6:
                state["best"], state["best_state"], state["stale"] = val_loss, cpu_copy(model.state_dict()), 0
            else:
                state["stale"] += 1
            state["epoch"], state["order"], state["batch"], state["total"], state["epoch_seconds"] = epoch, None, 0, 0.0, 0.0
            if state["stale"] >= settings["patience"]:
                state["stop_reason"] = "early_stopping"
                log.info("early stopping: no validation improvement for %d epochs", state["stale"])
            elif epoch >= epochs:
                state["stop_reason"] = "epochs"
                log.info("stopping: %d epochs done", epochs)
            elif settings.get("max_minutes") and state["seconds"] + epoch_time > 60 * float(settings["max_minutes"]):
                state["stop_reason"] = "max_minutes"
                log.warning("max_minutes=%s safety fired after epoch %d: this run did NOT end on epochs or early "
                            "stopping, so it depends on the machine's speed", settings["max_minutes"], epoch)
            save()
    model.load_state_dict(state["best_state"])
    model.to("cpu")
    if checkpoint_path is not None:
        checkpoint_path.unlink(missing_ok=True)
    history = pd.DataFrame(state["rows"])
    history.attrs["stop_reason"] = state["stop_reason"] or "epochs"
    return history


# --- tasks ---------------------------------------------------------------------------------------


def z_norm(z_range: list[float]) -> tuple[float, float]:
    return 0.5 * (z_range[0] + z_range[1]), 0.5 * (z_range[1] - z_range[0])


def training_rows(data: Ingested, n_train: int | None) -> np.ndarray:
    """The training split's rows, or its first `n_train` (the sample-size study: a fixed subset,
    the same for every model; file order is random already)."""
    from ..errors import ConfigError

    rows = data.rows("train")
    if n_train is None:
        return rows
    if int(n_train) > rows.size:
        raise ConfigError(f"fourmost: n_train = {n_train} but the training split has only {rows.size} spectra")
    return rows[: int(n_train)]


def quantile_table(values: np.ndarray, n_quantiles: int) -> tuple[list[float], list[float]]:
    """(quantiles of `values`, their levels in [0, 1]): the slides' QuantileTransformer (uniform
    output, linear interpolation between quantiles, as scikit-learn's), kept in the model file."""
    levels = np.linspace(0.0, 1.0, max(2, min(int(n_quantiles), len(values))))
    return np.quantile(np.asarray(values, float), levels).tolist(), levels.tolist()


def quantile_forward(values: np.ndarray, table: tuple[list[float], list[float]]) -> np.ndarray:
    quantiles, levels = table
    return np.interp(values, quantiles, levels)


def quantile_inverse(u: np.ndarray, table: tuple[list[float], list[float]]) -> np.ndarray:
    quantiles, levels = table
    return np.interp(np.clip(u, 0.0, 1.0), levels, quantiles)


def slides_task(spec: dict[str, Any], data: Ingested, options: dict[str, Any]):
    """The slides' dense regressor: standardised full-resolution (DLA-grid) flux, target z mapped
    to [0, 1] by a quantile transform fitted on the training split (the slides transformed the
    SiIV pixel, a linear function of z: the same transform), MSE loss."""
    full = complete_spec("dense_slides", spec)
    x = torch.from_numpy(ft.redshift_input(data.dla_flux, data.dla_ivar))
    z = data.sightlines["Z_QSO"].to_numpy()
    train_rows, val_rows = training_rows(data, options.get("n_train")), data.rows("val")
    table = quantile_table(z[train_rows], int(full["n_quantiles"]))
    u = torch.from_numpy(quantile_forward(z, table).astype(np.float32))
    tensors: Tensors = {"x": x, "u": u, "z": torch.from_numpy(z.astype(np.float32))}
    model = build("dense_slides", spec, x.shape[-1])
    info = {"task": "redshift", "grid": "dla", "n_pixels": int(x.shape[-1]), "quantiles": table}

    def loss_fn(m, b):
        return nn.functional.mse_loss(m(b["x"]), b["u"])

    def accuracy_fn(m, b):
        z_pred = torch.as_tensor(quantile_inverse(m(b["x"]).detach().cpu().numpy(), table), dtype=b["z"].dtype,
                                 device=b["z"].device)
        return ((z_pred - b["z"]).abs() / (1 + b["z"]) < REDSHIFT_ACCURACY_DZ).float().mean()
    return (model, {k: v[train_rows] for k, v in tensors.items()}, {k: v[val_rows] for k, v in tensors.items()},
            loss_fn, info, accuracy_fn)


def redshift_task(kind: str, spec: dict[str, Any], data: Ingested, options: dict[str, Any]):
    """(model, train tensors, val tensors, loss_fn, input description, accuracy_fn)."""
    if kind == "dense_slides":
        return slides_task(spec, data, options)
    x = torch.from_numpy(ft.redshift_input(data.z_flux, data.z_ivar))
    z = torch.from_numpy(data.sightlines["Z_QSO"].to_numpy().astype(np.float32))
    n_pixels = x.shape[-1]
    model = build(kind, spec, n_pixels)
    centre, scale = z_norm(options["z"])
    info = {"task": "redshift", "n_pixels": n_pixels, "z_centre": centre, "z_scale": scale,
            "z_grid": options["z_grid"]}
    tensors: Tensors = {"x": x, "z": z}
    if kind == "quasarnet":
        from ..models import encode_targets, quasarnet_loss

        grid = Grid.from_config(options["z_grid"])
        lines = line_set(complete_spec(kind, spec)["lines"])
        targets = encode_targets(z, torch.ones_like(z), lines, grid, model.n_boxes)
        tensors.update({"box": targets["box"], "offset": targets["offset"]})

        def loss_fn(m, b):
            return quasarnet_loss(m(b["x"]), {"box": b["box"], "offset": b["offset"]})[0]

        from ..models import decode

        def accuracy_fn(m, b):
            z_pred = torch.as_tensor(decode(m(b["x"]), lines, grid)["z_pred"], device=b["z"].device, dtype=b["z"].dtype)
            return ((z_pred - b["z"]).abs() / (1 + b["z"]) < REDSHIFT_ACCURACY_DZ).float().mean()
    else:
        use_mape = options.get("loss", "mape") == "mape"

        def loss_fn(m, b):
            z_pred = centre + scale * m(b["x"])
            return mape_loss(z_pred, b["z"]) if use_mape else 100 * (z_pred - b["z"]).abs().mean()

        def accuracy_fn(m, b):
            z_pred = centre + scale * m(b["x"])
            return ((z_pred - b["z"]).abs() / (1 + b["z"]) < REDSHIFT_ACCURACY_DZ).float().mean()
    train_rows, val_rows = training_rows(data, options.get("n_train")), data.rows("val")
    return (model, {k: v[train_rows] for k, v in tensors.items()}, {k: v[val_rows] for k, v in tensors.items()},
            loss_fn, info, accuracy_fn)


def redshift_parts(kind: str) -> tuple[str, ...]:
    """Which grids of the ingested file a redshift network reads."""
    return ("DLA",) if kind == "dense_slides" else ("Z",)


def predict_redshift(model: nn.Module, info: dict[str, Any], data: Ingested, rows: np.ndarray,
                     kind: str, spec: dict[str, Any], batch_size: int = 256) -> np.ndarray:
    if kind == "dense_slides":
        x = torch.from_numpy(ft.redshift_input(data.dla_flux[rows], data.dla_ivar[rows]))
        model.eval()
        with torch.no_grad():
            u = np.concatenate([model(x[i]).numpy() for i in _batches(len(x), batch_size, None)]) if len(x) else np.zeros(0)
        return quantile_inverse(u, info["quantiles"])
    x = torch.from_numpy(ft.redshift_input(data.z_flux[rows], data.z_ivar[rows]))
    model.eval()
    out = []
    with torch.no_grad():
        for index in _batches(len(x), batch_size, None):
            if kind == "quasarnet":
                from ..models import decode

                grid = Grid.from_config(info["z_grid"])
                lines = line_set(complete_spec(kind, spec)["lines"])
                out.append(decode(model(x[index]), lines, grid)["z_pred"])
            else:
                out.append((info["z_centre"] + info["z_scale"] * model(x[index])).numpy())
    return np.concatenate(out) if out else np.zeros(0)


def dla_inputs(data: Ingested, options: dict[str, Any]) -> np.ndarray:
    return ft.dla_channels(data.dla_wave, data.dla_flux, data.dla_ivar, data.sightlines["Z_QSO"].to_numpy(),
                           int(options["median_window"]))


def augment_windows(x: torch.Tensor, offset: torch.Tensor | None, flip: bool, noise: float
                    ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Training-time augmentation of DLA windows (flux, noise channels), drawn from torch's seeded
    generator: half of them mirrored in wavelength (a DLA profile is symmetric and the forest has no
    direction; the centre offset changes sign), and extra Gaussian noise of up to `noise` times each
    pixel's own sigma (its noise channel grown to match), so that the network sees each DLA at
    lower S/N too."""
    if flip:
        mirror = torch.rand(len(x), device=x.device) < 0.5
        x = torch.where(mirror[:, None, None], x.flip(-1), x)
        if offset is not None:
            offset = torch.where(mirror, -offset, offset)
    if noise > 0:
        scale = noise * torch.rand(len(x), 1, device=x.device)
        flux = x[:, 0] + scale * x[:, 1] * torch.randn_like(x[:, 0])
        sigma = torch.clamp(x[:, 1] * torch.sqrt(1 + scale ** 2), max=ft.MAX_SIGMA)
        x = torch.stack([flux, sigma], dim=1)
    return x, offset


def presence_task(spec: dict[str, Any], data: Ingested, options: dict[str, Any], seed: int):
    channels = dla_inputs(data, options)
    rng = np.random.default_rng(job_seed(seed, "fourmost", "presence-balance"))
    length = int(options["segment_pixels"])
    parts = {}
    for split in ("train", "val"):
        rows = training_rows(data, options.get("n_train")) if split == "train" else data.rows(split)
        segments = ft.presence_segments(data, rows, length, int(options["segment_stride"]),
                                        int(options["edge_pixels"]))
        keep = ft.balance(segments, rng, float(options.get("presence_negatives_per_positive") or 1.0))
        x = ft.cut_windows(channels, segments.rows[keep], segments.starts[keep], length)
        parts[split] = {"x": torch.from_numpy(x), "y": torch.from_numpy(segments.label[keep])}
        log.info("%s: %d segments (%d with a DLA)", split, len(keep), int(segments.label[keep].sum()))
    # the class mix the network learns (its prior): the DLA calibration corrects it to nature's
    positive_fraction = float(parts["train"]["y"].float().mean()) if len(parts["train"]["y"]) else 0.5
    model = build("presence", spec, length)

    flip, noise = bool(options.get("augment_flip")), float(options.get("augment_noise") or 0.0)

    def loss_fn(m, b):
        x = augment_windows(b["x"], None, flip, noise)[0] if m.training else b["x"]
        return nn.functional.binary_cross_entropy_with_logits(m(x), b["y"])

    def accuracy_fn(m, b):
        return ((m(b["x"]) > 0).float() == b["y"]).float().mean()
    return (model, parts["train"], parts["val"], loss_fn,
            {"task": "presence", "n_pixels": length, "positive_fraction": positive_fraction}, accuracy_fn)


def location_task(spec: dict[str, Any], data: Ingested, options: dict[str, Any], seed: int):
    channels = dla_inputs(data, options)
    rng = np.random.default_rng(job_seed(seed, "fourmost", "location-windows"))
    length = int(options["window_pixels"])
    parts = {}
    trough_windows = int(options.get("bal_trough_windows") or 0)  # BAL troughs taught as negatives
    subdla_windows = int(options.get("subdla_windows") or 0)  # sub-DLAs (19-20.3) as hard negatives
    for split in ("train", "val"):
        rows = training_rows(data, options.get("n_train")) if split == "train" else data.rows(split)
        extra_rows, extra_centres = zip(trough_window_centres(data, rows, trough_windows, rng),
                                        ft.absorber_window_centres(data, rows, SUBDLA_RANGE, subdla_windows, length, rng))
        extra = (np.concatenate(extra_rows), np.concatenate(extra_centres))
        windows = ft.training_windows(data, rows, length, int(options["windows_per_dla"]),
                                      int(options["windows_per_sightline"]), rng, extra)
        x = ft.cut_windows(channels, windows.rows, ft.window_starts(windows.centres, length), length)
        parts[split] = {"x": torch.from_numpy(x), "present": torch.from_numpy(windows.present),
                        "offset": torch.from_numpy(windows.offset), "log_n": torch.from_numpy(windows.log_n)}
        log.info("%s: %d windows (%d with a DLA in the central half; %d on BAL troughs, %d on sub-DLAs)", split, len(x),
                 int(windows.present.sum()), len(extra_rows[0]), len(extra_rows[1]))
    positive_fraction = float(parts["train"]["present"].mean()) if len(parts["train"]["present"]) else 0.5
    model = build("location", spec, length)

    flip, noise = bool(options.get("augment_flip")), float(options.get("augment_noise") or 0.0)

    def loss_fn(m, b):
        x, offset = augment_windows(b["x"], b["offset"], flip, noise) if m.training else (b["x"], b["offset"])
        return location_loss(m(x), b["present"], offset, b["log_n"])

    def accuracy_fn(m, b):  # the presence part: is a DLA centre in the window's central half?
        return ((m(b["x"])[:, 0] > 0).float() == b["present"]).float().mean()
    return (model, parts["train"], parts["val"], loss_fn,
            {"task": "location", "n_pixels": length, "positive_fraction": positive_fraction,
             "bal_trough_windows": trough_windows, "subdla_windows": subdla_windows}, accuracy_fn)


MODEL_KINDS = {"location_bal": "location"}  # model names that are another kind trained differently


def kind_of(model: str) -> str:
    """The network kind of a model name (location_bal: a localiser with BAL troughs taught as negatives)."""
    return MODEL_KINDS.get(model, model)


def make_task(kind: str, spec: dict[str, Any], data: Ingested, options: dict[str, Any], seed: int):
    """(model, train tensors, val tensors, loss_fn, input description, accuracy_fn) of the network `kind`."""
    if kind in REDSHIFT_KINDS:
        return redshift_task(kind, spec, data, options)
    if kind == "presence":
        return presence_task(spec, data, options, seed)
    return location_task(spec, data, options, seed)


def train_network(kind: str, spec: dict[str, Any], settings: dict[str, Any], options: dict[str, Any], seed: int,
                  data: Ingested, device: str = "auto", checkpoint_path: str | Path | None = None,
                  ) -> tuple[nn.Module, dict[str, Any], pd.DataFrame, float]:
    """Build and fit one network; returns (network on the CPU, input description with n_train and
    stop_reason, history, seconds). `settings["n_train"]` trains on the first n_train training
    spectra only (the sample-size study)."""
    settings = {**TRAIN_DEFAULTS, **settings}
    model_seed = job_seed(seed, "fourmost", "train", kind)
    torch.manual_seed(model_seed)  # the weights' initialisation
    network, train, val, loss_fn, info, accuracy_fn = make_task(kind, spec, data, {**options, "n_train": settings["n_train"]},
                                                                seed)
    n_train = len(next(iter(train.values())))
    torch_device = pick_device(device)
    log.info("%s: %d trainable parameters, %d training / %d validation examples, on %s", kind, count_parameters(network),
             n_train, len(next(iter(val.values()))), torch_device)
    start = time.perf_counter()
    history = fit(network, train, val, loss_fn, settings, model_seed,
                  what="spectra" if info["task"] == "redshift" else "windows", accuracy_fn=accuracy_fn,
                  device=torch_device, checkpoint_path=checkpoint_path)
    seconds = time.perf_counter() - start
    log.info("%s trained in %.1f s (%d epochs, stop: %s)", kind, seconds, len(history), history.attrs["stop_reason"])
    return network, {**info, "n_train": n_train, "stop_reason": history.attrs["stop_reason"],
                     "device": str(torch_device)}, history, seconds


def predict_batches(model: nn.Module, x: np.ndarray, batch_size: int = 512) -> np.ndarray:
    model.eval()
    out = []
    with torch.no_grad():
        for start in range(0, len(x), batch_size):
            out.append(model(torch.from_numpy(x[start:start + batch_size])).numpy())
    return np.concatenate(out) if out else np.zeros((0,))


# --- model files -------------------------------------------------------------------------------


def write_model_file(path: str | Path, model: nn.Module, kind: str, spec: dict[str, Any], info: dict[str, Any],
                     history: pd.DataFrame, train_seconds: float, provenance: dict[str, Any]) -> None:
    payload = {"format": "lymannet-4most-model-1", "kind": kind, "spec": complete_spec(kind, spec), "info": info,
               "state_dict": model.state_dict(), "parameters": count_parameters(model),
               "history": history.to_dict("list"), "train_seconds": train_seconds, "provenance": provenance}
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)


def load_model_file(path: str | Path) -> tuple[nn.Module, dict[str, Any]]:
    from ..errors import InputFileError

    try:
        payload = torch.load(path, map_location="cpu", weights_only=False)
    except (OSError, RuntimeError, EOFError) as error:
        raise InputFileError(f"cannot load model file ({error})", path) from None
    if payload.get("format") != "lymannet-4most-model-1":
        raise InputFileError("not a lymannet 4MOST model file", path)
    model = build(payload["kind"], payload["spec"], payload["info"]["n_pixels"])
    model.load_state_dict(payload["state_dict"])
    model.eval()
    return model, payload
