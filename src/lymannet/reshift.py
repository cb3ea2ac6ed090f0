"""Moving an observed galaxy to another redshift without moving the instrument (the `shift` op).

Thesis eq. 3.1 scales an observed spectrum's wavelengths by r = (1+z1)/(1+z0). That moves the
galaxy, but it also moves what belongs to the observation and keeps what belongs to the old
redshift. :func:`shift_galaxy` does eq. 3.1 and then undoes those three side effects:

1. **IGM of the destination redshift** (:func:`igm_correction`). Blueward of Ly-alpha the observed
   flux is continuum x the transmission of *z0's* IGM (Inoue et al. 2014 mean, I14). Each source
   pixel at lambda is multiplied, before the shift, by a factor t with <t> = T(z1, r lambda) /
   T(z0, lambda), T the I14 mean transmission (:class:`lymannet.igm.InoueIGM`):

   - more absorption at z1 (ratio g < 1, an upward shift): t = exp(-tau_extra), one extra
     sightline of mean optical depth -ln g with the simulator's lognormal per-sightline scatter
     (:func:`lymannet.igm.fluctuate_tau` on :func:`lymannet.igm.correlated_gaussian_field`),
     independent of the one already in the data, so the mean transmission becomes z1's exactly;
   - less absorption at z1 (g > 1, a downward shift): absorption that happened cannot be undone
     line by line, so t = g, the mean correction, which amplifies the noise as much as the flux.
     It is bounded: t <= MAX_IGM_GAIN (3). Below the source's Lyman limit (T(z0) ~ 0) the data
     hold no flux to recover; there the mean is left short rather than noise tripled and more.

   Flux is multiplied by t and ivar divided by t^2, so the noise stays described by ivar. Pixels
   are combined (network bins, neighbourhood means) with the instrument's ivar as weights, not
   ivar / t^2, which would favour absorbed pixels (a 3 -> 4 shift's forest came out 15% too dark).
2. **Noise of the destination wavelengths** (:func:`to_destination`). Sky lines (5577 A), the
   dichroic overlaps (5800 and 7570 A), the arm edges and telluric bands are where the instrument
   is, not where the galaxy is: after the shift the spectrum must carry the noise of the
   wavelengths it now sits at. The target is the ivar of the *unshifted* spectrum at the same
   observed wavelength: the same exposure, fibre, sky and night, read from the data itself, so
   real coadds need no EXPTIME, magnitude or fibre fraction (only Z and the native layer, which
   the shift always needed). Its object photon noise is the unshifted object's: for the demo's
   LBGs (r = 22.5-24.5, 2 h) the object term is 1-13% of the variance and only the difference
   between the two fluxes enters, so it is neglected; a bright shifted QSO would get too little.
   A stretch (r > 1) spreads each pixel's information over r pixels, so its target is that ivar
   / r (a spectrum of exposure t / r: noise x sqrt(1.25) = 1.12 for 5/4), not less noise than the
   data hold. Per pixel, with V = 1/ivar:

   - V_shifted <= V_target: Gaussian noise of variance V_target - V_shifted is added;
   - the instrument's V_shifted > (1 + EXCESS_TOLERANCE) V_target (a sky line, an overlap or a
     noisy arm end of the source, now somewhere quieter): noise cannot be removed, so the pixel
     takes the mean of the *quiet* pixels around it, in the smallest window of
     INPAINT_HALF_WIDTHS (8, 24, 80 A) whose mean has variance <= V_target, and is noised up to
     V_target (the thesis's "fake noise" of :func:`lymannet.augment_ops.fill_windows`, placed
     where the source's instrument was). A noisy stretch wider than the windows has no quiet
     neighbours: up to MODEL_VARIANCE_FACTOR (4) times the destination's variance it keeps its
     data and its larger variance, and ivar says so (kept_noisier in :class:`ShiftReport`; e.g.
     a 5/4 shift's 4500-5600 A comes from 3600-4480 A, where the B arm's throughput is
     0.05-0.3); noisier still (an arm's roll-off at the source's ends, up to 5x in sigma, which
     would mark where the data end) it holds under a quarter of a destination pixel's
     information, and the gap model below takes it (modelled). A forest amplified by a downward
     shift keeps its larger variance;
   - pixels where the unshifted spectrum has no data (ivar 0: masks, beyond 9824 A) get flux 0,
     ivar 0, as it has.
3. **No empty ends** (:func:`gap_model`). A 5/4 shift leaves 3600-4500 A without data, a 3/4 shift
   7370-9824 A: only augmented LBGs would carry such gaps, and a network can learn "empty end =
   LBG". Gaps (and the source's masked pixels, moved) are filled with a model and the noise of
   the destination: a power law A (lambda_rest/1500)^beta fitted to the spectrum's own rest
   1270-3000 A (the UV slope of star-forming galaxies, Calzetti et al. 1994; beta = -1.7,
   Shapley et al. 2003, where too little of that range is observed), times a Lyman-continuum
   escape of LYC_ESCAPE below 912 A, times a fluctuating I14 sightline at z1. Below the Lyman
   limit and redward of CIII] this is what an LBG looks like; the model has no lines there, so
   none are invented. After a shift a spectrum has zero ivar exactly where its unshifted self has.

The native layer is moved and IGM-corrected (the forest fluctuations are narrower than a network
bin); the network layer is rebinned from it and then brought to the unshifted network ivar on its
own bins (a sub-bin mean cannot lower a bin's noise, so the network layer is where its noise is
judged). The native layer, when anything after the shift reads it, gets the same treatment on its
pixels with its own draws, as `add_noise` does.

Measured on simulated LBGs (tests/test_reshift.py): rest 1050-1180 A flux over rest 1270-1380 A,
shifted vs simulated at z1, 0.706 vs 0.720 (3 -> 4), 1.144 vs 1.146 (3.8 -> 2.6), 0.929 vs 0.957
(3 -> 3.3); eq. 3.1 alone gives 1.049 and 0.791. Noise at 5577 A and in the 5800 A overlap
1.00-1.12 times that of spectra observed at z1 (1.12 = sqrt(5/4); eq. 3.1 alone: 0.25-0.89).

Limits, said plainly: sky-subtraction residuals of real data are systematic, not Gaussian; the
added noise is Gaussian. The window means smooth real features that sit on a source sky line or
overlap (over 8-80 A); the amplified forest of a downward shift keeps z0's relative fluctuations;
the noisier-than-destination stretches above stay noisier (by at most 2x in sigma, x sqrt(r)):
in the tests 19% of a 5/4 shift's network pixels (most in 4500-5600 A, median 1.14x), 14% of a
4.3/4 one's, 7% of a 3/4 one's; 5%, 2% and 0.1% are modelled.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np

from .augment_ops import _uniform_step, overlap_resample
from .grid import Grid
from .igm import InoueIGM, correlated_gaussian_field, fluctuate_tau
from .lines import LYA, LYMAN_LIMIT
from .preprocess import rebin

MAX_IGM_GAIN = 3.0  # a downward shift multiplies forest flux (and noise) by at most this
MIN_TRANSMISSION = 1e-8  # floor of an extra-absorption factor (ivar / t^2 stays finite)
EXCESS_TOLERANCE = 0.25  # variance up to 25% above the destination's is kept as it is
MODEL_VARIANCE_FACTOR = 4.0  # data noisier than this (x variance) without quiet neighbours: modelled
INPAINT_HALF_WIDTHS = (8.0, 24.0, 80.0)  # A: a sky line's bins ... a dichroic overlap (40-100 A)
LYC_ESCAPE = 0.05  # the middle of the simulator's U(0, 0.1) (Steidel et al. 2018)
CONTINUUM_REST_RANGE = (1270.0, 3000.0)  # rest A: redward of Ly-alpha and NV, UV continuum
DEFAULT_BETA = -1.7
BETA_GRID = np.round(np.arange(-4.0, 1.0001, 0.1), 2)
MIN_FIT_BINS = 8  # coarse bins with data needed to fit a slope
FIT_BIN_PIXELS = 16  # native pixels per coarse bin of the fit (12.8 A)


@dataclass
class ShiftReport:
    """Pixel counts of one shift (network layer), for the log and the tests."""

    pixels: int = 0
    renoised: int = 0  # noise added to reach the destination ivar
    inpainted: int = 0  # replaced by a neighbourhood mean (source noisier than destination)
    kept_noisier: int = 0  # no neighbourhood quiet enough: data and larger variance kept
    modelled: int = 0  # no quiet neighbourhood and > MODEL_VARIANCE_FACTOR x noisier: gap model
    gap_filled: int = 0  # no shifted data: model + destination noise
    forest_pixels: int = 0  # native source pixels blueward of Ly-alpha (IGM-corrected)
    igm_capped: int = 0  # of those, how many had their mean correction capped at MAX_IGM_GAIN
    by_half_width: dict[int, int] = field(default_factory=dict)  # inpainted pixels per window

    def add(self, other: "ShiftReport") -> None:
        for name in (
            "pixels",
            "renoised",
            "inpainted",
            "kept_noisier",
            "modelled",
            "gap_filled",
            "forest_pixels",
            "igm_capped",
        ):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        for half, count in other.by_half_width.items():
            self.by_half_width[half] = self.by_half_width.get(half, 0) + count

    def describe(self) -> str:
        share = {
            name: getattr(self, name) / max(self.pixels, 1)
            for name in ("renoised", "inpainted", "kept_noisier", "modelled", "gap_filled")
        }
        share["igm_capped (of forest pixels)"] = self.igm_capped / max(self.forest_pixels, 1)
        windows = ", ".join(
            f"{100 * count / max(self.pixels, 1):.2f}% within +-{half} bins"
            for half, count in sorted(self.by_half_width.items())
        )
        return ", ".join(f"{name} {100 * value:.2f}%" for name, value in share.items()) + f" ({windows})"


@lru_cache(maxsize=8)
def _igm(start: float, step: float, n: int) -> InoueIGM:
    return InoueIGM(start + step * np.arange(n))


def _igm_on(wave: np.ndarray, n: int) -> InoueIGM:
    return _igm(float(wave[0]), _uniform_step(wave), int(n))


def igm_correction(
    wave: np.ndarray, z0: np.ndarray, z1: np.ndarray, rng: np.random.Generator, max_gain: float = MAX_IGM_GAIN
) -> tuple[np.ndarray, int]:
    """Factors (N, n) for the first n source pixels (those blueward of some row's Ly-alpha) that
    turn z0's IGM into z1's once the pixel is moved to r x lambda; and how many were capped."""
    z0, z1 = np.asarray(z0, np.float64), np.asarray(z1, np.float64)
    n = int(np.searchsorted(wave, LYA * (1.0 + z0.max()), side="right")) if len(z0) else 0
    if n == 0:
        return np.ones((len(z0), 0)), 0
    step = _uniform_step(wave)
    tau0 = _igm_on(wave, n).tau(z0)
    ratio = ((1.0 + z1) / (1.0 + z0))[:, None]
    moved = wave[None, :n] * ratio
    # tau(z1) on a grid of the same step covering where the pixels land, interpolated per row.
    start = float(wave[0]) - step * np.ceil(max(float(wave[0]) - float(moved.min()), 0.0) / step)
    tau1_grid = _igm(start, step, int(np.ceil((float(moved.max()) - start) / step)) + 2).tau(z1)
    position = np.clip((moved - start) / step, 0, tau1_grid.shape[1] - 1.000001)
    low = np.floor(position).astype(np.int64)
    frac = position - low
    tau1 = (
        np.take_along_axis(tau1_grid, low, 1) * (1 - frac) + np.take_along_axis(tau1_grid, low + 1, 1) * frac
    )
    delta = tau1 - tau0
    field = correlated_gaussian_field(rng, delta.shape, step).astype(np.float64)
    extra = np.exp(-fluctuate_tau(np.clip(delta, 0.0, None), field))
    gain = np.exp(np.clip(-delta, 0.0, None))
    capped = int(((gain > max_gain) & (delta < 0)).sum())
    # Floor: a transmission of 1e-8 is no flux either, and keeps ivar / t^2 finite in float32.
    return np.where(delta >= 0, np.maximum(extra, MIN_TRANSMISSION), np.minimum(gain, max_gain)), capped


def window_sums(values: np.ndarray, half: int) -> np.ndarray:
    """Sum of each row's values over pixels [i - half, i + half] (clipped at the ends)."""
    cumulative = np.cumsum(np.pad(values, ((0, 0), (1, 0))), axis=1)
    n = values.shape[1]
    index = np.arange(n)
    return cumulative[:, np.minimum(index + half + 1, n)] - cumulative[:, np.maximum(index - half, 0)]


def fit_power_law(
    wave: np.ndarray, flux: np.ndarray, ivar: np.ndarray, z: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """(A, beta) per row of f = A (lambda_rest / 1500)^beta over CONTINUUM_REST_RANGE, weighted
    least squares on coarse bins of FIT_BIN_PIXELS pixels, beta on BETA_GRID (A exact for each).
    Rows with fewer than MIN_FIT_BINS bins there: all their data redward of rest 1270 A; fewer
    still: beta = DEFAULT_BETA, A from whatever has data (0 if none)."""
    n_rows = flux.shape[0]
    n_bins = flux.shape[1] // FIT_BIN_PIXELS
    cut = n_bins * FIT_BIN_PIXELS
    weight = ivar[:, :cut].reshape(n_rows, n_bins, FIT_BIN_PIXELS).sum(axis=2)
    weighted = (flux[:, :cut] * ivar[:, :cut]).reshape(n_rows, n_bins, FIT_BIN_PIXELS).sum(axis=2)
    mean = np.divide(weighted, weight, out=np.zeros_like(weight), where=weight > 0)
    centre = wave[:cut].reshape(n_bins, FIT_BIN_PIXELS).mean(axis=1)
    rest = centre[None, :] / (1.0 + np.asarray(z, np.float64))[:, None]
    use = (rest > CONTINUUM_REST_RANGE[0]) & (rest < CONTINUUM_REST_RANGE[1]) & (weight > 0)
    # A shifted contaminant (an ELG at z ~ 0.1 has no rest 1270-3000 A in range): everything
    # redward of rest 1270 A it has, rather than an empty continuum.
    elsewhere = use.sum(axis=1) < MIN_FIT_BINS
    use[elsewhere] = ((rest > CONTINUUM_REST_RANGE[0]) & (weight > 0))[elsewhere]
    w = np.where(use, weight, 0.0)
    log_x = np.log(rest / 1500.0)
    best_chi2 = np.full(n_rows, np.inf)
    amplitude = np.zeros(n_rows)
    beta = np.full(n_rows, DEFAULT_BETA)
    for trial in BETA_GRID:
        x = np.exp(trial * log_x)
        s_fx = (w * mean * x).sum(axis=1)
        s_xx = (w * x * x).sum(axis=1)
        a = np.divide(s_fx, s_xx, out=np.zeros_like(s_fx), where=s_xx > 0)
        chi2 = (w * (mean - a[:, None] * x) ** 2).sum(axis=1)
        better = chi2 < best_chi2
        best_chi2[better], amplitude[better], beta[better] = chi2[better], a[better], trial
    few = use.sum(axis=1) < MIN_FIT_BINS
    if few.any():
        x = np.exp(DEFAULT_BETA * log_x[few])
        s_fx, s_xx = (w[few] * mean[few] * x).sum(axis=1), (w[few] * x * x).sum(axis=1)
        amplitude[few] = np.divide(s_fx, s_xx, out=np.zeros_like(s_fx), where=s_xx > 0)
        beta[few] = DEFAULT_BETA
    return np.clip(amplitude, 0.0, None), beta  # a negative continuum is noise, not a galaxy


def gap_model(
    wave: np.ndarray, z1: np.ndarray, amplitude: np.ndarray, beta: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """Noiseless (N, P) LBG continuum at z1 for filling gaps: power law x LYC_ESCAPE below the
    Lyman limit x one fluctuating I14 sightline at z1."""
    z1 = np.asarray(z1, np.float64)
    rest = wave[None, :] / (1.0 + z1[:, None])
    model = amplitude[:, None] * np.exp(beta[:, None] * np.log(rest / 1500.0))
    model = np.where(rest < LYMAN_LIMIT, LYC_ESCAPE * model, model)
    n = int(np.searchsorted(wave, LYA * (1.0 + z1.max()), side="right")) if len(z1) else 0
    if n:
        tau = fluctuate_tau(
            _igm_on(wave, n).tau(z1), correlated_gaussian_field(rng, (len(z1), n), _uniform_step(wave))
        )
        model[:, :n] *= np.exp(-tau)
    return model


def half_widths_in_pixels(wave: np.ndarray) -> tuple[int, ...]:
    """INPAINT_HALF_WIDTHS (Angstrom) in pixels of a grid (its median step), at least 1."""
    step = float(np.median(np.diff(wave)))
    return tuple(sorted({max(1, int(round(width / step))) for width in INPAINT_HALF_WIDTHS}))


def to_destination(
    flux: np.ndarray,
    ivar: np.ndarray,
    target_ivar: np.ndarray,
    model: np.ndarray,
    rng: np.random.Generator,
    half_widths: tuple[int, ...],
    instrument_ivar: np.ndarray | None = None,
    tolerance: float = EXCESS_TOLERANCE,
) -> tuple[np.ndarray, np.ndarray, ShiftReport]:
    """Give shifted (N, P) spectra the noise of `target_ivar` (the unshifted spectra's ivar at the
    same wavelengths): add noise where they are quieter; where noisier, replace by the mean of the
    quiet pixels within the smallest of `half_widths` (pixels) whose mean is quiet enough, else
    keep; fill pixels without data with `model` + noise. Returns float64 (flux, ivar, report)."""
    flux = np.asarray(flux, np.float64)
    ivar = np.asarray(ivar, np.float64)
    target_ivar = np.asarray(target_ivar, np.float64)
    has_target = target_ivar > 0
    v_target = np.divide(1.0, target_ivar, out=np.full_like(target_ivar, np.inf), where=has_target)
    v_now = np.divide(1.0, ivar, out=np.full_like(ivar, np.inf), where=ivar > 0)
    gap = has_target & ~(ivar > 0)
    # Which pixels are noisier than the destination, and which inform their replacement, is
    # decided on the instrument's ivar (before the IGM factor): the IGM-scaled ivar is larger
    # where the forest absorbs, and choosing by it would pick absorbed pixels and bias the mean.
    # Weights are the instrument ivar for the same reason. Pixels noisier only through the IGM
    # gain of a downward shift are kept (kept_noisier).
    instrument_ivar = ivar if instrument_ivar is None else np.asarray(instrument_ivar, np.float64)
    v_instrument = np.divide(1.0, instrument_ivar, out=np.full_like(ivar, np.inf), where=instrument_ivar > 0)
    excess = has_target & (ivar > 0) & (v_instrument > (1.0 + tolerance) * v_target)
    # Only quiet pixels inform a replacement: a broad noisy stretch (wider than twice the largest
    # window) is kept with its variance rather than smoothed into a continuum.
    weight = np.where(excess | ~(ivar > 0), 0.0, instrument_ivar)
    weighted_flux, weighted_var = weight * flux, weight**2 * np.where(ivar > 0, v_now, 0.0)
    out_flux, out_var = flux.copy(), v_now.copy()
    pending = excess.copy()
    by_half_width = {}
    for half in half_widths:
        if not pending.any():
            break
        total = window_sums(weight, half)
        ok = total > 0
        mean = np.divide(window_sums(weighted_flux, half), total, out=np.zeros_like(total), where=ok)
        v_mean = np.divide(
            window_sums(weighted_var, half), total**2, out=np.full_like(total, np.inf), where=ok
        )
        replace = pending & ok & (v_mean <= v_target)
        out_flux[replace], out_var[replace] = mean[replace], v_mean[replace]
        by_half_width[half] = int(replace.sum())
        pending &= ~replace
    # What is left noisier than the destination by more than MODEL_VARIANCE_FACTOR (an arm's
    # roll-off at the source's ends, next to a filled gap) holds under a quarter of a destination
    # pixel's information: the gap model takes it, so no noisy edge marks where the data end.
    modelled = pending & (v_instrument > MODEL_VARIANCE_FACTOR * v_target)
    pending &= ~modelled
    pending |= has_target & (ivar > 0) & ~excess & (v_now > (1.0 + tolerance) * v_target)
    gap |= modelled
    out_flux[gap], out_var[gap] = model[gap], 0.0
    add = has_target & (out_var < v_target)
    extra = np.sqrt(np.where(add, v_target - np.where(add, out_var, 0.0), 0.0))
    out_flux += extra * rng.standard_normal(flux.shape)
    out_var = np.where(add, v_target, out_var)
    out_flux[~has_target] = 0.0
    out_ivar = np.divide(1.0, out_var, out=np.zeros_like(out_var), where=has_target & np.isfinite(out_var))
    replaced = excess & ~pending & ~modelled
    report = ShiftReport(
        pixels=int(has_target.sum()),
        renoised=int((add & ~gap & ~replaced).sum()),
        inpainted=int(replaced.sum()),
        kept_noisier=int(pending.sum()),
        modelled=int(modelled.sum()),
        gap_filled=int((gap & ~modelled).sum()),
        by_half_width=by_half_width,
    )
    return out_flux, out_ivar, report


def rebin_by_instrument(
    wave: np.ndarray, flux: np.ndarray, ivar: np.ndarray, instrument_ivar: np.ndarray, grid: Grid
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Network bins of IGM-corrected native pixels, weighted by the instrument ivar w (before the
    IGM factor): flux = sum(w f) / sum(w), ivar = sum(w)^2 / sum(w^2 / ivar), and sum(w).

    Weighting by the IGM-scaled ivar (ivar / t^2) would favour absorbed pixels and bias a bin of
    the forest low (by 15% in rest 1050-1180 A of a 3 -> 4 shift); an observation's weights do
    not depend on the forest it sees."""
    weight = np.where(ivar > 0, instrument_ivar, 0.0)
    net_flux, net_weight = rebin(wave, flux, weight, grid)
    variance_terms = np.divide(weight**2, ivar, out=np.zeros_like(weight), where=ivar > 0)
    _, net_variance_sum = rebin(wave, np.zeros_like(flux), variance_terms, grid)
    net_weight = net_weight.astype(np.float64)
    net_ivar = np.divide(
        net_weight**2, net_variance_sum, out=np.zeros_like(net_weight), where=net_variance_sum > 0
    )
    return net_flux.astype(np.float64), net_ivar, net_weight


def shift_galaxy(
    native_wavelength: np.ndarray,
    native_flux: np.ndarray,
    native_ivar: np.ndarray,
    network_ivar: np.ndarray,
    z0: np.ndarray,
    z1: np.ndarray,
    grid: Grid,
    rng: np.random.Generator,
    native: bool = True,
    block_rows: int = 128,
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray | None, ShiftReport]:
    """Move each row from z0 to z1 (module docstring): IGM of z1, noise of the destination
    wavelengths, no empty ends. `network_ivar` is the unshifted network layer's ivar (the
    network target). Returns (network flux, network ivar, native flux, native ivar) float32 and
    the network layer's :class:`ShiftReport`; native flux and ivar are None with native=False
    (nothing after the shift needs them: about 40% less time).

    The network layer is rebinned from the moved native layer, then brought to its target on its
    own bins: sub-bin moves of noise (a native-pixel mean) would not change a bin's noise. The
    native layer gets the same treatment on its pixels with its own draws (as `add_noise` does)."""
    z0 = np.asarray(z0, np.float64)
    z1 = np.asarray(z1, np.float64)
    step = _uniform_step(native_wavelength)
    first_edge = native_wavelength[0] - step / 2
    edges = first_edge + step * np.arange(len(native_wavelength) + 1)
    native_half, network_half = half_widths_in_pixels(native_wavelength), half_widths_in_pixels(grid.centres)
    report = ShiftReport()
    outputs = []
    for start in range(0, len(z0), block_rows):
        rows = slice(start, start + block_rows)
        flux = np.array(native_flux[rows], np.float64)
        source_ivar = np.asarray(native_ivar[rows], np.float64)
        ivar = source_ivar.copy()
        factor, capped = igm_correction(native_wavelength, z0[rows], z1[rows], rng)
        n = factor.shape[1]
        flux[:, :n] *= factor
        ivar[:, :n] /= factor**2
        ratio = ((1.0 + z1[rows]) / (1.0 + z0[rows]))[:, None]
        u_edges = (edges[None, :] / ratio - first_edge) / step
        moved_flux, moved_ivar = overlap_resample(flux, ivar, u_edges[:, :-1], u_edges[:, 1:])
        moved_flux, moved_ivar = moved_flux.astype(np.float64), moved_ivar.astype(np.float64)
        _, moved_instrument = overlap_resample(flux, source_ivar, u_edges[:, :-1], u_edges[:, 1:])
        moved_instrument = moved_instrument.astype(np.float64)
        amplitude, beta = fit_power_law(native_wavelength, moved_flux, moved_ivar, z1[rows])
        model = gap_model(native_wavelength, z1[rows], amplitude, beta, rng)
        # A stretched spectrum (r > 1) holds 1/r of the information per A of the unshifted one
        # (eq. 3.1 spreads each pixel over r pixels): its target is a spectrum of exposure t / r.
        stretch = np.maximum(ratio, 1.0)
        if native:
            nat_flux, nat_ivar, _ = to_destination(
                moved_flux, moved_ivar, source_ivar / stretch, model, rng, native_half, moved_instrument
            )
        else:
            nat_flux = nat_ivar = np.zeros((moved_flux.shape[0], 0))
        net_moved_flux, net_moved_ivar, net_instrument = rebin_by_instrument(
            native_wavelength, moved_flux, moved_ivar, moved_instrument, grid
        )
        net_model, _ = rebin(native_wavelength, model, np.ones_like(model), grid)
        net_flux, net_ivar, part = to_destination(
            net_moved_flux,
            net_moved_ivar,
            np.asarray(network_ivar[rows], np.float64) / stretch,
            net_model,
            rng,
            network_half,
            net_instrument,
        )
        part.forest_pixels, part.igm_capped = factor.size, capped
        report.add(part)
        outputs.append(
            (
                net_flux.astype(np.float32),
                net_ivar.astype(np.float32),
                nat_flux.astype(np.float32),
                nat_ivar.astype(np.float32),
            )
        )
    if not outputs:
        empty = np.zeros((0, grid.n_pixels), np.float32), np.zeros((0, len(native_wavelength)), np.float32)
        return empty[0], empty[0], empty[1], empty[1], report
    net_flux, net_ivar, nat_flux, nat_ivar = (np.concatenate(parts) for parts in zip(*outputs))
    return net_flux, net_ivar, nat_flux if native else None, nat_ivar if native else None, report
