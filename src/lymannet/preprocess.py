"""From spectra to network input: inverse-variance rebinning and QuasarNET standardisation.

Rebinning follows QuasarNET (Busca & Balland 2018; desihub/QuasarNP): every native pixel goes to
the network pixel floor(fractional index of its wavelength); a network pixel's flux is
sum(flux*ivar)/sum(ivar) over the native pixels that fall in it, its ivar is sum(ivar). Pixels of
several cameras at the same wavelength simply add, so rebinning the merged native spectrum gives the
same sums as rebinning each camera and adding.
"""

from __future__ import annotations

import numpy as np

from .grid import Grid

# Spectra per forward pass at inference. 128 is the fastest on a 2-core CPU (a batch's activations
# stay in cache: initial 1,886 spectra/s at 128 against 1,189 at 512; the 6-layer QuasarNET 2,533
# against 1,848); a GPU wants more (predict.batch_size, --batch-size).
INFERENCE_BATCH = 128


def rebin(
    wavelength: np.ndarray, flux: np.ndarray, ivar: np.ndarray, grid: Grid
) -> tuple[np.ndarray, np.ndarray]:
    """Inverse-variance weighted rebinning of (N, P) spectra onto `grid`.

    `wavelength` is (P,) shared by all rows, or (N, P) when each row has its own (shifted)
    wavelengths. Returns float32 (flux, ivar) of shape (N, grid.n_pixels); flux is 0 where ivar is 0.
    """
    flux = np.asarray(flux, dtype=np.float64)
    ivar = np.asarray(ivar, dtype=np.float64)
    if flux.shape != ivar.shape or flux.ndim != 2:
        raise ValueError(f"flux {flux.shape} and ivar {ivar.shape} must be the same (N, P) shape")
    if wavelength.ndim == 1:
        weighted, weight = _rebin_shared(wavelength, flux * ivar, ivar, grid)
    else:
        weighted, weight = _rebin_per_row(wavelength, flux * ivar, ivar, grid)
    rebinned_flux = np.divide(weighted, weight, out=np.zeros_like(weighted), where=weight > 0)
    return rebinned_flux.astype(np.float32), weight.astype(np.float32)


def _rebin_shared(wavelength: np.ndarray, weighted: np.ndarray, weight: np.ndarray, grid: Grid):
    if np.any(np.diff(wavelength) <= 0):
        raise ValueError("wavelength must increase strictly")
    pixel = grid.pixel_index(wavelength)
    inside = (pixel >= 0) & (pixel < grid.n_pixels)
    n_rows = weighted.shape[0]
    out_weighted = np.zeros((n_rows, grid.n_pixels))
    out_weight = np.zeros((n_rows, grid.n_pixels))
    if not inside.any():
        return out_weighted, out_weight
    columns = np.flatnonzero(inside)
    pixel = pixel[columns]
    # Sorted wavelengths: each network pixel is one contiguous run of native pixels.
    starts = np.flatnonzero(np.r_[True, pixel[1:] != pixel[:-1]])
    targets = pixel[starts]
    # Sorted wavelengths make `columns` one contiguous run: slice it instead of gathering a copy.
    run = slice(columns[0], columns[-1] + 1)
    out_weighted[:, targets] = np.add.reduceat(weighted[:, run], starts, axis=1)
    out_weight[:, targets] = np.add.reduceat(weight[:, run], starts, axis=1)
    return out_weighted, out_weight


def _rebin_per_row(wavelength: np.ndarray, weighted: np.ndarray, weight: np.ndarray, grid: Grid):
    n_rows = weighted.shape[0]
    pixel = grid.pixel_index(wavelength)
    inside = (pixel >= 0) & (pixel < grid.n_pixels)
    flat = (np.arange(n_rows)[:, None] * grid.n_pixels + pixel)[inside]
    size = n_rows * grid.n_pixels
    out_weighted = np.bincount(flat, weights=weighted[inside], minlength=size).reshape(n_rows, grid.n_pixels)
    out_weight = np.bincount(flat, weights=weight[inside], minlength=size).reshape(n_rows, grid.n_pixels)
    return out_weighted, out_weight


def standardise(flux: np.ndarray, ivar: np.ndarray) -> np.ndarray:
    """QuasarNET's per-spectrum standardisation: subtract the ivar-weighted mean, divide by the
    ivar-weighted rms. Every pixel is transformed (zero-ivar pixels hold flux 0 before it);
    spectra with zero weight or zero rms are left as they are."""
    flux = np.asarray(flux, dtype=np.float64)
    ivar = np.asarray(ivar, dtype=np.float64)
    total_weight = ivar.sum(axis=1)
    has_weight = total_weight > 0
    safe_weight = np.where(has_weight, total_weight, 1.0)
    mean = (flux * ivar).sum(axis=1) / safe_weight
    rms = np.sqrt((ivar * (flux - mean[:, None]) ** 2).sum(axis=1) / safe_weight)
    # A constant spectrum has rms at round-off level, not exactly 0: leave it alone.
    ok = has_weight & (rms > 1e-6 * np.maximum(np.abs(mean), 1e-30))
    out = flux.copy()
    out[ok] = (flux[ok] - mean[ok, None]) / rms[ok, None]
    return out.astype(np.float32)


def network_input(flux: np.ndarray, ivar: np.ndarray, snr_channel: bool = False) -> np.ndarray:
    """(N, C, P) float32 input of the networks: standardised flux, plus flux*sqrt(ivar) as a
    second channel for the SNR variant (thesis section 4.3, fig. 4.5)."""
    channels = [standardise(flux, ivar)]
    if snr_channel:
        snr = np.asarray(flux, np.float64) * np.sqrt(np.clip(np.asarray(ivar, np.float64), 0, None))
        channels.append(snr.astype(np.float32))
    return np.stack(channels, axis=1)
