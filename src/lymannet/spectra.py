"""The on-disk format every stage after ingestion reads and writes: a "spectra file".

A spectra file is a FITS file astronomers can open with astropy:

- ``WAVELENGTH`` (P,) float64 [Angstrom]: the grid FLUX and IVAR live on. Header ``GRIDKIND`` is
  'linear' or 'log' for a network grid (with ``GRIDSTRT``, ``GRIDSTEP``) or 'native' for the
  merged DESI camera grid.
- ``FLUX`` (N, P) float32 [1e-17 erg/s/cm2/A] and ``IVAR`` (N, P) float32: one row per spectrum.
- ``NATIVE_WAVELENGTH``, ``NATIVE_FLUX``, ``NATIVE_IVAR`` (optional): the same objects at native
  resolution, kept so that redshift shifting can work on the fine grid before rebinning.
- ``TRUTH``: one row per spectrum, at least TARGETID, Z, SPECTYPE (see TRUTH_COLUMNS), and
  PARENT_TARGETID, the TARGETID of the observed object an augmented copy descends from (how the
  leakage checks recognise copies of test objects).
- ``PROVENANCE``: a one-row table holding the JSON provenance record (config, versions, git).

Files are written through :func:`lymannet.fileio.atomic_path`; large ones stream chunk by chunk
with :class:`SpectraWriter` so memory stays bounded.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import fitsio
import numpy as np
import pandas as pd

from .errors import InputFileError
from .fileio import atomic_path
from .grid import Grid

FORMAT_VERSION = "lymannet-spectra-1"

# name -> (numpy dtype, fill value for objects where it is unknown)
TRUTH_COLUMNS: dict[str, tuple[str, Any]] = {
    "TARGETID": ("i8", -1),
    "Z": ("f8", np.nan),
    "SPECTYPE": ("U8", ""),
    "SUBTYPE": ("U8", ""),  # DESI's: M/K/G/F stars, PASSIVE/WEAKLINE galaxies, BAL quasars
    "TEMPLATE": ("i2", -1),
    "MAG_R": ("f4", np.nan),
    "EXPTIME": ("f4", np.nan),
    "LYA_EW": ("f4", np.nan),
    "SOURCE": ("U48", ""),
    "PARENT_TARGETID": ("i8", -1),
}
LAYERS = ("network", "native")


def _hdu_names(layer: str) -> tuple[str, str, str]:
    if layer not in LAYERS:
        raise ValueError(f"layer must be one of {LAYERS}, not {layer!r}")
    prefix = "" if layer == "network" else "NATIVE_"
    return f"{prefix}WAVELENGTH", f"{prefix}FLUX", f"{prefix}IVAR"


def complete_truth(truth: pd.DataFrame) -> pd.DataFrame:
    """Truth with every standard column present and typed; extra columns are kept."""
    truth = truth.reset_index(drop=True).copy()
    for name, (dtype, fill) in TRUTH_COLUMNS.items():
        if name not in truth:
            truth[name] = fill
        if dtype.startswith("U"):
            truth[name] = truth[name].astype(str)
        else:
            truth[name] = truth[name].astype(dtype)
    missing_parent = truth["PARENT_TARGETID"] < 0
    truth.loc[missing_parent, "PARENT_TARGETID"] = truth.loc[missing_parent, "TARGETID"]
    return truth


def truth_to_records(truth: pd.DataFrame) -> np.ndarray:
    """pandas truth -> numpy structured array with fixed-width strings, as FITS tables need."""
    columns = []
    for name in truth.columns:
        values = truth[name].to_numpy()
        if values.dtype.kind in "OUS":
            width = max(1, int(max((len(str(v)) for v in values), default=1)))
            values = values.astype(f"U{width}")
        columns.append((name, values))
    records = np.empty(len(truth), dtype=[(name, v.dtype) for name, v in columns])
    for name, values in columns:
        records[name] = values
    return records


def records_to_truth(records: np.ndarray) -> pd.DataFrame:
    data = {}
    for name in records.dtype.names:
        values = records[name]
        if values.dtype.kind == "S":
            values = np.char.decode(values, "ascii")
        if values.dtype.kind == "U":
            values = np.char.rstrip(values).astype(object).astype(str)
        elif values.dtype.byteorder not in ("=", "|"):
            values = values.astype(values.dtype.newbyteorder("="))
        data[name] = values
    return pd.DataFrame(data)


@dataclass
class SpectrumSet:
    """Spectra on one wavelength grid, with their truth table."""

    wavelength: np.ndarray  # (P,) float64, Angstrom
    flux: np.ndarray  # (N, P) float32
    ivar: np.ndarray  # (N, P) float32
    truth: pd.DataFrame  # N rows
    grid: Grid | None = None  # None for native (non-constant-step) grids
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        n_rows, n_pixels = len(self.truth), len(self.wavelength)
        for name in ("flux", "ivar"):
            array = getattr(self, name)
            if array.ndim != 2 or array.shape != (n_rows, n_pixels):
                raise ValueError(
                    f"{name} has shape {array.shape}, expected ({n_rows}, {n_pixels}) "
                    "(truth rows x wavelength pixels)"
                )

    def __len__(self) -> int:
        return len(self.truth)

    def take(self, rows: np.ndarray | slice) -> "SpectrumSet":
        """A new set with the given rows (indices, boolean mask or slice)."""
        if isinstance(rows, np.ndarray) and rows.dtype == bool:
            rows = np.flatnonzero(rows)
        return SpectrumSet(
            wavelength=self.wavelength,
            flux=self.flux[rows],
            ivar=self.ivar[rows],
            truth=self.truth.iloc[rows].reset_index(drop=True),
            grid=self.grid,
            meta=dict(self.meta),
        )

    @staticmethod
    def concatenate(sets: list["SpectrumSet"]) -> "SpectrumSet":
        if not sets:
            raise ValueError("nothing to concatenate")
        first = sets[0]
        for other in sets[1:]:
            if other.wavelength.shape != first.wavelength.shape or not np.allclose(
                other.wavelength, first.wavelength
            ):
                raise ValueError("cannot concatenate spectra on different wavelength grids")
        return SpectrumSet(
            wavelength=first.wavelength,
            flux=np.concatenate([s.flux for s in sets]),
            ivar=np.concatenate([s.ivar for s in sets]),
            truth=pd.concat([s.truth for s in sets], ignore_index=True),
            grid=first.grid,
            meta=dict(first.meta),
        )


def _grid_header(grid: Grid | None) -> dict[str, Any]:
    if grid is None:
        return {"GRIDKIND": "native"}
    # Strings keep every digit, so a grid read back compares equal to the one written.
    return {
        "GRIDKIND": grid.kind,
        "GRIDSTRT": repr(grid.start),
        "GRIDSTEP": repr(grid.step),
        "GRIDNPIX": grid.n_pixels,
    }


def _grid_from_header(header: Any) -> Grid | None:
    kind = str(header.get("GRIDKIND", "native")).strip()
    if kind == "native":
        return None
    return Grid(
        kind=kind,
        start=float(header["GRIDSTRT"]),
        step=float(header["GRIDSTEP"]),
        n_pixels=int(header["GRIDNPIX"]),
    )


class SpectraWriter:
    """Stream a spectra file chunk by chunk (atomic: renamed into place on close).

    The number of rows must be known up front (it sizes the FITS images); chunks are written in
    order with :meth:`write`. Use as a context manager; on an exception nothing is left behind.
    """

    def __init__(
        self,
        path: str | Path,
        n_rows: int,
        wavelength: np.ndarray,
        grid: Grid | None = None,
        native_wavelength: np.ndarray | None = None,
        provenance: dict[str, Any] | None = None,
    ):
        self.path = Path(path)
        self.n_rows = int(n_rows)
        self.wavelength = np.asarray(wavelength, dtype=np.float64)
        self.grid = grid
        self.native_wavelength = None if native_wavelength is None else np.asarray(native_wavelength, "f8")
        self.provenance = provenance or {}
        self._rows_written = 0
        self._truth_chunks: list[pd.DataFrame] = []
        self._context = atomic_path(self.path)

    def __enter__(self) -> "SpectraWriter":
        self._tmp = self._context.__enter__()
        self._fits = fitsio.FITS(str(self._tmp), "rw", clobber=True)
        self._fits.write(None, header={"LNFORMAT": FORMAT_VERSION, "NSPEC": self.n_rows})
        layers = [("network", self.wavelength, _grid_header(self.grid))]
        if self.native_wavelength is not None:
            layers.append(("native", self.native_wavelength, {"GRIDKIND": "native"}))
        for layer, wavelength, header in layers:
            wave_name, flux_name, ivar_name = _hdu_names(layer)
            self._fits.write(wavelength, extname=wave_name, header=dict(header, BUNIT="Angstrom"))
            for name, unit in (
                (flux_name, "1e-17 erg/(s cm2 Angstrom)"),
                (ivar_name, "1e+34 (s2 cm4 Angstrom2)/erg2"),
            ):
                self._fits.create_image_hdu(
                    dims=[max(self.n_rows, 1), len(wavelength)], dtype="f4", extname=name
                )
                self._fits[name].write_key("BUNIT", unit)  # fitsio ignores create_image_hdu's header
        return self

    def write(
        self,
        flux: np.ndarray,
        ivar: np.ndarray,
        truth: pd.DataFrame,
        native_flux: np.ndarray | None = None,
        native_ivar: np.ndarray | None = None,
    ) -> None:
        n_new = len(truth)
        if self._rows_written + n_new > self.n_rows:
            raise ValueError(f"{self.path}: writing more rows than the {self.n_rows} declared")
        chunks = [("network", flux, ivar, self.wavelength)]
        if self.native_wavelength is not None:
            if native_flux is None or native_ivar is None:
                raise ValueError(f"{self.path}: this file has a native layer; pass native_flux/ivar")
            chunks.append(("native", native_flux, native_ivar, self.native_wavelength))
        for layer, layer_flux, layer_ivar, wavelength in chunks:
            _, flux_name, ivar_name = _hdu_names(layer)
            for name, array in ((flux_name, layer_flux), (ivar_name, layer_ivar)):
                array = np.ascontiguousarray(array, dtype=np.float32)
                if array.shape != (n_new, len(wavelength)):
                    raise ValueError(
                        f"{self.path}: {name} chunk has shape {array.shape}, "
                        f"expected ({n_new}, {len(wavelength)})"
                    )
                if n_new:
                    self._fits[name].write(array, start=[self._rows_written, 0])
        self._truth_chunks.append(truth)
        self._rows_written += n_new

    def _finish(self) -> None:
        if self._rows_written != self.n_rows:
            raise ValueError(f"{self.path}: {self._rows_written} rows written, {self.n_rows} declared")
        truth = complete_truth(
            pd.concat(self._truth_chunks, ignore_index=True) if self._truth_chunks else pd.DataFrame()
        )
        self._fits.write(truth_to_records(truth), extname="TRUTH")
        record = np.array([json.dumps(self.provenance, sort_keys=True, default=str)])
        self._fits.write({"JSON": record}, extname="PROVENANCE")

    def __exit__(self, exc_type, exc, tb) -> bool:
        try:
            if exc_type is None:
                self._finish()
        except BaseException as error:
            self._fits.close()
            self._context.__exit__(type(error), error, error.__traceback__)  # removes the temp file
            raise
        self._fits.close()
        return bool(self._context.__exit__(exc_type, exc, tb))


def write_spectra(
    path: str | Path,
    spectra: SpectrumSet,
    native: SpectrumSet | None = None,
    provenance: dict[str, Any] | None = None,
) -> None:
    """Write a whole set (and optionally its native layer) atomically."""
    with SpectraWriter(
        path,
        len(spectra),
        spectra.wavelength,
        spectra.grid,
        None if native is None else native.wavelength,
        provenance,
    ) as writer:
        writer.write(
            spectra.flux,
            spectra.ivar,
            spectra.truth,
            None if native is None else native.flux,
            None if native is None else native.ivar,
        )


class SpectraFile:
    """Read access to a spectra file, whole or by row ranges, with clear errors for bad files."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        if not self.path.exists():
            raise InputFileError("file does not exist", self.path)
        try:
            self._fits = fitsio.FITS(str(self.path))
            names = {hdu.get_extname() for hdu in self._fits}
        except (OSError, ValueError) as error:
            raise InputFileError(f"not a readable FITS file ({error})", self.path) from None
        for required in ("WAVELENGTH", "FLUX", "IVAR", "TRUTH"):
            if required not in names:
                raise InputFileError(f"missing HDU {required!r}; is this a lymannet spectra file?", self.path)
        self.has_native = "NATIVE_FLUX" in names
        try:
            self.truth = records_to_truth(self._fits["TRUTH"].read())
            self.n_rows = len(self.truth)
            for layer in LAYERS if self.has_native else ("network",):
                _, flux_name, ivar_name = _hdu_names(layer)
                for name in (flux_name, ivar_name):
                    dims = self._fits[name].get_dims()
                    n_expected = len(self.wavelength_of(layer))
                    if self.n_rows and list(dims) != [self.n_rows, n_expected]:
                        raise InputFileError(
                            f"HDU {name} has shape {tuple(dims)}, expected ({self.n_rows}, {n_expected})",
                            self.path,
                        )
        except OSError as error:
            raise InputFileError(f"truncated or corrupt FITS file ({error})", self.path) from None

    def __enter__(self) -> "SpectraFile":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self._fits.close()

    def __len__(self) -> int:
        return self.n_rows

    @property
    def provenance(self) -> dict[str, Any]:
        try:
            return json.loads(self._fits["PROVENANCE"].read()["JSON"][0])
        except (OSError, KeyError, ValueError):
            return {}

    @property
    def grid(self) -> Grid | None:
        return _grid_from_header(self._fits["WAVELENGTH"].read_header())

    def wavelength_of(self, layer: str = "network") -> np.ndarray:
        wave_name, _, _ = _hdu_names(layer)
        if layer == "native" and not self.has_native:
            raise InputFileError("has no native-resolution layer (NATIVE_FLUX)", self.path)
        return self._fits[wave_name].read().astype(np.float64)

    def read(self, layer: str = "network", start: int = 0, stop: int | None = None) -> SpectrumSet:
        """Rows [start, stop) of one layer as a SpectrumSet."""
        stop = self.n_rows if stop is None else min(stop, self.n_rows)
        wavelength = self.wavelength_of(layer)
        _, flux_name, ivar_name = _hdu_names(layer)
        try:
            if stop > start:
                flux = self._fits[flux_name][start:stop, :].astype(np.float32, copy=False)
                ivar = self._fits[ivar_name][start:stop, :].astype(np.float32, copy=False)
            else:
                flux = ivar = np.zeros((0, len(wavelength)), np.float32)
        except OSError as error:
            raise InputFileError(
                f"truncated or corrupt data in {flux_name}/{ivar_name} ({error})", self.path
            ) from None
        grid = self.grid if layer == "network" else None
        return SpectrumSet(wavelength, flux, ivar, self.truth.iloc[start:stop].reset_index(drop=True), grid)

    def iter_chunks(self, layer: str = "network", chunk_rows: int = 4096) -> Iterator[SpectrumSet]:
        for start in range(0, self.n_rows, chunk_rows):
            yield self.read(layer, start, start + chunk_rows)


def read_spectra(path: str | Path, layer: str = "network") -> SpectrumSet:
    with SpectraFile(path) as spectra_file:
        return spectra_file.read(layer)


def read_truth(path: str | Path) -> pd.DataFrame:
    with SpectraFile(path) as spectra_file:
        return spectra_file.truth
