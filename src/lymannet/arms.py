"""Merging a coadd's spectrograph arms onto the native grid (inverse-variance sums) and rebinning
native spectra onto a network grid: what ingestion, classification and the template fit share.

Merging: the three arms sit on one native grid (3600-9824 A, 0.8 A, `lymannet.desi`) and share
pixel positions in the dichroic overlaps, so merging is an inverse-variance weighted sum per native
pixel: flux = sum(f*iv)/sum(iv), ivar = sum(iv).

Rebinning: QuasarNET's rule (`lymannet.preprocess.rebin`). The ingest path rebins the weighted sums
it already holds (`NativeRebinner`) instead of dividing and re-multiplying: the same sums, in
float32 on cache-sized blocks, ~10-20x faster than `preprocess.rebin` on the native grid; the tests
check it against `preprocess.rebin` and against QuasarNP's files.
"""

from __future__ import annotations

import numpy as np

from .coadd import N_NATIVE, CoaddSpectra, native_offset
from .desi import PIXEL_STEP, native_wavelength
from .errors import InputFileError
from .grid import Grid

# A network grid must overlap the data over at least this fraction of its length.
MIN_GRID_COVERAGE = 0.5


def merge_arm_sums(coadd: CoaddSpectra) -> tuple[np.ndarray, np.ndarray]:
    """Native-grid (N, 7781) float32 sums over arms: (sum(flux*ivar), sum(ivar)).

    Arms share pixel positions in the overlaps, so each native pixel is a plain sum. Pixels no arm
    covers hold 0. Consumes the arms' flux arrays (overwritten with flux*ivar) to avoid a copy.
    """
    n = len(coadd)
    weighted = np.empty((n, N_NATIVE), np.float32)
    weight = np.empty((n, N_NATIVE), np.float32)
    filled = 0  # native pixels [0, filled) hold a value already
    for arm in sorted(coadd.flux, key=lambda a: coadd.wavelength[a][0]):
        offset = native_offset(coadd.wavelength[arm], arm, coadd.path)
        arm_weighted = np.multiply(coadd.flux[arm], coadd.ivar[arm], out=coadd.flux[arm])
        arm_weight = coadd.ivar[arm]
        n_pixels = arm_weight.shape[1]
        if offset > filled:  # a gap between arms
            weighted[:, filled:offset] = 0
            weight[:, filled:offset] = 0
        overlap = max(0, min(filled - offset, n_pixels))
        weighted[:, offset : offset + overlap] += arm_weighted[:, :overlap]
        weight[:, offset : offset + overlap] += arm_weight[:, :overlap]
        weighted[:, offset + overlap : offset + n_pixels] = arm_weighted[:, overlap:]
        weight[:, offset + overlap : offset + n_pixels] = arm_weight[:, overlap:]
        filled = max(filled, offset + n_pixels)
    weighted[:, filled:] = 0
    weight[:, filled:] = 0
    return weighted, weight


def sums_to_flux(weighted: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """flux = weighted/weight, 0 where weight is 0.

    Our sums have weighted == 0 wherever weight == 0, so dividing by max(weight, tiny) gives 0
    there: 2-3x faster than a masked np.divide(where=...)."""
    floor = np.finfo(weight.dtype).tiny if weight.dtype.kind == "f" else 1e-300
    out = np.maximum(weight, floor)
    return np.divide(weighted, out, out=out if out.dtype == np.result_type(weighted, out) else None)


def merge_arms(coadd: CoaddSpectra) -> tuple[np.ndarray, np.ndarray]:
    """Merged native-grid (flux, ivar), float32 (N, 7781): flux = sum(f*iv)/sum(iv), ivar = sum(iv).

    Consumes `coadd`'s flux arrays (see merge_arm_sums)."""
    weighted, weight = merge_arm_sums(coadd)
    return sums_to_flux(weighted, weight), weight


class NativeRebinner:
    """QuasarNET rebinning of native-grid inverse-variance sums onto a network grid.

    Equivalent to ``preprocess.rebin(native_wavelength(), flux, ivar, grid)`` with
    flux*ivar = `weighted`: each native pixel goes to bin floor(fractional index); bins sum. The
    native pixels inside the grid are one contiguous run, so sums are np.add.reduceat over a view
    (no fancy-indexed copy), in float32.
    """

    def __init__(self, grid: Grid, wavelength: np.ndarray | None = None):
        self.grid = grid
        wavelength = native_wavelength() if wavelength is None else np.asarray(wavelength, np.float64)
        pixel = grid.pixel_index(wavelength)
        inside = np.flatnonzero((pixel >= 0) & (pixel < grid.n_pixels))
        self.columns = slice(int(inside[0]), int(inside[-1]) + 1) if len(inside) else slice(0, 0)
        pixel = pixel[self.columns]
        self.starts = np.flatnonzero(np.r_[True, pixel[1:] != pixel[:-1]]) if len(pixel) else np.zeros(0, int)
        self.targets = pixel[self.starts]
        self.dense = len(self.targets) == grid.n_pixels  # every network pixel receives native pixels

    def rebin_sums(self, weighted: np.ndarray, weight: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Network-grid float32 (flux, ivar) from native (sum(f*iv), sum(iv))."""
        n = weighted.shape[0]
        if len(self.starts) == 0 or n == 0:
            zeros = np.zeros((n, self.grid.n_pixels), np.float32)
            return zeros, zeros.copy()
        out_weighted = np.add.reduceat(weighted[:, self.columns], self.starts, axis=1)
        out_weight = np.add.reduceat(weight[:, self.columns], self.starts, axis=1)
        if not self.dense:  # bins narrower than 0.8 A, or grid edges beyond the data, stay 0
            full_weighted = np.zeros((n, self.grid.n_pixels), np.float32)
            full_weight = np.zeros((n, self.grid.n_pixels), np.float32)
            full_weighted[:, self.targets] = out_weighted
            full_weight[:, self.targets] = out_weight
            out_weighted, out_weight = full_weighted, full_weight
        return sums_to_flux(out_weighted, out_weight), out_weight

    def rebin(self, flux: np.ndarray, ivar: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Network-grid float32 (flux, ivar) from native-grid (flux, ivar)."""
        ivar = np.asarray(ivar, np.float32)
        return self.rebin_sums(np.asarray(flux, np.float32) * ivar, ivar)


def check_grid_coverage(grid: Grid, data_range: tuple[float, float], path: str) -> float:
    """Fraction of the grid (in its own coordinate) that overlaps the data; error below one half."""
    lo, hi = np.clip(grid.fractional_index(np.asarray(data_range, np.float64)), 0, grid.n_pixels)
    fraction = float(hi - lo) / grid.n_pixels
    if fraction < MIN_GRID_COVERAGE:
        raise InputFileError(
            f"the network grid ({grid.kind}, {grid.wave_min:.1f}-{grid.wave_max:.1f} A) does not cover the "
            f"data ({data_range[0]:.1f}-{data_range[1]:.1f} A): only {100 * fraction:.0f}% of the grid "
            f"overlaps, at least {100 * MIN_GRID_COVERAGE:.0f}% needed",
            path,
        )
    return fraction
