"""Shared test fixtures: repository paths, the real-data fixtures beside the checkout, and one
run of the demo DAG reused by every end-to-end test."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
FIXTURES = REPO.parent / "shared" / "fixtures"
SNAKEMAKE = str(Path(sys.executable).with_name("snakemake"))


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    """../shared/fixtures (real DESI spectra, QuasarNET weights); skip where a clone lacks it."""
    if not FIXTURES.is_dir():
        pytest.skip(f"real-data fixtures not found at {FIXTURES} (a plain clone has no ../shared)")
    return FIXTURES


def copy_workflow(destination: Path) -> Path:
    """A private copy of the workflow (Snakefile, rules, scripts, schema, config) to run in."""
    destination.mkdir(parents=True, exist_ok=True)
    shutil.copy2(REPO / "Snakefile", destination / "Snakefile")
    for folder in ("workflow", "config", "profiles", "envs", "src"):
        shutil.copytree(
            REPO / folder,
            destination / folder,
            dirs_exist_ok=True,
            ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"),
        )
    return destination


def snakemake(
    workdir: Path, *args: str, timeout: float = 1800, check: bool = True
) -> subprocess.CompletedProcess:
    """Run snakemake in `workdir`; always under a hard timeout so a hang cannot stall the suite."""
    command = ["timeout", "-s", "KILL", str(int(timeout)), SNAKEMAKE, "--directory", str(workdir), *args]
    result = subprocess.run(
        command, cwd=workdir, capture_output=True, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"}
    )
    if check and result.returncode != 0:
        raise AssertionError(
            f"snakemake {' '.join(args)} failed ({result.returncode}):\n"
            f"{result.stdout[-6000:]}\n{result.stderr[-6000:]}"
        )
    return result


@pytest.fixture(scope="session")
def demo_run(tmp_path_factory) -> Path:
    """The demo DAG (config/config.yaml) run once, locally, in a private copy of the workflow."""
    workdir = copy_workflow(tmp_path_factory.mktemp("demo"))
    snakemake(workdir, "--cores", str(os.cpu_count() or 2), timeout=1800)
    return workdir


def synthetic_calibration(n: int = 600, seed: int = 8, target_fraction: float = 0.4, working_point=None):
    """A lymannet.calibration.Calibration fitted on a synthetic validation split: targets score
    high, contaminants low, every target's redshift within 0.05 (the shared fixture of the
    calibration, prediction and classify tests)."""
    import numpy as np

    from lymannet.calibration import fit_calibration

    rng = np.random.default_rng(seed)
    is_target = rng.random(n) < target_fraction
    score = np.clip(np.where(is_target, rng.normal(0.85, 0.1, n), rng.normal(0.3, 0.2, n)), 0, 1)
    z_true = rng.uniform(2.5, 3.5, n)
    z_pred = z_true + rng.normal(0, 0.004, n)
    is_good = is_target & (np.abs(z_pred - z_true) < 0.05)
    return (
        fit_calibration(
            score, is_target, is_good, z_pred, z_true, np.zeros(n), working_point or {"purity": 0.9}, 1, 0.05
        ),
        score,
    )
