"""Transfer learning and freezing (thesis section 4.1): a new network starts from another's
weights (a lymannet model file or QuasarNET's Keras .h5) and may keep its first blocks frozen."""

from __future__ import annotations

import logging
import math
from pathlib import Path

import torch
from torch import nn

from .errors import ConfigError
from .keras_import import load_keras_quasarnet
from .modelfile import load_model_file

log = logging.getLogger("lymannet")


def _source_state(path: str | Path) -> tuple[dict[str, torch.Tensor], tuple[str, ...], int]:
    """(state_dict, line names, n_boxes) of a Keras .h5 or a lymannet model.pt."""
    path = Path(path)
    if path.suffix in (".h5", ".hdf5", ".keras"):
        model, _ = load_keras_quasarnet(path)
        return model.state_dict(), tuple(line.name for line in model.lines), model.n_boxes
    loaded = load_model_file(path)
    return loaded.model.state_dict(), tuple(line.name for line in loaded.lines), loaded.n_boxes


def transfer_weights(model: nn.Module, source_path: str | Path) -> dict[str, list[str]]:
    """Copy the trunk (and the heads when line sets and boxes agree) from a trained model;
    parameters whose shape differs (e.g. the dense layer on another grid) keep their init."""
    state, source_lines, source_boxes = _source_state(source_path)
    same_heads = source_lines == tuple(line.name for line in model.lines) and source_boxes == model.n_boxes
    own = model.state_dict()
    copied, skipped = [], []
    for key, value in own.items():
        take = key in state and state[key].shape == value.shape
        take = take and (key.startswith("trunk.") or (key.startswith("line_finder.") and same_heads))
        (copied if take else skipped).append(key)
        if take:
            own[key] = state[key].clone()
    model.load_state_dict(own)
    log.info(
        "transfer from %s: %d tensors copied, %d re-initialised (%s)",
        source_path,
        len(copied),
        len(skipped),
        ", ".join(sorted({k.rsplit(".", 1)[0] for k in skipped})) or "none",
    )
    return {"copied": copied, "initialised": skipped}


def keras_layers_to_blocks(keras_layers: int, layers_per_block: int = 3) -> int:
    """`freeze_layers` (conv blocks) for the thesis's count of frozen Keras layers.

    QuasarNET's Keras model lists an InputLayer, then per block Conv1D, BatchNormalization and
    Activation (plus Dropout when the model has dropout: layers_per_block 4). Freezing the first
    `keras_layers` layers freezes the weights of every block whose Conv1D is among them, i.e. of
    ceil((keras_layers - 1) / layers_per_block) blocks: the thesis's best transfer model, 7 Keras
    layers non-trainable, is freeze_layers 2 with or without Dropout layers."""
    if keras_layers < 0 or layers_per_block < 1:
        raise ConfigError("keras_layers must be >= 0 and layers_per_block >= 1")
    return max(0, math.ceil((keras_layers - 1) / layers_per_block))


def frozen_modules(model: nn.Module, freeze_layers: int) -> list[nn.Module]:
    """The first `freeze_layers` conv blocks; one more than there are blocks also freezes the
    common dense layer."""
    blocks = list(model.trunk.blocks)
    modules: list[nn.Module] = blocks[:freeze_layers]
    if freeze_layers > len(blocks):
        modules += [model.trunk.dense, model.trunk.dense_bn]
    return modules


def set_frozen(model: nn.Module, modules: list[nn.Module], frozen: bool) -> None:
    for module in model.modules():
        for parameter in module.parameters(recurse=False):
            parameter.requires_grad_(True)
    if frozen:
        for module in modules:
            module.requires_grad_(False)


def freeze_batchnorm_statistics(modules: list[nn.Module]) -> None:
    """Frozen layers keep their BatchNorm running statistics too (Keras trainable=False)."""
    for module in modules:
        for sub in module.modules():
            if isinstance(sub, nn.BatchNorm1d):
                sub.eval()
