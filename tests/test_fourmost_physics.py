"""4MOST simulator physics: f(N) and dN/dX of HI absorbers, DLA incidence per split, BAL troughs,
the survey depth, determinism."""

import numpy as np
import pytest

from lymannet import physics
from lymannet.fourmost import absorption, spectrograph
from lymannet.fourmost import simulate as sim


def test_fn_sampler_follows_prochaska_2014_slopes():
    draws = physics.draw_log_nhi(np.random.default_rng(1), 400_000, 17.0, 22.5)
    assert draws.min() >= 17.0 and draws.max() <= 22.5
    # p(log N) ~ f(N) N: slope of log10 counts per dex = beta + 1, beta from the spline knots
    counts, edges = np.histogram(draws, np.linspace(17.0, 22.5, 56))
    centres = 0.5 * (edges[1:] + edges[:-1])
    for lo, hi, beta in ((20.0, 21.0, -1.54), (17.2, 17.9, None)):
        pick = (centres > lo) & (centres < hi)
        slope = np.polyfit(centres[pick], np.log10(counts[pick]), 1)[0]
        expected = (
            beta + 1
            if beta is not None
            else np.polyfit(centres[pick], physics.log_fn_pw14(centres[pick]) + centres[pick], 1)[0]
        )
        assert slope == pytest.approx(expected, abs=0.06)
    # the population: ~12% of log N >= 17 absorbers are DLAs, ~22% sub-DLAs (19-20.3)
    assert np.mean(draws >= 20.3) == pytest.approx(0.125, abs=0.01)
    assert np.mean((draws >= 19) & (draws < 20.3)) == pytest.approx(0.34, abs=0.02)


def test_incidences_match_the_literature():
    # l_DLA(X) ~ 0.05 at z ~ 2.4 (Noterdaeme et al. 2012: 0.048 +- 0.003 at <z> = 2.5; PW14: ~0.06)
    assert 0.045 < physics.incidence_per_dx(20.3, 22.5) < 0.065
    # Lyman-limit systems: l(X) ~ 0.3-0.45 at z ~ 2.4 (Prochaska et al. 2010, 2014)
    assert 0.3 < physics.incidence_per_dx(17.2, 22.5) < 0.45
    # dX/dz of flat LCDM (0.3): 3.6 at z = 2.5; X(2, 3) by quadrature
    assert physics.dx_dz(2.5) == pytest.approx(3.5**2 / np.sqrt(0.3 * 3.5**3 + 0.7))
    assert physics.absorption_distance(2.0, 3.0) == pytest.approx(3.34, abs=0.02)


def test_absorber_redshifts_follow_dx():
    z = physics.draw_redshifts_dx(np.random.default_rng(2), np.full(100_000, 2.0), np.full(100_000, 4.0))
    grid = np.linspace(2, 4, 2001)
    weight = physics.dx_dz(grid)
    assert z.mean() == pytest.approx(
        np.trapezoid(grid * weight, grid) / np.trapezoid(weight, grid), abs=0.005
    )
    assert np.mean(z > 3.0) > 0.5  # dX/dz rises with z


def test_lyman_limit_and_bal_troughs():
    tau = physics.lyman_limit_tau(np.array([911.0, 912.0, 800.0]) * 3.0, 2.0, 17.2)
    assert tau[1] == 0.0 and tau[0] == pytest.approx(10**17.2 * 6.304e-18 * (911 / 911.75) ** 3)
    assert tau[2] == pytest.approx(tau[0] * (800 / 911.0) ** 3)
    rest = np.array([1549.06 * (1 - 5000 / 299792.458), 1549.06 * (1 - 20000 / 299792.458), 1700.0])
    trough = physics.bal_transmission(rest, 1.0, 2000.0, 9000.0, 0.6, lines=(("CIV", 1549.06, 1.0),))
    assert trough[0] == pytest.approx(0.4, abs=1e-3) and trough[1] > 1 - 1e-6 and trough[2] > 1 - 1e-6


def test_dla_incidence_is_natural_in_test_and_boosted_in_training():
    params = sim.draw_sightlines({"n_spectra": 20000}, 5)
    has_dla = params["n_dla"] > 0
    for split, boost in (("test", 1.0), ("train", 5.0)):
        pick = params["split"] == split
        expected = 1 - np.exp(-params["expected_dla"][pick])
        assert np.all(params["dla_boost"][pick] == boost)
        sigma = np.sqrt(np.sum(expected * (1 - expected))) / pick.sum()
        assert abs(has_dla[pick].mean() - expected.mean()) < 4 * sigma
    test, train = params["split"] == "test", params["split"] == "train"
    # nature: ~10% of z = 2-4 sightlines carry a DLA between Ly-beta and Ly-alpha
    assert 0.07 < has_dla[test].mean() < 0.15 and 0.3 < has_dla[train].mean() < 0.5
    ratio = params["n_dla"][train].mean() / params["n_dla"][test].mean()
    assert ratio == pytest.approx(5.0, rel=0.15)
    # confusers: Lyman-limit systems and sub-DLAs outnumber DLAs in the natural split
    hi = params["absorbers"]
    in_test = np.isin(hi["sightline"], np.flatnonzero(test))
    assert np.sum(in_test & (hi["log_n"] < 20.3)) > 5 * np.sum(in_test & (hi["log_n"] >= 20.3))
    # BAL quasars: 15% (all these quasars are at z > 1.6)
    assert params["bal"]["flag"].mean() == pytest.approx(0.15, abs=4 * np.sqrt(0.15 * 0.85 / 20000))


def test_magnitudes_and_exposures_span_the_survey():
    params = sim.draw_sightlines({"n_spectra": 20000}, 5)
    mag = params["mag"]
    assert mag.min() >= 18.0 and mag.max() <= 22.7
    # counts ~ 10^(0.3 m): the faintest half-magnitude holds 10^(0.3*0.5)... of the brightest
    faint, bright = np.sum(mag > 22.2), np.sum(mag < 18.5)
    assert faint / bright == pytest.approx(10 ** (0.3 * 4.2), rel=0.15)
    assert set(np.unique(params["exptime"])) == {1200.0, 2400.0, 3600.0}
    assert np.mean(params["exptime"] == 2400.0) == pytest.approx(0.5, abs=0.02)


def test_removed_simulation_keys_are_named():
    from lymannet.errors import ConfigError

    with pytest.raises(ConfigError, match="n_dla_probabilities .*dla_boost"):
        sim.complete_spec({"n_dla_probabilities": [0.5, 0.5]})
    with pytest.raises(ConfigError, match="dla_boost"):
        sim.complete_spec({"absorbers": {"dla_boost": {"test": -1.0}}})


def test_simulation_is_deterministic_and_sane():
    boost = {"train": 40.0, "val": 40.0, "test": 40.0}
    spec = {
        "n_spectra": 6,
        "chunk": 4,
        "absorbers": {"dla_boost": boost},
        "z": [3.0, 3.5],
        "bal": {"fraction": 0.5},
    }
    outputs = []
    for _ in range(2):
        chunks = {}
        params = sim.simulate(spec, 7, lambda rows, f, iv: chunks.update({int(rows[0]): (f, iv)}))
        outputs.append((params, np.concatenate([chunks[k][0] for k in sorted(chunks)])))
    (p1, f1), (p2, f2) = outputs
    assert np.array_equal(f1, f2) and f1.shape == (6, spectrograph.N_PIXELS) and f1.dtype == np.float32
    assert np.all(p1["n_dla"] >= 1) and np.all(p1["n_abs"] >= p1["n_dla"])
    z_lo, z_hi = absorption.dla_redshift_window(p1["z_qso"][p1["dla"]["sightline"]], 3000.0)
    assert np.all((p1["dla"]["z_abs"] >= z_lo) & (p1["dla"]["z_abs"] <= z_hi))
    assert spectrograph.wavelength_grid()[-1] == pytest.approx(9524.0)
