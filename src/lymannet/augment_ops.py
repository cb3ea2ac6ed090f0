"""Array-level operations behind :mod:`lymannet.augment` (numpy, vectorised over a chunk of rows).

- :func:`overlap_resample`: flux- and variance-aware resampling of spectra whose pixels were
  stretched, by pixel-overlap weights (inverse-variance weighted, information-conserving).
  A redshift shift scales wavelengths by ratio = (1+z1)/(1+z0) (thesis eq. 3.1), so a spectrum's
  pixels no longer sit on any grid; re-gridding by nearest bin would leave empty bins whenever
  ratio > 1 (the shifted pixels are sparser than the target bins), overlap weights do not.
- :func:`shift_native`: eq. 3.1 on the native layer, then rebinning onto the network grid (the
  QuasarNET rule of :func:`lymannet.preprocess.rebin`, as at ingestion) and onto the native grid:
  the thesis's shift (`shift: {thesis: true}`); the default shift is
  :func:`lymannet.reshift.shift_galaxy`, which adds z1's IGM, the destination's noise and no gaps.
- :func:`fill_windows`: the thesis's "fake noise" (section 3.3): a window replaced by noise.
- :func:`extra_noise_sigma` / :func:`add_noise`: extra Gaussian noise, ivar updated consistently.

Pixels with no data keep ivar 0 and flux 0 everywhere: nothing here invents flux.
"""

from __future__ import annotations

import warnings

import numpy as np

from .grid import Grid
from .preprocess import rebin

# Overlaps below this (in pixels) are round-off of edges that coincide, not data.
OVERLAP_EPSILON = 1e-9


def parse_ratio(value: object) -> float:
    """'5/4', '4.3/4', 1.25 or '1.25' -> a positive finite float; ValueError otherwise."""
    if isinstance(value, bool):
        raise ValueError(f"ratio must be a number or 'a/b', not {value!r}")
    if isinstance(value, (int, float)):
        ratio = float(value)
    elif isinstance(value, str):
        numerator, _, denominator = value.partition("/")
        ratio = float(numerator) / float(denominator) if denominator else float(numerator)
    else:
        raise ValueError(f"ratio must be a number or 'a/b', not {value!r}")
    if not np.isfinite(ratio) or ratio <= 0:
        raise ValueError(f"ratio must be positive and finite, got {value!r}")
    return ratio


def overlap_resample(
    flux: np.ndarray, ivar: np.ndarray, u_lo: np.ndarray, u_hi: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Resample (N, S) spectra onto target bins given in the source's pixel coordinate.

    Source pixel s covers [s, s+1); target bin t covers [u_lo[:, t], u_hi[:, t]) (N, T). With
    a_s = overlap(s, t), the part of source pixel s inside the target bin:
    flux_t = sum(a ivar flux) / sum(a ivar) and ivar_t = sum(a ivar). Each source pixel's
    inverse variance is shared out among the bins it covers, so the total information is
    conserved (no periodic ivar pattern when pixels are stretched) and a bin covering whole
    pixels gets their ivar sum, exactly like :func:`lymannet.preprocess.rebin`; identity bins
    are returned unchanged. Bins no source pixel with ivar > 0 overlaps get flux 0, ivar 0.
    """
    n_source = flux.shape[1]
    first = np.floor(u_lo).astype(np.int64)
    n_overlaps = int(np.ceil((u_hi - u_lo).max(initial=0.0))) + 1
    sum_w = np.zeros(u_lo.shape, np.float64)
    sum_wf = np.zeros(u_lo.shape, np.float64)
    for k in range(n_overlaps):
        source = first + k
        overlap = np.minimum(u_hi, source + 1) - np.maximum(u_lo, source)
        valid = (overlap > OVERLAP_EPSILON) & (source >= 0) & (source < n_source)
        clipped = np.clip(source, 0, n_source - 1)
        weight = np.where(valid, overlap, 0.0) * np.take_along_axis(ivar, clipped, axis=1)
        sum_w += weight
        sum_wf += weight * np.take_along_axis(flux, clipped, axis=1)
    out_flux = np.divide(sum_wf, sum_w, out=np.zeros_like(sum_w), where=sum_w > 0)
    return out_flux.astype(np.float32), sum_w.astype(np.float32)


def _uniform_step(wavelength: np.ndarray) -> float:
    step = np.diff(wavelength)
    if len(step) == 0 or not np.allclose(step, step[0], rtol=1e-6, atol=1e-9):
        raise ValueError("the native wavelength grid must have a constant step")
    return float(step[0])


def shift_native(
    native_wavelength: np.ndarray,
    native_flux: np.ndarray,
    native_ivar: np.ndarray,
    ratio: np.ndarray,
    grid: Grid,
    block_rows: int = 128,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Move each row's spectrum by wavelength * ratio[row] (thesis eq. 3.1).

    Returns (network flux, network ivar, native flux, native ivar): the shifted native pixels
    rebinned onto `grid` (QuasarNET rule, as ingestion does) and resampled onto the native grid
    itself (overlap weights), both from the unshifted native pixels. Flux densities are kept as
    they are (the thesis shifts wavelengths only). Wavelengths that no shifted pixel reaches
    (the blue end when ratio > 1, the red end when ratio < 1) get ivar 0.
    """
    ratio = np.asarray(ratio, np.float64).reshape(-1, 1)
    step = _uniform_step(native_wavelength)
    first_edge = native_wavelength[0] - step / 2
    target_edges = first_edge + step * np.arange(len(native_wavelength) + 1)
    outputs = []
    # Blocks of rows bound the float64 temporaries (~15 arrays of rows x 7781 pixels).
    for start in range(0, len(ratio), block_rows):
        rows = slice(start, start + block_rows)
        shifted = native_wavelength[None, :] * ratio[rows]
        net_flux, net_ivar = rebin(shifted, native_flux[rows], native_ivar[rows], grid)
        # Target edges in the unshifted pixel coordinate: source pixel s covers [s, s+1).
        u_edges = (target_edges[None, :] / ratio[rows] - first_edge) / step
        nat_flux, nat_ivar = overlap_resample(
            native_flux[rows], native_ivar[rows], u_edges[:, :-1], u_edges[:, 1:]
        )
        outputs.append((net_flux, net_ivar, nat_flux, nat_ivar))
    if not outputs:
        empty = np.zeros((0, grid.n_pixels), np.float32), np.zeros((0, len(native_wavelength)), np.float32)
        return empty[0], empty[0], empty[1], empty[1]
    return tuple(np.concatenate(parts) for parts in zip(*outputs))  # type: ignore[return-value]


def _window_mean(flux: np.ndarray, ivar: np.ndarray, inside: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    weight = np.where(inside, ivar, 0.0)
    total = weight.sum(axis=1)
    mean = np.divide((weight * flux).sum(axis=1), total, out=np.zeros_like(total), where=total > 0)
    return mean, total > 0


def local_continuum(
    wavelength: np.ndarray, flux: np.ndarray, ivar: np.ndarray, centre: np.ndarray, width: np.ndarray
) -> np.ndarray:
    """(N, P) continuum under windows [centre - width/2, centre + width/2): the line through the
    ivar-weighted mean fluxes of the two side bands of the same width on either side (one band if
    the other has no data, 0 if neither has)."""
    centre, width = centre[:, None], width[:, None]
    offset = wavelength[None, :] - centre
    blue, blue_ok = _window_mean(flux, ivar, (offset >= -1.5 * width) & (offset < -0.5 * width))
    red, red_ok = _window_mean(flux, ivar, (offset >= 0.5 * width) & (offset < 1.5 * width))
    blue = np.where(blue_ok, blue, red)
    red = np.where(red_ok, red, blue)
    slope = (red - blue)[:, None] / (2 * width)
    return (0.5 * (blue + red))[:, None] + slope * offset


def fill_windows(
    wavelength: np.ndarray,
    flux: np.ndarray,
    ivar: np.ndarray,
    centre: np.ndarray,
    width: float | np.ndarray,
    rng: np.random.Generator,
) -> np.ndarray:
    """Replace the pixels whose wavelength lies in [centre - width/2, centre + width/2) (one window
    per row) by continuum + N(0, 1/sqrt(ivar)), the thesis's "fake noise".

    Why around the local continuum rather than around 0: noise around 0 would carve a step (an
    absorption-like trough, or a fake Lyman break) wherever the continuum is not 0, a feature the
    network could learn; continuum + noise removes lines and leaves nothing else. The pixel's ivar
    still describes the noise drawn, so IVAR is unchanged; pixels with ivar 0 stay flux 0.
    Returns the new flux (float32); `flux` is not modified.
    """
    n_rows = flux.shape[0]
    centre = np.broadcast_to(np.asarray(centre, np.float64), (n_rows,))
    width = np.broadcast_to(np.asarray(width, np.float64), (n_rows,))
    out = np.array(flux, dtype=np.float32, copy=True)
    if n_rows == 0:
        return out
    # Work on the columns any window (side bands included) touches.
    lo = np.searchsorted(wavelength, (centre - 1.5 * width).min(), side="left")
    hi = np.searchsorted(wavelength, (centre + 1.5 * width).max(), side="right")
    if hi <= lo:
        return out
    wave = wavelength[lo:hi]
    part_flux = out[:, lo:hi].astype(np.float64)
    part_ivar = np.asarray(ivar[:, lo:hi], np.float64)
    offset = wave[None, :] - centre[:, None]
    inside = (offset >= -0.5 * width[:, None]) & (offset < 0.5 * width[:, None])
    continuum = local_continuum(wave, part_flux, part_ivar, centre, width)
    has_data = inside & (part_ivar > 0)
    sigma = 1.0 / np.sqrt(part_ivar[has_data])
    part_flux[has_data] = continuum[has_data] + sigma * rng.standard_normal(int(has_data.sum()))
    part_flux[inside & ~(part_ivar > 0)] = 0.0
    out[:, lo:hi] = part_flux
    return out


def extra_noise_sigma(flux: np.ndarray, ivar: np.ndarray, fraction: float) -> np.ndarray:
    """sigma_extra (N,) = fraction x median |flux| over the row's pixels with ivar > 0 (0 for a row
    with no data): "0.1 noise" adds noise at 10% of the spectrum's typical flux amplitude."""
    magnitude = np.where(ivar > 0, np.abs(flux), np.nan)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN rows: no data, no noise
        typical = np.nanmedian(magnitude, axis=1)
    return fraction * np.nan_to_num(typical, nan=0.0)


def add_noise(
    flux: np.ndarray, ivar: np.ndarray, sigma: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """flux + N(0, sigma) on pixels with data; 1/ivar_new = 1/ivar + sigma^2. `sigma` is (N,) or
    (N, P). Pixels with ivar 0 stay flux 0, ivar 0."""
    sigma = np.asarray(sigma, np.float64)
    sigma = np.broadcast_to(sigma[:, None] if sigma.ndim == 1 else sigma, flux.shape)
    has_data = ivar > 0
    ivar64 = np.asarray(ivar, np.float64)
    new_flux = np.asarray(flux, np.float64) + np.where(has_data, sigma * rng.standard_normal(flux.shape), 0.0)
    new_ivar = np.where(has_data, ivar64 / (1.0 + ivar64 * sigma**2), 0.0)
    return new_flux.astype(np.float32), new_ivar.astype(np.float32)


def native_noise_scale(native_wavelength: np.ndarray, grid: Grid) -> np.ndarray:
    """(S,) factor turning a per-network-pixel sigma into a per-native-pixel one, sqrt(network bin
    width / native pixel width), so that rebinning the noisier native layer gives (about) the
    network layer's extra noise."""
    native_step = _uniform_step(native_wavelength)
    pixel = np.clip(grid.pixel_index(native_wavelength), 0, grid.n_pixels - 1)
    return np.sqrt(np.diff(grid.edges)[pixel] / native_step)


def splitmix64(values: np.ndarray) -> np.ndarray:
    """The splitmix64 finaliser: a fast bijective mixer of uint64 values."""
    z = values.astype(np.uint64) + np.uint64(0x9E3779B97F4A7C15)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def derived_targetids(label_seed: int, targetid: np.ndarray) -> np.ndarray:
    """Fresh positive int64 TARGETIDs for copies, a deterministic function of (label, TARGETID).
    Distinct labels (variant slugs) give unrelated IDs; collisions are ~2^-63 per pair."""
    mixed = splitmix64(np.asarray(targetid).astype(np.int64).view(np.uint64) ^ np.uint64(label_seed))
    return (mixed >> np.uint64(1)).astype(np.int64)
