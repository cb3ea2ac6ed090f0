"""lymannet.experiment_gallery: an original spectrum beside its augmented copies (kind: gallery)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from lymannet.augment import augment_variant
from lymannet.experiment_gallery import gallery_figure
from lymannet.grid import Grid
from lymannet.spectra import SpectrumSet, write_spectra


def test_gallery_pairs_an_original_with_its_copies(tmp_path):
    grid = Grid.from_config({"kind": "linear", "wave_min": 3600.0, "wave_max": 10000.0, "step": 8.0})
    wave = grid.wavelength
    n = 6
    rng = np.random.default_rng(0)
    truth = pd.DataFrame(
        {
            "TARGETID": np.arange(1, n + 1),
            "Z": np.linspace(2.8, 3.2, n),
            "SPECTYPE": ["LBG"] * 4 + ["QSO"] * 2,
            "MAG_R": np.linspace(22.5, 24.5, n),
        }
    )
    flux = (1 + 0.1 * rng.normal(size=(n, len(wave)))).astype(np.float32)
    pool = tmp_path / "pool.fits"
    write_spectra(pool, SpectrumSet(wave, flux, np.ones_like(flux), truth, grid=grid))
    variant = tmp_path / "masked.fits"
    augment_variant(
        pool,
        variant,
        {
            "source": "x",
            "ops": [{"select": {"spectype": ["LBG"]}}, {"mask_line": {"line": 1215.67, "width": 40}}],
        },
        seed=1,
        variant="masked",
    )
    figure = tmp_path / "panel.png"
    facts = gallery_figure(
        {"name": "lya_mask", "variants": ["masked"], "mark": ["lya", "overlap"]},
        str(pool),
        [str(variant)],
        str(figure),
    )
    assert figure.stat().st_size > 10_000
    assert facts["parent_targetid"] in range(1, 5)  # an LBG, present in the variant
    assert facts["copies"][0]["z"] == pytest.approx(facts["z_original"])
