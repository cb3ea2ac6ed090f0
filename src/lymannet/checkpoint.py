"""Training checkpoints and stop signals, one implementation for both trainers
(:mod:`lymannet.train`, :mod:`lymannet.fourmost.train`).

On a cluster a job gets SIGTERM (preemption, `scancel`) or SIGUSR1 (Slurm's `--signal`, before its
time limit). :class:`StopSignal` turns them into a flag the training loop reads after each batch;
the loop then saves a checkpoint and raises :class:`TrainingInterrupted`, a non-zero exit, and
the rerun resumes from the checkpoint: weights, optimiser, scheduler, every random generator and
the loop's own state, so that it ends with the weights of an uninterrupted run. A checkpoint is
read back only by the run that wrote it: its `format` and `fingerprint` (the run's settings and
inputs) must match.
"""

from __future__ import annotations

import logging
import signal
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .fileio import atomic_path
from .modelfile import cpu_copy

log = logging.getLogger("lymannet")

Generators = dict[str, "torch.Generator | None"]


class TrainingInterrupted(SystemExit):
    """Raised after the checkpoint is saved on SIGTERM/SIGUSR1; exits non-zero (128 + signal)."""


class StopSignal:
    """Sets a flag on SIGTERM/SIGUSR1 (SLURM time limit or preemption) instead of dying mid-write."""

    SIGNALS = tuple(s for s in (getattr(signal, "SIGTERM", None), getattr(signal, "SIGUSR1", None)) if s)

    def __init__(self) -> None:
        self.signum: int | None = None
        self._previous: dict[int, Any] = {}

    def _handle(self, signum: int, frame: Any) -> None:
        self.signum = signum
        log.warning("received signal %d: saving a checkpoint after this batch, then exiting", signum)

    def __enter__(self) -> "StopSignal":
        if threading.current_thread() is threading.main_thread():
            for signum in self.SIGNALS:
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc: Any) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)


@dataclass
class Checkpoint:
    """One run's checkpoint: where it lives, whose it is (`format`, `fingerprint`: the run's
    settings and inputs) and what it saves and restores besides the loop's own state."""

    path: Path
    format: str
    fingerprint: str
    model: nn.Module
    optimizer: Any
    scheduler: Any
    generators: Generators

    def save(self, state: dict[str, Any]) -> None:
        """Everything a rerun needs to continue exactly where this one stopped, written atomically."""
        device = next(self.model.parameters()).device
        payload = {
            "format": self.format,
            "fingerprint": self.fingerprint,
            "model": cpu_copy(self.model.state_dict()),
            "optimizer": cpu_copy(self.optimizer.state_dict()),
            "scheduler": self.scheduler.state_dict() if self.scheduler is not None else None,
            "torch_rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state(device) if device.type == "cuda" else None,
            **{name: g.get_state() if g is not None else None for name, g in self.generators.items()},
            "state": state,
        }
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(self.path) as tmp:
            torch.save(payload, tmp)

    def load(self, weights_only: bool = True) -> dict[str, Any] | None:
        """Restore this run's checkpoint into the model, optimiser, scheduler and generators;
        returns the loop state it saved, or None (nothing restored) when there is none or it
        belongs to another config or other inputs."""
        if not self.path.exists():
            return None
        checkpoint = torch.load(self.path, map_location="cpu", weights_only=weights_only)
        if checkpoint.get("format") != self.format or checkpoint.get("fingerprint") != self.fingerprint:
            log.warning("ignoring checkpoint %s: it belongs to another config or other inputs", self.path)
            return None
        device = next(self.model.parameters()).device
        self.model.load_state_dict(checkpoint["model"])
        self.optimizer.load_state_dict(checkpoint["optimizer"])
        if self.scheduler is not None:
            self.scheduler.load_state_dict(checkpoint["scheduler"])
        torch.set_rng_state(checkpoint["torch_rng"])
        if device.type == "cuda" and checkpoint.get("cuda_rng") is not None:
            torch.cuda.set_rng_state(checkpoint["cuda_rng"], device)
        for name, generator in self.generators.items():
            if generator is not None and checkpoint.get(name) is not None:
                generator.set_state(checkpoint[name])
        return checkpoint["state"]
