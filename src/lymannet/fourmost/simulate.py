"""4MOST-like quasar spectra with Ly-alpha forest, metal absorbers and damped Ly-alpha absorbers.

Grid: the slides' 3671.5-9524 A in 0.25 A bins (23,411 pixels). Every quasar is

    f(lambda) = [power law + broad emission lines] x exp(-tau_forest - tau_metals - tau_DLA)

smoothed to the 4MOST low-resolution spectrograph (R ~ 5000), observed through a smooth
throughput for `exptime` seconds with photon noise of object + sky (continuum + night-sky lines)
and read noise. Ingredients:

- quasar: a broken power law (alpha_nu ~ N(-0.44, 0.3) redward of 1000 A, Vanden Berk et al.
  2001, AJ 122, 549; alpha_EUV ~ N(-1.7, 0.3) blueward, Telfer et al. 2002), a UV FeII/Balmer
  bump, and that composite's broad lines (:data:`lymannet.physics.QSO_BROAD_LINES`) varied along
  PCA-like eigenvectors (line strength, high/low ionisation, width, high-ionisation blueshift),
  see :func:`quasar_continuum`;
- BAL quasars: a fraction `bal.fraction` (15%) of quasars at z > 1.6 carry CIV, SiIV, NV and
  Ly-alpha troughs at outflow velocities v_min..v_max, drawn by the DESI simulator's profile
  (:func:`lymannet.physics.bal_transmission`; `bal.tau` is the CIV trough's central optical depth);
- Ly-alpha forest: the Inoue et al. 2014 mean optical depth with lognormal per-sightline scatter
  (:mod:`lymannet.igm`); its smooth "DLA" term (LLS + DLAs, 10^17.2-10^22) is the statistical
  mean over all redshifts (~1% of the forest's Ly-alpha optical depth), the discrete absorbers
  below add the ones the networks must find or must not confuse with a DLA;
- metal absorbers: Poisson(`metal_absorbers_mean`) systems per sightline, z_abs uniform in
  [0.3, z_qso], each with MgII, FeII, CIV, SiIV, SiII, CII, AlII lines and a weak optically thin
  Ly-alpha, rest EWs lognormal;
- HI absorbers, log N_HI 17-22.5 (Lyman-limit systems, sub-DLAs, DLAs >= 20.3) from the
  Prochaska et al. 2014 f(N, X) (:func:`lymannet.physics.log_fn_pw14`), Poisson in number over
  the absorption path between Ly-beta and Ly-alpha emission (outside the proximity zone),
  redshifts with dN/dX ~ (1+z)^1.5; the DLA incidence is nature's in the test split and
  `absorbers.dla_boost` times it in train/val (default 5); Voigt Ly-alpha and Ly-beta, the
  Lyman continuum (lambda^3) and low-ionisation metal lines at z_abs;
- the observation: r-band magnitudes 18-22.7 (number counts ~10^(0.3 m)) and exposures of 1-3
  20-min visits (4MOST-CRS-like, assumed), so that S/N runs from ~1 to ~50 per 0.5 A pixel.

Everything is vectorised over a chunk of spectra; output depends only on (seed, spec). The grid and
the instrument (throughput, sky, LSF) live in :mod:`.spectrograph`, the absorbers' optical depths
(Voigt HI lines, Lyman continuum, metal lines) in :mod:`.absorption`.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from ..config import job_seed
from ..errors import ConfigError
from ..igm import InoueIGM, correlated_gaussian_field, fluctuate_tau
from ..physics import (
    C_KMS,
    FWHM_PER_SIGMA,
    PW14_Z_PIVOT,
    QSO_BROAD_LINES,
    ab_to_f_nu,
    bal_transmission,
    band_f_nu_weights,
    draw_log_nhi,
    draw_redshifts_dx,
    dx_dz,
    incidence_per_dx,
)
from ..runtime import Progress
from .absorption import _absorber_tau, _add_metal_lines, dla_redshift_window
from .spectrograph import (
    READ_NOISE_E,
    WAVE_STEP,
    electrons_per_flux,
    sky_flux,
    smooth_to_resolution,
    wavelength_grid,
)

log = logging.getLogger("lymannet.fourmost")

DEFAULTS: dict[str, Any] = {
    "n_spectra": 10000,
    "z": [2.0, 4.0],
    # 4MOST-CRS-like depth (assumed, see docs/fourmost.md): r-band 18-22.7 with number counts
    # dN/dm ~ 10^(mag_count_slope m), exposures of 1-3 visits of 20 min
    "mag": [18.0, 22.7],
    "mag_count_slope": 0.3,
    "exptime": [1200.0, 2400.0, 3600.0],
    "exptime_probabilities": [0.25, 0.5, 0.25],
    "resolution": 5000.0,
    # HI absorbers (LLS, sub-DLAs, DLAs) from the Prochaska et al. 2014 f(N), uniform in X (with
    # (1+z)^gamma evolution); DLA incidence x dla_boost per split (1 = nature)
    "absorbers": {
        "log_n_min": 17.0,
        "log_n_max": 22.5,
        "gamma": 1.5,
        "dla_boost": {"train": 5.0, "val": 5.0, "test": 1.0},
    },
    "split": {"train": 0.8, "val": 0.1, "test": 0.1},
    "dla_b_kms": [15.0, 40.0],
    "proximity_kms": 3000.0,
    "bal": {
        "fraction": 0.15,
        "z_min": 1.6,
        "v_min_kms": [0.0, 15000.0],
        "width_kms": [2000.0, 20000.0],
        "v_max_kms": 30000.0,
        "tau": [0.3, 5.0],
    },
    "continuum": {
        "alpha_nu": [-0.44, 0.3],
        "alpha_euv": [-1.7, 0.3],
        "euv_break": 1000.0,
        "line_scatter": 0.15,
        "pca_scales": [0.25, 0.2, 0.2, 0.5],
        "fe_bump": 0.15,
    },
    "metal_absorbers_mean": 4.0,
    "metal_ew_median": 0.3,
    "chunk": 256,
}
DLA_LOG_N = 20.3  # a DLA: log N_HI >= 20.3 (Wolfe et al. 1986)
REMOVED_KEYS = {
    "n_dla_probabilities": "absorbers.dla_boost (DLAs now come from the f(N) incidence)",
    "cddf": "absorbers (the Prochaska et al. 2014 f(N) of lymannet.physics)",
    "min_separation_kms": "nothing (absorbers are independent, Poisson in X)",
}


def _merge(defaults: dict[str, Any], given: dict[str, Any]) -> dict[str, Any]:
    out = dict(defaults)
    for key, value in given.items():
        out[key] = (
            _merge(defaults[key], value)
            if isinstance(defaults.get(key), dict) and isinstance(value, dict)
            else value
        )
    return out


def complete_spec(spec: dict[str, Any]) -> dict[str, Any]:
    """The simulation spec with defaults filled and checked (ConfigError naming the key)."""
    for key, instead in REMOVED_KEYS.items():
        if key in spec:
            raise ConfigError(f"fourmost.simulate.{key} is no longer used; use {instead}")
    full = _merge(DEFAULTS, spec)
    if isinstance(full["exptime"], (int, float)):
        full["exptime"], full["exptime_probabilities"] = [float(full["exptime"])], [1.0]
    probs = np.asarray(full["exptime_probabilities"], float)
    if probs.size != len(full["exptime"]) or np.any(probs < 0) or not np.isclose(probs.sum(), 1.0):
        raise ConfigError(
            f"fourmost.simulate.exptime_probabilities must be {len(full['exptime'])} non-negative "
            f"numbers summing to 1, got {list(probs)}"
        )
    if full["z"][0] >= full["z"][1] or full["mag"][0] >= full["mag"][1]:
        raise ConfigError(
            f"fourmost.simulate: z and mag ranges must be [low, high], got z={full['z']}, mag={full['mag']}"
        )
    absorbers = full["absorbers"]
    if not absorbers["log_n_min"] < DLA_LOG_N < absorbers["log_n_max"]:
        raise ConfigError(
            f"fourmost.simulate.absorbers: need log_n_min < {DLA_LOG_N} < log_n_max, got "
            f"[{absorbers['log_n_min']}, {absorbers['log_n_max']}]"
        )
    boost = absorbers["dla_boost"]
    if set(boost) != {"train", "val", "test"} or any(float(v) < 0 for v in boost.values()):
        raise ConfigError(
            f"fourmost.simulate.absorbers.dla_boost needs train, val and test >= 0, got {boost}"
        )
    if not 0 <= full["bal"]["fraction"] <= 1:
        raise ConfigError(f"fourmost.simulate.bal.fraction must be in [0, 1], got {full['bal']['fraction']}")
    return full


def split_of(names: list[str], seed: int, fractions: dict[str, float]) -> np.ndarray:
    """train/val/test per file name from a stable hash: an object keeps its split whatever the set
    size. The simulator (to set each split's DLA incidence) and the ingestion share it."""
    u = np.array([job_seed(seed, "fourmost-split", Path(f).name) / 2.0**63 for f in names])
    val_edge = fractions["train"]
    test_edge = fractions["train"] + fractions["val"]
    return np.where(u < val_edge, "train", np.where(u < test_edge, "val", "test"))


# --- the sightlines ----------------------------------------------------------------------------


def _draw_magnitudes(rng: np.random.Generator, n: int, mag: list[float], slope: float) -> np.ndarray:
    """Magnitudes in [mag[0], mag[1]] with number counts dN/dm ~ 10^(slope m) (uniform for slope 0)."""
    u = rng.uniform(size=n)
    if abs(slope) < 1e-9:
        return mag[0] + u * (mag[1] - mag[0])
    k = slope * np.log(10.0)
    lo, hi = np.exp(k * mag[0]), np.exp(k * mag[1])
    return np.log(lo + u * (hi - lo)) / k


def expected_absorbers(
    z_lo: np.ndarray, z_hi: np.ndarray, log_n_lo: float, log_n_hi: float, gamma: float
) -> np.ndarray:
    """Mean number of HI absorbers with log N in [log_n_lo, log_n_hi) between z_lo and z_hi:
    l(X) at the pivot x ((1+z)/(1+z_pivot))^gamma, integrated over the absorption path."""
    t = np.linspace(0.0, 1.0, 64)
    z = z_lo[:, None] + np.clip(z_hi - z_lo, 0, None)[:, None] * t
    rate = dx_dz(z) * ((1 + z) / (1 + PW14_Z_PIVOT)) ** gamma
    return incidence_per_dx(log_n_lo, log_n_hi) * np.trapezoid(rate, z, axis=1)


def draw_sightlines(spec: dict[str, Any], seed: int) -> dict[str, Any]:
    """Per-sightline parameters and the absorber lists (everything random except the pixels).

    HI absorbers with Ly-alpha between Ly-beta and Ly-alpha emission (outside the proximity zone,
    on the grid): Poisson in number with the Prochaska et al. 2014 incidence over the absorption
    path, redshifts with dN/dz ~ dX/dz (1+z)^gamma, log N_HI from f(N); the DLA part (log N >=
    20.3) has its incidence multiplied by ``absorbers.dla_boost[split]`` (1 = nature)."""
    spec = complete_spec(spec)
    rng = np.random.default_rng(job_seed(seed, "fourmost", "sightlines"))
    n = int(spec["n_spectra"])
    names = [spectrum_name(i) for i in range(n)]
    split = split_of(names, seed, spec["split"])
    z_qso = rng.uniform(*spec["z"], size=n)
    mag = _draw_magnitudes(rng, n, spec["mag"], float(spec["mag_count_slope"]))
    exptime = rng.choice(np.asarray(spec["exptime"], float), size=n, p=spec["exptime_probabilities"])
    cont = spec["continuum"]
    alpha_nu = rng.normal(*cont["alpha_nu"], size=n)
    alpha_euv = rng.normal(*cont["alpha_euv"], size=n)
    ew_scatter = np.exp(rng.normal(0.0, cont["line_scatter"], size=(n, len(QSO_BROAD_LINES))))
    pca = rng.standard_normal((n, 5))
    # HI absorbers
    absorbers = spec["absorbers"]
    z_lo, z_hi = dla_redshift_window(z_qso, spec["proximity_kms"])
    z_hi = np.maximum(z_hi, z_lo)
    boost = np.array([float(absorbers["dla_boost"][s]) for s in split])
    mean_sub = expected_absorbers(z_lo, z_hi, absorbers["log_n_min"], DLA_LOG_N, absorbers["gamma"])
    mean_dla = expected_absorbers(z_lo, z_hi, DLA_LOG_N, absorbers["log_n_max"], absorbers["gamma"]) * boost
    n_sub, n_dla = rng.poisson(mean_sub), rng.poisson(mean_dla)
    sightline = np.concatenate([np.repeat(np.arange(n), n_sub), np.repeat(np.arange(n), n_dla)])
    log_n = np.concatenate(
        [
            draw_log_nhi(rng, int(n_sub.sum()), absorbers["log_n_min"], DLA_LOG_N),
            draw_log_nhi(rng, int(n_dla.sum()), DLA_LOG_N, absorbers["log_n_max"]),
        ]
    )
    z_abs = draw_redshifts_dx(rng, z_lo[sightline], z_hi[sightline], absorbers["gamma"])
    b_kms = rng.uniform(*spec["dla_b_kms"], size=sightline.size)
    order = np.lexsort((z_abs, sightline))
    hi = {"sightline": sightline[order], "z_abs": z_abs[order], "log_n": log_n[order], "b_kms": b_kms[order]}
    is_dla = hi["log_n"] >= DLA_LOG_N
    # BAL quasars
    bal_spec = spec["bal"]
    bal = (rng.uniform(size=n) < bal_spec["fraction"]) & (z_qso > bal_spec["z_min"])
    v_min = rng.uniform(*bal_spec["v_min_kms"], size=n)
    v_max = np.minimum(v_min + rng.uniform(*bal_spec["width_kms"], size=n), bal_spec["v_max_kms"])
    bal_tau = np.exp(rng.uniform(*np.log(bal_spec["tau"]), size=n))
    # metal systems (no HI of their own in the DLA window; a weak Ly-alpha among their lines)
    n_metal = rng.poisson(spec["metal_absorbers_mean"], size=n)
    metal_sightline = np.repeat(np.arange(n), n_metal)
    metal_z = rng.uniform(0.3, z_qso[metal_sightline])
    metal_ew = spec["metal_ew_median"] * np.exp(rng.normal(0.0, 0.6, size=metal_sightline.size))
    n_dla_per = np.bincount(hi["sightline"][is_dla], minlength=n)
    return {
        "z_qso": z_qso,
        "mag": mag,
        "exptime": exptime,
        "alpha_nu": alpha_nu,
        "alpha_euv": alpha_euv,
        "ew_scatter": ew_scatter,
        "pca": pca,
        "split": split,
        "dla_boost": boost,
        "expected_dla": mean_dla,
        "n_dla": n_dla_per,
        "n_abs": np.bincount(hi["sightline"], minlength=n) + n_metal,
        "absorbers": hi,
        "dla": {k: v[is_dla] for k, v in hi.items()},
        "bal": {
            "flag": bal,
            "v_min": np.where(bal, v_min, 0.0),
            "v_max": np.where(bal, v_max, 0.0),
            "tau": np.where(bal, bal_tau, 0.0),
        },
        "metal": {"sightline": metal_sightline, "z_abs": metal_z, "ew": metal_ew},
    }


HIGH_IONISATION = {"LYA", "NV", "SIIV_OIV", "CIV", "HEII", "LYB_OVI"}


def quasar_continuum(
    wave: np.ndarray,
    z: np.ndarray,
    alpha_nu: np.ndarray,
    ew_scatter: np.ndarray,
    alpha_euv: np.ndarray | None = None,
    pca: np.ndarray | None = None,
    continuum: dict[str, Any] | None = None,
) -> np.ndarray:
    """Unabsorbed quasar (N, P), continuum = 1 at 1450 A rest.

    A power law f_nu ~ nu^alpha_nu (Vanden Berk et al. 2001: -0.44) breaking to alpha_euv below
    `euv_break` (Telfer et al. 2002: ~ -1.7), a UV FeII + Balmer-continuum bump (2200-3600 A), and
    Gaussian broad lines with the Vanden Berk composite's EWs varied along PCA-like eigenvectors
    (coefficients `pca`, unit normal, scaled by `pca_scales`): (1) all line strengths together,
    (2) high- vs low-ionisation lines (the Baldwin/eigenvector-1 trend), (3) line widths, (4) the
    blueshift of the high-ionisation lines (larger when they are weak), plus per-line scatter."""
    n = len(z)
    cont = {**DEFAULTS["continuum"], **(continuum or {})}
    pca = np.zeros((n, 5)) if pca is None else pca
    alpha_euv = alpha_nu if alpha_euv is None else alpha_euv
    s1, s2, s3, s4 = cont["pca_scales"]
    rest = wave[None, :] / (1 + z[:, None])

    def power_law(x: np.ndarray) -> np.ndarray:
        brk = float(cont["euv_break"])
        red = (x / 1450.0) ** (-(2.0 + alpha_nu[:, None]))
        at_break = (brk / 1450.0) ** (-(2.0 + alpha_nu[:, None]))
        blue = at_break * (x / brk) ** (-(2.0 + alpha_euv[:, None]))
        return np.where(x >= brk, red, blue)

    continuum_flux = power_law(rest)
    bump = cont["fe_bump"] * np.exp(0.4 * pca[:, 4])[:, None]
    continuum_flux = continuum_flux * (
        1
        + bump
        * (
            np.exp(-0.5 * ((rest - 2500.0) / 250.0) ** 2)
            + 0.6 * np.exp(-0.5 * ((rest - 3200.0) / 300.0) ** 2)
        )
    )
    lines = np.zeros_like(rest)
    width = np.exp(s3 * pca[:, 2])
    blueshift = 600.0 * np.exp(s4 * pca[:, 3] - 0.5 * s2 * pca[:, 1])  # km/s
    for k, line in enumerate(QSO_BROAD_LINES):
        high = line.name in HIGH_IONISATION
        strength = ew_scatter[:, k] * np.exp(s1 * pca[:, 0] + (1 if high else -1) * s2 * pca[:, 1])
        centre = line.wavelength * (1 - (blueshift if high else np.zeros(n)) / C_KMS)  # (N,)
        sigma = line.wavelength * line.fwhm_kms * width / C_KMS / FWHM_PER_SIGMA  # (N,)
        offset = rest - centre[:, None]
        near = np.abs(offset) < 6 * sigma[:, None]
        if not near.any():
            continue
        amplitude = (line.ew * strength / (np.sqrt(2 * np.pi) * sigma))[:, None]
        cont_at_line = power_law(centre[:, None])
        profile = np.exp(-0.5 * (offset / sigma[:, None]) ** 2)
        lines += np.where(near, amplitude * cont_at_line * profile, 0.0)
    return continuum_flux + lines


def scale_to_magnitude(flux: np.ndarray, wave: np.ndarray, mag: np.ndarray) -> np.ndarray:
    """Scale rows to AB magnitude `mag` in an r-like top hat (5650-7100 A), photon-weighted."""
    top_hat = ((wave >= 5650) & (wave <= 7100)).astype(float)
    f_nu = flux @ band_f_nu_weights(wave, top_hat)
    return flux * (ab_to_f_nu(mag) / f_nu)[:, None]


def absorber_metal_ew(log_n: np.ndarray, ew_median: float) -> np.ndarray:
    """Rest EW scale of the metal lines at an HI absorber: DLAs 2x a typical metal system, sub-DLAs
    1x, Lyman-limit systems 0.5x (metallicity x column)."""
    return ew_median * np.where(log_n >= DLA_LOG_N, 2.0, np.where(log_n >= 19.0, 1.0, 0.5))


def bal_trough_transmission(
    wave: np.ndarray, z_qso: float, v_min: float, v_max: float, tau: float
) -> np.ndarray:
    """A BAL quasar's trough transmission: the DESI simulator's profile
    (:func:`lymannet.physics.bal_transmission`) with the CIV trough's central optical depth `tau`,
    a trough depth of 1 - exp(-tau)."""
    return bal_transmission(wave, 1 + z_qso, v_min, v_max, -np.expm1(-tau))


def simulate_chunk(
    params: dict[str, Any], rows: np.ndarray, spec: dict[str, Any], rng: np.random.Generator, igm: InoueIGM
) -> tuple[np.ndarray, np.ndarray]:
    """Observed (flux, ivar) float32 (len(rows), P) for the sightlines `rows`."""
    wave = wavelength_grid()
    z = params["z_qso"][rows]
    flux = quasar_continuum(
        wave,
        z,
        params["alpha_nu"][rows],
        params["ew_scatter"][rows],
        params["alpha_euv"][rows],
        params["pca"][rows],
        spec["continuum"],
    )
    flux = scale_to_magnitude(flux, wave, params["mag"][rows])
    bal = params["bal"]
    for k, row in enumerate(rows):
        if bal["flag"][row]:
            flux[k] *= bal_trough_transmission(
                wave, z[k], bal["v_min"][row], bal["v_max"][row], bal["tau"][row]
            )
    field = correlated_gaussian_field(rng, (rows.size, wave.size), WAVE_STEP)
    tau = fluctuate_tau(igm.tau(z), field).astype(np.float64)
    local = {int(r): k for k, r in enumerate(rows)}
    metal = params["metal"]
    pick = np.isin(metal["sightline"], rows)
    _add_metal_lines(
        tau,
        np.array([local[s] for s in metal["sightline"][pick]], dtype=np.int64),
        metal["z_abs"][pick],
        metal["ew"][pick],
        wave,
    )
    hi = params["absorbers"]
    pick = np.flatnonzero(np.isin(hi["sightline"], rows))
    if pick.size:
        hi_rows = np.array([local[s] for s in hi["sightline"][pick]], dtype=np.int64)
        for k, j in zip(hi_rows, pick):
            _absorber_tau(
                tau, int(k), wave, float(hi["z_abs"][j]), float(hi["log_n"][j]), float(hi["b_kms"][j])
            )
        # low-ionisation metal lines at the absorber's redshift
        _add_metal_lines(
            tau,
            hi_rows,
            hi["z_abs"][pick],
            absorber_metal_ew(hi["log_n"][pick], spec["metal_ew_median"]),
            wave,
        )
    model = smooth_to_resolution(flux * np.exp(-tau), spec["resolution"])
    per_flux = electrons_per_flux(wave, 1.0)[None, :] * params["exptime"][rows][:, None]
    variance_counts = np.clip(model, 0, None) * per_flux + sky_flux() * per_flux + READ_NOISE_E**2
    sigma = np.sqrt(variance_counts) / per_flux
    observed = model + sigma * rng.standard_normal(model.shape)
    return observed.astype(np.float32), (1.0 / sigma**2).astype(np.float32)


def simulate(spec: dict[str, Any], seed: int, write_chunk) -> dict[str, Any]:
    """Simulate spec['n_spectra'] sightlines chunk by chunk, calling write_chunk(rows, flux, ivar)."""
    spec = complete_spec(spec)
    params = draw_sightlines(spec, seed)
    igm = InoueIGM(wavelength_grid())
    n, chunk = int(spec["n_spectra"]), int(spec["chunk"])
    progress = Progress(n, "spectra", logger=log)
    for start in range(0, n, chunk):
        rows = np.arange(start, min(start + chunk, n))
        rng = np.random.default_rng(job_seed(seed, "fourmost", "pixels", str(start)))
        flux, ivar = simulate_chunk(params, rows, spec, rng, igm)
        write_chunk(rows, flux, ivar)
        progress.update(rows.size)
    progress.done()
    return params


def spectrum_name(index: int) -> str:
    """PAQS_absorber_000001.fits for index 0 (the slides' names, 1-based)."""
    return f"PAQS_absorber_{index + 1:06d}.fits"


def output_paths(spectra_dir: str | Path, n: int) -> list[Path]:
    return [Path(spectra_dir) / spectrum_name(i) for i in range(n)]
