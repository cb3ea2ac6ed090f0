"""One deterministic CPU training loop for the 4MOST networks, task set-up and prediction.

The whole training set is resident as tensors; each epoch shuffles with a seeded generator,
logs one line (losses, learning rate, spectra/s, ETA), reduces the learning rate on a validation
plateau (the slides' scheduler) and stops early after `patience` epochs without improvement,
restoring the best weights. `max_minutes` caps the wall time (the epoch in progress finishes).
Model files are self-describing: kind, spec, state dict, input description, history, provenance.
"""

from __future__ import annotations

import copy
import logging
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd
import torch
from torch import nn

from ..config import job_seed
from ..fileio import atomic_path
from ..grid import Grid
from ..lines import line_set
from . import features as ft
from .io import Ingested
from ..models import count_parameters
from .models import REDSHIFT_KINDS, build, complete_spec, location_loss, mape_loss

log = logging.getLogger("lymannet.fourmost")

TRAIN_DEFAULTS: dict[str, Any] = {"epochs": 20, "batch_size": 64, "lr": 1e-3, "weight_decay": 1e-4,
                                  "patience": 5, "lr_factor": 0.5, "lr_patience": 2, "max_minutes": 14.0,
                                  "loss": "mape"}
Tensors = dict[str, torch.Tensor]


def configure_torch(threads: int) -> None:
    torch.set_num_threads(max(1, threads))
    torch.use_deterministic_algorithms(True, warn_only=True)


def _batches(n: int, batch_size: int, generator: torch.Generator | None):
    order = torch.randperm(n, generator=generator) if generator is not None else torch.arange(n)
    for start in range(0, n, batch_size):
        yield order[start:start + batch_size]


def evaluate_loss(model: nn.Module, data: Tensors, loss_fn: Callable, batch_size: int = 512) -> float:
    model.eval()
    n = len(next(iter(data.values())))
    total = 0.0
    with torch.no_grad():
        for index in _batches(n, batch_size, None):
            total += float(loss_fn(model, {k: v[index] for k, v in data.items()})) * len(index)
    return total / max(n, 1)


def fit(model: nn.Module, train: Tensors, val: Tensors, loss_fn: Callable[[nn.Module, Tensors], torch.Tensor],
        settings: dict[str, Any], seed: int, what: str = "spectra") -> pd.DataFrame:
    """Train in place (best-validation weights restored); returns the per-epoch history."""
    settings = {**TRAIN_DEFAULTS, **settings}
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=settings["lr"], weight_decay=settings["weight_decay"])
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, factor=settings["lr_factor"],
                                                           patience=settings["lr_patience"])
    n = len(next(iter(train.values())))
    best, best_state, stale, rows = float("inf"), copy.deepcopy(model.state_dict()), 0, []
    start = time.perf_counter()
    for epoch in range(1, int(settings["epochs"]) + 1):
        model.train()
        epoch_start, total = time.perf_counter(), 0.0
        for index in _batches(n, int(settings["batch_size"]), generator):
            loss = loss_fn(model, {k: v[index] for k, v in train.items()})
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), 5.0)
            optimizer.step()
            total += float(loss.detach()) * len(index)
        val_loss = evaluate_loss(model, val, loss_fn)
        scheduler.step(val_loss)
        elapsed, epoch_time = time.perf_counter() - start, time.perf_counter() - epoch_start
        rows.append({"epoch": epoch, "train_loss": total / n, "val_loss": val_loss,
                     "lr": optimizer.param_groups[0]["lr"], "seconds": elapsed})
        eta = epoch_time * (int(settings["epochs"]) - epoch)
        log.info("epoch %d/%d train %.4f val %.4f lr %.1e, %.0f %s/s, elapsed %.0fs, ETA %.0fs", epoch,
                 settings["epochs"], total / n, val_loss, optimizer.param_groups[0]["lr"], n / epoch_time, what, elapsed, eta)
        if val_loss < best - 1e-6:
            best, best_state, stale = val_loss, copy.deepcopy(model.state_dict()), 0
        else:
            stale += 1
        if stale >= settings["patience"]:
            log.info("early stopping: no validation improvement for %d epochs", stale)
            break
        if elapsed + epoch_time > 60 * settings["max_minutes"]:
            log.info("stopping: the next epoch would pass max_minutes=%s", settings["max_minutes"])
            break
    model.load_state_dict(best_state)
    return pd.DataFrame(rows)


# --- tasks ---------------------------------------------------------------------------------------


def z_norm(z_range: list[float]) -> tuple[float, float]:
    return 0.5 * (z_range[0] + z_range[1]), 0.5 * (z_range[1] - z_range[0])


def redshift_task(kind: str, spec: dict[str, Any], data: Ingested, options: dict[str, Any]):
    """(model, train tensors, val tensors, loss_fn, input description)."""
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
    else:
        use_mape = options.get("loss", "mape") == "mape"

        def loss_fn(m, b):
            z_pred = centre + scale * m(b["x"])
            return mape_loss(z_pred, b["z"]) if use_mape else 100 * (z_pred - b["z"]).abs().mean()
    train_rows, val_rows = data.rows("train"), data.rows("val")
    return (model, {k: v[train_rows] for k, v in tensors.items()}, {k: v[val_rows] for k, v in tensors.items()},
            loss_fn, info)


def predict_redshift(model: nn.Module, info: dict[str, Any], data: Ingested, rows: np.ndarray,
                     kind: str, spec: dict[str, Any], batch_size: int = 256) -> np.ndarray:
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


def presence_task(spec: dict[str, Any], data: Ingested, options: dict[str, Any], seed: int):
    channels = dla_inputs(data, options)
    rng = np.random.default_rng(job_seed(seed, "fourmost", "presence-balance"))
    length = int(options["segment_pixels"])
    parts = {}
    for split in ("train", "val"):
        segments = ft.presence_segments(data, data.rows(split), length, int(options["segment_stride"]),
                                        int(options["edge_pixels"]))
        keep = ft.balance(segments, rng)
        x = ft.cut_windows(channels, segments.rows[keep], segments.starts[keep], length)
        parts[split] = {"x": torch.from_numpy(x), "y": torch.from_numpy(segments.label[keep])}
        log.info("%s: %d balanced segments (%d with a DLA)", split, len(keep), int(segments.label[keep].sum()))
    model = build("presence", spec, length)

    def loss_fn(m, b):
        return nn.functional.binary_cross_entropy_with_logits(m(b["x"]), b["y"])
    return model, parts["train"], parts["val"], loss_fn, {"task": "presence", "n_pixels": length}


def location_task(spec: dict[str, Any], data: Ingested, options: dict[str, Any], seed: int):
    channels = dla_inputs(data, options)
    rng = np.random.default_rng(job_seed(seed, "fourmost", "location-windows"))
    length = int(options["window_pixels"])
    parts = {}
    for split in ("train", "val"):
        windows = ft.training_windows(data, data.rows(split), length, int(options["windows_per_dla"]),
                                      int(options["windows_per_sightline"]), rng)
        x = ft.cut_windows(channels, windows.rows, ft.window_starts(windows.centres, length), length)
        parts[split] = {"x": torch.from_numpy(x), "present": torch.from_numpy(windows.present),
                        "offset": torch.from_numpy(windows.offset), "log_n": torch.from_numpy(windows.log_n)}
        log.info("%s: %d windows (%d with a DLA in the central half)", split, len(x), int(windows.present.sum()))
    model = build("location", spec, length)

    def loss_fn(m, b):
        return location_loss(m(b["x"]), b["present"], b["offset"], b["log_n"])
    return model, parts["train"], parts["val"], loss_fn, {"task": "location", "n_pixels": length}


def make_task(kind: str, spec: dict[str, Any], data: Ingested, options: dict[str, Any], seed: int):
    """(model, train tensors, val tensors, loss_fn, input description) of the network `kind`."""
    if kind in REDSHIFT_KINDS:
        return redshift_task(kind, spec, data, options)
    if kind == "presence":
        return presence_task(spec, data, options, seed)
    return location_task(spec, data, options, seed)


def train_network(kind: str, spec: dict[str, Any], settings: dict[str, Any], options: dict[str, Any], seed: int,
                  data: Ingested) -> tuple[nn.Module, dict[str, Any], pd.DataFrame, float]:
    """Build and fit one network; returns (network, input description with n_train, history, seconds)."""
    model_seed = job_seed(seed, "fourmost", "train", kind)
    torch.manual_seed(model_seed)  # the weights' initialisation
    network, train, val, loss_fn, info = make_task(kind, spec, data, options, seed)
    n_train = len(next(iter(train.values())))
    log.info("%s: %d trainable parameters, %d training / %d validation examples", kind, count_parameters(network),
             n_train, len(next(iter(val.values()))))
    start = time.perf_counter()
    history = fit(network, train, val, loss_fn, settings, model_seed,
                  what="spectra" if info["task"] == "redshift" else "windows")
    seconds = time.perf_counter() - start
    log.info("%s trained in %.1f s", kind, seconds)
    return network, {**info, "n_train": n_train}, history, seconds


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
