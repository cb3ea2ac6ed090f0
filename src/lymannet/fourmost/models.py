"""Networks of the 4MOST pipelines.

Redshift (input: standardised flux on a ~1500-pixel log-lambda grid, (N, 1, P)):

- ``dense``: the slides' dense regressor, but on the rebinned spectrum instead of 23,411 raw
  pixels (their first layer alone had 548M weights): Dense -> BN -> ReLU -> Dropout blocks -> z.
- ``gru``: strided Conv1d front end (4 layers of stride 2: 1533 pixels -> 96 steps of ~1% in 1+z;
  the conv channels keep the sub-step position) feeding a bidirectional GRU. Recurrence over 96
  steps instead of 23,411 is what makes it train in minutes on 2 CPU cores; the sequence is
  pooled by mean and max over steps and a small MLP gives z.
- ``dense_slides``: the slides' own dense regressor for a like-for-like comparison: the
  full-resolution spectrum (the 0.5 A DLA grid, 11,705 pixels: R ~ 5000 still sampled 2.4x) into a
  wide first layer, three Dense(10)+BatchNorm layers, and the target quantile-transformed (as
  their qt.transform: uniform on [0, 1], MSE loss), inverted at prediction time.
- ``quasarnet``: :func:`lymannet.models.build_model` with the QSO line set, used as a reference;
  its redshift is decoded from the most confident line.

Both regressors output a standardised z, y = (z - z_centre) / z_scale, so that initial outputs are
O(1); the MAPE/L1 loss is computed on z itself.

DLA (input: (N, 2, L) = rolling-median continuum-normalised flux and its normalised noise):

- ``presence``: CNN on spectrum segments -> one logit (the slides' classifier, deeper).
- ``location``: CNN on 800-pixel windows -> (logit that a DLA centre lies in the window's central
  half, centre offset in units of a quarter window, log N_HI) as in Parks et al. 2018.
"""

from __future__ import annotations

import copy
from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError
from .features import LOG_NHI_CENTRE

REDSHIFT_KINDS = ("dense", "gru", "quasarnet", "dense_slides")
DLA_KINDS = ("presence", "location")
KINDS = REDSHIFT_KINDS + DLA_KINDS

SPEC_DEFAULTS: dict[str, dict[str, Any]] = {
    "dense": {"hidden": [256, 64], "dropout": 0.1},
    # The slides' regressor: full-resolution flux -> Dense(width) -> [Dense(10) -> BN] x 3 -> 1 on a
    # quantile-transformed target. width = the number of input pixels reproduces their square first
    # layer (23,411^2 = 548M weights at 0.25 A; 137M on our 0.5 A grid); the default keeps it trainable here.
    "dense_slides": {"width": 2048, "hidden": [10, 10, 10], "dropout": 0.0, "n_quantiles": 1000},
    "gru": {
        "conv_channels": [32, 48, 64, 64],
        "conv_kernel": 7,
        "conv_strides": [2, 2, 2, 2],
        "hidden": 64,
        "bidirectional": True,
        "head": 64,
        "dropout": 0.1,
    },
    "quasarnet": {
        "family": "quasarnet",
        "lines": "qso",
        "n_boxes": 20,
        "conv": {"layers": 4, "filters": 64, "kernel": 10, "stride": 2, "padding": "valid", "dropout": 0.0},
        "dense_units": 100,
        "offset_activation": "rescaled_sigmoid",
    },
    "presence": {"channels": [16, 32, 64, 64], "kernel": 9, "dense": 128, "dropout": 0.2},
    "location": {"channels": [16, 32, 64, 64], "kernel": 9, "dense": 128, "dropout": 0.1},
}


def complete_spec(kind: str, spec: dict[str, Any] | None) -> dict[str, Any]:
    if kind not in KINDS:
        raise ConfigError(f"unknown 4MOST model {kind!r}; valid: {list(KINDS)}")
    full = copy.deepcopy(SPEC_DEFAULTS[kind])
    for key, value in (spec or {}).items():
        full[key] = (
            {**full[key], **value} if isinstance(full.get(key), dict) and isinstance(value, dict) else value
        )
    return full


class DenseRegressor(nn.Module):
    def __init__(self, n_pixels: int, hidden: Sequence[int], dropout: float):
        super().__init__()
        layers: list[nn.Module] = [nn.Flatten()]
        width = n_pixels
        for units in hidden:
            layers += [nn.Linear(width, units), nn.BatchNorm1d(units), nn.ReLU(), nn.Dropout(dropout)]
            width = units
        layers.append(nn.Linear(width, 1))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).squeeze(-1)


class SlidesDenseRegressor(nn.Module):
    """The slides' Keras Sequential: Dense(width) -> [Dense(10) -> BatchNormalization] x 3 -> Dense(1)
    (ReLU activations assumed: the slides list layers, not activations)."""

    def __init__(self, n_pixels: int, width: int, hidden: Sequence[int], dropout: float):
        super().__init__()
        layers: list[nn.Module] = [nn.Flatten(), nn.Linear(n_pixels, width), nn.ReLU(), nn.Dropout(dropout)]
        previous = width
        for units in hidden:
            layers += [nn.Linear(previous, units), nn.ReLU(), nn.BatchNorm1d(units)]
            previous = units
        layers.append(nn.Linear(previous, 1))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).squeeze(-1)


class GruRegressor(nn.Module):
    def __init__(
        self,
        n_pixels: int,
        conv_channels: Sequence[int],
        conv_kernel: int,
        conv_strides: Sequence[int],
        hidden: int,
        bidirectional: bool,
        head: int,
        dropout: float,
    ):
        super().__init__()
        if len(conv_channels) != len(conv_strides):
            raise ConfigError("gru: conv_channels and conv_strides need the same length")
        blocks: list[nn.Module] = []
        in_channels = 1
        for channels, stride in zip(conv_channels, conv_strides):
            blocks += [
                nn.Conv1d(in_channels, channels, conv_kernel, stride=stride, padding=conv_kernel // 2),
                nn.BatchNorm1d(channels),
                nn.ReLU(),
            ]
            in_channels = channels
        self.front = nn.Sequential(*blocks)
        self.gru = nn.GRU(in_channels, hidden, batch_first=True, bidirectional=bidirectional)
        width = hidden * (2 if bidirectional else 1) * 2  # mean and max pooling
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(width, head), nn.ReLU(), nn.Linear(head, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        sequence, _ = self.gru(self.front(x).transpose(1, 2))  # (N, T, H)
        pooled = torch.cat([sequence.mean(dim=1), sequence.amax(dim=1)], dim=1)
        return self.head(pooled).squeeze(-1)


class DlaCnn(nn.Module):
    """Conv -> BN -> ReLU -> MaxPool(2) blocks, flatten, Dense; n_outputs logits/values."""

    def __init__(
        self,
        n_pixels: int,
        n_outputs: int,
        channels: Sequence[int],
        kernel: int,
        dense: int,
        dropout: float,
        in_channels: int = 2,
    ):
        super().__init__()
        blocks: list[nn.Module] = []
        length = n_pixels
        for k, width in enumerate(channels):
            # A strided first layer: 0.5 A pixels oversample the R~5000 resolution ~2.5x.
            stride = 2 if k == 0 else 1
            blocks += [
                nn.Conv1d(in_channels, width, kernel, stride=stride, padding=kernel // 2),
                nn.BatchNorm1d(width),
                nn.ReLU(),
                nn.MaxPool1d(2),
            ]
            length = ((length + 2 * (kernel // 2) - kernel) // stride + 1) // 2
            in_channels = width
        if length < 1:
            raise ConfigError(f"{len(channels)} conv blocks leave no pixel of {n_pixels}")
        self.features = nn.Sequential(*blocks)
        self.head = nn.Sequential(
            nn.Flatten(),
            nn.Linear(length * in_channels, dense),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(dense, n_outputs),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.head(self.features(x))
        return out.squeeze(-1) if out.shape[-1] == 1 else out


def build(kind: str, spec: dict[str, Any] | None, n_pixels: int) -> nn.Module:
    """The network `kind` (see module doc) for inputs of n_pixels pixels."""
    spec = complete_spec(kind, spec)
    if kind == "dense":
        return DenseRegressor(n_pixels, spec["hidden"], spec["dropout"])
    if kind == "dense_slides":
        return SlidesDenseRegressor(n_pixels, int(spec["width"]), spec["hidden"], float(spec["dropout"]))
    if kind == "gru":
        return GruRegressor(
            n_pixels,
            spec["conv_channels"],
            spec["conv_kernel"],
            spec["conv_strides"],
            spec["hidden"],
            spec["bidirectional"],
            spec["head"],
            spec["dropout"],
        )
    if kind == "quasarnet":
        from ..models import build_model  # the main pipeline's QuasarNET

        return build_model(spec, n_pixels)
    n_outputs = 1 if kind == "presence" else 3
    return DlaCnn(n_pixels, n_outputs, spec["channels"], spec["kernel"], spec["dense"], spec["dropout"])


def mape_loss(z_pred: torch.Tensor, z_true: torch.Tensor) -> torch.Tensor:
    """Mean absolute percentage error, in percent (the slides' loss)."""
    return 100.0 * ((z_pred - z_true).abs() / z_true.abs().clamp_min(1e-6)).mean()


def location_loss(
    output: torch.Tensor,
    present: torch.Tensor,
    offset: torch.Tensor,
    log_n: torch.Tensor,
    log_n_centre: float = LOG_NHI_CENTRE,
) -> torch.Tensor:
    """BCE on presence + (only where a DLA is present) smooth-L1 on offset and on log N_HI."""
    bce = F.binary_cross_entropy_with_logits(output[:, 0], present)
    weight = present.sum().clamp_min(1.0)
    offset_term = (
        F.smooth_l1_loss(output[:, 1], offset, reduction="none", beta=0.1) * present
    ).sum() / weight
    log_n_term = (
        F.smooth_l1_loss(output[:, 2], log_n - log_n_centre, reduction="none", beta=0.1) * present
    ).sum() / weight
    return bce + 2.0 * offset_term + log_n_term
