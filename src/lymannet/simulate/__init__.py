"""DESI-format spectrum simulator: Lyman Break Galaxies and the contaminants a colour-selected LBG
sample lets in (QSOs with and without BAL troughs, ELGs, passive and weak-line galaxies, stars).

The pipeline's embedded default data. Writes a DESI coadd file (PRIMARY, FIBERMAP, per arm
``<ARM>_WAVELENGTH/_FLUX/_IVAR/_MASK``; Guy et al. 2023, AJ 165, 144 for the format) and a truth
table (extname TRUTH). Everything is vectorised over a chunk of spectra; no Python loop runs over
pixels or objects.

Populations (rest-frame models, redshifted onto the merged native grid 3600-9824 A, 0.8 A)
-----------------------------------------------------------------------------------------
LBG (2 <= z <= 4)
    UV continuum f_lambda ~ lambda^beta, beta ~ N(-1.7, 0.4) (Shapley et al. 2003, ApJ 588, 65;
    Bouwens et al. 2009, ApJ 705, 936). Intrinsic Lyman-continuum escape fraction 0-10% below
    912 A rest (Steidel et al. 2018, ApJ 869, 123). Ly-alpha in four template classes after the
    Lyman-alpha-EW quartiles of Shapley et al. 2003 (their Table 3: -14.9, -1.1, +11.0, +52.6 A):
    rest EW uniform in [-15, -3] (0: absorption, no emission), [3, 10] (1: weak), [10, 30]
    (2: moderate), [30, 80] (3: strong emitter). Emission is redshifted by ~ +400 km/s from
    systemic and interstellar absorption blueshifted by ~ -150 km/s (Shapley et al. 2003;
    Steidel et al. 2010, ApJ 717, 289); the IGM then eats the blue side of the line. Interstellar
    absorption lines (SiII, OI, CII, SiIV, CIV, FeII, AlII, Ly-beta) with the composite rest EWs of
    Shapley et al. 2003 (Table 1, blends split), scaled down for stronger Ly-alpha emitters (their
    Fig. 8 / Table 3 trend) with 25% lognormal per-object scatter; weak NV, HeII 1640 and
    CIII] 1909 emission.
QSO (1.8 <= z <= 4)
    Power law f_nu ~ nu^alpha_nu, alpha_nu ~ N(-0.5, 0.3), broad lines with the rest EWs of the
    SDSS composite (Vanden Berk et al. 2001, AJ 122, 549: Ly-alpha+NV, SiIV+OIV], CIV, CIII],
    MgII, H-beta, H-alpha; :data:`lymannet.physics.QSO_BROAD_LINES`), 30% lognormal EW scatter,
    FWHM ~ N(4500, 1200) km/s.
ELG (0.05 <= z <= 0.2)
    Blue continuum with a weak 4000 A break, [OII]3726,3729, H-beta, [OIII]4959,5007, H-alpha,
    [NII]6548,6584, [SII]6717,6731: H-alpha EW lognormal around 50 A, Balmer decrement 2.86-4.5,
    BPT-like ratios of star-forming galaxies (Baldwin, Phillips & Terlevich 1981, PASP 93, 5;
    Kewley et al. 2001, ApJ 556, 121), [OIII]5007/4959 = 2.98, [NII]6584/6548 = 3.05.

QSO, SUBTYPE BAL (a share ``bal_fraction``, default 15%, of the QSOs at z > 1.6)
    Broad absorption troughs with one outflow velocity profile (start 1,000-15,000 km/s, width
    2,500-17,500 km/s, depth 0.3-0.95, logistic edges) in CIV, SiIV, NV and Ly-alpha (relative
    depths 1, 0.7, 0.9, 0.8), absorbing continuum and emission alike (Weymann et al. 1991, ApJ 373,
    23; Hall et al. 2002, ApJS 141, 267; Trump et al. 2006, ApJS 165, 1; Gibson et al. 2009, ApJ 692,
    758: 13% of SDSS QSOs at 1.7 < z < 4.9 have BI > 0, ~15-20% after selection effects).
GALAXY (0.3 <= z <= 1.6), SUBTYPE PASSIVE or WEAKLINE (``passive_fraction``, default 0.5)
    Evolved stellar populations: f_lambda ~ lambda^beta (beta ~ N(-0.6, 0.2) passive, N(-1.1, 0.25)
    weak-line), a 4000 A break of amplitude 1.6-2.1 (passive) or 1.25-1.6 (weak-line) across the
    Dn4000 bimodality (Balogh et al. 1999, ApJ 527, 54; Kauffmann et al. 2003, MNRAS 341, 33), a steep
    near-UV decline below 3500 A, absorption lines with early-type Lick-index strengths (Ca II H&K,
    H-delta, G band, H-beta, Mg b, Fe 5270, Na D: Trager et al. 1998, ApJS 116, 1; Worthey &
    Ottaviani 1997, ApJS 111, 377; MgII 2800 and FeII 2600/2383 at z > 0.9: Weiner et al. 2009, ApJ
    692, 187), velocity dispersion 150-250 km/s, and weak [OII] 3727 (rest EW 0-3 A passive, 3-12 A
    weak-line, against > 20 A for ELGs) with LINER-like H-beta, [OIII], H-alpha, [NII] (Yan et al.
    2006, ApJ 648, 281).
STAR (Z = radial velocity / c, sigma 100 km/s), SUBTYPE M, K, G or F
    Analytic dwarf templates (no spectral library ships on PyPI in a usable form, and runs never
    download data): a Planck continuum at Teff (Pecaut & Mamajek 2013, ApJS 208, 9: F 6000-7200 K,
    G 5340-5930 K, K 3970-5270 K, M 2650-3850 K) with blue line blanketing (10-65% below ~4300 A,
    more in cooler stars), Ca II H&K, Balmer, G band, Mg b, Fe 5270, Na D, K I 7700, Na I 8190 and
    Ca II triplet absorption with rest EWs interpolated in Teff (Jacoby, Hunter & Christian 1984,
    ApJS 56, 257; Pickles 1998, PASP 110, 863; Worthey et al. 1994, ApJS 94, 687; Cenarro et al.
    2001, MNRAS 326, 959), and TiO/CaH bands below ~4100 K (Kirkpatrick et al. 1991, ApJS 77, 417),
    calibrated so that the TiO5 index of Reid, Hawley & Gizis 1995 (AJ 110, 1838) is ~0.85 at M0 and
    ~0.45 at M4. Colours: g-r ~0.4 (F5), 0.6 (G2), 1.0 (K4), 1.55 (M3) against 0.35, 0.45, 1.0,
    1.45 for SDSS dwarfs (Covey et al. 2007, AJ 134, 2398). The type mix (default M 15%, K 35%, G 35%,
    F 15%) follows the LBG colour box crossing the stellar locus at G-K colours.

IGM: the Inoue et al. 2014 mean transmission with lognormal per-sightline scatter
(:mod:`lymannet.igm`), applied to LBGs and QSOs.

Photometry: each noiseless spectrum is scaled to its drawn AB r magnitude through a smooth
top-hat approximation of the DECam r filter (5650-7100 A); FLUX_G/R/Z (nanomaggies) in the
FIBERMAP come from the noiseless spectrum (g: 4000-5500 A, z: 8300-9824 A, truncated at the DESI
red end).

Noise ("observing" the spectrum for EXPTIME seconds): counts = f_lambda x collecting area
(8.68 m^2, DESI Collaboration 2022, AJ 164, 207) x throughput(arm, lambda) x exptime x pixel
width / photon energy; object counts are scaled by a fibre-aperture fraction. Variance = object
counts + sky counts (dark Kitt Peak continuum + the night-sky lines of package data
`sky_lines.txt`, through a 1.5" fibre; :mod:`lymannet.physics`) + read noise per 900 s exposure. Per-arm throughputs
(atmosphere at airmass ~1.1 + telescope + spectrograph + CCD, approximate shapes after the DESI
instrument papers) fall through the dichroics at 5780 and 7570 A, so the arm overlaps have larger
noise; O2 A/B and H2O telluric bands lower them too. The noise is Gaussian with exactly the
variance written to IVAR (so chi2 of flux - model is 1 per pixel on average). MASK is 0 (good).

Low-S/N spectra with no usable feature are the faint end of these populations: magnitudes are
drawn from number counts dN/dm ~ 10^(mag_slope m) within mag_r (``mag_slope``, per data set or per
population; 0 = uniform; faint galaxy counts in r have ~0.35: Metcalfe et al. 2001, MNRAS 323, 795),
so a survey-like data set is dominated by its faintest magnitude bin.

Modes (config ``datasets.<name>.simulate``): ``continuous`` (populations with counts and redshift
ranges, magnitudes from number counts, exposure times drawn from a list) or ``templates`` (LBGs on the
discrete grid z x template x magnitude x exposure x copies, thesis section 3.5.1).

Determinism: output bytes depend on (seed, dataset name, spec, chunk_rows). TARGETIDs start at a
base derived from the dataset name alone, so data sets of one config never share a TARGETID.

Modules, in the order a data set is made: :mod:`.spectrograph` (grids, throughput, sky, filters),
:mod:`.populations` (each population's draws), :mod:`.choices` (robustness options, domain
randomisation, :func:`draw_objects`), :mod:`.render` (noiseless models, IGM), :mod:`.observing`
(noise, the coadd and truth files). This package re-exports their public names.
"""

from __future__ import annotations

from .spectrograph import (  # noqa: F401
    EXPOSURE_SECONDS,
    FIBRE_AREA_ARCSEC2,
    INSTRUMENT_SIGMA_ANGSTROM,
    NANOMAGGY_F_NU,
    READ_VARIANCE_PER_EXPOSURE,
    TELESCOPE_AREA_CM2,
    ab_magnitude,
    arm_slices,
    dark_sky,
    Instrument,
    instrument,
    nanomaggies,
    throughput,
)
from .populations import (  # noqa: F401
    BAL_FRACTION,
    BAL_MIN_Z,
    FIBRE_FRACTION,
    GALAXY_SUBTYPES,
    LBG_EMISSION_SCALE_BY_TEMPLATE,
    LBG_ISM_SCALE_BY_TEMPLATE,
    LBG_TEMPLATE_EW_RANGES,
    LBG_TEMPLATE_FREQUENCIES,
    MAG_LIMITS,
    PASSIVE_FRACTION,
    POPULATION_EXTRA_KEYS,
    POPULATION_KEYS,
    POPULATION_Z_LIMITS,
    SPECTYPES,
    STAR_RV_SIGMA_KMS,
    STAR_SUBTYPE_FRACTIONS,
    STAR_SUBTYPES,
    STAR_TEFF_RANGES,
    draw_magnitudes,
    targetid_base,
    template_z_grid,
)
from .choices import (  # noqa: F401
    CONTINUOUS_ONLY,
    LYA_EW_DISTRIBUTIONS,
    LYA_EW_TEMPLATE_EDGES,
    RANDOMISE_KEYS,
    RANDOMISE_STREAM,
    ROBUSTNESS_STREAM,
    draw_objects,
    randomise_ranges,
    simulator_choices,
)
from .render import (  # noqa: F401
    ELG_LINES,
    GALAXY_ABSORPTION,
    GALAXY_EMISSION,
    HC_OVER_K,
    LBG_EMISSION_EW,
    LBG_ISM_EW,
    MAX_ISM_DEPTH,
    RENDERERS,
    STAR_BANDS,
    STAR_LINES,
    STAR_TEFF_KNOTS,
    render_model,
)
from .observing import (  # noqa: F401
    FLUX_BUNIT,
    IVAR_BUNIT,
    TRUTH_EXTRA_COLUMNS,
    arm_variance,
    observe,
    simulate_chunk,
    simulate_dataset,
    SimulatedChunk,
)
