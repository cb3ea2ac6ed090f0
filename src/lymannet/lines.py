"""Spectral lines the networks look for and the simulator draws.

Rest-frame vacuum wavelengths in Angstrom. The QSO set is QuasarNET's (Busca & Balland 2018,
arXiv:1808.09955), in the order of its published heads; the LBG set is the 16 lines of the LBG
thesis (Taran 2023, appendix B): Ly-alpha emission, Ly-beta, the interstellar absorption lines of
Shapley et al. 2003 (ApJ 588, 65), HeII and CIII].
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np


@dataclass(frozen=True)
class Line:
    name: str  # short, upper-case, safe for FITS column names (C_<NAME>, Z_<NAME>)
    wavelength: float  # rest frame, Angstrom (vacuum)
    kind: str  # "emission" or "absorption" in the population it is used for


LYMAN_LIMIT = 911.75
LYA = 1215.67
LYB = 1025.72

QSO_LINES: tuple[Line, ...] = (
    Line("LYA", 1215.67, "emission"),
    Line("CIV", 1548.2049, "emission"),
    Line("CIII", 1908.734, "emission"),
    Line("MGII", 2796.3511, "emission"),
    Line("HBETA", 4862.68, "emission"),
    Line("HALPHA", 6562.8, "emission"),
)
# QuasarNET's extra head: broad absorption (BAL) troughs measured on CIV. A BAL head flags a
# trough, not the quasar's redshift: it never chooses Z nor counts towards the class decision
# (QuasarNP's process_preds, DESI's QN afterburner). Such heads are named <LINE>_BAL.
QSO_BAL_LINE = Line("CIV_BAL", 1548.2049, "absorption")
BAL_SUFFIX = "_BAL"

LBG_LINES: tuple[Line, ...] = (
    Line("LYA", 1215.67, "emission"),
    Line("LYB", 1025.72, "absorption"),
    Line("SIII1260", 1260.42, "absorption"),
    Line("OI1302", 1302.17, "absorption"),
    Line("SIII1304", 1304.37, "absorption"),
    Line("CII1334", 1334.53, "absorption"),
    Line("SIIV1393", 1393.76, "absorption"),
    Line("SIIV1402", 1402.77, "absorption"),
    Line("SIII1526", 1526.71, "absorption"),
    Line("CIV1548", 1548.20, "absorption"),
    Line("CIV1550", 1550.78, "absorption"),
    Line("FEII1608", 1608.45, "absorption"),
    Line("HEII1640", 1640.42, "emission"),
    Line("ALII1670", 1670.79, "absorption"),
    Line("CIII1908", 1908.73, "emission"),
    Line("NV1240", 1240.14, "emission"),
)

LINE_SETS: dict[str, tuple[Line, ...]] = {
    "lbg": LBG_LINES,
    "qso": QSO_LINES,
    "qso_bal": QSO_LINES + (QSO_BAL_LINE,),
}


def is_bal(line: Line) -> bool:
    """A BAL head (see QSO_BAL_LINE); by name, so that lines read back from model files qualify."""
    return line.name.endswith(BAL_SUFFIX)


def line_votes(lines: Sequence[Line]) -> np.ndarray:
    """(L,) bool: the lines that may choose Z and count towards the class decision (not BAL)."""
    return votes_by_name([line.name for line in lines])


def votes_by_name(line_names: Sequence[str]) -> np.ndarray:
    """line_votes for the line names of a catalogue's C_<LINE> columns."""
    return np.array([not name.endswith(BAL_SUFFIX) for name in line_names], dtype=bool)


def line_set(name: str) -> tuple[Line, ...]:
    """The named line set; a clear error listing the valid names otherwise."""
    try:
        return LINE_SETS[name]
    except KeyError:
        raise KeyError(f"unknown line set {name!r}; valid: {sorted(LINE_SETS)}") from None
