"""Mean intergalactic-medium (IGM) transmission of Inoue et al. 2014 (and, for robustness tests,
of Madau 1995: :class:`MadauIGM`), plus per-sightline scatter.

The mean model is the analytic one of Inoue, Shimizu, Iwata & Tanaka 2014 (MNRAS 442, 1805; "I14"):
the optical depth seen at observed wavelength lambda by a source at redshift z_S is the sum of

- the Lyman-series absorption by the Ly-alpha forest (LAF, I14 eq. 21) and by damped Ly-alpha
  systems (DLA, eq. 22): for each line j = 2..40 with lambda_j / (1 + z_S) ... a power law in
  lambda/lambda_j with the Table 2 coefficients (package data `inoue14_*coeff.txt`);
- the Lyman-continuum absorption by the LAF (eqs. 25-27) and the DLA (eqs. 28-29) below
  lambda_L (1 + z_S), lambda_L = 911.8 A.

The same model is `redrock.igm.Inoue14` (DESI's redshift fitter); `tests/test_igm.py` checks
that both agree to 1e-6. Two deliberate differences, both outside the DESI range for z >= 1.2:
the Lyman-series terms require lambda > lambda_j (absorbers at z > 0, as in the paper), and the
LAF continuum term for z_S < 1.2 uses the paper's eq. 25 (redrock overwrites it with eq. 26).

Speed: the Lyman-series sum only depends on how many lines lie redward of the rest wavelength
lambda/(1+z_S) (lines are sorted by wavelength), so it is a cumulative sum over lines computed once
per wavelength grid and gathered per object: O(N x P) instead of O(N x P x 39).

Per-sightline scatter (:func:`fluctuate_tau`): the mean transmission is an average over
sightlines; a single forest fluctuates. We multiply the optical depth by a lognormal field
exp(sigma g - sigma^2/2) with g a unit-variance Gaussian field correlated over ~1.5 A (the DESI
resolution, below which the forest is not resolved), the lognormal approach of Bi & Davidsen 1997
(ApJ 479, 523) and Font-Ribera et al. 2012 (JCAP 01, 001). The amplitude tau0 is calibrated so that
the expected transmission <exp(-tau)> equals the Inoue mean exactly (Gauss-Hermite quadrature).
"""

from __future__ import annotations

from functools import lru_cache
from importlib import resources

import numpy as np
from scipy.ndimage import convolve1d

from .lines import LYMAN_LIMIT

LYMAN_LIMIT_I14 = 911.8  # Angstrom; the value used in I14's continuum formulas
# Absorber-redshift regime boundaries of I14 Table 2 / eqs. 21-29.
Z1_LAF, Z2_LAF, Z1_DLA = 1.2, 4.7, 2.0


@lru_cache(maxsize=1)
def inoue14_coefficients() -> dict[str, np.ndarray]:
    """I14 Table 2 from package data: line wavelengths (descending) and LAF/DLA coefficients."""
    data = resources.files("lymannet") / "data"
    laf = np.loadtxt(str(data / "inoue14_LAFcoeff.txt"))
    dla = np.loadtxt(str(data / "inoue14_DLAcoeff.txt"))
    if not np.array_equal(laf[:, 1], dla[:, 1]):
        raise RuntimeError("inoue14 LAF and DLA tables list different lines")
    order = np.argsort(-laf[:, 1])  # Ly-alpha first: the cumulative sum below relies on it
    return {"wavelength": laf[order, 1], "laf": laf[order, 2:5], "dla": dla[order, 2:4]}


class InoueIGM:
    """Inoue et al. 2014 mean IGM optical depth on a fixed observed-wavelength grid.

    Construction precomputes everything that depends only on the wavelengths (Lyman-series
    cumulative sums, powers of lambda/lambda_L); :meth:`tau` then costs a few passes over N x P.
    """

    def __init__(self, wave_obs: np.ndarray):
        self.wave = np.asarray(wave_obs, dtype=np.float64)
        if self.wave.ndim != 1:
            raise ValueError("wave_obs must be one-dimensional")
        coeff = inoue14_coefficients()
        self.line_wave = coeff["wavelength"]  # descending
        per_line = self._lyman_series_per_line(coeff)  # (n_lines, P)
        self._ls_cumulative = np.vstack([np.zeros((1, self.wave.size)), np.cumsum(per_line, axis=0)])
        ratio = self.wave / LYMAN_LIMIT_I14
        self._ratio_pow = {p: ratio**p for p in (-0.3, 1.2, 2.0, 2.1, 3.0, 3.7, 5.5)}

    def _lyman_series_per_line(self, coeff: dict[str, np.ndarray]) -> np.ndarray:
        """tau_j(lambda) of I14 eqs. 21-22 for each line j, ignoring the source-redshift cut."""
        lam_j = self.line_wave[:, None]
        x = self.wave[None, :] / lam_j  # 1 + z of the absorber
        a1, a2, a3 = (coeff["laf"][:, k, None] for k in range(3))
        d1, d2 = (coeff["dla"][:, k, None] for k in range(2))
        laf = np.where(x < 1 + Z1_LAF, a1 * x**1.2, np.where(x < 1 + Z2_LAF, a2 * x**3.7, a3 * x**5.5))
        dla = np.where(x < 1 + Z1_DLA, d1 * x**2, d2 * x**3)
        return np.where(x > 1.0, laf + dla, 0.0)

    def lyman_series_tau(self, z: np.ndarray) -> np.ndarray:
        """Lyman-series optical depth (LAF + DLA), shape (N, P): lines with lambda_j > lambda/(1+z)."""
        z = np.atleast_1d(np.asarray(z, dtype=np.float64))
        n_lines, n_pixels = self.line_wave.size, self.wave.size
        # Line j is active where lambda < lambda_j (1+z): pixels before its first inactive pixel.
        first_inactive = np.searchsorted(self.wave, np.outer(1.0 + z, self.line_wave), side="left")
        flat = (np.arange(z.size)[:, None] * (n_pixels + 1) + first_inactive).ravel()
        n_ended = np.bincount(flat, minlength=z.size * (n_pixels + 1)).reshape(z.size, n_pixels + 1)
        n_active = n_lines - np.cumsum(n_ended[:, :n_pixels], axis=1)
        return self._ls_cumulative[n_active, np.arange(n_pixels)[None, :]]

    def lyman_continuum_tau(self, z: np.ndarray) -> np.ndarray:
        """Lyman-continuum optical depth (LAF eqs. 25-27 + DLA eqs. 28-29), shape (N, P)."""
        z = np.atleast_1d(np.asarray(z, dtype=np.float64))
        tau = np.zeros((z.size, self.wave.size))
        below = self.wave < LYMAN_LIMIT_I14 * (1.0 + z.max())
        if not below.any():
            return tau
        columns = np.flatnonzero(below)
        wave = self.wave[columns][None, :]
        r = {p: v[columns][None, :] for p, v in self._ratio_pow.items()}
        zp = (1.0 + z)[:, None]
        laf = self._continuum_laf(zp, wave, r)
        dla = self._continuum_dla(zp, wave, r)
        inside = wave < LYMAN_LIMIT_I14 * zp
        tau[:, columns] = np.where(inside, laf + dla, 0.0)
        return tau

    @staticmethod
    def _continuum_laf(zp: np.ndarray, wave: np.ndarray, r: dict[float, np.ndarray]) -> np.ndarray:
        low_z = 0.3248 * (r[1.2] - zp**-0.9 * r[2.1])  # z_S < 1.2
        mid_z = np.where(
            wave >= LYMAN_LIMIT_I14 * (1 + Z1_LAF),
            2.545e-2 * (zp**1.6 * r[2.1] - r[3.7]),
            2.545e-2 * zp**1.6 * r[2.1] + 0.3248 * r[1.2] - 0.2496 * r[2.1],
        )
        high_z = np.where(
            wave > LYMAN_LIMIT_I14 * (1 + Z2_LAF),
            5.221e-4 * (zp**3.4 * r[2.1] - r[5.5]),
            np.where(
                wave >= LYMAN_LIMIT_I14 * (1 + Z1_LAF),
                5.221e-4 * zp**3.4 * r[2.1] + 0.2182 * r[2.1] - 2.545e-2 * r[3.7],
                5.221e-4 * zp**3.4 * r[2.1] + 0.3248 * r[1.2] - 3.140e-2 * r[2.1],
            ),
        )
        return np.where(zp < 1 + Z1_LAF, low_z, np.where(zp < 1 + Z2_LAF, mid_z, high_z))

    @staticmethod
    def _continuum_dla(zp: np.ndarray, wave: np.ndarray, r: dict[float, np.ndarray]) -> np.ndarray:
        low_z = 0.2113 * zp**2 - 0.07661 * zp**2.3 * r[-0.3] - 0.1347 * r[2.0]  # z_S < 2
        high_z = np.where(
            wave >= LYMAN_LIMIT_I14 * (1 + Z1_DLA),
            0.04696 * zp**3 - 0.01779 * zp**3.3 * r[-0.3] - 0.02916 * r[3.0],
            0.6340 + 0.04696 * zp**3 - 0.01779 * zp**3.3 * r[-0.3] - 0.1347 * r[2.0] - 0.2905 * r[-0.3],
        )
        return np.where(zp < 1 + Z1_DLA, low_z, high_z)

    def tau(self, z: np.ndarray) -> np.ndarray:
        """Total mean optical depth, shape (N, P)."""
        return self.lyman_series_tau(z) + self.lyman_continuum_tau(z)

    def transmission(self, z: np.ndarray) -> np.ndarray:
        return np.exp(-self.tau(z))


class MadauIGM:
    """Madau 1995 (ApJ 441, 18) mean IGM optical depth on a fixed observed-wavelength grid: an
    alternative prescription for robustness tests (the simulator trains on Inoue et al. 2014).

    Lyman series (Madau 1995 eq. 15 and Table 2): tau_j = A_j (lambda / lambda_j)^3.46 for
    lambda_j < lambda < lambda_j (1 + z_S), with A = 3.6e-3, 1.7e-3, 1.2e-3, 9.3e-4 for
    Ly-alpha, -beta, -gamma, -delta (the higher orders, which Madau sums to Ly-17, are left out as in
    most photometric-redshift codes). Lyman continuum of the Ly-alpha forest and Lyman-limit systems
    below lambda_L (1 + z_S): the analytic approximation of Madau 1995 (footnote 3), with
    x_c = lambda / lambda_L and x_e = 1 + z_S,
    0.25 x_c^3 (x_e^0.46 - x_c^0.46) + 9.4 x_c^1.5 (x_e^0.18 - x_c^0.18)
    - 0.7 x_c^3 (x_c^-1.32 - x_e^-1.32) - 0.023 (x_e^1.68 - x_c^1.68).
    Madau's forest is more opaque than Inoue's at z ~ 3-4 (its power law was fitted to
    pre-2000 absorber statistics), which is what a robustness test wants: a different, published
    mean transmission."""

    LINES = ((1215.67, 3.6e-3), (1025.72, 1.7e-3), (972.537, 1.2e-3), (949.743, 9.3e-4))

    def __init__(self, wave_obs: np.ndarray):
        self.wave = np.asarray(wave_obs, dtype=np.float64)
        if self.wave.ndim != 1:
            raise ValueError("wave_obs must be one-dimensional")

    def lyman_series_tau(self, z: np.ndarray) -> np.ndarray:
        z = np.atleast_1d(np.asarray(z, dtype=np.float64))
        tau = np.zeros((z.size, self.wave.size))
        for lam, amplitude in self.LINES:
            inside = (self.wave[None, :] > lam) & (self.wave[None, :] < lam * (1.0 + z)[:, None])
            tau += np.where(inside, amplitude * (self.wave[None, :] / lam) ** 3.46, 0.0)
        return tau

    def lyman_continuum_tau(self, z: np.ndarray) -> np.ndarray:
        z = np.atleast_1d(np.asarray(z, dtype=np.float64))
        xc = (self.wave / LYMAN_LIMIT)[None, :]
        xe = (1.0 + z)[:, None]
        tau = (
            0.25 * xc**3 * (xe**0.46 - xc**0.46)
            + 9.4 * xc**1.5 * (xe**0.18 - xc**0.18)
            - 0.7 * xc**3 * (xc**-1.32 - xe**-1.32)
            - 0.023 * (xe**1.68 - xc**1.68)
        )
        return np.where(xc < xe, np.maximum(tau, 0.0), 0.0)

    def tau(self, z: np.ndarray) -> np.ndarray:
        """Total mean optical depth, shape (N, P)."""
        return self.lyman_series_tau(z) + self.lyman_continuum_tau(z)

    def transmission(self, z: np.ndarray) -> np.ndarray:
        return np.exp(-self.tau(z))


IGM_MODELS = {"inoue14": InoueIGM, "madau95": MadauIGM}


def igm_transmission(wave_obs: np.ndarray, z: float | np.ndarray) -> np.ndarray:
    """Mean I14 transmission exp(-tau): shape (P,) for a scalar z, (N, P) for an array of N redshifts."""
    model = InoueIGM(wave_obs)
    transmission = model.transmission(z)
    return transmission[0] if np.ndim(z) == 0 else transmission


# --- per-sightline scatter -------------------------------------------------------------------

LOGNORMAL_SIGMA = 1.2  # width of ln(tau); tuned by eye for a DESI-resolution forest, not fitted
CORRELATION_ANGSTROM = 1.5  # Gaussian correlation length of the field (observed frame)


@lru_cache(maxsize=4)
def _tau0_of_mean_tau(sigma: float) -> tuple[np.ndarray, np.ndarray]:
    """Tabulate tau0 -> -ln <exp(-tau0 X)>, X = exp(sigma g - sigma^2/2), g ~ N(0,1)."""
    nodes, weights = np.polynomial.hermite_e.hermegauss(80)
    weights = weights / weights.sum()
    x = np.exp(sigma * nodes - 0.5 * sigma**2)
    tau0 = np.concatenate([[0.0], np.logspace(-5, 4, 900)])
    mean_tau = -np.log(np.exp(-tau0[:, None] * x[None, :]) @ weights)
    return mean_tau, tau0


def correlated_gaussian_field(
    rng: np.random.Generator,
    shape: tuple[int, int],
    pixel_angstrom: float,
    correlation_angstrom: float = CORRELATION_ANGSTROM,
) -> np.ndarray:
    """Unit-variance Gaussian field (float32), correlated along axis 1 over `correlation_angstrom`."""
    white = rng.standard_normal(shape, dtype=np.float32)
    width = correlation_angstrom / pixel_angstrom
    offsets = np.arange(-int(np.ceil(4 * width)), int(np.ceil(4 * width)) + 1)
    kernel = np.exp(-0.5 * (offsets / width) ** 2)
    kernel /= np.sqrt(np.sum(kernel**2))  # unit L2 norm keeps unit variance
    return convolve1d(white, kernel.astype(np.float32), axis=1, mode="wrap")


def fluctuate_tau(mean_tau: np.ndarray, field: np.ndarray, sigma: float = LOGNORMAL_SIGMA) -> np.ndarray:
    """One sightline's optical depth: lognormal around tau0 chosen so that <exp(-tau)> = exp(-mean_tau)."""
    table_mean_tau, table_tau0 = _tau0_of_mean_tau(float(sigma))
    tau0 = np.interp(mean_tau, table_mean_tau, table_tau0)
    return tau0 * np.exp(sigma * field - 0.5 * sigma**2)
