"""The 4MOST trainer's defaults (config `fourmost.models.<model>.train`), in a module without
torch so that the workflow can plan with them (:class:`lymannet.plan.FourmostPlan`); they equal
workflow/schemas/fourmost.schema.yaml's (tests/test_defaults.py)."""

from __future__ import annotations

from typing import Any

TRAIN_DEFAULTS: dict[str, Any] = {
    "epochs": 20,
    "batch_size": 64,
    "lr": 1e-3,
    "weight_decay": 1e-4,
    "patience": 5,
    "lr_factor": 0.5,
    "lr_patience": 2,
    "max_minutes": None,
    "n_train": None,
    "loss": "mape",
}
