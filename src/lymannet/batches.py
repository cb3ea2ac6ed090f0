"""Training data on the device: a combo's spectra as tensors on the training device, and the
batches the training loop draws from them (augmented on the device when a model asks for online
augmentation, else the network input and targets computed once). :func:`network_input_torch` is
the torch twin of :func:`lymannet.preprocess.network_input`, which prediction uses
(tests/test_batches.py holds them to the same numbers)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn

from .errors import InputFileError
from .grid import Grid
from .models import encode_targets
from .online import spectype_codes
from .preprocess import network_input
from .spectra import read_spectra


def network_input_torch(flux: torch.Tensor, ivar: torch.Tensor, snr_channel: bool) -> torch.Tensor:
    """Torch twin of lymannet.preprocess.network_input (for batches augmented on the device)."""
    flux64, ivar64 = flux.double(), ivar.double()
    total_weight = ivar64.sum(dim=1, keepdim=True)
    safe_weight = torch.where(total_weight > 0, total_weight, torch.ones_like(total_weight))
    mean = (flux64 * ivar64).sum(dim=1, keepdim=True) / safe_weight
    rms = torch.sqrt((ivar64 * (flux64 - mean) ** 2).sum(dim=1, keepdim=True) / safe_weight)
    # as preprocess.standardise: a constant spectrum's rms is round-off, not a scale
    ok = (total_weight > 0) & (rms > 1e-6 * mean.abs().clamp_min(1e-30))
    channels = [torch.where(ok, (flux64 - mean) / torch.where(ok, rms, torch.ones_like(rms)), flux64)]
    if snr_channel:
        channels.append(flux64 * torch.sqrt(ivar64.clamp_min(0)))
    return torch.stack(channels, dim=1).float()


@dataclass
class DeviceData:
    """Spectra and truth of one file on the training device."""

    flux: torch.Tensor  # (N, P) float32
    ivar: torch.Tensor
    z: torch.Tensor  # (N,) float64
    is_target: torch.Tensor  # (N,) bool
    spectype: torch.Tensor | None = None  # (N,) int8 codes of lymannet.online.SPECTYPE_CODES (-1: other)
    inputs: torch.Tensor | None = None  # precomputed network input when nothing changes the spectra
    targets: dict[str, torch.Tensor] | None = None

    def __len__(self) -> int:
        return len(self.z)


def load_device_data(path: str | Path, target_class: str, device: torch.device) -> tuple[DeviceData, Grid]:
    spectra = read_spectra(path)
    if spectra.grid is None:
        raise InputFileError("network layer has no constant-step grid (GRIDKIND native)", path)
    if len(spectra) < 2:
        raise InputFileError(f"{len(spectra)} spectra: too few to train or validate on", path)
    is_target = (spectra.truth["SPECTYPE"].str.strip() == target_class).to_numpy(dtype=bool, copy=True)
    z = spectra.truth["Z"].to_numpy(np.float64)
    if np.any(is_target & ~np.isfinite(z)):
        raise InputFileError(f"{target_class} spectra without a finite Z in the truth table", path)
    data = DeviceData(
        flux=torch.from_numpy(np.ascontiguousarray(spectra.flux, np.float32)).to(device),
        ivar=torch.from_numpy(np.ascontiguousarray(spectra.ivar, np.float32)).to(device),
        z=torch.from_numpy(np.nan_to_num(z)).to(device),
        is_target=torch.from_numpy(is_target).to(device),
        spectype=torch.from_numpy(spectype_codes(spectra.truth["SPECTYPE"].to_numpy())).to(device),
    )
    return data, spectra.grid


def precompute(data: DeviceData, model: nn.Module, grid: Grid, snr_channel: bool) -> None:
    """Network input (exactly predict's numpy standardisation) and targets, once for all epochs."""
    flux, ivar = data.flux.cpu().numpy(), data.ivar.cpu().numpy()
    data.inputs = torch.from_numpy(network_input(flux, ivar, snr_channel)).to(data.flux.device)
    data.targets = encode_targets(data.z, data.is_target, model.lines, grid, model.n_boxes)


class Batches:
    """Turns row indices into (network input, targets), augmenting on the device if configured."""

    def __init__(
        self,
        model: nn.Module,
        grid: Grid,
        snr_channel: bool,
        augment: Callable | None,
        generator: torch.Generator | None,
    ):
        self.lines, self.n_boxes, self.grid = model.lines, model.n_boxes, grid
        self.snr_channel, self.augment, self.generator = snr_channel, augment, generator

    def __call__(self, data: DeviceData, index: torch.Tensor, train: bool) -> tuple[torch.Tensor, dict]:
        if data.inputs is not None and not (train and self.augment):
            return data.inputs[index], {key: value[index] for key, value in data.targets.items()}
        flux, ivar, z = data.flux[index], data.ivar[index], data.z[index]
        if train and self.augment is not None:
            # Augment BEFORE target encoding (z may change) and standardisation (flux does). The
            # shift moves each class only where it is physical (online shift.classes; never a star).
            spectype = data.spectype[index] if data.spectype is not None else None
            flux, ivar, z = self.augment(
                flux, ivar, z, self.generator, shiftable=data.is_target[index], spectype=spectype
            )
        inputs = network_input_torch(flux, ivar, self.snr_channel)
        return inputs, encode_targets(z, data.is_target[index], self.lines, self.grid, self.n_boxes)
