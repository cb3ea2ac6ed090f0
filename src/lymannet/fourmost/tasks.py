"""The 4MOST networks' tasks: for each kind (redshift regressors, DLA presence, DLA localiser),
the training and validation tensors it learns from, its loss and accuracy, and prediction with a
trained network. Training (:mod:`.train`) and scoring (:mod:`.score`) both use them; scoring never
imports the trainer."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import torch
from torch import nn

from ..config import job_seed
from ..errors import ConfigError
from ..grid import Grid
from ..lines import line_set
from ..models import decode, encode_targets, quasarnet_loss
from . import features as ft
from .bal import trough_window_centres
from .ingest import Ingested
from .models import REDSHIFT_KINDS, build, complete_spec, location_loss, mape_loss

log = logging.getLogger("lymannet.fourmost")

Tensors = dict[str, torch.Tensor]


def _batches(n: int, batch_size: int, generator: torch.Generator | None):
    order = torch.randperm(n, generator=generator) if generator is not None else torch.arange(n)
    for start in range(0, n, batch_size):
        yield order[start : start + batch_size]


SUBDLA_RANGE = (19.0, 20.3)  # log N_HI of the sub-DLAs the localiser may be shown as hard negatives


REDSHIFT_ACCURACY_DZ = 0.01  # a redshift counts as right when |dz| / (1 + z) < this (the "accuracy" curve)


def z_norm(z_range: list[float]) -> tuple[float, float]:
    return 0.5 * (z_range[0] + z_range[1]), 0.5 * (z_range[1] - z_range[0])


def training_rows(data: Ingested, n_train: int | None) -> np.ndarray:
    """The training split's rows, or its first `n_train` (the sample-size study: a fixed subset,
    the same for every model; file order is random already)."""
    rows = data.rows("train")
    if n_train is None:
        return rows
    if int(n_train) > rows.size:
        raise ConfigError(
            f"fourmost: n_train = {n_train} but the training split has only {rows.size} spectra"
        )
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
        z_pred = torch.as_tensor(
            quantile_inverse(m(b["x"]).detach().cpu().numpy(), table),
            dtype=b["z"].dtype,
            device=b["z"].device,
        )
        return ((z_pred - b["z"]).abs() / (1 + b["z"]) < REDSHIFT_ACCURACY_DZ).float().mean()

    return (
        model,
        {k: v[train_rows] for k, v in tensors.items()},
        {k: v[val_rows] for k, v in tensors.items()},
        loss_fn,
        info,
        accuracy_fn,
    )


def redshift_task(kind: str, spec: dict[str, Any], data: Ingested, options: dict[str, Any]):
    """(model, train tensors, val tensors, loss_fn, input description, accuracy_fn)."""
    if kind == "dense_slides":
        return slides_task(spec, data, options)
    x = torch.from_numpy(ft.redshift_input(data.z_flux, data.z_ivar))
    z = torch.from_numpy(data.sightlines["Z_QSO"].to_numpy().astype(np.float32))
    n_pixels = x.shape[-1]
    model = build(kind, spec, n_pixels)
    centre, scale = z_norm(options["z"])
    info = {
        "task": "redshift",
        "n_pixels": n_pixels,
        "z_centre": centre,
        "z_scale": scale,
        "z_grid": options["z_grid"],
    }
    tensors: Tensors = {"x": x, "z": z}
    if kind == "quasarnet":
        grid = Grid.from_config(options["z_grid"])
        lines = line_set(complete_spec(kind, spec)["lines"])
        targets = encode_targets(z, torch.ones_like(z), lines, grid, model.n_boxes)
        tensors.update({"box": targets["box"], "offset": targets["offset"]})

        def loss_fn(m, b):
            return quasarnet_loss(m(b["x"]), {"box": b["box"], "offset": b["offset"]})[0]

        def accuracy_fn(m, b):
            z_pred = torch.as_tensor(
                decode(m(b["x"]), lines, grid)["z_pred"], device=b["z"].device, dtype=b["z"].dtype
            )
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
    return (
        model,
        {k: v[train_rows] for k, v in tensors.items()},
        {k: v[val_rows] for k, v in tensors.items()},
        loss_fn,
        info,
        accuracy_fn,
    )


def redshift_parts(kind: str) -> tuple[str, ...]:
    """Which grids of the ingested file a redshift network reads."""
    return ("DLA",) if kind == "dense_slides" else ("Z",)


def predict_redshift(
    model: nn.Module,
    info: dict[str, Any],
    data: Ingested,
    rows: np.ndarray,
    kind: str,
    spec: dict[str, Any],
    batch_size: int = 256,
) -> np.ndarray:
    if kind == "dense_slides":
        x = torch.from_numpy(ft.redshift_input(data.dla_flux[rows], data.dla_ivar[rows]))
        model.eval()
        with torch.no_grad():
            u = (
                np.concatenate([model(x[i]).numpy() for i in _batches(len(x), batch_size, None)])
                if len(x)
                else np.zeros(0)
            )
        return quantile_inverse(u, info["quantiles"])
    x = torch.from_numpy(ft.redshift_input(data.z_flux[rows], data.z_ivar[rows]))
    model.eval()
    out = []
    with torch.no_grad():
        for index in _batches(len(x), batch_size, None):
            if kind == "quasarnet":
                grid = Grid.from_config(info["z_grid"])
                lines = line_set(complete_spec(kind, spec)["lines"])
                out.append(decode(model(x[index]), lines, grid)["z_pred"])
            else:
                out.append((info["z_centre"] + info["z_scale"] * model(x[index])).numpy())
    return np.concatenate(out) if out else np.zeros(0)


def dla_inputs(data: Ingested, options: dict[str, Any]) -> np.ndarray:
    return ft.dla_channels(
        data.dla_wave,
        data.dla_flux,
        data.dla_ivar,
        data.sightlines["Z_QSO"].to_numpy(),
        int(options["median_window"]),
    )


def augment_windows(
    x: torch.Tensor, offset: torch.Tensor | None, flip: bool, noise: float
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
        sigma = torch.clamp(x[:, 1] * torch.sqrt(1 + scale**2), max=ft.MAX_SIGMA)
        x = torch.stack([flux, sigma], dim=1)
    return x, offset


def presence_task(spec: dict[str, Any], data: Ingested, options: dict[str, Any], seed: int):
    channels = dla_inputs(data, options)
    rng = np.random.default_rng(job_seed(seed, "fourmost", "presence-balance"))
    length = int(options["segment_pixels"])
    parts = {}
    for split in ("train", "val"):
        rows = training_rows(data, options.get("n_train")) if split == "train" else data.rows(split)
        segments = ft.presence_segments(
            data, rows, length, int(options["segment_stride"]), int(options["edge_pixels"])
        )
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

    return (
        model,
        parts["train"],
        parts["val"],
        loss_fn,
        {"task": "presence", "n_pixels": length, "positive_fraction": positive_fraction},
        accuracy_fn,
    )


def location_task(spec: dict[str, Any], data: Ingested, options: dict[str, Any], seed: int):
    channels = dla_inputs(data, options)
    rng = np.random.default_rng(job_seed(seed, "fourmost", "location-windows"))
    length = int(options["window_pixels"])
    parts = {}
    trough_windows = int(options.get("bal_trough_windows") or 0)  # BAL troughs taught as negatives
    subdla_windows = int(options.get("subdla_windows") or 0)  # sub-DLAs (19-20.3) as hard negatives
    for split in ("train", "val"):
        rows = training_rows(data, options.get("n_train")) if split == "train" else data.rows(split)
        extra_rows, extra_centres = zip(
            trough_window_centres(data, rows, trough_windows, rng),
            ft.absorber_window_centres(data, rows, SUBDLA_RANGE, subdla_windows, length, rng),
        )
        extra = (np.concatenate(extra_rows), np.concatenate(extra_centres))
        windows = ft.training_windows(
            data,
            rows,
            length,
            int(options["windows_per_dla"]),
            int(options["windows_per_sightline"]),
            rng,
            extra,
        )
        x = ft.cut_windows(channels, windows.rows, ft.window_starts(windows.centres, length), length)
        parts[split] = {
            "x": torch.from_numpy(x),
            "present": torch.from_numpy(windows.present),
            "offset": torch.from_numpy(windows.offset),
            "log_n": torch.from_numpy(windows.log_n),
        }
        log.info(
            "%s: %d windows (%d with a DLA in the central half; %d on BAL troughs, %d on sub-DLAs)",
            split,
            len(x),
            int(windows.present.sum()),
            len(extra_rows[0]),
            len(extra_rows[1]),
        )
    positive_fraction = float(parts["train"]["present"].mean()) if len(parts["train"]["present"]) else 0.5
    model = build("location", spec, length)

    flip, noise = bool(options.get("augment_flip")), float(options.get("augment_noise") or 0.0)

    def loss_fn(m, b):
        x, offset = augment_windows(b["x"], b["offset"], flip, noise) if m.training else (b["x"], b["offset"])
        return location_loss(m(x), b["present"], offset, b["log_n"])

    def accuracy_fn(m, b):  # the presence part: is a DLA centre in the window's central half?
        return ((m(b["x"])[:, 0] > 0).float() == b["present"]).float().mean()

    return (
        model,
        parts["train"],
        parts["val"],
        loss_fn,
        {
            "task": "location",
            "n_pixels": length,
            "positive_fraction": positive_fraction,
            "bal_trough_windows": trough_windows,
            "subdla_windows": subdla_windows,
        },
        accuracy_fn,
    )


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


def predict_batches(model: nn.Module, x: np.ndarray, batch_size: int = 512) -> np.ndarray:
    model.eval()
    out = []
    with torch.no_grad():
        for start in range(0, len(x), batch_size):
            out.append(model(torch.from_numpy(x[start : start + batch_size])).numpy())
    return np.concatenate(out) if out else np.zeros((0,))
