"""BAL quasars before the DLA search (issue 25): which sightlines are BAL quasars, where their
troughs fall on the DLA grid, and the two ways of keeping the troughs out of the DLA catalogue.

- **The flag** comes from the truth list's ``BAL`` column (0/1; ingested into SIGHTLINES.BAL), as
  desi-dlas takes it from the BAL catalogue of the redshift pipeline: lymannet has no BAL
  classifier of its own. A truth list without the column ingests as BAL = 0 everywhere, and then
  nothing is masked (:func:`bal_flags` warns).
- **The troughs** are the outflow velocities v_min..v_max of the BALS table (the simulator's truth;
  for real data a BAL catalogue's VMIN/VMAX), applied to each line of
  :data:`lymannet.physics.BAL_LINES` (CIV, SiIV, NV, Ly-alpha): observed wavelengths
  lambda (1 - v / c) (1 + z_QSO). A flagged sightline without velocities gets
  :data:`DEFAULT_TROUGH_KMS`. The NV and Ly-alpha troughs are the ones inside the DLA search
  window (Ly-beta..Ly-alpha emission).
- **Masking** (:func:`vote_mask`): the location network's window votes whose DLA position falls
  inside a trough (widened by a margin) are dropped before the votes merge into DLAs.
- **Taught as negatives** (:func:`trough_window_centres`): extra training windows centred inside
  the troughs of the training split's BAL quasars; whatever DLA label the truth gives them stays
  (a DLA inside a trough is still a positive), so the network sees troughs mostly as negatives.

Which of the two works better is measured on the validation split by the DLA calibration
(:mod:`.dla_calibration`).
"""

from __future__ import annotations

import logging

import numpy as np

from ..physics import BAL_LINES, C_KMS
from . import features as ft
from .ingest import Ingested

log = logging.getLogger("lymannet.fourmost")

DEFAULT_TROUGH_KMS = (0.0, 25000.0)  # a BAL flag without trough velocities: mask these outflow speeds
BAL_SOURCE = "truth list BAL column (no BAL classifier of lymannet's own)"


def bal_flags(data: Ingested) -> np.ndarray:
    """Per sightline: a BAL quasar (the truth list's BAL column)."""
    flags = data.sightlines["BAL"].to_numpy().astype(bool)
    if not flags.any():
        log.warning(
            "no sightline is flagged BAL (a truth list without a BAL column ingests as 0): "
            "BAL handling changes nothing"
        )
    return flags


def trough_pixel_ranges(
    data: Ingested, flagged_only: bool = True, margin_pixels: float = 0.0
) -> dict[int, list[tuple[float, float]]]:
    """row -> [(first, last pixel)] of each trough (CIV, SiIV, NV, Ly-alpha) on the DLA grid,
    widened by `margin_pixels` on both sides. ``flagged_only``: only the sightlines flagged BAL
    (a flagged one missing from the BALS table gets DEFAULT_TROUGH_KMS); else every BALS row (the
    truth, for attributing false positives)."""
    z_qso = data.sightlines["Z_QSO"].to_numpy()
    velocities: dict[int, tuple[float, float]] = {}
    if data.bals is not None and len(data.bals):
        for row, v_min, v_max in zip(
            data.bals["ROW"].to_numpy(), data.bals["V_MIN"].to_numpy(), data.bals["V_MAX"].to_numpy()
        ):
            velocities[int(row)] = (float(v_min), float(v_max))
    if flagged_only:
        flagged = np.flatnonzero(data.sightlines["BAL"].to_numpy().astype(bool))
        velocities = {int(row): velocities.get(int(row), DEFAULT_TROUGH_KMS) for row in flagged}
    out: dict[int, list[tuple[float, float]]] = {}
    for row, (v_min, v_max) in velocities.items():
        ranges = []
        for _, wavelength, _ in BAL_LINES:
            lo = ft.pixel_of(data.dla_wave, wavelength * (1 - v_max / C_KMS) * (1 + z_qso[row]))
            hi = ft.pixel_of(data.dla_wave, wavelength * (1 - v_min / C_KMS) * (1 + z_qso[row]))
            ranges.append((float(lo) - margin_pixels, float(hi) + margin_pixels))
        out[row] = ranges
    return out


def in_troughs(
    rows: np.ndarray, positions: np.ndarray, ranges: dict[int, list[tuple[float, float]]]
) -> np.ndarray:
    """Per (row, position): does the position lie inside one of its row's troughs?"""
    rows, positions = np.asarray(rows), np.asarray(positions, float)
    inside = np.zeros(len(rows), bool)
    for row in np.intersect1d(np.unique(rows), np.fromiter(ranges, int, len(ranges))):
        pick = rows == row
        for lo, hi in ranges[int(row)]:
            inside[pick] |= (positions[pick] >= lo) & (positions[pick] <= hi)
    return inside


def vote_mask(data: Ingested, margin_angstrom: float):
    """keep_vote for :func:`.localisation.dla_catalogue`: drop the votes inside a flagged sightline's troughs."""
    step = float(data.dla_wave[1] - data.dla_wave[0])
    ranges = trough_pixel_ranges(data, flagged_only=True, margin_pixels=margin_angstrom / step)

    def keep(windows: ft.Windows, votes: ft.WindowVotes) -> np.ndarray:
        return ~in_troughs(windows.rows, votes.position, ranges)

    return keep


def trough_window_centres(
    data: Ingested, rows: np.ndarray, per_sightline: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """(rows, centre pixels) of `per_sightline` training windows per flagged BAL quasar among
    `rows`, centred uniformly inside its troughs' parts that overlap the DLA search window."""
    if per_sightline <= 0:
        return np.zeros(0, np.int64), np.zeros(0)
    ranges = trough_pixel_ranges(data, flagged_only=True)
    lo_forest, hi_forest = ft.forest_pixels(data.dla_wave, data.sightlines["Z_QSO"].to_numpy())
    out_rows, out_centres = [], []
    for row in np.asarray(rows):
        pieces = [(max(lo, lo_forest[row]), min(hi, hi_forest[row])) for lo, hi in ranges.get(int(row), [])]
        pieces = [(lo, hi) for lo, hi in pieces if hi > lo]
        if not pieces:
            continue
        length = np.array([hi - lo for lo, hi in pieces])
        which = rng.choice(len(pieces), size=per_sightline, p=length / length.sum())
        starts = np.array([pieces[k][0] for k in which])
        out_rows += [int(row)] * per_sightline
        out_centres += list(starts + rng.uniform(0, 1, per_sightline) * length[which])
    return np.array(out_rows, np.int64), np.rint(np.array(out_centres, float))
