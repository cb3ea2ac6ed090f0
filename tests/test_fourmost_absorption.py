"""4MOST absorbers: Voigt equivalent widths in the damped regime, the DLA redshift window."""

import numpy as np
import pytest

from lymannet.fourmost import absorption


@pytest.mark.parametrize("log_n", [20.3, 21.0])
def test_voigt_equivalent_width_matches_damped_regime(log_n):
    wave_rest = np.linspace(1215.67 - 400, 1215.67 + 400, 400_001)  # 0.002 A steps
    tau = absorption.voigt_tau(wave_rest, log_n, 30.0)
    ew = np.trapezoid(1 - np.exp(-tau), wave_rest)
    analytic = absorption.damped_equivalent_width(log_n)
    # tau = W^2 / (4 pi dlambda^2) in the wings: the two beyond +-400 A carry W^2 / (2 pi 400)
    tail = analytic**2 / (2 * np.pi * 400.0)
    assert ew + tail == pytest.approx(analytic, rel=0.01)
    assert analytic == pytest.approx({20.3: 10.3, 21.0: 23.1}[log_n], abs=0.1)


def test_dla_window_between_lyman_beta_and_alpha():
    z_lo, z_hi = absorption.dla_redshift_window(np.array([3.0]), 3000.0)
    assert z_lo[0] == pytest.approx(4 * 1025.72 / 1215.67 - 1)
    assert z_hi[0] == pytest.approx(4 * (1 - 3000 / 299792.458) - 1)
    z_lo, z_hi = absorption.dla_redshift_window(np.array([2.0]), 3000.0)
    assert z_hi[0] < z_lo[0]  # Ly-alpha of a z=2.0 DLA-host lies below the grid: no DLA possible
