"""Spectra files read and written chunk by chunk: what the holdout, templates, augment and combine
stages share.

A chunk is a run of rows of one spectra file (truth, network layer, and the native layer while a
stage still needs it); `Layout` is what all chunks of a file share. Reading in chunks of
`CHUNK_ROWS` keeps memory bounded whatever the file's size. Augmented copies get their truth from
`copy_truth`: a fresh TARGETID, PARENT_TARGETID kept, so leakage checks can trace every copy.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import numpy as np
import pandas as pd

from . import augment_ops as ops_np
from .config import job_seed
from .errors import InputFileError
from .grid import Grid
from .spectra import SpectraFile

CHUNK_ROWS = 512  # rows per chunk: 512 x 7781 native pixels x (flux, ivar) float32 = 32 MB


@dataclass
class Layout:
    """What all chunks of one file share: the network grid and the native wavelengths."""

    grid: Grid
    wavelength: np.ndarray  # network WAVELENGTH as stored
    native_wavelength: np.ndarray | None

    @property
    def centres(self) -> np.ndarray:
        """Network pixel centres: where a window test (mask) looks at a pixel."""
        return self.grid.centres

    @classmethod
    def of(cls, spectra_file: SpectraFile) -> "Layout":
        grid = spectra_file.grid
        if grid is None:
            raise InputFileError("network layer has no GRIDKIND/GRIDSTRT/GRIDSTEP header", spectra_file.path)
        native = spectra_file.wavelength_of("native") if spectra_file.has_native else None
        return cls(grid, spectra_file.wavelength_of("network"), native)


@dataclass
class Chunk:
    """Rows of one file: truth, network layer, and the native layer while it is still needed."""

    truth: pd.DataFrame
    flux: np.ndarray
    ivar: np.ndarray
    native_flux: np.ndarray | None = None
    native_ivar: np.ndarray | None = None


def read_chunk(spectra_file: SpectraFile, start: int, stop: int, native: bool) -> Chunk:
    network = spectra_file.read("network", start, stop)
    chunk = Chunk(network.truth, network.flux, network.ivar)
    if native:
        native_set = spectra_file.read("native", start, stop)
        chunk.native_flux, chunk.native_ivar = native_set.flux, native_set.ivar
    return chunk


def take_rows(chunk: Chunk, rows: np.ndarray) -> Chunk:
    native = chunk.native_flux is not None
    return Chunk(
        chunk.truth.iloc[rows].reset_index(drop=True),
        chunk.flux[rows],
        chunk.ivar[rows],
        chunk.native_flux[rows] if native else None,
        chunk.native_ivar[rows] if native else None,
    )


def row_slices(n_rows: int, chunk_rows: int) -> Iterable[tuple[int, int, int]]:
    """(chunk index, start, stop) of each chunk of `chunk_rows` rows."""
    for index, start in enumerate(range(0, n_rows, chunk_rows)):
        yield index, start, min(start + chunk_rows, n_rows)


def check_same_grid(reference: Layout, other: Layout, path: str | Path) -> None:
    if reference.wavelength.shape != other.wavelength.shape or not np.allclose(
        reference.wavelength, other.wavelength
    ):
        raise InputFileError("network grid differs from the other members'", path)


def public_truth(truth: pd.DataFrame) -> pd.DataFrame:
    return truth[[c for c in truth.columns if not c.startswith("_")]].reset_index(drop=True)


def copy_truth(truth: pd.DataFrame, label: str, source: str) -> pd.DataFrame:
    """Truth of augmented copies: fresh TARGETIDs derived from (label, source TARGETID),
    PARENT_TARGETID kept (the observed object, through any chain), SOURCE = `source`."""
    truth = public_truth(truth).copy()
    parent = truth["PARENT_TARGETID"] if "PARENT_TARGETID" in truth else truth["TARGETID"]
    parent = np.where(
        parent.to_numpy(np.int64) >= 0, parent.to_numpy(np.int64), truth["TARGETID"].to_numpy(np.int64)
    )
    truth["PARENT_TARGETID"] = parent
    truth["TARGETID"] = ops_np.derived_targetids(job_seed(0, "targetid", label), truth["TARGETID"].to_numpy())
    truth["SOURCE"] = source
    return truth
