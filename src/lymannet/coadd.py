"""DESI coadd FITS files: reading and fibre selection (merging the arms and rebinning onto a network
grid: `lymannet.arms`).

Reading: tile-based and healpix coadds alike (FIBERMAP, <ARM>_WAVELENGTH/_FLUX/_IVAR/_MASK; other
HDUs are ignored). A file without FIBERMAP (QuasarNP's test file) gets TARGETID = row index and all
rows are targets; a file without <ARM>_MASK is read unmasked. Masked pixels (MASK != 0), non-finite
flux and non-positive or non-finite ivar get ivar 0 and flux 0.

Plain (uncompressed, unscaled) images are read with one read per run of rows and byte-swapped in
place (`_RawImage`), ~2-3x faster than fitsio; anything else goes through fitsio.

Writing the ingested spectra file is `lymannet.ingest`'s job.
"""

from __future__ import annotations

import contextlib
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Mapping

import fitsio
import numpy as np
import pandas as pd

from .desi import ARMS, PIXEL_STEP, native_wavelength
from .errors import ConfigError, InputFileError
from .fileio import first_line, native_column
from .grid import Grid

__all__ = [
    "BLOCK_ROWS",
    "CoaddFile",
    "CoaddSpectra",
    "NativeRebinner",
    "check_grid_coverage",
    "clean_pixels",
    "ingest_options",
    "merge_arm_sums",
    "merge_arms",
    "read_coadd",
    "select_targets",
    "fibre_flags",
    "ZWARN_BITS",
    "sums_to_flux",
]

# Rows processed at once: ~16 MB of float32 per native array, so a block stays cache-friendly
# (blocks of 4096 rows were 3-5x slower here, from page faults and cache misses).
BLOCK_ROWS = 512
DEFAULT_OPTIONS: dict[str, Any] = {"fiberstatus": "zero_only", "missing_truth": "error", "chunk_rows": 4096}
NATIVE_START = float(native_wavelength()[0])
N_NATIVE = len(native_wavelength())
# Columns of FIBERMAP that the reader keeps: selection, fallbacks for truth columns, and the
# target coordinates survey catalogues carry (lymannet.classify).
FIBERMAP_COLUMNS = (
    "TARGETID",
    "OBJTYPE",
    "COADD_FIBERSTATUS",
    "FIBERSTATUS",
    "COADD_EXPTIME",
    "FLUX_R",
    "TARGET_RA",
    "TARGET_DEC",
)


# --------------------------------------------------------------------------- options


def ingest_options(options: Mapping[str, Any] | None) -> dict[str, Any]:
    """The `ingest:` config block with defaults filled in and values checked."""
    merged = {**DEFAULT_OPTIONS, **(options or {})}
    if merged["fiberstatus"] not in ("zero_only", "any"):
        raise ConfigError(f"ingest.fiberstatus must be 'zero_only' or 'any', not {merged['fiberstatus']!r}")
    if merged["missing_truth"] not in ("error", "drop"):
        raise ConfigError(f"ingest.missing_truth must be 'error' or 'drop', not {merged['missing_truth']!r}")
    if not isinstance(merged["chunk_rows"], (int, np.integer)) or merged["chunk_rows"] < 1:
        raise ConfigError(f"ingest.chunk_rows must be a positive integer, not {merged['chunk_rows']!r}")
    return merged


# --------------------------------------------------------------------------- reading coadds


@dataclass
class CoaddSpectra:
    """Rows of one coadd file: per-arm arrays (cleaned: bad pixels have flux 0, ivar 0) + fibermap."""

    path: str
    rows: np.ndarray  # (N,) row index in the file
    fibermap: pd.DataFrame  # N rows: TARGETID, OBJTYPE, COADD_FIBERSTATUS, ... (what the file has)
    wavelength: dict[str, np.ndarray]  # arm -> (P_arm,) float64, Angstrom
    flux: dict[str, np.ndarray]  # arm -> (N, P_arm) float32
    ivar: dict[str, np.ndarray]  # arm -> (N, P_arm) float32
    is_target: np.ndarray  # (N,) bool: real target under the reading options
    n_masked: int = 0  # pixels with ivar > 0 that the mask / non-finite checks zeroed

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def targetid(self) -> np.ndarray:
        return self.fibermap["TARGETID"].to_numpy()


@dataclass
class _RawImage:
    """Where an uncompressed, unscaled image's pixels lie in the file, to read rows with one pread.

    fitsio reads through cfitsio's 2880-byte buffers and then byte-swaps: ~2x slower than reading
    the big-endian bytes straight into the array and swapping them in place."""

    offset: int  # byte offset of the data
    n_columns: int
    dtype: np.dtype  # big-endian on-disk type
    zero: int | float = 0  # stored value meaning 0 (MASK: -BZERO for unsigned integers)

    def read(self, handle, rows: np.ndarray, path: str, name: str) -> np.ndarray:
        """Rows (sorted file indices) in on-disk byte order: one read per contiguous run of rows,
        straight into its slice of the result (no gather copy when sky fibres are skipped)."""
        data = np.empty((len(rows), self.n_columns), dtype=self.dtype)
        row_bytes = self.n_columns * self.dtype.itemsize
        breaks = np.flatnonzero(np.diff(rows) != 1) + 1
        for start, stop in zip(np.r_[0, breaks], np.r_[breaks, len(rows)]):
            handle.seek(self.offset + int(rows[start]) * row_bytes)
            if handle.readinto(data[start:stop]) != (stop - start) * row_bytes:
                raise InputFileError(f"truncated file: HDU {name} ends early", path)
        return data

    def read_float32(self, handle, rows: np.ndarray, path: str, name: str) -> np.ndarray:
        data = self.read(handle, rows, path, name)
        if self.dtype.itemsize != 4:
            return data.astype(np.float32)
        return data.byteswap(inplace=True).view(self.dtype.newbyteorder("="))

    def read_nonzero(self, handle, rows: np.ndarray, path: str, name: str) -> np.ndarray:
        """Boolean (value != 0), compared in the file's byte order: no swap needed."""
        data = self.read(handle, rows, path, name)
        native = self.dtype.newbyteorder("=")
        zero = np.array([self.zero], dtype=self.dtype).view(native)[0]
        return data.view(native) != zero

    @classmethod
    def of(cls, hdu: Any, kind: str) -> "_RawImage | None":
        """Descriptor for a plain image HDU, or None where fitsio must decode it."""
        if sys.byteorder != "little" or hdu.is_compressed():
            return None
        header = hdu.read_header()
        bitpix, bzero = int(header["BITPIX"]), header.get("BZERO", 0)
        if header.get("BSCALE", 1) != 1 or len(hdu.get_dims()) != 2:
            return None
        n_columns = int(hdu.get_dims()[1])
        if kind == "MASK" and bitpix in (8, 16, 32, 64) and float(bzero).is_integer():
            dtype = np.dtype("u1" if bitpix == 8 else f">i{bitpix // 8}")
            zero = -int(bzero)
            if np.iinfo(dtype).min <= zero <= np.iinfo(dtype).max:
                return cls(hdu.get_offsets()["data_start"], n_columns, dtype, zero)
        if kind != "MASK" and bitpix in (-32, -64) and bzero == 0:
            return cls(hdu.get_offsets()["data_start"], n_columns, np.dtype(f">f{-bitpix // 8}"))
        return None


@dataclass
class _ArmLayout:
    wavelength: np.ndarray
    offset: int  # index of the arm's first pixel on the native grid
    has_mask: bool
    raw: dict[str, _RawImage | None] = field(default_factory=dict)  # FLUX/IVAR/MASK fast reads


@dataclass
class CoaddFile:
    """A validated coadd file: layout and fibermap are read at once, spectra on demand by rows.

    Validation covers everything that can be checked without reading the spectra: readable and not
    truncated, required HDUs present, wavelength/flux/ivar/mask shapes consistent with each other and
    with FIBERMAP, wavelengths on the DESI native grid, FIBERMAP with TARGETID.
    """

    path: str
    options: dict[str, Any] = field(default_factory=dict)
    fast_read: bool = True  # read plain images with one pread each (False: always through fitsio)

    def __post_init__(self) -> None:
        self.path = str(self.path)
        self.options = ingest_options(self.options)
        self.gzipped = _is_gzip(self.path)
        with self._open() as fits:
            self._check_complete(fits)
            names = {hdu.get_extname().upper() for hdu in fits}
            self.arms = {arm: self._arm_layout(fits, names, arm) for arm in ARMS}
            self.n_rows = self._check_shapes(fits, names)
            if self.fast_read and not self.gzipped:
                for arm, layout in self.arms.items():
                    kinds = ("FLUX", "IVAR", "MASK") if layout.has_mask else ("FLUX", "IVAR")
                    layout.raw = {kind: _RawImage.of(fits[f"{arm}_{kind}"], kind) for kind in kinds}
            self.has_fibermap = "FIBERMAP" in names
            self.fibermap = self._read_fibermap(fits) if self.has_fibermap else _index_fibermap(self.n_rows)
        self.flags = fibre_flags(self.fibermap, self.options, self.has_fibermap)
        self.is_target = self.flags == 0

    # -- validation -----------------------------------------------------------------------------

    def _open(self) -> fitsio.FITS:
        if not os.path.isfile(self.path):
            raise InputFileError("file does not exist", self.path)
        try:
            return fitsio.FITS(self.path)
        except (OSError, ValueError) as error:
            raise InputFileError(f"not a readable FITS file ({first_line(error)})", self.path) from None

    def _check_complete(self, fits: fitsio.FITS) -> None:
        """A cut file still opens (cfitsio lists the HDUs it finds): compare sizes instead."""
        if self.gzipped:  # cfitsio decompresses; sizes say nothing
            return
        size = os.path.getsize(self.path)
        data_end = max(hdu.get_offsets()["data_end"] for hdu in fits)
        if data_end > size:
            raise InputFileError(f"truncated file: {size} bytes, but its HDUs need {data_end}", self.path)
        if size % 2880:
            raise InputFileError(
                f"truncated file: {size} bytes is not a whole number of 2880-byte FITS " "blocks", self.path
            )

    def _arm_layout(self, fits: fitsio.FITS, names: set[str], arm: str) -> _ArmLayout:
        for kind in ("WAVELENGTH", "FLUX", "IVAR"):
            if f"{arm}_{kind}" not in names:
                raise InputFileError(f"missing HDU {arm}_{kind}; is this a DESI coadd file?", self.path)
        wavelength = self._read_hdu(fits, f"{arm}_WAVELENGTH").astype(np.float64)
        if wavelength.ndim != 1 or len(wavelength) < 2:
            raise InputFileError(
                f"{arm}_WAVELENGTH has shape {wavelength.shape}, expected (n_pixels,)", self.path
            )
        return _ArmLayout(wavelength, native_offset(wavelength, arm, self.path), f"{arm}_MASK" in names)

    def _check_shapes(self, fits: fitsio.FITS, names: set[str]) -> int:
        """Every <ARM>_FLUX/_IVAR/_MASK is (N, len(<ARM>_WAVELENGTH)), N the same everywhere."""
        n_rows: dict[str, int] = {}
        for arm, layout in self.arms.items():
            kinds = ("FLUX", "IVAR", "MASK") if layout.has_mask else ("FLUX", "IVAR")
            for kind in kinds:
                name = f"{arm}_{kind}"
                dims = _image_dims(fits, name, self.path)
                if len(dims) != 2 or dims[1] != len(layout.wavelength):
                    raise InputFileError(
                        f"{name} has shape {tuple(dims)}, but {arm}_WAVELENGTH has "
                        f"{len(layout.wavelength)} pixels: expected (n_spectra, "
                        f"{len(layout.wavelength)})",
                        self.path,
                    )
                n_rows[name] = dims[0]
        if len(set(n_rows.values())) > 1:
            detail = ", ".join(f"{name} {n}" for name, n in n_rows.items())
            raise InputFileError(f"arms have different numbers of spectra ({detail})", self.path)
        n = next(iter(n_rows.values()))
        if "FIBERMAP" in names:
            n_fibermap = fits["FIBERMAP"].get_nrows()
            if n_fibermap != n:
                raise InputFileError(
                    f"FIBERMAP has {n_fibermap} rows but the spectra HDUs have {n}", self.path
                )
        return n

    def _read_fibermap(self, fits: fitsio.FITS) -> pd.DataFrame:
        hdu = fits["FIBERMAP"]
        available = set(hdu.get_colnames())
        if "TARGETID" not in available:
            raise InputFileError("FIBERMAP has no TARGETID column", self.path)
        columns = [name for name in FIBERMAP_COLUMNS if name in available]
        try:
            table = hdu.read(columns=columns)
        except OSError as error:
            raise InputFileError(f"truncated or corrupt FIBERMAP ({first_line(error)})", self.path) from None
        fibermap = pd.DataFrame({name: native_column(table[name]) for name in columns})
        if "OBJTYPE" in fibermap:
            fibermap["OBJTYPE"] = fibermap["OBJTYPE"].str.strip()
        fibermap["TARGETID"] = fibermap["TARGETID"].astype(np.int64)
        return fibermap

    def _read_hdu(self, fits: fitsio.FITS, name: str, rows: slice | None = None) -> np.ndarray:
        try:
            return fits[name].read() if rows is None else fits[name][rows, :]
        except OSError as error:
            raise InputFileError(
                f"truncated or corrupt HDU {name} ({first_line(error)})", self.path
            ) from None

    # -- reading spectra ------------------------------------------------------------------------

    @property
    def wavelength_range(self) -> tuple[float, float]:
        layouts = self.arms.values()
        return min(a.wavelength[0] for a in layouts), max(a.wavelength[-1] for a in layouts)

    @contextlib.contextmanager
    def opened(self) -> Iterator[tuple[fitsio.FITS, Any]]:
        """(fitsio handle, raw binary handle) for repeated reads."""
        with self._open() as fits, open(self.path, "rb") as handle:
            yield fits, handle

    def read(
        self, rows: np.ndarray | None = None, handles: tuple[fitsio.FITS, Any] | None = None
    ) -> CoaddSpectra:
        """Spectra of the given file rows (sorted indices; all rows by default), cleaned."""
        rows = np.arange(self.n_rows) if rows is None else np.asarray(rows, dtype=np.int64)
        if handles is None:
            with self.opened() as opened:
                return self.read(rows, opened)
        flux, ivar, n_masked = {}, {}, 0
        for arm, layout in self.arms.items():
            arm_flux, arm_ivar, arm_mask = self._read_arm(handles, arm, layout, rows)
            n_masked += clean_pixels(arm_flux, arm_ivar, arm_mask)
            flux[arm], ivar[arm] = arm_flux, arm_ivar
        return CoaddSpectra(
            path=self.path,
            rows=rows,
            fibermap=self.fibermap.iloc[rows].reset_index(drop=True),
            wavelength={arm: layout.wavelength for arm, layout in self.arms.items()},
            flux=flux,
            ivar=ivar,
            is_target=self.is_target[rows],
            n_masked=n_masked,
        )

    def _read_arm(self, handles: tuple[fitsio.FITS, Any], arm: str, layout: _ArmLayout, rows: np.ndarray):
        """(flux, ivar) float32 and mask (or None) of the given sorted file rows of one arm."""
        n_pixels = len(layout.wavelength)
        if len(rows) == 0:
            empty = np.zeros((0, n_pixels), np.float32)
            return empty, empty.copy(), None
        fits, handle = handles
        span = slice(int(rows[0]), int(rows[-1]) + 1)
        pick = None if len(rows) == span.stop - span.start else rows - span.start
        # float32 is the DESI on-disk type, and a float64 file (a simulator's) loses nothing the
        # float32 output would keep.
        arrays = []
        for kind in ("FLUX", "IVAR", "MASK") if layout.has_mask else ("FLUX", "IVAR"):
            name, raw = f"{arm}_{kind}", layout.raw.get(kind)
            if raw is not None:
                read = raw.read_nonzero if kind == "MASK" else raw.read_float32
                arrays.append(read(handle, rows, self.path, name))
            else:  # fitsio reads the whole span; skipped rows are dropped after
                data = self._read_hdu(fits, name, span)
                data = data if pick is None else data[pick]
                arrays.append(data if kind == "MASK" else data.astype(np.float32, copy=False))
        if not layout.has_mask:
            arrays.append(None)
        return tuple(arrays)

    def iter_blocks(self, rows: np.ndarray, block_rows: int = BLOCK_ROWS) -> Iterator[CoaddSpectra]:
        """Read the given sorted rows in blocks, each spanning at most `block_rows` file rows."""
        with self.opened() as handles:
            start = 0
            while start < len(rows):
                stop = int(np.searchsorted(rows, rows[start] + block_rows, side="left"))
                yield self.read(rows[start:stop], handles)
                start = stop


def read_coadd(
    path: str | Path, options: Mapping[str, Any] | None = None, rows: np.ndarray | None = None
) -> CoaddSpectra:
    """Read and validate a DESI coadd file (all rows by default); bad pixels cleaned to ivar 0."""
    return CoaddFile(str(path), dict(options or {})).read(rows)


def _is_gzip(path: str) -> bool:
    if not os.path.isfile(path):
        return False
    with open(path, "rb") as handle:
        return handle.read(2) == b"\x1f\x8b"


def _index_fibermap(n_rows: int) -> pd.DataFrame:
    """No FIBERMAP (QuasarNP's test file): TARGETID = row index, every row a target."""
    return pd.DataFrame({"TARGETID": np.arange(n_rows, dtype=np.int64)})


# ZWARN-like bits of a fibre that is not classified (survey catalogues keep one row per FIBERMAP
# row, as DESI's redshift catalogues do, and say why a row has no redshift).
NOT_TARGET = 1  # OBJTYPE not 'TGT' or TARGETID <= 0: sky, stuck or empty fibre
BAD_FIBERSTATUS = 2  # COADD_FIBERSTATUS != 0 (under fiberstatus: zero_only)
NODATA = 4  # no valid pixel on the model's grid
ZWARN_BITS = {"NOT_TARGET": NOT_TARGET, "BAD_FIBERSTATUS": BAD_FIBERSTATUS, "NODATA": NODATA}


def fibre_flags(fibermap: pd.DataFrame, options: Mapping[str, Any], has_fibermap: bool = True) -> np.ndarray:
    """NOT_TARGET / BAD_FIBERSTATUS bits of each row (0 for a real target).

    Sky fibres, stuck positioners and empty fibres carry other OBJTYPEs or negative TARGETIDs.
    Without a FIBERMAP every row is a target (TARGETIDs are then row indices, 0 included).
    """
    flags = np.zeros(len(fibermap), np.int64)
    if not has_fibermap:
        return flags
    not_target = fibermap["TARGETID"].to_numpy() <= 0
    if "OBJTYPE" in fibermap:
        not_target |= fibermap["OBJTYPE"].to_numpy().astype(str) != "TGT"
    flags[not_target] |= NOT_TARGET
    if ingest_options(options)["fiberstatus"] == "zero_only":
        status = "COADD_FIBERSTATUS" if "COADD_FIBERSTATUS" in fibermap else "FIBERSTATUS"
        if status in fibermap:
            flags[fibermap[status].to_numpy() != 0] |= BAD_FIBERSTATUS
    return flags


def select_targets(
    fibermap: pd.DataFrame, options: Mapping[str, Any], has_fibermap: bool = True
) -> np.ndarray:
    """Real targets: OBJTYPE 'TGT', TARGETID > 0, and COADD_FIBERSTATUS 0 unless fiberstatus is 'any'."""
    return fibre_flags(fibermap, options, has_fibermap) == 0


def clean_pixels(flux: np.ndarray, ivar: np.ndarray, mask: np.ndarray | None) -> int:
    """In place: pixels that are masked (mask != 0, or True in a boolean mask), have non-finite flux,
    or non-positive / non-finite ivar get flux 0 and ivar 0.

    Returns how many pixels with positive ivar were zeroed (masked or non-finite flux)."""
    bad = ~((ivar > 0) & (ivar < np.inf))  # also catches NaN ivar
    zero_before = int(np.count_nonzero(bad))
    if mask is not None:
        bad |= mask if mask.dtype == bool else mask != 0
    bad |= ~np.isfinite(flux)
    n_zeroed = int(np.count_nonzero(bad)) - zero_before
    np.copyto(ivar, 0, where=bad)
    np.copyto(flux, 0, where=bad)
    return n_zeroed


def native_offset(wavelength: np.ndarray, arm: str, path: str) -> int:
    """Index of the arm's first pixel on the native grid; the arm must lie on that grid."""
    offset = int(round((wavelength[0] - NATIVE_START) / PIXEL_STEP))
    expected = NATIVE_START + PIXEL_STEP * (offset + np.arange(len(wavelength)))
    on_grid = offset >= 0 and offset + len(wavelength) <= N_NATIVE
    if not on_grid or np.max(np.abs(wavelength - expected)) > 0.01 * PIXEL_STEP:
        raise InputFileError(
            f"{arm}_WAVELENGTH ({wavelength[0]:.2f}-{wavelength[-1]:.2f} A, {len(wavelength)} pixels) is not "
            f"on the DESI native grid ({NATIVE_START:.0f}-{native_wavelength()[-1]:.0f} A in {PIXEL_STEP} A "
            "steps)",
            path,
        )
    return offset


def _image_dims(fits: fitsio.FITS, name: str, path: str) -> list[int]:
    hdu = fits[name]
    if hdu.get_exttype() != "IMAGE_HDU":
        raise InputFileError(f"HDU {name} is a {hdu.get_exttype()}, expected an image", path)
    return list(hdu.get_dims())
