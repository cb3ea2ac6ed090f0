"""Observing and writing: photon and read noise per arm, chunks of spectra, the DESI coadd and
truth files (atomic)."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import fitsio
import numpy as np
import pandas as pd

from .. import desi
from ..errors import ConfigError
from ..fileio import atomic_path
from ..runtime import Progress
from ..spectra import complete_truth, truth_to_records
from .choices import _simulate_block, draw_objects
from .spectrograph import EXPOSURE_SECONDS, READ_VARIANCE_PER_EXPOSURE, instrument, nanomaggies
from .populations import _params_rng
from .render import render_model

log = logging.getLogger("lymannet.simulate")

# Observing: noise per arm
# --------------------------------------------------------------------------------------------


def arm_variance(model: np.ndarray, objects: pd.DataFrame, arm: str) -> np.ndarray:
    """Expected flux variance (1e-17 units squared) per pixel of one arm: object + sky + read noise.

    With K electrons per flux unit: var = (model K + sky + read) / K^2 = model / K + (sky + read) / K^2.
    """
    inst = instrument()
    exptime = objects["EXPTIME"].to_numpy(np.float64)
    fibre = objects["FIBER_FRAC"].to_numpy(np.float64)
    n_exposures = np.maximum(1.0, np.round(exptime / EXPOSURE_SECONDS))
    inv_counts = (1.0 / inst.counts_per_flux[arm]).astype(np.float32)[None, :]
    object_term = np.maximum(model[:, inst.slices[arm]], np.float32(0.0)) * inv_counts
    object_term *= (1.0 / (exptime * fibre)).astype(np.float32)[:, None]
    sky_term = (inst.sky_counts_per_s[arm] / inst.counts_per_flux[arm] ** 2).astype(np.float32)[None, :]
    sky_scale = objects["SKY_SCALE"].to_numpy(np.float64) if "SKY_SCALE" in objects else 1.0
    sky_term = sky_term * (sky_scale / (exptime * fibre**2)).astype(np.float32)[:, None]
    read_term = (READ_VARIANCE_PER_EXPOSURE / inst.counts_per_flux[arm] ** 2).astype(np.float32)[None, :]
    read_term = read_term * (n_exposures / (exptime * fibre) ** 2).astype(np.float32)[:, None]
    return object_term + sky_term + read_term


def observe(
    model: np.ndarray, objects: pd.DataFrame, rng: np.random.Generator
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per arm (flux, ivar), float32: model + Gaussian noise whose variance is 1/ivar exactly."""
    out = {}
    for arm, cut in instrument().slices.items():
        variance = arm_variance(model, objects, arm)
        noise = rng.standard_normal(variance.shape, dtype=np.float32)
        noise *= np.sqrt(variance)
        noise += model[:, cut]
        out[arm] = (noise, np.reciprocal(variance, out=variance))
    return out


@dataclass
class SimulatedChunk:
    truth: pd.DataFrame  # rows of this chunk, with FLUX_G/R/Z and SNR columns filled
    model: np.ndarray  # (N, P native) noiseless flux
    arms: dict[str, tuple[np.ndarray, np.ndarray]]  # arm -> (flux, ivar)


def simulate_chunk(objects: pd.DataFrame, rng: np.random.Generator) -> SimulatedChunk:
    """Render and observe one chunk of objects (rows of :func:`draw_objects`)."""
    objects = objects.reset_index(drop=True).copy()
    model = render_model(objects, rng)
    arms = observe(model, objects, rng)
    for band in ("g", "r", "z"):
        objects[f"FLUX_{band.upper()}"] = nanomaggies(model, band).astype(np.float32)
    r_flux, r_ivar = model[:, instrument().slices["R"]], arms["R"][1]
    objects["SNR_R"] = np.median(r_flux * np.sqrt(r_ivar), axis=1).astype(np.float32)
    return SimulatedChunk(objects, model, arms)


# --------------------------------------------------------------------------------------------
# Writing: DESI coadd + truth, chunked and atomic
# --------------------------------------------------------------------------------------------

FLUX_BUNIT = "10**-17 erg/(s cm2 Angstrom)"
IVAR_BUNIT = "10**+34 (s2 cm4 Angstrom2) / erg2"
TRUTH_EXTRA_COLUMNS = (
    "Z_GRID",
    "BETA",
    "ALPHA_NU",
    "LYA_VOFF_KMS",
    "ISM_VOFF_KMS",
    "LINE_SIGMA_KMS",
    "ISM_EW_SCALE",
    "LYC_ESCAPE",
    "D4000",
    "HALPHA_EW",
    "FIBER_FRAC",
    "FLUX_G",
    "FLUX_R",
    "FLUX_Z",
    "SNR_R",
    "TARGET_RA",
    "TARGET_DEC",
    "TEFF",
    "OII_EW",
    "BAL_VMIN_KMS",
    "BAL_VMAX_KMS",
    "BAL_DEPTH",
    "IGM_MODEL",
    "IGM_TAU_SCALE",
    "SKY_SCALE",
    "LYA_EW_MODEL",
    "LYA_EW_SCALE",
    "LYA_EW_ABSFRAC",
    "LINE_WIDTH_SCALE",
    "ISM_SCALE",
    "BETA_SHIFT",
    "MAG_FAINT",
)


def _fibermap(truth: pd.DataFrame) -> np.ndarray:
    n = len(truth)
    exptime = truth["EXPTIME"].to_numpy()
    fields = [
        ("TARGETID", "i8", truth["TARGETID"].to_numpy()),
        ("COADD_FIBERSTATUS", "i4", 0),
        ("TARGET_RA", "f8", truth["TARGET_RA"].to_numpy()),
        ("TARGET_DEC", "f8", truth["TARGET_DEC"].to_numpy()),
        ("OBJTYPE", "U3", "TGT"),
        ("MORPHTYPE", "U4", np.where(np.isin(truth["SPECTYPE"].to_numpy(), ("QSO", "STAR")), "PSF", "REX")),
        ("EBV", "f4", 0.02),
        ("FLUX_G", "f4", truth.get("FLUX_G", np.nan)),
        ("FLUX_R", "f4", truth.get("FLUX_R", np.nan)),
        ("FLUX_Z", "f4", truth.get("FLUX_Z", np.nan)),
        ("PHOTSYS", "U1", "S"),
        ("COADD_NUMEXP", "i2", np.maximum(1, np.round(exptime / EXPOSURE_SECONDS))),
        ("COADD_EXPTIME", "f4", exptime),
    ]
    table = np.zeros(n, dtype=[(name, dtype) for name, dtype, _ in fields])
    for name, _, values in fields:
        table[name] = values
    return table


def _truth_records(truth: pd.DataFrame) -> np.ndarray:
    columns = [
        "TARGETID",
        "Z",
        "SPECTYPE",
        "SUBTYPE",
        "TEMPLATE",
        "MAG_R",
        "EXPTIME",
        "LYA_EW",
        "SOURCE",
        *TRUTH_EXTRA_COLUMNS,
    ]
    table = complete_truth(truth[columns])
    return truth_to_records(table)


def _primary_header(dataset: str, seed: int, mode: str, n: int) -> dict[str, Any]:
    return {
        "SPGRP": "simulated",
        "SURVEY": "sim",
        "PROGRAM": "dark",
        "LNSIM": "lymannet.simulate",
        "DATASET": dataset[:68],
        "SIMSEED": int(seed),
        "SIMMODE": mode,
        "NSPEC": n,
    }


def _open_coadd(path: Path, truth: pd.DataFrame, header: dict[str, Any]) -> fitsio.FITS:
    fits = fitsio.FITS(str(path), "rw", clobber=True)
    fits.write(None, header=header)
    fits.write(_fibermap(truth), extname="FIBERMAP")
    n = max(len(truth), 1)
    for arm in desi.ARMS:
        wave = desi.arm_wavelength(arm)
        fits.write(wave, extname=f"{arm}_WAVELENGTH", header={"BUNIT": "Angstrom"})
        for kind, unit in (("FLUX", FLUX_BUNIT), ("IVAR", IVAR_BUNIT)):
            fits.create_image_hdu(dims=[n, wave.size], dtype="f4", extname=f"{arm}_{kind}")
            fits[f"{arm}_{kind}"].write_key("BUNIT", unit)
        # cfitsio zero-fills new images and every simulated pixel is good: MASK needs no writes.
        fits.create_image_hdu(dims=[n, wave.size], dtype="i4", extname=f"{arm}_MASK")
    return fits


def _write_chunk(fits: fitsio.FITS, chunk: SimulatedChunk, start: int) -> None:
    for arm, (flux, ivar) in chunk.arms.items():
        fits[f"{arm}_FLUX"].write(np.ascontiguousarray(flux, np.float32), start=[start, 0])
        fits[f"{arm}_IVAR"].write(np.ascontiguousarray(ivar, np.float32), start=[start, 0])
    for band in ("G", "R", "Z"):
        fits["FIBERMAP"].write_column(
            f"FLUX_{band}", chunk.truth[f"FLUX_{band}"].to_numpy(np.float32), firstrow=start
        )


def simulate_dataset(
    spec: dict[str, Any],
    seed: int,
    dataset: str,
    coadd_path: str | Path,
    truth_path: str | Path,
    chunk_rows: int = 2000,
) -> dict[str, Any]:
    """Simulate one data set into a DESI coadd file and a truth table (both written atomically).

    Returns counts and summary statistics (per SPECTYPE / TEMPLATE counts, median S/N, rate).
    """
    if chunk_rows < 1:
        raise ConfigError(f"chunk_rows must be >= 1, got {chunk_rows}")
    spec = _simulate_block(spec, dataset)
    objects = draw_objects(spec, seed, dataset)
    n = len(objects)
    progress = Progress(total=n, what="spectra", logger=log)
    chunks_truth = []
    coadd_path, truth_path = Path(coadd_path), Path(truth_path)
    try:
        with atomic_path(coadd_path) as coadd_tmp, atomic_path(truth_path) as truth_tmp:
            fits = _open_coadd(coadd_tmp, objects, _primary_header(dataset, seed, spec["mode"], n))
            try:
                for index, start in enumerate(range(0, n, chunk_rows)):
                    rng = _params_rng(seed, dataset, 1 + index)
                    chunk = simulate_chunk(objects.iloc[start : start + chunk_rows], rng)
                    _write_chunk(fits, chunk, start)
                    chunks_truth.append(chunk.truth)
                    progress.update(len(chunk.truth))
            finally:
                fits.close()
            truth = pd.concat(chunks_truth, ignore_index=True)
            fitsio.write(
                str(truth_tmp),
                _truth_records(truth),
                extname="TRUTH",
                clobber=True,
                header=_primary_header(dataset, seed, spec["mode"], n),
            )
    except BaseException:
        # atomic_path renames the truth file before the coadd: never leave one without the other.
        if truth_path.exists() and not coadd_path.exists():
            os.unlink(truth_path)
        raise
    rate = progress.done()
    return _summary(truth, rate)


def _summary(truth: pd.DataFrame, rate: float) -> dict[str, Any]:
    lbg = truth[truth["SPECTYPE"] == "LBG"]
    return {
        "n_spectra": int(len(truth)),
        "n_by_spectype": {k: int(v) for k, v in truth["SPECTYPE"].value_counts().sort_index().items()},
        "n_by_subtype": {
            f"{a}:{b}": int(v)
            for (a, b), v in truth[truth["SUBTYPE"] != ""].groupby(["SPECTYPE", "SUBTYPE"]).size().items()
        },
        "n_lbg_by_template": {int(k): int(v) for k, v in lbg["TEMPLATE"].value_counts().sort_index().items()},
        "median_snr_r": float(np.median(truth["SNR_R"])),
        "z_range": [float(truth["Z"].min()), float(truth["Z"].max())],
        "spectra_per_second": float(rate),
    }
