"""Facts about the DESI spectrograph format shared by the simulator and the reader.

Coadd files hold, per camera ("arm") B, R, Z, the HDUs <ARM>_WAVELENGTH (f64), <ARM>_FLUX (f32,
N x npix, 1e-17 erg/s/cm2/A), <ARM>_IVAR, <ARM>_MASK (and <ARM>_RESOLUTION), plus a FIBERMAP table
with TARGETID, OBJTYPE, COADD_FIBERSTATUS, TARGET_RA/DEC, FLUX_G/R/Z. Wavelength ranges and the 0.8 A
step are those of DESI coadds (DESI Collaboration 2022, AJ 164, 207).
"""

from __future__ import annotations

import numpy as np

ARMS = ("B", "R", "Z")
ARM_RANGES: dict[str, tuple[float, float]] = {
    "B": (3600.0, 5800.0),
    "R": (5760.0, 7620.0),
    "Z": (7520.0, 9824.0),
}
PIXEL_STEP = 0.8  # Angstrom
# Dichroic overlaps where both arms have low throughput; the 5800 A one is the thesis's "critical region".
ARM_OVERLAPS: tuple[tuple[float, float], ...] = ((5760.0, 5800.0), (7520.0, 7620.0))


def arm_wavelength(arm: str) -> np.ndarray:
    """Native pixel wavelengths of one camera, as in DESI coadds (inclusive of both ends)."""
    lo, hi = ARM_RANGES[arm]
    n_pixels = int(round((hi - lo) / PIXEL_STEP)) + 1
    return lo + PIXEL_STEP * np.arange(n_pixels)


def native_wavelength() -> np.ndarray:
    """The merged native grid of all three cameras: 3600 to 9824 A in 0.8 A steps."""
    lo, hi = ARM_RANGES["B"][0], ARM_RANGES["Z"][1]
    return lo + PIXEL_STEP * np.arange(int(round((hi - lo) / PIXEL_STEP)) + 1)
