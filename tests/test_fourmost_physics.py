"""4MOST simulator physics: Voigt equivalent widths, the DLA column-density distribution, determinism."""

import numpy as np
import pytest

from lymannet.fourmost import simulate as sim


@pytest.mark.parametrize("log_n", [20.3, 21.0])
def test_voigt_equivalent_width_matches_damped_regime(log_n):
    wave_rest = np.linspace(1215.67 - 400, 1215.67 + 400, 400_001)  # 0.002 A steps
    tau = sim.voigt_tau(wave_rest, log_n, 30.0)
    ew = np.trapezoid(1 - np.exp(-tau), wave_rest)
    analytic = sim.damped_equivalent_width(log_n)
    # tau = W^2 / (4 pi dlambda^2) in the wings: the two beyond +-400 A carry W^2 / (2 pi 400)
    tail = analytic**2 / (2 * np.pi * 400.0)
    assert ew + tail == pytest.approx(analytic, rel=0.01)
    assert analytic == pytest.approx({20.3: 10.3, 21.0: 23.1}[log_n], abs=0.1)


def test_column_density_distribution_follows_gamma_function():
    cddf = sim.DEFAULTS["cddf"]
    draws = sim.draw_column_density(np.random.default_rng(1), 200_000, cddf)
    assert draws.min() >= 20.3 and draws.max() <= 22.5
    edges = np.linspace(20.3, 22.5, 12)
    counts, _ = np.histogram(draws, edges)
    fine = np.linspace(20.3, 22.5, 20001)
    pdf = sim.cddf_log_pdf(fine, cddf["alpha"], cddf["log_n_gamma"])
    expected = np.array([pdf[(fine >= lo) & (fine < hi)].sum() for lo, hi in zip(edges[:-1], edges[1:])])
    expected = expected / expected.sum() * draws.size
    assert np.all(np.abs(counts - expected) < 5 * np.sqrt(expected) + 5)
    # a steep distribution: most DLAs are weak, a few are very strong
    below_21 = pdf[fine < 21.0].sum() / pdf.sum()
    assert np.mean(draws < 21.0) == pytest.approx(below_21, abs=0.005)
    assert 0.8 < below_21 < 0.9 and np.mean(draws > 22.0) < 0.03


def test_dla_window_between_lyman_beta_and_alpha():
    z_lo, z_hi = sim.dla_redshift_window(np.array([3.0]), 3000.0)
    assert z_lo[0] == pytest.approx(4 * 1025.72 / 1215.67 - 1)
    assert z_hi[0] == pytest.approx(4 * (1 - 3000 / 299792.458) - 1)
    z_lo, z_hi = sim.dla_redshift_window(np.array([2.0]), 3000.0)
    assert z_hi[0] < z_lo[0]  # Ly-alpha of a z=2.0 DLA-host lies below the grid: no DLA possible


def test_simulation_is_deterministic_and_sane():
    spec = {"n_spectra": 6, "chunk": 4, "n_dla_probabilities": [0.0, 0.0, 0.0, 1.0], "z": [3.0, 3.5]}
    outputs = []
    for _ in range(2):
        chunks = {}
        params = sim.simulate(spec, 7, lambda rows, f, iv: chunks.update({int(rows[0]): (f, iv)}))
        outputs.append((params, np.concatenate([chunks[k][0] for k in sorted(chunks)])))
    (p1, f1), (p2, f2) = outputs
    assert np.array_equal(f1, f2) and f1.shape == (6, sim.N_PIXELS) and f1.dtype == np.float32
    assert np.all(p1["n_dla"] == 3) and np.all(p1["n_abs"] >= 3)
    z_lo, z_hi = sim.dla_redshift_window(p1["z_qso"][p1["dla"]["sightline"]], 3000.0)
    assert np.all((p1["dla"]["z_abs"] >= z_lo) & (p1["dla"]["z_abs"] <= z_hi))
    assert sim.wavelength_grid()[-1] == pytest.approx(9524.0)
