"""lymannet.templates: resampling the discrete-redshift template set to a continuous redshift
distribution (thesis eq. 3.1)."""

from __future__ import annotations

import numpy as np

from conftest import NATIVE, LINE, make_truth, write_spectra_file, read_both
from lymannet.templates import resample_templates


def test_resample_templates_makes_redshifts_continuous(tmp_path):
    z_grid = np.round(np.arange(2.0, 4.0001, 0.1), 1)
    truth = make_truth(len(z_grid) * 4, z=np.repeat(z_grid, 4), TEMPLATE=0)
    pool = write_spectra_file(tmp_path / "pool.fits", truth)
    out, plot = tmp_path / "resampled.fits", tmp_path / "z.png"
    resample_templates(pool, out, plot, 0.1, 3, "templates")
    network, native = read_both(out)
    z = network.truth["Z"].to_numpy()
    assert len(np.unique(z)) == len(z)  # continuous: no two equal
    nearest = np.round(z * 10) / 10
    assert np.all(np.abs(z - np.repeat(z_grid, 4)) <= 0.05) and np.all(np.abs(z - nearest) <= 0.05 + 1e-12)
    assert (z - np.repeat(z_grid, 4)).std() > 0.02  # U(-0.05, 0.05): std 0.029
    assert native is not None  # kept for later shifts
    on_grid = LINE * (1 + z) > NATIVE[0] + 10  # z < 1.97: the line left the observed range
    peak = NATIVE[np.argmax(native.flux[on_grid], axis=1)]
    # within two 0.8 A pixels: z1's IGM (extra absorption, or the mean gain of a lower z) moves
    # the blue wing of this Ly-alpha line, so the brightest pixel may move by one
    assert np.all(np.abs(peak - LINE * (1 + z[on_grid])) <= 1.6)
    assert plot.stat().st_size > 1000
    assert (network.truth["PARENT_TARGETID"] == truth["TARGETID"]).all()
