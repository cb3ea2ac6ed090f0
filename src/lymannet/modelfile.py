"""Model files: the line finder's (`model.pt`: what `train` writes and `predict`, `tune` and `compare`
load) and, at the end, the 4MOST wing's (what `fourmost_train` writes and its scoring loads).

A torch.save'd dict that holds everything prediction needs: state_dict, model spec, grid, lines,
n_boxes, snr_channel, target class, the config slice, provenance and the training summary. Loading
it rebuilds the network from its spec (`lymannet.models`), so prediction does not need the trainer.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from .errors import InputFileError
from .fileio import atomic_path, file_sha256
from .grid import Grid
from .lines import Line
from .models import build_model, count_parameters, decode, fold_batchnorm, has_line_finder
from .preprocess import INFERENCE_BATCH, network_input

__all__ = [
    "MODEL_FORMAT",
    "LoadedModel",
    "cpu_copy",
    "load_fourmost_model_file",
    "load_model_file",
    "write_calibrated_model_file",
    "write_fourmost_model_file",
    "write_model_file",
]

MODEL_FORMAT = "lymannet-model-1"


def cpu_copy(tree: Any) -> Any:
    """Detached CPU copies of the tensors in a nested dict/list (for torch.save of a live model)."""
    if isinstance(tree, torch.Tensor):
        return tree.detach().cpu().clone()
    if isinstance(tree, dict):
        return {key: cpu_copy(value) for key, value in tree.items()}
    if isinstance(tree, list):
        return [cpu_copy(value) for value in tree]
    return tree


def write_model_file(
    path: str | Path,
    model: nn.Module,
    spec: dict[str, Any],
    grid: Grid,
    target_class: str,
    config_slice: dict[str, Any],
    record: dict[str, Any],
    summary: dict[str, Any],
) -> None:
    payload = {
        "format": MODEL_FORMAT,
        "state_dict": cpu_copy(model.state_dict()),
        "spec": spec,
        "grid": grid.to_dict(),
        "lines": [
            {"name": line.name, "wavelength": line.wavelength, "kind": line.kind} for line in model.lines
        ],
        "n_boxes": model.n_boxes,
        "snr_channel": bool(spec["snr_channel"]),
        "target_class": target_class,
        "config": config_slice,
        "provenance": record,
        "training": summary,
    }
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)


@dataclass
class LoadedModel:
    """A trained model and everything needed to run it on spectra of its grid. `predict` runs a
    BatchNorm-folded copy made on its first call: change `model` afterwards, and make a new one."""

    model: nn.Module
    spec: dict[str, Any]
    grid: Grid
    lines: tuple[Line, ...]
    n_boxes: int
    snr_channel: bool
    target_class: str
    provenance: dict[str, Any]
    sha256: str
    config: dict[str, Any] | None = None
    training: dict[str, Any] | None = None
    calibration: dict[str, Any] | None = None  # lymannet.calibration.Calibration.to_dict(), from `calibrate`
    _inference: nn.Module | None = field(default=None, repr=False, compare=False)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def predict(
        self, flux: np.ndarray, ivar: np.ndarray, batch_size: int = INFERENCE_BATCH, bf16: bool = False
    ) -> dict[str, np.ndarray]:
        """Decoded predictions (see lymannet.models.decode) for (N, P) rebinned flux/ivar."""
        flux, ivar = np.asarray(flux), np.asarray(ivar)
        if flux.ndim != 2 or flux.shape != ivar.shape or flux.shape[1] != self.grid.n_pixels:
            raise ValueError(
                f"flux {flux.shape} / ivar {ivar.shape}: expected (N, {self.grid.n_pixels}) on the model's grid"
            )
        if self._inference is None or next(self._inference.parameters()).device != self.device:
            self._inference = fold_batchnorm(self.model)
        chunks = []
        with torch.inference_mode():
            for start in range(0, len(flux), batch_size):
                x = network_input(
                    flux[start : start + batch_size], ivar[start : start + batch_size], self.snr_channel
                )
                with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=bf16):
                    outputs = self._inference(torch.from_numpy(x).to(self.device))
                chunks.append(decode({k: v.float() for k, v in outputs.items()}, self.lines, self.grid))
        if not chunks:
            chunks.append(decode(_empty_outputs(self), self.lines, self.grid))
        return {key: np.concatenate([chunk[key] for chunk in chunks]) for key in chunks[0]}


def _empty_outputs(loaded: LoadedModel) -> dict[str, torch.Tensor]:
    if has_line_finder(loaded.spec):
        shape = (0, len(loaded.lines), loaded.n_boxes)
        return {"box": torch.zeros(shape), "offset": torch.zeros(shape)}
    return {"z": torch.zeros(0), "class_prob": torch.zeros(0)}


def load_model_file(path: str | Path, device: str = "cpu") -> LoadedModel:
    path = Path(path)
    if not path.exists():
        raise InputFileError("model file does not exist", path)
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 - any unpickling failure means an unusable file
        raise InputFileError(f"not a readable torch model file ({error})", path) from None
    if not isinstance(payload, dict) or payload.get("format") != MODEL_FORMAT:
        raise InputFileError(f"not a lymannet model file (format {MODEL_FORMAT} expected)", path)
    grid = Grid(**payload["grid"])
    model = build_model(payload["spec"], grid.n_pixels)
    model.load_state_dict(payload["state_dict"])
    model.to(torch.device(device)).eval()
    lines = tuple(Line(**line) for line in payload["lines"])
    if tuple(line.name for line in lines) != tuple(line.name for line in model.lines):
        raise InputFileError("stored line names do not match the model's line set", path)
    return LoadedModel(
        model=model,
        spec=payload["spec"],
        grid=grid,
        lines=lines,
        n_boxes=int(payload["n_boxes"]),
        snr_channel=bool(payload["snr_channel"]),
        target_class=payload["target_class"],
        provenance=payload.get("provenance", {}),
        sha256=file_sha256(path),
        config=payload.get("config"),
        training=payload.get("training"),
        calibration=payload.get("calibration"),
    )


def write_calibrated_model_file(source: str | Path, path: str | Path, calibration: dict[str, Any]) -> None:
    """The model file `source` with its calibration (rule `calibrate`): what prediction and
    survey catalogues use, so that PROB, ZERR and the working point travel with the weights."""
    try:
        payload = torch.load(source, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 - any unpickling failure means an unusable file
        raise InputFileError(f"not a readable torch model file ({error})", source) from None
    payload["calibration"] = calibration
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)


# --- the 4MOST wing's model files (lymannet.fourmost: redshift regressors, DLA presence, localiser)

FOURMOST_MODEL_FORMAT = "lymannet-4most-model-1"


def write_fourmost_model_file(
    path: str | Path,
    model: nn.Module,
    kind: str,
    spec: dict[str, Any],
    info: dict[str, Any],
    history: Any,
    train_seconds: float,
    provenance: dict[str, Any],
) -> None:
    """A trained 4MOST network: kind, completed spec, input description (`info`), weights,
    per-epoch history (a DataFrame), training time and provenance; written atomically."""
    from .fourmost.models import complete_spec as complete_fourmost_spec

    payload = {
        "format": FOURMOST_MODEL_FORMAT,
        "kind": kind,
        "spec": complete_fourmost_spec(kind, spec),
        "info": info,
        "state_dict": model.state_dict(),
        "parameters": count_parameters(model),
        "history": history.to_dict("list"),
        "train_seconds": train_seconds,
        "provenance": provenance,
    }
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)


def load_fourmost_model_file(path: str | Path) -> tuple[nn.Module, dict[str, Any]]:
    """(network in eval mode on the CPU, the file's payload) of a 4MOST model file."""
    from .fourmost.models import build as build_fourmost

    try:
        payload = torch.load(path, map_location="cpu", weights_only=False)
    except (OSError, RuntimeError, EOFError) as error:
        raise InputFileError(f"cannot load model file ({error})", path) from None
    if not isinstance(payload, dict) or payload.get("format") != FOURMOST_MODEL_FORMAT:
        raise InputFileError("not a lymannet 4MOST model file", path)
    model = build_fourmost(payload["kind"], payload["spec"], payload["info"]["n_pixels"])
    model.load_state_dict(payload["state_dict"])
    model.eval()
    return model, payload
