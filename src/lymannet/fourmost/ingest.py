"""4MOST ingestion (rule `fourmost_ingest`): the per-spectrum files (:mod:`.io`) onto the
redshift networks' log-lambda grid and the DLA networks' grid, with splits and S/N, into one
file that every later 4MOST rule reads (:func:`read_ingested`).

Ingested file (FITS): Z_WAVELENGTH/Z_FLUX/Z_IVAR on the redshift networks' log-lambda grid,
DLA_WAVELENGTH/DLA_FLUX/DLA_IVAR on the DLA networks' grid (native pixels summed by `dla_rebin`),
SIGHTLINES (FILE, Z_QSO, N_ABS, N_DLA, MAG_R, SNR, SPLIT), DLAS, PROVENANCE.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import fitsio
import numpy as np
import pandas as pd

from ..errors import InputFileError
from ..fileio import atomic_path
from ..grid import Grid
from ..lines import LYA, LYB
from ..preprocess import rebin
from ..runtime import Progress
from . import simulate as sim
from .io import SNR_WINDOW, SPLITS, iter_spectra, read_confusers, read_dla_table, read_truth_list

log = logging.getLogger("lymannet.fourmost")


# --- ingestion -----------------------------------------------------------------------------------


def assign_splits(files: list[str], seed: int, fractions: dict[str, float]) -> np.ndarray:
    """train/val/test per FILE from a stable hash (:func:`.simulate.split_of`, which the simulator
    uses too): an object keeps its split whatever the set size."""
    return sim.split_of(files, seed, fractions)


def rebin_by(flux: np.ndarray, ivar: np.ndarray, factor: int) -> tuple[np.ndarray, np.ndarray]:
    """Inverse-variance sum of `factor` adjacent pixels (trailing pixels dropped)."""
    n = flux.shape[1] // factor * factor
    f = flux[:, :n].reshape(len(flux), -1, factor).astype(np.float64)
    w = ivar[:, :n].reshape(len(ivar), -1, factor).astype(np.float64)
    weight = w.sum(axis=2)
    out = np.divide((f * w).sum(axis=2), weight, out=np.zeros_like(weight), where=weight > 0)
    return out.astype(np.float32), weight.astype(np.float32)


def continuum_snr(wave: np.ndarray, flux: np.ndarray, ivar: np.ndarray, z: np.ndarray) -> np.ndarray:
    """Median per-pixel S/N in the rest 1270-1350 A continuum (0 where it is off the grid)."""
    rest = wave[None, :] / (1 + z[:, None])
    inside = (rest > SNR_WINDOW[0]) & (rest < SNR_WINDOW[1]) & (ivar > 0)
    snr = np.where(inside, flux * np.sqrt(ivar), np.nan)
    with np.errstate(all="ignore"):
        out = np.nanmedian(snr, axis=1)
    return np.nan_to_num(out)


@dataclass
class IngestOptions:
    z_grid: dict[str, Any]  # {kind: log, wave_min, wave_max, step}
    dla_rebin: int
    split: dict[str, float]
    chunk: int
    seed: int


def ingest(
    truth_path: str | Path,
    dla_path: str | Path,
    out_path: str | Path,
    options: IngestOptions,
    provenance: dict[str, Any],
) -> dict[str, int]:
    """Read every listed spectrum (chunked), rebin onto both analysis grids, write one FITS."""
    truth = read_truth_list(truth_path)
    dlas = read_dla_table(dla_path)
    unknown = set(dlas["FILE"]) - set(truth["FILE"])
    if unknown:
        raise InputFileError(
            f"{len(unknown)} DLA(s) on files absent from the truth list, e.g. {sorted(unknown)[0]!r}",
            dla_path,
        )
    counts = dlas.groupby("FILE").size().reindex(truth["FILE"], fill_value=0).to_numpy()
    if not np.array_equal(counts, truth["N_DLA"].to_numpy()):
        bad = int(np.flatnonzero(counts != truth["N_DLA"].to_numpy())[0])
        raise InputFileError(
            f"N_DLA of {truth['FILE'][bad]} is {truth['N_DLA'][bad]} but the DLA table lists {counts[bad]}",
            truth_path,
        )
    z_grid = Grid.from_config(options.z_grid)
    n = len(truth)
    z_flux = np.zeros((n, z_grid.n_pixels), np.float32)
    z_ivar = np.zeros_like(z_flux)
    dla_flux = dla_ivar = dla_wave = None
    mag = np.full(n, np.nan, np.float32)
    exptime = np.full(n, np.nan, np.float32)
    snr = np.zeros(n, np.float32)
    progress = Progress(n, "spectra", logger=log)
    for rows, wave, flux, ivar, headers in iter_spectra(truth_path, truth, options.chunk):
        z_flux[rows], z_ivar[rows] = rebin(wave, flux, ivar, z_grid)
        f, w = rebin_by(flux, ivar, options.dla_rebin)
        if dla_flux is None:
            dla_wave = wave[: f.shape[1] * options.dla_rebin].reshape(-1, options.dla_rebin).mean(axis=1)
            dla_flux = np.zeros((n, f.shape[1]), np.float32)
            dla_ivar = np.zeros_like(dla_flux)
        dla_flux[rows], dla_ivar[rows] = f, w
        snr[rows] = continuum_snr(dla_wave, f, w, truth["Z_QSO"].to_numpy()[rows])
        mag[rows] = [h.get("MAG_R", np.nan) for h in headers]
        exptime[rows] = [h.get("EXPTIME", np.nan) for h in headers]
        progress.update(rows.size)
    progress.done()
    split = assign_splits(list(truth["FILE"]), options.seed, options.split)
    if "SPLIT" in truth.columns and not np.array_equal(truth["SPLIT"].to_numpy().astype(str), split):
        bad = int(np.flatnonzero(truth["SPLIT"].to_numpy().astype(str) != split)[0])
        raise InputFileError(
            f"SPLIT of {truth['FILE'][bad]} is {truth['SPLIT'][bad]!r} in the truth list but {split[bad]!r} "
            "from fourmost.seed and fourmost.ingest.split: simulate and ingest with the same ones",
            truth_path,
        )
    sightlines = truth.drop(columns=[c for c in ("SPLIT",) if c in truth.columns]).assign(
        BAL=truth["BAL"].to_numpy() if "BAL" in truth.columns else np.zeros(n, int),
        MAG_R=mag,
        EXPTIME=exptime,
        SNR=snr,
        SPLIT=split,
    )
    absorbers, bals = read_confusers(dla_path)
    write_ingested(
        out_path,
        z_grid.wavelength,
        z_flux,
        z_ivar,
        dla_wave,
        dla_flux,
        dla_ivar,
        sightlines,
        dlas,
        provenance,
        absorbers,
        bals,
    )
    return {split_name: int((split == split_name).sum()) for split_name in SPLITS}


def _records(table: pd.DataFrame) -> np.ndarray:
    dtype = []
    for name in table.columns:
        values = table[name].to_numpy()
        if values.dtype.kind in "OUS":
            dtype.append((name, f"S{max([len(str(v)) for v in values] + [1])}"))
        else:
            dtype.append((name, values.dtype))
    out = np.zeros(len(table), dtype=dtype)
    for name in table.columns:
        out[name] = table[name].to_numpy()
    return out


def write_ingested(
    path: str | Path,
    z_wave,
    z_flux,
    z_ivar,
    dla_wave,
    dla_flux,
    dla_ivar,
    sightlines: pd.DataFrame,
    dlas: pd.DataFrame,
    provenance: dict[str, Any],
    absorbers: pd.DataFrame | None = None,
    bals: pd.DataFrame | None = None,
) -> None:
    with atomic_path(path) as tmp:
        with fitsio.FITS(str(tmp), "rw", clobber=True) as fits:
            for name, array in (
                ("Z_WAVELENGTH", z_wave),
                ("Z_FLUX", z_flux),
                ("Z_IVAR", z_ivar),
                ("DLA_WAVELENGTH", dla_wave),
                ("DLA_FLUX", dla_flux),
                ("DLA_IVAR", dla_ivar),
            ):
                fits.write(np.ascontiguousarray(array), extname=name)
            fits.write(_records(sightlines), extname="SIGHTLINES")
            fits.write(
                _records(
                    dlas
                    if len(dlas)
                    else pd.DataFrame({"FILE": ["none"], "Z_ABS": [np.nan], "LOG_NHI": [np.nan]})[:0]
                ),
                extname="DLAS",
            )
            for name, table in (("ABSORBERS", absorbers), ("BALS", bals)):
                if table is not None and len(table):
                    fits.write(_records(table), extname=name)
            text = json.dumps(provenance, default=str)
            fits.write(np.array([(text,)], dtype=[("JSON", f"S{len(text.encode())}")]), extname="PROVENANCE")


@dataclass
class Ingested:
    z_wave: np.ndarray
    z_flux: np.ndarray
    z_ivar: np.ndarray
    dla_wave: np.ndarray
    dla_flux: np.ndarray
    dla_ivar: np.ndarray
    sightlines: pd.DataFrame
    dlas: pd.DataFrame  # with ROW: the sightline's row
    # confusers (simulated sets): every HI absorber (LLS, sub-DLA, DLA) and BAL troughs, with ROW
    absorbers: pd.DataFrame | None = None
    bals: pd.DataFrame | None = None

    def rows(self, split: str) -> np.ndarray:
        return np.flatnonzero(self.sightlines["SPLIT"].to_numpy() == split)


def read_ingested(path: str | Path, parts: tuple[str, ...] = ("Z", "DLA")) -> Ingested:
    path = Path(path)
    if not path.is_file():
        raise InputFileError("ingested 4MOST file not found", path)
    with fitsio.FITS(str(path)) as fits:
        arrays = {}
        for part in ("Z", "DLA"):
            for kind in ("WAVELENGTH", "FLUX", "IVAR"):
                name = f"{part}_{kind}"
                arrays[name] = (
                    fits[name].read()
                    if (part in parts or kind == "WAVELENGTH")
                    else np.zeros((0, 0), np.float32)
                )
        sightlines = pd.DataFrame(
            {
                name: np.asarray(value)
                for name, value in zip(fits["SIGHTLINES"].get_colnames(), _columns(fits["SIGHTLINES"].read()))
            }
        )
        raw = fits["DLAS"].read() if fits["DLAS"].get_nrows() else None
        extra = {}
        for name in ("ABSORBERS", "BALS"):
            if name in fits:
                records = fits[name].read()
                extra[name] = pd.DataFrame(
                    {c: np.asarray(v) for c, v in zip(records.dtype.names, _columns(records))}
                )
    dlas = pd.DataFrame(
        {
            "FILE": [] if raw is None else raw["FILE"].astype(str),
            "Z_ABS": [] if raw is None else raw["Z_ABS"].astype(float),
            "LOG_NHI": [] if raw is None else raw["LOG_NHI"].astype(float),
        }
    )
    for column in ("FILE", "SPLIT"):
        sightlines[column] = sightlines[column].astype(str).str.strip()
    dlas["FILE"] = dlas["FILE"].astype(str).str.strip()
    row_of = {f: i for i, f in enumerate(sightlines["FILE"])}
    dlas["ROW"] = dlas["FILE"].map(row_of).astype(np.int64)
    for table in extra.values():
        table["FILE"] = table["FILE"].astype(str).str.strip()
        table["ROW"] = table["FILE"].map(row_of).astype(np.int64)
    if "BAL" not in sightlines.columns:
        sightlines["BAL"] = 0
    return Ingested(
        arrays["Z_WAVELENGTH"],
        arrays["Z_FLUX"],
        arrays["Z_IVAR"],
        arrays["DLA_WAVELENGTH"],
        arrays["DLA_FLUX"],
        arrays["DLA_IVAR"],
        sightlines,
        dlas,
        extra.get("ABSORBERS"),
        extra.get("BALS"),
    )


def _columns(records: np.ndarray) -> list[np.ndarray]:
    return [
        (
            records[name].astype(str)
            if records[name].dtype.kind in "SU"
            else records[name].astype(records[name].dtype.newbyteorder("="))
        )
        for name in records.dtype.names
    ]


def dla_rest_window(z_qso: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Observed Ly-beta and Ly-alpha emission wavelengths: where DLAs are searched."""
    return LYB * (1 + np.asarray(z_qso)), LYA * (1 + np.asarray(z_qso))
