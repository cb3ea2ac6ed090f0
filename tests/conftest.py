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


# --- synthetic spectra files (the augment, holdout, templates, combine and test-set tests) ----------
# A flat continuum plus one Gaussian emission line at (1+z) x LINE, with constant ivar, on the DESI
# native grid and rebinned onto the network grid as ingestion does.

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from lymannet import augment  # noqa: E402
from lymannet.desi import native_wavelength  # noqa: E402
from lymannet.grid import Grid  # noqa: E402
from lymannet.preprocess import rebin  # noqa: E402
from lymannet.spectra import SpectraFile, SpectrumSet, write_spectra  # noqa: E402

GRID = Grid.from_config({"kind": "linear", "wave_min": 3600.0, "wave_max": 10000.0, "step": 8.0})
LOG_GRID = Grid.quasarnet()
NATIVE = native_wavelength()
LINE = 1215.67
CONTINUUM, NATIVE_IVAR = 1.0, 4.0


def make_truth(
    n: int, z: np.ndarray | float = 3.0, spectype: list[str] | str = "LBG", first_id: int = 1000, **columns
) -> pd.DataFrame:
    truth = pd.DataFrame(
        {
            "TARGETID": np.arange(first_id, first_id + n),
            "Z": np.broadcast_to(z, (n,)),
            "SPECTYPE": np.broadcast_to(np.asarray(spectype), (n,)),
        }
    )
    for name, value in columns.items():
        truth[name] = np.broadcast_to(np.asarray(value), (n,))
    return truth


def write_spectra_file(
    path: Path,
    truth: pd.DataFrame,
    native: bool = True,
    line_amplitude: float = 20.0,
    noise_seed: int | None = None,
) -> Path:
    """Continuum + a Gaussian line (sigma 2 A) at (1+z) LINE, native ivar 4; network = rebin."""
    z = truth["Z"].to_numpy()[:, None]
    flux = CONTINUUM + line_amplitude * np.exp(-0.5 * ((NATIVE[None, :] - LINE * (1 + z)) / 2.0) ** 2)
    ivar = np.full_like(flux, NATIVE_IVAR)
    if noise_seed is not None:
        flux = flux + np.random.default_rng(noise_seed).normal(0, 1 / np.sqrt(NATIVE_IVAR), flux.shape)
    net_flux, net_ivar = rebin(NATIVE, flux, ivar, GRID)
    network = SpectrumSet(GRID.wavelength, net_flux, net_ivar, truth, GRID)
    native_set = (
        SpectrumSet(NATIVE, flux.astype(np.float32), ivar.astype(np.float32), truth) if native else None
    )
    write_spectra(path, network, native_set)
    return path


def read_both(path: Path) -> tuple[SpectrumSet, SpectrumSet | None]:
    with SpectraFile(path) as spectra_file:
        return spectra_file.read("network"), spectra_file.read("native") if spectra_file.has_native else None


def run_variant(tmp_path: Path, source: Path, ops: list, name: str = "v", seed: int = 7, **extra) -> Path:
    output = tmp_path / f"{name.replace('/', '_')}.fits"
    augment.augment_variant(source, output, {"source": "survey", "ops": ops, **extra}, seed, name)
    return output
