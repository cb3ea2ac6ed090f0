"""Load QuasarNET's Keras (legacy HDF5) models into our PyTorch QuasarNet.

The architecture comes from the file's `model_config` JSON attribute, the weights from
`model_weights/<layer>/<layer>/<var>:0`. Conversions: Conv1D kernel (k, in, out) -> (out, in, k);
Dense kernel (in, out) -> (out, in); BatchNorm gamma/beta/moving mean/variance as they are (the
epsilon is Keras' 1e-3 in both). Flatten needs nothing: our trunk flattens channels-last like
Keras. The heads fc_box_i / fc_offset_i are QuasarNET's lines in order: 6 heads are
`lines: qso`, 7 heads `qso_bal` (the 7th is the BAL head on CIV). A Lambda after an offset head
is QuasarNET's -0.1 + 1.2 * sigmoid (its code is marshalled Python and is not read).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import torch

from .errors import InputFileError
from .models import QuasarNet

HEAD_LINE_SETS = {6: "qso", 7: "qso_bal"}


def _layers(config: dict[str, Any]) -> list[dict[str, Any]]:
    return config["config"]["layers"]


def _first(values: Any) -> Any:
    return values[0] if isinstance(values, (list, tuple)) else values


def spec_from_keras_config(config: dict[str, Any], path: str | Path = "") -> tuple[dict[str, Any], int]:
    """(our model spec, number of input pixels) from a Keras QuasarNET model_config."""
    layers = _layers(config)
    convs = [layer["config"] for layer in layers if layer["class_name"] == "Conv1D"]
    dropouts = [layer["config"]["rate"] for layer in layers if layer["class_name"] == "Dropout"]
    dense = {layer["config"]["name"]: layer["config"] for layer in layers if layer["class_name"] == "Dense"}
    inputs = [layer["config"] for layer in layers if layer["class_name"] == "InputLayer"]
    if not convs or "fc_common" not in dense or not inputs:
        raise InputFileError(
            "not a QuasarNET Keras model (needs Conv1D layers, fc_common and an input)", path
        )
    shapes = {(c["filters"], _first(c["kernel_size"]), _first(c["strides"]), c["padding"]) for c in convs}
    if len(shapes) != 1:
        raise InputFileError(
            f"conv layers differ ({sorted(shapes)}); only uniform QuasarNET stacks load", path
        )
    filters, kernel, stride, padding = shapes.pop()
    n_heads = sum(1 for name in dense if re.fullmatch(r"fc_box_\d+", name))
    if n_heads not in HEAD_LINE_SETS:
        raise InputFileError(f"{n_heads} box heads: expected 6 (QSO lines) or 7 (with BAL)", path)
    n_boxes = dense["fc_box_0"]["units"]
    has_rescale = any(layer["class_name"] == "Lambda" for layer in layers)
    offset_activation = "sigmoid" if dense["fc_offset_0"]["activation"] == "sigmoid" else "linear"
    if has_rescale and offset_activation == "sigmoid":
        offset_activation = "rescaled_sigmoid"
    input_shape = inputs[0].get("batch_input_shape") or inputs[0].get("batch_shape")
    n_pixels, n_channels = int(input_shape[1]), int(input_shape[2])
    spec = {
        "family": "quasarnet",
        "lines": HEAD_LINE_SETS[n_heads],
        "n_boxes": int(n_boxes),
        "conv": {
            "layers": len(convs),
            "filters": int(filters),
            "kernel": int(kernel),
            "stride": int(stride),
            "padding": padding,
            "dropout": float(dropouts[0]) if dropouts else 0.0,
        },
        "dense_units": int(dense["fc_common"]["units"]),
        "offset_activation": offset_activation,
        "snr_channel": n_channels == 2,
    }
    return spec, n_pixels


def _weights(group: h5py.Group, name: str) -> dict[str, np.ndarray]:
    """{'kernel': ..., 'bias': ...} of one Keras layer (legacy HDF5 layout)."""
    layer = group[name]
    out = {}
    for weight_name in layer.attrs["weight_names"]:
        weight_name = weight_name.decode() if isinstance(weight_name, bytes) else weight_name
        out[weight_name.split("/")[-1].split(":")[0]] = np.asarray(layer[weight_name])
    return out


def _set(parameter: torch.Tensor, value: np.ndarray) -> None:
    value = torch.as_tensor(np.ascontiguousarray(value), dtype=parameter.dtype)
    if value.shape != parameter.shape:
        raise ValueError(f"shape {tuple(value.shape)} does not fit parameter {tuple(parameter.shape)}")
    with torch.no_grad():
        parameter.copy_(value)


def _set_batchnorm(bn: torch.nn.BatchNorm1d, weights: dict[str, np.ndarray]) -> None:
    _set(bn.weight, weights["gamma"])
    _set(bn.bias, weights["beta"])
    _set(bn.running_mean, weights["moving_mean"])
    _set(bn.running_var, weights["moving_variance"])


def _ordered(layers: list[dict[str, Any]], class_name: str, axis: int | None = None) -> list[str]:
    """Names of the layers of one class in model order (BatchNorm filtered by its axis)."""
    names = []
    for layer in layers:
        if layer["class_name"] != class_name:
            continue
        if axis is not None and _first(layer["config"].get("axis")) != axis:
            continue
        names.append(layer["config"]["name"])
    return names


def load_keras_quasarnet(h5_path: str | Path) -> tuple[QuasarNet, dict[str, Any]]:
    """(PyTorch QuasarNet in eval mode, its spec) from a QuasarNET Keras HDF5 file.

    The spec has an extra "n_pixels" key: the input length the Keras model was built for."""
    path = Path(h5_path)
    if not path.exists():
        raise InputFileError("file does not exist", path)
    with h5py.File(path, "r") as h5:
        if "model_config" not in h5.attrs:
            raise InputFileError("no model_config attribute: not a Keras HDF5 model file", path)
        config = json.loads(h5.attrs["model_config"])
        spec, n_pixels = spec_from_keras_config(config, path)
        model = QuasarNet(spec, n_pixels)
        group = h5["model_weights"] if "model_weights" in h5 else h5
        layers = _layers(config)
        conv_names = _ordered(layers, "Conv1D")
        conv_bn_names = _ordered(layers, "BatchNormalization", axis=2)
        dense_bn_names = _ordered(layers, "BatchNormalization", axis=1)
        for block, conv_name, bn_name in zip(model.trunk.blocks, conv_names, conv_bn_names, strict=True):
            conv = _weights(group, conv_name)
            _set(block.conv.weight, conv["kernel"].transpose(2, 1, 0))
            _set(block.conv.bias, conv["bias"])
            _set_batchnorm(block.bn, _weights(group, bn_name))
        common = _weights(group, "fc_common")
        _set(model.trunk.dense.weight, common["kernel"].T)
        _set(model.trunk.dense.bias, common["bias"])
        _set_batchnorm(model.trunk.dense_bn, _weights(group, dense_bn_names[0]))
        for head in ("box", "offset"):
            heads = [_weights(group, f"fc_{head}_{i}") for i in range(len(model.lines))]
            linear = getattr(model.line_finder, head)
            _set(linear.weight, np.concatenate([h["kernel"].T for h in heads], axis=0))
            _set(linear.bias, np.concatenate([h["bias"] for h in heads]))
    model.eval()
    return model, dict(spec, n_pixels=n_pixels)
