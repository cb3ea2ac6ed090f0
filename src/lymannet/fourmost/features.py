"""Network inputs and labels: redshift input, DLA channels, segments and windows.

DLA preprocessing follows the slides: flux normalised to the quasar's continuum (median in the
rest 1270-1350 A window, the "relative flux"), a rolling median against noise, segments of the
Ly-beta..Ly-alpha region balanced between with and without a DLA. Beyond the slides, a second
channel carries the normalised noise (1/sqrt(ivar)/continuum) so that a noisy pixel and a
saturated trough can be told apart. Positions are in pixels of the DLA grid, measured from the
centre of pixel 0.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.ndimage import median_filter

from ..lines import LYA, LYB
from ..preprocess import standardise
from .ingest import Ingested
from .io import SNR_WINDOW

PAD_FLUX, PAD_SIGMA, MAX_SIGMA = 0.0, 4.0, 4.0
# The location network's targets are O(1): centre offset in quarter windows, log N_HI about 20.8
# (the middle of the DLA range 20.3-22.5, weighted to the steep CDDF's weak end).
LOG_NHI_CENTRE = 20.8


def quarter_window(length: int) -> float:
    """The location network's unit of centre offset, and the reach of a window's central half."""
    return length / 4.0


def redshift_input(flux: np.ndarray, ivar: np.ndarray) -> np.ndarray:
    """(N, 1, P) float32: QuasarNET's per-spectrum standardisation of the log-grid flux."""
    return standardise(flux, ivar)[:, None, :]


def dla_channels(
    wave: np.ndarray, flux: np.ndarray, ivar: np.ndarray, z_qso: np.ndarray, median_window: int
) -> np.ndarray:
    """(N, 2, P) float32: rolling-median continuum-normalised flux and normalised noise."""
    rest = wave[None, :] / (1 + z_qso[:, None])
    inside = (rest > SNR_WINDOW[0]) & (rest < SNR_WINDOW[1]) & (ivar > 0)
    with np.errstate(all="ignore"):
        continuum = np.nanmedian(np.where(inside, flux, np.nan), axis=1)
    continuum = np.where(np.isfinite(continuum) & (continuum > 0), continuum, 1.0)[:, None]
    norm = flux / continuum
    if median_window > 1:
        norm = median_filter(norm, size=(1, median_window), mode="nearest")
    with np.errstate(divide="ignore"):
        sigma = np.where(ivar > 0, 1.0 / np.sqrt(np.maximum(ivar, 1e-30)) / continuum, MAX_SIGMA)
    out = np.empty((len(flux), 2, flux.shape[1]), np.float32)
    out[:, 0] = np.clip(norm, -2.0, 4.0)
    out[:, 1] = np.clip(sigma, 0.0, MAX_SIGMA)
    return out


def pixel_of(wave_grid: np.ndarray, wavelength: np.ndarray) -> np.ndarray:
    """Fractional pixel position of observed wavelengths on a constant-step grid (pixel centres)."""
    step = wave_grid[1] - wave_grid[0]
    return (np.asarray(wavelength, float) - wave_grid[0]) / step


def wavelength_of(wave_grid: np.ndarray, pixel: np.ndarray) -> np.ndarray:
    return wave_grid[0] + (wave_grid[1] - wave_grid[0]) * np.asarray(pixel, float)


def forest_pixels(wave_grid: np.ndarray, z_qso: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pixel range [Ly-beta, Ly-alpha emission] of each sightline (clipped to the grid)."""
    lo = np.clip(pixel_of(wave_grid, LYB * (1 + z_qso)), 0, len(wave_grid) - 1)
    hi = np.clip(pixel_of(wave_grid, LYA * (1 + z_qso)), 0, len(wave_grid) - 1)
    return lo, hi


def cut_windows(channels: np.ndarray, rows: np.ndarray, starts: np.ndarray, length: int) -> np.ndarray:
    """(n, 2, length) windows channels[rows, :, start:start+length], padded outside the grid."""
    index = np.asarray(starts, np.int64)[:, None] + np.arange(length)[None, :]
    inside = (index >= 0) & (index < channels.shape[2])
    safe = np.clip(index, 0, channels.shape[2] - 1)
    out = channels[np.asarray(rows)[:, None], :, safe].transpose(0, 2, 1).copy()  # (n, 2, L)
    out[:, 0][~inside] = PAD_FLUX
    out[:, 1][~inside] = PAD_SIGMA
    return out


def dla_pixels_by_row(data: Ingested) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """row -> (DLA centre pixels, log N_HI) on the DLA grid."""
    out: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    centres = pixel_of(data.dla_wave, LYA * (1 + data.dlas["Z_ABS"].to_numpy()))
    for row, centre, log_n in zip(data.dlas["ROW"].to_numpy(), centres, data.dlas["LOG_NHI"].to_numpy()):
        pix, nhi = out.get(int(row), (np.zeros(0), np.zeros(0)))
        out[int(row)] = (np.append(pix, centre), np.append(nhi, log_n))
    return out


# --- presence segments ---------------------------------------------------------------------------


@dataclass
class Segments:
    rows: np.ndarray  # sightline row of each segment
    starts: np.ndarray  # first pixel
    label: np.ndarray  # 1: a DLA centre inside (away from the edges), 0: none
    ambiguous: np.ndarray  # a DLA centre within `edge` pixels of a segment boundary
    log_n: np.ndarray  # largest log N_HI of a DLA centred inside (NaN if none)
    label_any: np.ndarray | None = None  # 1: a DLA centre anywhere inside [start, start + length)


def presence_segments(data: Ingested, rows: np.ndarray, length: int, stride: int, edge: int) -> Segments:
    """Segments tiling each sightline's Ly-beta..Ly-alpha region."""
    lo, hi = forest_pixels(data.dla_wave, data.sightlines["Z_QSO"].to_numpy())
    by_row = dla_pixels_by_row(data)
    out: dict[str, list] = {k: [] for k in ("rows", "starts", "label", "ambiguous", "log_n", "label_any")}
    for row in rows:
        first, last = int(lo[row]), int(hi[row]) - length // 2
        starts = np.arange(first - length // 4, max(last, first - length // 4) + 1, stride)
        centres, log_n = by_row.get(int(row), (np.zeros(0), np.zeros(0)))
        rel = centres[None, :] - starts[:, None]  # (S, D)
        inside = (rel >= edge) & (rel < length - edge)
        near_edge = (np.abs(rel) < edge) | (np.abs(rel - length) < edge)
        out["rows"].append(np.full(starts.size, row))
        out["starts"].append(starts)
        out["label"].append(inside.any(axis=1).astype(np.float32))
        out["ambiguous"].append(near_edge.any(axis=1))
        anywhere = (rel >= 0) & (rel < length)
        out["label_any"].append(anywhere.any(axis=1).astype(np.float32))
        out["log_n"].append(np.where(anywhere, log_n[None, :], -np.inf).max(axis=1, initial=-np.inf))
    cat = {k: np.concatenate(v) if v else np.zeros(0) for k, v in out.items()}
    cat["log_n"] = np.where(np.isfinite(cat["log_n"]), cat["log_n"], np.nan)
    return Segments(
        cat["rows"].astype(np.int64),
        cat["starts"].astype(np.int64),
        cat["label"].astype(np.float32),
        cat["ambiguous"].astype(bool),
        cat["log_n"],
        cat["label_any"].astype(np.float32),
    )


def balance(segments: Segments, rng: np.random.Generator, negatives_per_positive: float = 1.0) -> np.ndarray:
    """Indices of all unambiguous positives and `negatives_per_positive` times as many random
    unambiguous negatives (as many by default; all of them when there are fewer)."""
    clean = ~segments.ambiguous
    positives = np.flatnonzero(clean & (segments.label == 1))
    negatives = np.flatnonzero(clean & (segments.label == 0))
    wanted = int(round(negatives_per_positive * max(len(positives), 1)))
    keep = rng.choice(negatives, size=min(len(negatives), wanted), replace=False)
    return np.sort(np.concatenate([positives, keep]))


# --- localisation windows ------------------------------------------------------------------------


@dataclass
class Windows:
    rows: np.ndarray
    centres: np.ndarray  # window centre pixel (float)
    present: np.ndarray  # 1 if a DLA centre lies within a quarter window of the centre
    offset: np.ndarray  # (DLA centre - window centre) / quarter_window(length), 0 if none
    log_n: np.ndarray  # log N_HI of that DLA, 0 if none


def label_windows(
    rows: np.ndarray, centres: np.ndarray, length: int, by_row: dict[int, tuple[np.ndarray, np.ndarray]]
) -> Windows:
    """Encode the truth per window: the nearest DLA centre within a quarter window of the centre."""
    quarter = quarter_window(length)
    present = np.zeros(len(rows), np.float32)
    offset = np.zeros(len(rows), np.float32)
    log_n = np.zeros(len(rows), np.float32)
    for k, (row, centre) in enumerate(zip(rows, centres)):
        pix, nhi = by_row.get(int(row), (np.zeros(0), np.zeros(0)))
        if pix.size:
            nearest = int(np.argmin(np.abs(pix - centre)))
            if abs(pix[nearest] - centre) < quarter:
                present[k], offset[k], log_n[k] = 1.0, (pix[nearest] - centre) / quarter, nhi[nearest]
    return Windows(np.asarray(rows, np.int64), np.asarray(centres, float), present, offset, log_n)


def training_windows(
    data: Ingested,
    rows: np.ndarray,
    length: int,
    per_dla: int,
    per_sightline: int,
    rng: np.random.Generator,
    extra: tuple[np.ndarray, np.ndarray] | None = None,
) -> Windows:
    """Windows around each DLA (centre offset uniform within a quarter window) plus random
    windows along the forest (mostly negatives) and the `extra` (rows, centres) ones (e.g. on BAL
    troughs), labelled by :func:`label_windows`."""
    by_row = dla_pixels_by_row(data)
    lo, hi = forest_pixels(data.dla_wave, data.sightlines["Z_QSO"].to_numpy())
    win_rows, win_centres = [], []
    quarter = quarter_window(length)
    for row in rows:
        pix, _ = by_row.get(int(row), (np.zeros(0), np.zeros(0)))
        for centre in pix:
            win_rows += [row] * per_dla
            win_centres += list(centre - rng.uniform(-0.95, 0.95, per_dla) * quarter)
        win_rows += [row] * per_sightline
        win_centres += list(rng.uniform(lo[row], max(hi[row], lo[row] + 1), per_sightline))
    if extra is not None:
        win_rows += list(extra[0])
        win_centres += list(extra[1])
    centres = np.rint(np.array(win_centres))  # whole pixels: windows are cut on the pixel grid
    return label_windows(np.array(win_rows, np.int64), centres, length, by_row)


def absorber_window_centres(
    data: Ingested,
    rows: np.ndarray,
    log_n_range: tuple[float, float],
    per_absorber: int,
    length: int,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    """(rows, centre pixels) of `per_absorber` training windows around each HI absorber of
    `rows` with log N_HI in `log_n_range` (sub-DLAs: the confusers a DLA finder must learn to
    reject), offsets uniform within a quarter window as for the DLAs; empty without an ABSORBERS table."""
    if per_absorber <= 0 or data.absorbers is None or not len(data.absorbers):
        return np.zeros(0, np.int64), np.zeros(0)
    table = data.absorbers[
        data.absorbers["ROW"].isin(np.asarray(rows))
        & (data.absorbers["LOG_NHI"] >= log_n_range[0])
        & (data.absorbers["LOG_NHI"] < log_n_range[1])
    ]
    centres = pixel_of(data.dla_wave, LYA * (1 + table["Z_ABS"].to_numpy()))
    offsets = rng.uniform(-0.95, 0.95, (len(centres), per_absorber)) * quarter_window(length)
    return (
        np.repeat(table["ROW"].to_numpy().astype(np.int64), per_absorber),
        np.rint((centres[:, None] - offsets).ravel()),
    )


def sliding_windows(data: Ingested, rows: np.ndarray, length: int, stride: int) -> Windows:
    """Windows every `stride` pixels whose central half covers the sightline's forest."""
    by_row = dla_pixels_by_row(data)
    lo, hi = forest_pixels(data.dla_wave, data.sightlines["Z_QSO"].to_numpy())
    win_rows, win_centres = [], []
    for row in rows:
        centres = np.arange(np.floor(lo[row]), np.ceil(hi[row]) + stride, stride)
        win_rows.append(np.full(centres.size, row))
        win_centres.append(centres)
    rows_all = np.concatenate(win_rows) if win_rows else np.zeros(0, np.int64)
    centres_all = np.concatenate(win_centres) if win_centres else np.zeros(0)
    return label_windows(rows_all, centres_all, length, by_row)


def window_starts(centres: np.ndarray, length: int) -> np.ndarray:
    return np.asarray(centres, np.int64) - length // 2


@dataclass
class WindowVotes:
    """What each window says (the location network's output decoded): a DLA centre on the DLA grid."""

    probability: np.ndarray  # that a DLA centre lies in the window's central half
    position: np.ndarray  # absolute centre pixel
    log_n: np.ndarray  # log N_HI


def decode_windows(windows: Windows, output: np.ndarray, length: int) -> WindowVotes:
    """Invert :func:`label_windows`' encoding: (logit, offset, log N_HI - LOG_NHI_CENTRE) per window."""
    probability = 1.0 / (1.0 + np.exp(-output[:, 0]))
    position = windows.centres + output[:, 1] * quarter_window(length)
    return WindowVotes(probability, position, output[:, 2] + LOG_NHI_CENTRE)
