"""The networks (QuasarNET and the thesis's variants), target encoding/decoding and the loss.

QuasarNET (Busca & Balland 2018, arXiv:1808.09955) as used for LBGs in the thesis (chapter 2):
N x [Conv1d -> BatchNorm -> ReLU -> Dropout], flatten, Dense -> BatchNorm -> ReLU, then the
"line finder": for every line, a box head (one sigmoid confidence per box of the spectrum) and an
offset head (the line's position inside each box). Layers follow Keras' conventions so that
QuasarNET's published Keras weights load unchanged (see `lymannet.keras_import`):

- "same" padding pads the extra pixel on the right for even totals, as TensorFlow does;
- BatchNorm uses Keras' epsilon 1e-3 and momentum 0.99 (torch momentum 0.01);
- flatten reads the conv output channels-last (pixel-major), as Keras' Flatten does.

Every model's ``forward(x)`` takes the (N, C, P) network input of
`lymannet.preprocess.network_input` and returns a dict of tensors: "box" (N, L, B) sigmoid
confidences, "box_logit" (same, for a numerically stable loss), "offset" (N, L, B) for line-finder
models; "z" (N,) and "class_prob"/"class_logit" (N,) where the model has them.
"""

from __future__ import annotations

import copy
import math
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .errors import ConfigError
from .grid import Grid
from .lines import Line, line_set, line_votes

FAMILIES = ("quasarnet", "quasarnet_mlp_z", "end_to_end")
OFFSET_ACTIVATIONS = ("sigmoid", "rescaled_sigmoid", "linear")
KERAS_BN_EPSILON = 1e-3
KERAS_BN_MOMENTUM = 0.01  # torch convention: 1 - Keras' 0.99

# Model-spec defaults; the config schema (workflow/schemas/config.schema.yaml) fills the same ones
# (tests/test_defaults.py checks that they agree).
MODEL_DEFAULTS: dict[str, Any] = {
    "lines": "lbg",
    "n_boxes": 40,
    "conv": {"layers": 4, "filters": 100, "kernel": 10, "stride": 2, "padding": "valid", "dropout": 0.0},
    "dense_units": 100,
    "offset_activation": "rescaled_sigmoid",
    "snr_channel": False,
    "mlp_units": [64, 32],
    # quasarnet_mlp_z only: stop the z MLP's gradient at the line finder (thesis fig. 4.3)
    "detach_line_finder": False,
}


def complete_spec(spec: dict[str, Any]) -> dict[str, Any]:
    """A copy of a `models.<name>` dict with every model key present (train keys: lymannet.train)."""
    if "family" not in spec:
        raise ConfigError("model spec needs a 'family' (one of " + ", ".join(FAMILIES) + ")")
    full = copy.deepcopy(spec)
    for key, value in MODEL_DEFAULTS.items():
        if key == "conv":
            full["conv"] = {**value, **(spec.get("conv") or {})}
        else:
            full.setdefault(key, copy.deepcopy(value))
    if full["family"] not in FAMILIES:
        raise ConfigError(f"unknown model family {full['family']!r}; valid: {list(FAMILIES)}")
    if full["offset_activation"] not in OFFSET_ACTIVATIONS:
        raise ConfigError(
            f"unknown offset_activation {full['offset_activation']!r}; valid: {list(OFFSET_ACTIVATIONS)}"
        )
    if full["conv"]["padding"] not in ("valid", "same"):
        raise ConfigError(f"conv padding must be 'valid' or 'same', not {full['conv']['padding']!r}")
    line_set(full["lines"])  # fail early on unknown line sets
    return full


# ----------------------------------------------------------------------------------------------
# Layers


def keras_same_padding(length: int, kernel: int, stride: int) -> tuple[int, int]:
    """(left, right) padding of TensorFlow's "same": output ceil(length/stride), extra pixel right."""
    n_out = math.ceil(length / stride)
    total = max((n_out - 1) * stride + kernel - length, 0)
    return total // 2, total - total // 2


def conv_output_length(length: int, kernel: int, stride: int, padding: str) -> int:
    if padding == "same":
        return math.ceil(length / stride)
    return (length - kernel) // stride + 1


class ConvBlock(nn.Module):
    """Conv1d -> BatchNorm -> ReLU -> Dropout, with Keras' "same"/"valid" padding."""

    def __init__(
        self, in_channels: int, filters: int, kernel: int, stride: int, padding: str, dropout: float
    ):
        super().__init__()
        self.kernel, self.stride, self.padding = kernel, stride, padding
        self.conv = nn.Conv1d(in_channels, filters, kernel, stride=stride)
        self.bn = nn.BatchNorm1d(filters, eps=KERAS_BN_EPSILON, momentum=KERAS_BN_MOMENTUM)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        left, right = (
            keras_same_padding(x.shape[-1], self.kernel, self.stride) if self.padding == "same" else (0, 0)
        )
        if left == right:  # the convolution pads symmetrically itself, without a padded copy of x
            x = F.conv1d(x, self.conv.weight, self.conv.bias, self.stride, padding=left)
        else:
            x = self.conv(F.pad(x, (left, right)))
        return self.dropout(F.relu(self.bn(x)))


def fold_batchnorm(model: nn.Module) -> nn.Module:
    """An inference copy of `model` with every eval-mode BatchNorm folded into the convolution or
    dense layer before it (torch.nn.utils.fusion): the same function up to fp32 rounding, one pass
    over the activations fewer per layer. The trained model itself is left as it is."""
    from torch.nn.utils.fusion import fuse_conv_bn_eval, fuse_linear_bn_eval

    folded = copy.deepcopy(model).eval()
    for module in folded.modules():
        if isinstance(module, ConvBlock):
            module.conv, module.bn = fuse_conv_bn_eval(module.conv, module.bn), nn.Identity()
        elif isinstance(module, Trunk):
            module.dense, module.dense_bn = fuse_linear_bn_eval(module.dense, module.dense_bn), nn.Identity()
    return folded


class Trunk(nn.Module):
    """The convolutional feature extractor and the common dense layer (QuasarNET's fc_common)."""

    def __init__(self, spec: dict[str, Any], n_pixels: int):
        super().__init__()
        conv = spec["conv"]
        in_channels = 2 if spec["snr_channel"] else 1
        blocks, length = [], n_pixels
        for layer in range(conv["layers"]):
            blocks.append(
                ConvBlock(
                    in_channels if layer == 0 else conv["filters"],
                    conv["filters"],
                    conv["kernel"],
                    conv["stride"],
                    conv["padding"],
                    conv["dropout"],
                )
            )
            length = conv_output_length(length, conv["kernel"], conv["stride"], conv["padding"])
            if length < 1:
                raise ConfigError(
                    f"{conv['layers']} conv layers (kernel {conv['kernel']}, stride "
                    f"{conv['stride']}, padding {conv['padding']}) leave no pixel of {n_pixels}"
                )
        self.blocks = nn.ModuleList(blocks)
        self.n_flat = length * conv["filters"]
        self.dense = nn.Linear(self.n_flat, spec["dense_units"])
        self.dense_bn = nn.BatchNorm1d(spec["dense_units"], eps=KERAS_BN_EPSILON, momentum=KERAS_BN_MOMENTUM)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x)
        # Channels-last flatten (pixel-major), Keras' order: imported Dense weights fit as they are.
        x = x.transpose(1, 2).flatten(1)
        return F.relu(self.dense_bn(self.dense(x)))


class LineFinder(nn.Module):
    """Per line, a box head (sigmoid confidences) and an offset head, packed as one Linear each
    (rows l*B .. (l+1)*B-1 are line l's head: the same parameters as QuasarNET's separate heads)."""

    def __init__(self, in_features: int, n_lines: int, n_boxes: int, offset_activation: str):
        super().__init__()
        self.n_lines, self.n_boxes, self.offset_activation = n_lines, n_boxes, offset_activation
        self.box = nn.Linear(in_features, n_lines * n_boxes)
        self.offset = nn.Linear(in_features, n_lines * n_boxes)

    def forward(self, features: torch.Tensor) -> dict[str, torch.Tensor]:
        shape = (features.shape[0], self.n_lines, self.n_boxes)
        box_logit = self.box(features).view(shape)
        offset = self.offset(features).view(shape)
        if self.offset_activation == "sigmoid":
            offset = torch.sigmoid(offset)
        elif self.offset_activation == "rescaled_sigmoid":
            # QuasarNET's Lambda layer: lets the offset reach slightly beyond its box
            offset = -0.1 + 1.2 * torch.sigmoid(offset)
        return {"box": torch.sigmoid(box_logit), "box_logit": box_logit, "offset": offset}


def mlp(in_features: int, units: Sequence[int], out_features: int) -> nn.Sequential:
    layers: list[nn.Module] = []
    for width in units:
        layers += [nn.Linear(in_features, width), nn.ReLU()]
        in_features = width
    layers.append(nn.Linear(in_features, out_features))
    return nn.Sequential(*layers)


# ----------------------------------------------------------------------------------------------
# Networks


class SpectrumNet(nn.Module):
    """What every family shares: its spec, line set, box count and the convolutional trunk."""

    def __init__(self, spec: dict[str, Any], n_pixels: int):
        super().__init__()
        self.spec = complete_spec(spec)
        self.n_pixels = n_pixels
        self.lines = line_set(self.spec["lines"])
        self.n_boxes = int(self.spec["n_boxes"])
        self.trunk = Trunk(self.spec, n_pixels)


class QuasarNet(SpectrumNet):
    def __init__(self, spec: dict[str, Any], n_pixels: int):
        super().__init__(spec, n_pixels)
        self.line_finder = LineFinder(
            self.spec["dense_units"], len(self.lines), self.n_boxes, self.spec["offset_activation"]
        )

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.line_finder(self.trunk(x))


class QuasarNetMlpZ(QuasarNet):
    """Thesis 4.2 (fig. 4.3): QuasarNET whose line-finder outputs feed a small MLP giving z."""

    def __init__(self, spec: dict[str, Any], n_pixels: int):
        super().__init__(spec, n_pixels)
        self.z_mlp = mlp(2 * len(self.lines) * self.n_boxes, self.spec["mlp_units"], 1)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        out = super().forward(x)
        found = torch.cat([out["box"], out["offset"]], dim=-1).flatten(1)
        if self.spec["detach_line_finder"]:
            found = found.detach()
        out["z"] = self.z_mlp(found).squeeze(-1)
        return out


class EndToEnd(SpectrumNet):
    """Thesis 4.2 (fig. 4.4): the line finder replaced by dense layers giving z and P(target)."""

    def __init__(self, spec: dict[str, Any], n_pixels: int):
        super().__init__(spec, n_pixels)
        self.head = mlp(self.spec["dense_units"], self.spec["mlp_units"], 2)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        z, class_logit = self.head(self.trunk(x)).unbind(-1)
        return {"z": z, "class_logit": class_logit, "class_prob": torch.sigmoid(class_logit)}


def build_model(spec: dict[str, Any], n_pixels: int) -> nn.Module:
    """The network described by a `models.<name>` config dict, for inputs of n_pixels pixels."""
    family = complete_spec(spec)["family"]
    return {"quasarnet": QuasarNet, "quasarnet_mlp_z": QuasarNetMlpZ, "end_to_end": EndToEnd}[family](
        spec, n_pixels
    )


def has_line_finder(model_or_spec: nn.Module | dict[str, Any]) -> bool:
    spec = model_or_spec if isinstance(model_or_spec, dict) else model_or_spec.spec
    return spec["family"] in ("quasarnet", "quasarnet_mlp_z")


def count_parameters(model: nn.Module, trainable_only: bool = True) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


# ----------------------------------------------------------------------------------------------
# Targets


def _fractional_index(grid: Grid, wavelength: torch.Tensor) -> torch.Tensor:
    """Torch twin of Grid.fractional_index (float64), so encoding runs on the training device."""
    u = torch.log10(wavelength) if grid.kind == "log" else wavelength
    return (u - grid.start) / grid.step


def encode_targets(
    z: torch.Tensor | np.ndarray,
    is_target: torch.Tensor | np.ndarray,
    lines: Sequence[Line],
    grid: Grid,
    n_boxes: int,
) -> dict[str, torch.Tensor]:
    """QuasarNET's targets: "box" (N, L, B) 1 in the box holding each line of a target-class
    spectrum, "offset" (N, L, B) the line's fractional position in that box, "z" (N,) and
    "is_target" (N,) float32. Lines off the grid get no box; contaminants get all zeros."""
    z = torch.as_tensor(z, dtype=torch.float64)
    is_target = torch.as_tensor(is_target).to(device=z.device, dtype=torch.bool)
    rest = torch.tensor([line.wavelength for line in lines], dtype=torch.float64, device=z.device)
    observed = (1.0 + z[:, None]) * rest[None, :]  # (N, L)
    position = _fractional_index(grid, observed) * n_boxes / grid.n_pixels  # in units of boxes
    box_index = torch.floor(position)
    inside = (box_index >= 0) & (box_index < n_boxes) & is_target[:, None] & torch.isfinite(position)
    one_hot = F.one_hot(box_index.clamp(0, n_boxes - 1).long(), n_boxes).to(torch.float32)
    box = one_hot * inside[..., None]
    offset = box * (position - box_index).to(torch.float32)[..., None]
    return {
        "box": box,
        "offset": offset,
        "z": torch.nan_to_num(z.to(torch.float32)),
        "is_target": is_target.to(torch.float32),
    }


# ----------------------------------------------------------------------------------------------
# Loss (thesis eq. 2.1, with the gamma weight of thesis 6.3)

LOSS_TERMS = ("pos", "neg", "sq", "n_pos", "n_neg", "z", "n_z", "cls", "n_cls")


def loss_terms(
    outputs: dict[str, torch.Tensor],
    targets: dict[str, torch.Tensor],
    z_loss: str = "huber",
    huber_delta: float = 0.1,
) -> dict[str, torch.Tensor]:
    """The sums eq. 2.1 is made of, per line (L,) or scalar, in float32. Kept as sums so that a
    validation loss can be accumulated over batches and normalised once over the whole set."""
    terms: dict[str, torch.Tensor] = {}
    if "box_logit" in outputs:
        logit = outputs["box_logit"].float()
        y, x = targets["box"], targets["offset"]
        terms["pos"] = (y * -F.logsigmoid(logit)).sum(dim=(0, 2))
        terms["neg"] = ((1 - y) * -F.logsigmoid(-logit)).sum(dim=(0, 2))
        terms["sq"] = (y * (x - outputs["offset"].float()) ** 2).sum(dim=(0, 2))
        terms["n_pos"] = y.sum(dim=(0, 2))
        terms["n_neg"] = (1 - y).sum(dim=(0, 2))
    if "z" in outputs:
        mask = targets["is_target"]
        error = outputs["z"].float() - targets["z"]
        if z_loss == "l1":
            per_spectrum = error.abs()
        else:
            per_spectrum = F.huber_loss(error, torch.zeros_like(error), reduction="none", delta=huber_delta)
        terms["z"] = (per_spectrum * mask).sum()
        terms["n_z"] = mask.sum()
    if "class_logit" in outputs:
        terms["cls"] = F.binary_cross_entropy_with_logits(
            outputs["class_logit"].float(), targets["is_target"], reduction="sum"
        )
        terms["n_cls"] = torch.tensor(float(len(targets["is_target"])), device=terms["cls"].device)
    return terms


def combine_terms(
    terms: dict[str, torch.Tensor], gamma: float = 1.0
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """(total loss, parts): parts["lines"] (L,) is eq. 2.1's bracket per line, "z" and "class" the
    end-to-end terms. A batch without any positive box contributes no positive/offset term."""
    parts: dict[str, torch.Tensor] = {}
    total = torch.zeros((), device=next(iter(terms.values())).device)
    if "pos" in terms:
        n_pos = terms["n_pos"].clamp_min(1.0)
        n_neg = terms["n_neg"].clamp_min(1.0)
        parts["lines"] = terms["pos"] / n_pos + terms["neg"] / n_neg + gamma * terms["sq"] / n_pos
        total = total + parts["lines"].sum()
    if "z" in terms:
        parts["z"] = terms["z"] / terms["n_z"].clamp_min(1.0)
        total = total + parts["z"]
    if "cls" in terms:
        parts["class"] = terms["cls"] / terms["n_cls"].clamp_min(1.0)
        total = total + parts["class"]
    return total, parts


def quasarnet_loss(
    outputs: dict[str, torch.Tensor],
    targets: dict[str, torch.Tensor],
    gamma: float = 1.0,
    z_loss: str = "huber",
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Loss of one batch: eq. 2.1 summed over lines (+ z and class terms for end-to-end models)."""
    return combine_terms(loss_terms(outputs, targets, z_loss=z_loss), gamma)


# ----------------------------------------------------------------------------------------------
# Decoding


def _numpy(value: torch.Tensor | np.ndarray) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        return value.detach().float().cpu().numpy()
    return np.asarray(value)


def decode(
    outputs: dict[str, torch.Tensor | np.ndarray], lines: Sequence[Line], grid: Grid
) -> dict[str, np.ndarray]:
    """Per-line confidences and redshifts, the best line and the spectrum's redshift.

    c_line (N, L) = max over boxes; z_line from the line's position (j* + offset[j*]) * P / B on
    the grid; z_pred and confidence from the most confident line. BAL heads (`lines.is_bal`) get
    their c_line/z_line columns but never choose the line, as in QuasarNP's process_preds, where
    zbest comes from the non-BAL lines only: a BAL trough is not the quasar's redshift.
    End-to-end models give z_pred from their z head; without a line finder, c_line/z_line are
    NaN, best_line -1 and confidence is class_prob."""
    rest = np.array([line.wavelength for line in lines], dtype=np.float64)
    if "box" in outputs:
        box = _numpy(outputs["box"]).astype(np.float64)
        offset = _numpy(outputs["offset"]).astype(np.float64)
        n_spectra, _, n_boxes = box.shape
        best_box = box.argmax(axis=-1)  # (N, L)
        c_line = np.take_along_axis(box, best_box[..., None], axis=-1)[..., 0]
        best_offset = np.take_along_axis(offset, best_box[..., None], axis=-1)[..., 0]
        observed = grid.wavelength_at((best_box + best_offset) * grid.n_pixels / n_boxes)
        z_line = observed / rest[None, :] - 1.0
        # A BAL head may be the most confident; it must not win: -inf keeps it out of the argmax.
        votes = np.where(line_votes(lines)[None, :], c_line, -np.inf)
        best_line = votes.argmax(axis=1) if n_spectra else np.zeros(0, np.int64)
        rows = np.arange(n_spectra)
        z_pred = z_line[rows, best_line]
        confidence = c_line[rows, best_line]
    else:
        n_spectra = len(_numpy(outputs["z"]))
        c_line = np.full((n_spectra, len(lines)), np.nan)
        z_line = np.full((n_spectra, len(lines)), np.nan)
        best_line = np.full(n_spectra, -1, dtype=np.int64)
        z_pred = np.full(n_spectra, np.nan)
        confidence = np.full(n_spectra, np.nan)
    if "z" in outputs:
        z_pred = _numpy(outputs["z"]).astype(np.float64)
    if "class_prob" in outputs:
        confidence = _numpy(outputs["class_prob"]).astype(np.float64)
    return {
        "c_line": c_line,
        "z_line": z_line,
        "z_pred": z_pred,
        "best_line": best_line.astype(np.int64),
        "confidence": confidence,
    }
