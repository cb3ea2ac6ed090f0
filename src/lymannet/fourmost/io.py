"""The 4MOST quasar files: one FITS per spectrum, the truth list, the DLA table, the ingested file.

Per-spectrum file (PAQS_absorber_000001.fits): image HDUs WAVELENGTH (P,) float64 [A],
FLUX (P,) float32 [1e-17 erg/s/cm2/A], IVAR (P,) float32; the FLUX header holds Z_QSO, MAG_R,
EXPTIME, N_DLA.

Truth list (the slides' layout, whitespace separated, header line first)::

    FILE	Z_QSO	N_ABS	N_DLA
    spectra/PAQS_absorber_000001.fits	2.2085301947956900	2	0

FILE is relative to the truth list's folder (absolute paths work too). DLA table (FITS, extname
DLAS): FILE, Z_ABS, LOG_NHI, B_KMS, one row per DLA.

Ingestion into the analysis grids: :mod:`.ingest`.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Iterator

import fitsio
import numpy as np
import pandas as pd

from ..errors import InputFileError
from ..fileio import atomic_path
from . import simulate as sim
from .spectrograph import wavelength_grid

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
    wave, full = wavelength_grid(), sim.complete_spec(spec)
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
