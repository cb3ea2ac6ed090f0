"""The 4MOST quasar files: one FITS per spectrum, the truth list, the DLA table, the ingested file.

Per-spectrum file (PAQS_absorber_000001.fits): image HDUs WAVELENGTH (P,) float64 [A],
FLUX (P,) float32 [1e-17 erg/s/cm2/A], IVAR (P,) float32; the FLUX header holds Z_QSO, MAG_R,
EXPTIME, N_DLA.

Truth list (the slides' layout, whitespace separated, header line first)::

    FILE	Z_QSO	N_ABS	N_DLA
    spectra/PAQS_absorber_000001.fits	2.2085301947956900	2	0

FILE is relative to the truth list's folder (absolute paths work too). DLA table (FITS, extname
DLAS): FILE, Z_ABS, LOG_NHI, B_KMS, one row per DLA.

Ingested file (FITS): Z_WAVELENGTH/Z_FLUX/Z_IVAR on the redshift networks' log-lambda grid,
DLA_WAVELENGTH/DLA_FLUX/DLA_IVAR on the DLA networks' grid (native pixels summed by `dla_rebin`),
SIGHTLINES (FILE, Z_QSO, N_ABS, N_DLA, MAG_R, SNR, SPLIT), DLAS, PROVENANCE.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import fitsio
import numpy as np
import pandas as pd

from ..config import job_seed
from ..errors import InputFileError
from ..fileio import atomic_path
from ..grid import Grid
from ..lines import LYA
from ..preprocess import rebin
from ..runtime import Progress
from . import simulate as sim

log = logging.getLogger("lymannet.fourmost")

TRUTH_COLUMNS = ("FILE", "Z_QSO", "N_ABS", "N_DLA")
OPTIONAL_TRUTH_COLUMNS = ("BAL", "SPLIT")  # written by the simulator; real data may lack them
SPLITS = ("train", "val", "test")
SNR_WINDOW = (1270.0, 1350.0)  # rest frame, A: continuum between Ly-alpha/NV and SiIV


# --- writing the simulated set -----------------------------------------------------------------


def write_spectrum(
    path: str | Path,
    wavelength: np.ndarray,
    flux: np.ndarray,
    ivar: np.ndarray,
    header: dict[str, Any] | None = None,
) -> None:
    with atomic_path(path) as tmp:
        with fitsio.FITS(str(tmp), "rw", clobber=True) as fits:
            fits.write(np.asarray(wavelength, np.float64), extname="WAVELENGTH")
            fits.write(
                np.asarray(flux, np.float32),
                extname="FLUX",
                header=[{"name": k, "value": v} for k, v in (header or {}).items()],
            )
            fits.write(np.asarray(ivar, np.float32), extname="IVAR")


def write_truth_list(
    path: str | Path,
    files: list[str],
    z_qso: np.ndarray,
    n_abs: np.ndarray,
    n_dla: np.ndarray,
    extra: dict[str, Any] | None = None,
) -> None:
    """The slides' four columns, then optional ones (`extra`: name -> values, e.g. BAL, SPLIT)."""
    extra = extra or {}
    lines = ["\t".join(TRUTH_COLUMNS + tuple(extra))]
    for k, (f, z, a, d) in enumerate(zip(files, z_qso, n_abs, n_dla)):
        lines.append(
            "\t".join([f, f"{z:.16f}", str(int(a)), str(int(d))] + [str(v[k]) for v in extra.values()])
        )
    with atomic_path(path) as tmp:
        tmp.write_text("\n".join(lines) + "\n")


def _absorber_records(
    files: list[str], z_abs: np.ndarray, log_n: np.ndarray, b_kms: np.ndarray
) -> np.ndarray:
    width = max([len(f) for f in files] + [1])
    table = np.zeros(
        len(files), dtype=[("FILE", f"S{width}"), ("Z_ABS", "f8"), ("LOG_NHI", "f4"), ("B_KMS", "f4")]
    )
    table["FILE"], table["Z_ABS"], table["LOG_NHI"], table["B_KMS"] = files, z_abs, log_n, b_kms
    return table


def write_dla_table(
    path: str | Path,
    files: list[str],
    z_abs: np.ndarray,
    log_n: np.ndarray,
    b_kms: np.ndarray,
    absorbers: dict[str, Any] | None = None,
    bals: dict[str, Any] | None = None,
) -> None:
    """DLAS (the truth the DLA networks are scored on); optionally ABSORBERS (every HI absorber,
    LLS and sub-DLAs included: FILE, Z_ABS, LOG_NHI, B_KMS) and BALS (FILE, V_MIN, V_MAX, TAU_MAX)."""
    with atomic_path(path) as tmp:
        with fitsio.FITS(str(tmp), "rw", clobber=True) as fits:
            fits.write(_absorber_records(files, z_abs, log_n, b_kms), extname="DLAS")
            if absorbers is not None:
                fits.write(
                    _absorber_records(
                        absorbers["FILE"], absorbers["Z_ABS"], absorbers["LOG_NHI"], absorbers["B_KMS"]
                    ),
                    extname="ABSORBERS",
                )
            if bals is not None:
                width = max([len(f) for f in bals["FILE"]] + [1])
                table = np.zeros(
                    len(bals["FILE"]),
                    dtype=[("FILE", f"S{width}"), ("V_MIN", "f4"), ("V_MAX", "f4"), ("TAU_MAX", "f4")],
                )
                for name in ("FILE", "V_MIN", "V_MAX", "TAU_MAX"):
                    table[name] = bals[name]
                fits.write(table, extname="BALS")


# --- reading -------------------------------------------------------------------------------------


Example = tuple[np.ndarray, float, list[tuple[float, float]]]  # (flux, z_qso, [(z_abs, log N_HI)])


def write_simulation(
    spec: dict[str, Any],
    seed: int,
    spectra_dir: str | Path,
    truth_path: str | Path,
    dla_path: str | Path,
    n_examples: int = 4,
) -> list[Example]:
    """Simulate (:func:`.simulate.simulate`) into one file per spectrum, the truth list and the DLA
    table; returns a few spectra for the examples figure (sightlines with DLAs first)."""
    out_dir = Path(spectra_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    wave, full = sim.wavelength_grid(), sim.complete_spec(spec)
    # the sightline draws come first and do not depend on the pixels: known before any chunk
    params = sim.draw_sightlines(full, seed)
    dla = params["dla"]
    examples: list[Example] = []

    def write_chunk(rows: np.ndarray, flux: np.ndarray, ivar: np.ndarray) -> None:
        for k, row in enumerate(rows):
            header = {
                "Z_QSO": float(params["z_qso"][row]),
                "MAG_R": float(params["mag"][row]),
                "EXPTIME": float(params["exptime"][row]),
                "N_DLA": int(params["n_dla"][row]),
                "BAL": int(params["bal"]["flag"][row]),
            }
            write_spectrum(out_dir / sim.spectrum_name(int(row)), wave, flux[k], ivar[k], header)
            if len(examples) < n_examples and (params["n_dla"][row] > 0 or len(examples) == n_examples - 1):
                pick = dla["sightline"] == row
                examples.append(
                    (
                        flux[k].copy(),
                        float(params["z_qso"][row]),
                        list(zip(dla["z_abs"][pick], dla["log_n"][pick])),
                    )
                )

    sim.simulate(full, seed, write_chunk)
    files = [f"{out_dir.name}/{sim.spectrum_name(i)}" for i in range(len(params["z_qso"]))]
    write_truth_list(
        truth_path,
        files,
        params["z_qso"],
        params["n_abs"],
        params["n_dla"],
        {"BAL": params["bal"]["flag"].astype(int), "SPLIT": params["split"]},
    )
    hi, bal = params["absorbers"], params["bal"]
    bal_rows = np.flatnonzero(bal["flag"])
    write_dla_table(
        dla_path,
        [files[i] for i in dla["sightline"]],
        dla["z_abs"],
        dla["log_n"],
        dla["b_kms"],
        absorbers={
            "FILE": [files[i] for i in hi["sightline"]],
            "Z_ABS": hi["z_abs"],
            "LOG_NHI": hi["log_n"],
            "B_KMS": hi["b_kms"],
        },
        bals={
            "FILE": [files[i] for i in bal_rows],
            "V_MIN": bal["v_min"][bal_rows],
            "V_MAX": bal["v_max"][bal_rows],
            "TAU_MAX": bal["tau"][bal_rows],
        },
    )
    return examples


def read_truth_list(path: str | Path) -> pd.DataFrame:
    """The truth list as a DataFrame (FILE str, Z_QSO float, N_ABS int, N_DLA int), validated."""
    path = Path(path)
    if not path.is_file():
        raise InputFileError("truth list not found", path)
    try:
        table = pd.read_csv(path, sep=r"\s+", dtype={"FILE": str}, comment="#")
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as error:
        raise InputFileError(f"cannot parse truth list ({error})", path) from None
    missing = [c for c in TRUTH_COLUMNS if c not in table.columns]
    if missing:
        raise InputFileError(
            f"truth list lacks column(s) {missing}; expected header {' '.join(TRUTH_COLUMNS)}", path
        )
    for column, kind in (("Z_QSO", float), ("N_ABS", int), ("N_DLA", int)):
        values = pd.to_numeric(table[column], errors="coerce")
        if values.isna().any():
            row = int(np.flatnonzero(values.isna().to_numpy())[0])
            raise InputFileError(
                f"row {row + 2}: {column} is not a number ({table[column].iloc[row]!r})", path
            )
        if kind is int and not np.all(values == np.round(values)):
            raise InputFileError(f"{column} must hold integers", path)
        table[column] = values.astype(kind)
    if (table["N_DLA"] > table["N_ABS"]).any() or (table["N_DLA"] < 0).any():
        raise InputFileError("N_DLA must be between 0 and N_ABS on every row", path)
    if table["FILE"].duplicated().any():
        raise InputFileError(f"duplicate FILE {table['FILE'][table['FILE'].duplicated()].iloc[0]!r}", path)
    if "BAL" in table.columns:
        bal = pd.to_numeric(table["BAL"], errors="coerce")
        if bal.isna().any() or not bal.isin([0, 1]).all():
            raise InputFileError("BAL column must hold 0 or 1 on every row", path)
        table["BAL"] = bal.astype(int)
    if "SPLIT" in table.columns and not table["SPLIT"].isin(SPLITS).all():
        raise InputFileError(f"SPLIT column must hold one of {list(SPLITS)} on every row", path)
    return table[list(TRUTH_COLUMNS) + [c for c in OPTIONAL_TRUTH_COLUMNS if c in table.columns]].reset_index(
        drop=True
    )


def resolve(truth_path: str | Path, name: str) -> Path:
    """A truth-list FILE entry: relative to the truth list's folder, else as given."""
    candidate = Path(name)
    if candidate.is_absolute():
        return candidate
    beside = Path(truth_path).parent / candidate
    return beside if beside.exists() or not candidate.exists() else candidate


def read_spectrum(
    path: str | Path, expected_pixels: int | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict]:
    """(wavelength, flux, ivar, header) of one spectrum file; InputFileError naming the file."""
    path = Path(path)
    if not path.is_file():
        raise InputFileError("spectrum file listed in the truth list not found", path)
    try:
        with fitsio.FITS(str(path)) as fits:
            for name in ("WAVELENGTH", "FLUX", "IVAR"):
                if name not in fits:
                    raise InputFileError(f"missing HDU {name}", path)
            wave, flux, ivar = (fits[name].read() for name in ("WAVELENGTH", "FLUX", "IVAR"))
            flux_header = fits["FLUX"].read_header()
            header = {k: flux_header[k] for k in ("Z_QSO", "MAG_R", "EXPTIME") if k in flux_header}
    except OSError as error:
        raise InputFileError(f"unreadable FITS ({error})", path) from None
    if not (wave.ndim == flux.ndim == ivar.ndim == 1 and wave.shape == flux.shape == ivar.shape):
        raise InputFileError(
            f"WAVELENGTH {wave.shape}, FLUX {flux.shape}, IVAR {ivar.shape} must be equal 1-D shapes", path
        )
    if expected_pixels is not None and wave.size != expected_pixels:
        raise InputFileError(f"{wave.size} pixels, the first spectrum had {expected_pixels}", path)
    for name, values in (("WAVELENGTH", wave), ("FLUX", flux), ("IVAR", ivar)):
        if not np.all(np.isfinite(values)):
            raise InputFileError(f"{name} holds {int((~np.isfinite(values)).sum())} NaN/inf value(s)", path)
    if np.any(ivar < 0):
        raise InputFileError("IVAR has negative values", path)
    return wave, flux.astype(np.float32), ivar.astype(np.float32), header


def read_dla_table(path: str | Path) -> pd.DataFrame:
    path = Path(path)
    if not path.is_file():
        raise InputFileError("DLA table not found", path)
    try:
        data = fitsio.read(str(path), ext="DLAS")
    except (OSError, ValueError) as error:
        raise InputFileError(f"cannot read DLAS table ({error})", path) from None
    table = pd.DataFrame(
        {
            name: data[name].astype(str) if name == "FILE" else data[name].astype(float)
            for name in ("FILE", "Z_ABS", "LOG_NHI")
        }
    )
    return table


def read_confusers(path: str | Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(ABSORBERS, BALS) of a DLA table file, empty tables where the file has no such HDU."""
    absorbers = pd.DataFrame(
        {"FILE": pd.Series(dtype=str), "Z_ABS": pd.Series(dtype=float), "LOG_NHI": pd.Series(dtype=float)}
    )
    bals = pd.DataFrame(
        {
            "FILE": pd.Series(dtype=str),
            "V_MIN": pd.Series(dtype=float),
            "V_MAX": pd.Series(dtype=float),
            "TAU_MAX": pd.Series(dtype=float),
        }
    )
    with fitsio.FITS(str(path)) as fits:
        if "ABSORBERS" in fits and fits["ABSORBERS"].get_nrows():
            data = fits["ABSORBERS"].read()
            absorbers = pd.DataFrame(
                {
                    "FILE": np.char.strip(data["FILE"].astype(str)),
                    "Z_ABS": data["Z_ABS"].astype(float),
                    "LOG_NHI": data["LOG_NHI"].astype(float),
                }
            )
        if "BALS" in fits and fits["BALS"].get_nrows():
            data = fits["BALS"].read()
            bals = pd.DataFrame(
                {
                    "FILE": np.char.strip(data["FILE"].astype(str)),
                    **{k: data[k].astype(float) for k in ("V_MIN", "V_MAX", "TAU_MAX")},
                }
            )
    return absorbers, bals


def iter_spectra(
    truth_path: str | Path, truth: pd.DataFrame, chunk: int
) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, list]]:
    """(rows, wavelength, flux, ivar, headers) per chunk of the truth list; all files share one grid."""
    reference: np.ndarray | None = None
    for start in range(0, len(truth), chunk):
        rows = np.arange(start, min(start + chunk, len(truth)))
        fluxes, ivars, headers = [], [], []
        for row in rows:
            path = resolve(truth_path, truth["FILE"].iloc[row])
            wave, flux, ivar, header = read_spectrum(path, None if reference is None else reference.size)
            if reference is None:
                reference = wave
            elif not np.allclose(wave, reference, rtol=0, atol=1e-3):
                raise InputFileError("WAVELENGTH differs from the first spectrum's grid", path)
            fluxes.append(flux)
            ivars.append(ivar)
            headers.append(header)
        yield rows, reference, np.stack(fluxes), np.stack(ivars), headers


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
    from ..lines import LYB

    return LYB * (1 + np.asarray(z_qso)), LYA * (1 + np.asarray(z_qso))
