"""Shared test fixtures: repository paths, the real-data fixtures beside the checkout, and one
run of the demo DAG reused by every end-to-end test."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Callable

import pytest

REPO = Path(__file__).resolve().parents[1]
FIXTURES = REPO.parent / "shared" / "fixtures"
QUASARNP = FIXTURES / "quasarnp"
EDR_TILE = FIXTURES / "desi-edr" / "coadd-5-169-thru20210419.fits"
EDR_HEALPIX = FIXTURES / "desi-edr" / "coadd-sv3-dark-26065.fits"
SNAKEMAKE = str(Path(sys.executable).with_name("snakemake"))


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    """../shared/fixtures (real DESI spectra, QuasarNET weights); skip where a clone lacks it."""
    if not FIXTURES.is_dir():
        pytest.skip(f"real-data fixtures not found at {FIXTURES} (a plain clone has no ../shared)")
    return FIXTURES


def need(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"real-data fixture {path} not found (a plain clone has no ../shared/fixtures)")
    return path


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

import fitsio  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from lymannet import augment  # noqa: E402
from lymannet.arms import NativeRebinner  # noqa: E402
from lymannet.desi import ARMS, arm_wavelength, native_wavelength  # noqa: E402
from lymannet.fourmost.features import wavelength_of  # noqa: E402
from lymannet.fourmost.ingest import Ingested  # noqa: E402
from lymannet.grid import Grid  # noqa: E402
from lymannet.lines import LYA  # noqa: E402
from lymannet.preprocess import rebin  # noqa: E402
from lymannet.simulate import draw_objects, instrument, simulate_chunk  # noqa: E402
from lymannet.spectra import SpectraFile, SpectrumSet, write_spectra  # noqa: E402
from lymannet.templatefit import TemplateFitOptions, build_template_set  # noqa: E402

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


# Redshifts of the parity tests: Ly-alpha at the blue edge of the linear grid (3600 A), mid-grid,
# and near the red end of the data (9824 A).
PARITY_Z = np.array([1.97, 2.5, 3.0, 4.0, 4.7, 7.05])


def network_batch(grid: Grid, z: np.ndarray, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Float32 network-layer (flux, ivar) rows as ingestion makes them (the numpy/torch parity tests
    of the online and batches tests): continuum with a Lyman break + the line at (1+z) LINE + noise,
    native pixels without data (the 5760-5800 A arm overlap, 2% scattered, the first and last 40)
    set to flux 0, ivar 0, then rebinned onto `grid`."""
    rng = np.random.default_rng(seed)
    line = LINE * (1 + np.asarray(z, np.float64)[:, None])
    flux = CONTINUUM * np.where(NATIVE < line, 0.3, 1.0) + 20.0 * np.exp(-0.5 * ((NATIVE - line) / 2.0) ** 2)
    flux = flux + rng.normal(0, 1 / np.sqrt(NATIVE_IVAR), flux.shape)
    ivar = np.full_like(flux, NATIVE_IVAR)
    ivar[:, (NATIVE >= 5760.0) & (NATIVE < 5800.0)] = 0.0
    ivar[rng.random(ivar.shape) < 0.02] = 0.0
    ivar[:, :40] = ivar[:, -40:] = 0.0
    flux[ivar == 0] = 0.0
    return rebin(NATIVE, flux, ivar, grid)


# --- synthetic DESI coadd files (the coadd and ingest tests) ----------------------------------------


def coadd_hdus(n: int = 6, seed: int = 0) -> dict[str, np.ndarray]:
    """HDUs of a small, plausible DESI coadd: TARGETIDs 1001.., all real targets, unmasked."""
    rng = np.random.default_rng(seed)
    fibermap = np.zeros(
        n,
        dtype=[
            ("TARGETID", "i8"),
            ("OBJTYPE", "S3"),
            ("COADD_FIBERSTATUS", "i4"),
            ("COADD_EXPTIME", "f4"),
            ("FLUX_R", "f4"),
        ],
    )
    fibermap["TARGETID"] = 1001 + np.arange(n)
    fibermap["OBJTYPE"] = b"TGT"
    fibermap["COADD_EXPTIME"] = 7200.0
    fibermap["FLUX_R"] = 1.0  # nanomaggies: r = 22.5
    hdus: dict[str, np.ndarray] = {"FIBERMAP": fibermap}
    for arm in ARMS:
        wavelength = arm_wavelength(arm)
        hdus[f"{arm}_WAVELENGTH"] = wavelength
        hdus[f"{arm}_FLUX"] = (2.0 + rng.normal(0, 1, (n, len(wavelength)))).astype("f4")
        hdus[f"{arm}_IVAR"] = rng.uniform(0.5, 2.0, (n, len(wavelength))).astype("f4")
        hdus[f"{arm}_MASK"] = np.zeros((n, len(wavelength)), "u4")
    return hdus


def write_coadd(path: Path, hdus: dict[str, np.ndarray]) -> Path:
    with fitsio.FITS(str(path), "rw", clobber=True) as fits:
        fits.write(None)
        for name, data in hdus.items():
            fits.write(data, extname=name)
    return path


def make_coadd(
    tmp_path: Path,
    name: str = "coadd.fits",
    n: int = 6,
    edit: Callable[[dict], None] | None = None,
    seed: int = 0,
) -> Path:
    hdus = coadd_hdus(n, seed)
    if edit:
        edit(hdus)
    return write_coadd(tmp_path / name, hdus)


def spoil_pixels(hdus: dict) -> None:
    hdus["B_MASK"][0, 100:110] = 4
    hdus["B_FLUX"][1, 200] = np.nan
    hdus["R_FLUX"][1, 50] = np.inf
    hdus["Z_IVAR"][2, 300:305] = -1.0
    hdus["Z_IVAR"][2, 305] = np.nan
    for arm in ARMS:  # row 3: nothing valid at all (masked, or zero ivar)
        hdus[f"{arm}_MASK"][3, :] = 1
    hdus["FIBERMAP"]["OBJTYPE"][4] = b"SKY"
    hdus["FIBERMAP"]["TARGETID"][5] = -5


# --- simulated objects on the network grid (the template-fit, chi2-fit and learned-template tests) --

DZ_MAX = 0.05
# The truth columns the learned-template tests write beside simulated spectra.
SIMULATED_TRUTH_COLUMNS = ["TARGETID", "Z", "SPECTYPE", "SUBTYPE", "TEMPLATE", "MAG_R", "EXPTIME"]


@pytest.fixture(scope="module")
def tset():
    """The simulator's template set (lymannet.templatefit) on GRID, built once per test module."""
    return build_template_set(GRID, TemplateFitOptions())


def simulated(populations: dict, seed: int = 1, noiseless: bool = False, mag_r=(22.5, 24.5)):
    """Network-grid (flux, ivar, truth) of simulated objects, as ingestion would make them."""
    spec = {"mode": "continuous", "exptime": [7200], "mag_r": list(mag_r), "populations": populations}
    objects = draw_objects(spec, seed, "test-templatefit")
    chunk = simulate_chunk(objects, np.random.default_rng(seed))
    inst = instrument()
    weighted = np.zeros((len(objects), inst.wave.size), np.float32)
    weight = np.zeros_like(weighted)
    for arm, cut in inst.slices.items():
        flux, ivar = chunk.arms[arm]
        weighted[:, cut] += (chunk.model[:, cut] if noiseless else flux) * ivar
        weight[:, cut] += ivar
    flux, ivar = NativeRebinner(GRID).rebin_sums(weighted, weight)
    return flux, ivar, chunk.truth


def write_simulated_set(path, populations: dict, seed: int, mag_r=(22.5, 24.5)):
    """A network-grid spectra file of simulated objects (:func:`simulated`) with their truth."""
    flux, ivar, truth = simulated(populations, seed=seed, mag_r=mag_r)
    keep = [c for c in SIMULATED_TRUTH_COLUMNS if c in truth]
    write_spectra(path, SpectrumSet(GRID.wavelength, flux, ivar, truth[keep].reset_index(drop=True), GRID))
    return path


# --- QuasarNET's test weights and a survey of real coadds (the classify, survey and vi-sample tests) --

QUASARNP_CODE = REPO.parent / "shared" / "peers" / "quasarnp"
QUASARNP_WEIGHTS = QUASARNP / "test_weights_6_layer.h5"
needs_quasarnp = pytest.mark.skipif(
    not (QUASARNP.is_dir() and QUASARNP_CODE.is_dir()),
    reason=f"QuasarNP fixtures or code not found under {FIXTURES.parent} (no ../shared beside this checkout)",
)


def read_qn_catalogue(path: Path) -> tuple[np.ndarray, dict]:
    """The QN_RR table of a `lymannet classify` catalogue and its header."""
    with fitsio.FITS(str(path)) as fits:
        header = fits["QN_RR"].read_header()
        return fits["QN_RR"].read(), {key: header[key] for key in header.keys()}


def without_hdu(source: Path, destination: Path, dropped: str) -> None:
    """A copy of a coadd file without one of its HDUs."""
    with fitsio.FITS(str(source)) as fits, fitsio.FITS(str(destination), "rw", clobber=True) as out:
        for hdu in fits[1:]:
            if hdu.get_extname() != dropped:
                out.write(hdu.read(), extname=hdu.get_extname(), header=hdu.read_header())


@pytest.fixture
def survey_folder(tmp_path, fixtures_dir) -> Path:
    """A healpix-like tree: three good coadds, a truncated one, an empty one, one without R_IVAR."""
    root = tmp_path / "healpix"
    good = {
        "sv3/dark/260/26065/coadd-sv3-dark-26065.fits": fixtures_dir
        / "desi-edr"
        / "coadd-sv3-dark-26065.fits",
        "sv1/dark/51/5169/coadd-sv1-dark-5169.fits": fixtures_dir
        / "desi-edr"
        / "coadd-5-169-thru20210419.fits",
        "main/dark/100/10016/coadd-main-dark-10016.fits": fixtures_dir / "quasarnp" / "test_coadd.fits",
    }
    for name, source in good.items():
        (root / name).parent.mkdir(parents=True)
        shutil.copy(source, root / name)
    data = (fixtures_dir / "quasarnp" / "test_coadd.fits").read_bytes()
    bad = root / "main" / "dark" / "100"
    for pixel in ("10017", "10018", "10019"):
        (bad / pixel).mkdir()
    (bad / "10017" / "coadd-main-dark-10017.fits").write_bytes(data[: len(data) // 2])
    (bad / "10018" / "coadd-main-dark-10018.fits").write_bytes(b"")
    without_hdu(
        fixtures_dir / "quasarnp" / "test_coadd.fits", bad / "10019" / "coadd-main-dark-10019.fits", "R_IVAR"
    )
    return root


# --- beta calibration's synthetic scores, and a small ingested 4MOST set with DLA candidates on it ---
# (the calibration, 4MOST DLA-probability, -rates, -catalogue, -calibration, BAL and feature tests)


def balanced_posterior_scores(rng, n, prior):
    """Labels at `prior` and a score that is the exact posterior at a balanced (0.5) prior."""
    y = rng.uniform(size=n) < prior
    x = rng.normal(np.where(y, 1.5, -1.5), 1.0)
    p_balanced = 1.0 / (1.0 + np.exp(-3.0 * x))  # log-likelihood ratio 3x: posterior at prior 0.5
    return y, p_balanced


def dla_ingested(n_rows=3, bal_rows=(1,), bals_table=True):
    """Sightlines at z = 3 on a 0.5 A grid, without spectra: a DLA (log N_HI 20.8) at pixel 1500 and
    a 20.1 absorber at 2000 on sightline 0, BALs on `bal_rows` (one trough table row, for sightline
    1, unless `bals_table` is False), S/N rising from 1 to 9."""
    wave = 3600.0 + 0.5 * np.arange(6000)
    sightlines = pd.DataFrame(
        {
            "FILE": [f"q{i}.fits" for i in range(n_rows)],
            "Z_QSO": np.full(n_rows, 3.0),
            "SNR": np.linspace(1.0, 9.0, n_rows),
            "BAL": [int(i in bal_rows) for i in range(n_rows)],
            "SPLIT": ["test"] * n_rows,
        }
    )
    bals = pd.DataFrame(
        {"FILE": ["q1.fits"], "ROW": [1], "V_MIN": [5000.0], "V_MAX": [15000.0], "TAU_MAX": [2.0]}
    )
    z_dla = wavelength_of(wave, np.array([1500.0])) / LYA - 1
    dlas = pd.DataFrame({"FILE": ["q0.fits"], "ROW": [0], "Z_ABS": z_dla, "LOG_NHI": [20.8]})
    z_sub = wavelength_of(wave, np.array([2000.0])) / LYA - 1
    absorbers = pd.DataFrame(
        {
            "FILE": ["q0.fits", "q0.fits"],
            "ROW": [0, 0],
            "Z_ABS": [z_dla[0], z_sub[0]],
            "LOG_NHI": [20.8, 20.1],
        }
    )
    empty = np.zeros((0, 0), np.float32)
    return Ingested(
        np.zeros(0),
        empty,
        empty,
        wave,
        empty,
        empty,
        sightlines,
        dlas,
        absorbers,
        bals if bals_table else None,
    )


def dla_candidates():
    """Sightline 0: a true DLA at 1500 (found), a candidate on the 20.1 absorber at 2000 (neutral),
    a false one at 3000; sightline 1: a false one on the BAL; sightline 2: none."""
    # Imported here: lymannet.fourmost.localisation loads torch, which most tests never need.
    from lymannet.fourmost.dla_calibration import neutral_candidates
    from lymannet.fourmost.localisation import match_truth

    data = dla_ingested()
    cat = pd.DataFrame(
        {
            "ROW": [0, 0, 0, 1],
            "POSITION": [1502.0, 2003.0, 3000.0, 2500.0],
            "LOG_NHI": [20.9, 20.4, 20.6, 21.0],
            "CONFIDENCE": [0.99, 0.9, 0.8, 0.95],
            "N_WINDOWS": [19, 8, 3, 10],
            "LOG_NHI_SPREAD": [0.1, 0.1, 0.2, 0.1],
            "VOTE_SUM": [18.0, 4.0, 1.0, 6.0],
        }
    )
    truth, cat = match_truth(data, cat, 10.0, rows=np.arange(3))
    cat["NEUTRAL"] = neutral_candidates(data, cat, 20.0)
    cat["SNR"] = data.sightlines["SNR"].to_numpy()[cat["ROW"]]
    return data, truth, cat


def dla_calibration_record():
    """A DLA calibration record as lymannet.fourmost.dla_calibration writes it: two BAL variants
    sharing one working point, and the two models' hashes."""
    point = {
        "purity_goal": 0.9,
        "threshold": 0.42,
        "validation_purity": 0.91,
        "validation_completeness": 0.88,
    }
    variant = {
        "model": "location",
        "prior_train": 0.5,
        "prior_natural": 0.03,
        "nhi_err": [1.2, 0.08],
        "working_point": point,
    }
    return {
        "variants": {"none": variant, "mask": variant},
        "bal_method": "mask",
        "bal_mask_margin_angstrom": 10.0,
        "model_sha256": {"location": "0123456789abcdef", "presence": "fedcba9876543210"},
    }
