"""lymannet.reshift through the `shift` op: a shifted galaxy gets the IGM of its new redshift, the
noise of the wavelengths it now sits at, and no empty ends (issue 17, part 1).

Spectra are simulated (lymannet.simulate, 2 h exposures, r = 22.5-24.5) and ingested as the
pipeline does; shifted spectra are compared with spectra simulated at the destination redshift.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from lymannet import augment, simulate
from lymannet.augment_ops import parse_ratio
from lymannet.config import slugify
from lymannet.desi import ARM_OVERLAPS
from lymannet.grid import Grid
from lymannet.ingest import ingest
from lymannet.spectra import SpectraFile, SpectrumSet

GRID = Grid.from_config({"kind": "linear", "wave_min": 3600.0, "wave_max": 10000.0, "step": 8.0})
INGEST = {"fiberstatus": "zero_only", "missing_truth": "error", "chunk_rows": 4096}
N_PER_SET = 200
# (z0, ratio as configured, z1): the demo's 5/4, 3/4 and 4.3/4 shifts, from where each lands
# with its Ly-alpha forest (rest 1050-1180 A) inside the DESI range.
SHIFTS = [(3.0, "5/4", 4.0), (3.8, "3/4", 2.6), (3.0, "4.3/4", 3.3)]
FOREST, CONTINUUM = (1050.0, 1180.0), (1270.0, 1380.0)


def simulate_lbgs(folder: Path, z: float, n: int = N_PER_SET) -> Path:
    name = f"lbg_z{z}"
    spec = {
        "mode": "continuous",
        "exptime": [7200],
        "mag_r": [22.5, 24.5],
        "populations": {"LBG": {"n": n, "z": [z, z]}},
    }
    coadd, truth, output = (
        folder / f"{name}_coadd.fits",
        folder / f"{name}_truth.fits",
        folder / f"{name}.fits",
    )
    simulate.simulate_dataset(spec, 11, name, coadd, truth)
    ingest([str(coadd)], str(truth), GRID, str(output), name, INGEST)
    return output


def read_network(path: Path) -> SpectrumSet:
    with SpectraFile(path) as spectra_file:
        return spectra_file.read("network")


@pytest.fixture(scope="module")
def lbg_sets(tmp_path_factory) -> dict[float, Path]:
    folder = tmp_path_factory.mktemp("reshift")
    redshifts = sorted({z for z0, _, z1 in SHIFTS for z in (z0, z1)})
    return {z: simulate_lbgs(folder, z) for z in redshifts}


@pytest.fixture(scope="module")
def shifted(lbg_sets, tmp_path_factory) -> dict[tuple[str, bool], SpectrumSet]:
    """(ratio, thesis) -> network layer of the shifted set (no jitter: every z1 exact)."""
    folder = tmp_path_factory.mktemp("shifted")
    out = {}
    for z0, ratio, _ in SHIFTS:
        for thesis in (False, True):
            output = folder / f"{ratio.replace('/', '_')}_{thesis}.fits"
            augment.augment_variant(
                lbg_sets[z0],
                output,
                {"ops": [{"shift": {"ratio": ratio, "thesis": thesis}}]},
                3,
                f"offset of {ratio}",
            )
            out[ratio, thesis] = read_network(output)
    return out


def forest_over_continuum(spectra: SpectrumSet) -> float:
    """Stacked mean flux in rest 1050-1180 A over that in rest 1270-1380 A (pixels with data):
    the mean transmission times the (population-averaged) continuum slope."""
    rest = GRID.centres[None, :] / (1 + spectra.truth["Z"].to_numpy()[:, None])
    has_data = spectra.ivar > 0
    forest = (rest > FOREST[0]) & (rest < FOREST[1]) & has_data
    continuum = (rest > CONTINUUM[0]) & (rest < CONTINUUM[1]) & has_data
    return float(spectra.flux[forest].mean() / spectra.flux[continuum].mean())


@pytest.mark.parametrize("z0, ratio, z1", SHIFTS)
def test_shifted_forest_has_the_destination_transmission(lbg_sets, shifted, z0, ratio, z1):
    target = forest_over_continuum(read_network(lbg_sets[z1]))
    moved = forest_over_continuum(shifted[ratio, False])
    assert moved == pytest.approx(target, rel=0.10)
    np.testing.assert_allclose(shifted[ratio, False].truth["Z"], z1, atol=1e-9)
    if ratio != "4.3/4":  # eq. 3.1 alone keeps z0's forest: 45% too bright at z1 = 4, 31% too dark at 2.6
        assert abs(forest_over_continuum(shifted[ratio, True]) / target - 1) > 0.25


def noise_bins() -> dict[str, np.ndarray]:
    overlap = ARM_OVERLAPS[0]  # the 5760-5800 A dichroic overlap
    return {
        "5577 A": GRID.pixel_index(np.array([5577.3])),
        "5800 A overlap": np.flatnonzero((GRID.centres > overlap[0]) & (GRID.centres < overlap[1])),
    }


def noise_level(spectra: SpectrumSet, bins: np.ndarray) -> float:
    """Median sigma (from ivar) in `bins`."""
    return float(np.median(1 / np.sqrt(spectra.ivar[:, bins])))


def noise_over_ivar(spectra: SpectrumSet, bins: np.ndarray) -> float:
    """Robust scatter, over the spectra, of r_b = flux_b - (flux_b-2 + flux_b+2) / 2 (the smooth
    signal removed) in units of the sigma that ivar gives r_b: 1 when the noise is what ivar says."""
    variance = np.divide(1.0, spectra.ivar, out=np.full(spectra.ivar.shape, np.inf), where=spectra.ivar > 0)
    residual = spectra.flux[:, bins] - 0.5 * (spectra.flux[:, bins - 2] + spectra.flux[:, bins + 2])
    sigma = np.sqrt(variance[:, bins] + 0.25 * (variance[:, bins - 2] + variance[:, bins + 2]))
    chi = (residual - np.median(residual, axis=0)) / sigma
    return float(1.4826 * np.median(np.abs(chi)))


@pytest.mark.parametrize("z0, ratio, z1", SHIFTS)
def test_shifted_noise_is_that_of_the_destination_wavelengths(lbg_sets, shifted, z0, ratio, z1):
    unshifted = read_network(lbg_sets[z1])  # observed at z1 with the same exposure and magnitudes
    for where, bins in noise_bins().items():
        moved, reference = noise_level(shifted[ratio, False], bins), noise_level(unshifted, bins)
        assert moved / reference == pytest.approx(
            1.0, abs=0.2
        ), f"{ratio} at {where}: sigma {moved:.4f} vs {reference:.4f}"
        # and the flux scatters as that ivar says (so the noise level, not only ivar, matches)
        assert noise_over_ivar(shifted[ratio, False], bins) == pytest.approx(1.0, abs=0.2)
    # Nowhere (redward of Ly-alpha, where no IGM gain scales the noise) is the noise more than
    # 2x (MODEL_VARIANCE_FACTOR = 4 in variance) that of the destination, times sqrt(r) for a
    # stretch: the source's arm roll-offs (up to 4.9x) are modelled, not carried along
    sigma = [
        np.median(1 / np.sqrt(np.where(s.ivar > 0, s.ivar, np.nan)), axis=0)
        for s in (shifted[ratio, False], unshifted)
    ]
    redward = (GRID.centres > 1216.0 * (1 + z1)) & np.isfinite(sigma[1])
    stretch = max(parse_ratio(ratio), 1.0)
    assert np.max(sigma[0][redward] / sigma[1][redward]) < 2.0 * np.sqrt(stretch) * 1.05
    if ratio == "3/4":  # eq. 3.1 alone carries 7436 A's noise to 5577 A: half the sky line's
        bins = noise_bins()["5577 A"]
        assert noise_level(shifted[ratio, True], bins) / noise_level(unshifted, bins) < 0.7


@pytest.mark.parametrize("z0, ratio, z1", SHIFTS)
def test_shift_leaves_no_empty_end(lbg_sets, shifted, z0, ratio, z1):
    source = read_network(lbg_sets[z0])
    moved = shifted[ratio, False]
    # zero ivar exactly where the unshifted spectra have none (the grid beyond 9824 A)
    np.testing.assert_array_equal(moved.ivar == 0, source.ivar == 0)
    assert (moved.flux[moved.ivar == 0] == 0).all()
    old = shifted[ratio, True]
    assert (old.ivar == 0).sum(axis=1).min() > (source.ivar == 0).sum(axis=1).max()  # eq. 3.1 alone: gaps
    # the filled end holds the galaxy's continuum: its mean flux, over the mean flux of rest
    # 1600-2000 A, against the same for spectra simulated at z1 (the red end of 3/4, where the
    # continuum is bright enough to tell; each set normalised by itself, since eq. 3.1 keeps flux
    # densities, so a shifted spectrum is not as bright in r as one simulated at z1)
    if ratio == "3/4":
        unshifted = read_network(lbg_sets[z1])
        filled = (old.ivar == 0).all(axis=0) & (source.ivar > 0).all(axis=0)
        assert filled.sum() > 250
        rest = GRID.centres / (1 + z1)
        reference = (rest > 1600) & (rest < 2000)
        shape = [
            spectra.flux[:, filled].mean() / spectra.flux[:, reference].mean()
            for spectra in (moved, unshifted)
        ]
        assert shape[0] / shape[1] == pytest.approx(1.0, abs=0.1)


# ---------------------------------------------------------------------------------------------
# every combo of the demo, at small size: no "empty end = LBG" shortcut

DEMO_CONFIG = Path(__file__).resolve().parents[1] / "config" / "config.yaml"


def demo_config() -> dict:
    import yaml

    return yaml.safe_load(DEMO_CONFIG.read_text())


def small_dataset(folder: Path, name: str, spec: dict) -> Path:
    coadd, truth, output = (
        folder / f"{name}_coadd.fits",
        folder / f"{name}_truth.fits",
        folder / f"{name}.fits",
    )
    simulate.simulate_dataset(spec, 5, name, coadd, truth)
    ingest([str(coadd)], str(truth), GRID, str(output), name, INGEST)
    return output


@pytest.fixture(scope="module")
def demo_sources(tmp_path_factory) -> dict[str, Path]:
    """The demo's data sets at ~1/10 size (ingested, no holdout): survey, and the templates set
    (one copy, two magnitudes) resampled as rule resample_templates does."""
    from lymannet.templates import resample_templates

    config, folder = demo_config(), tmp_path_factory.mktemp("demo_small")
    survey = dict(config["datasets"]["survey"]["simulate"])
    survey["populations"] = {
        kind: dict(pop, n=max(40, pop["n"] // 10)) for kind, pop in survey["populations"].items()
    }
    templates = dict(config["datasets"]["templates"]["simulate"], copies=1, mag_levels=[23.0, 24.0])
    sources = {"survey": small_dataset(folder, "survey", survey)}
    pool = small_dataset(folder, "templates", templates)
    sources["resampled:templates"] = folder / "resampled_templates.fits"
    resample_templates(
        pool,
        sources["resampled:templates"],
        folder / "resampled.png",
        config["resample_templates"]["templates"]["offset_width"],
        config["seed"],
        "templates",
    )
    return sources


def build_combo(
    config: dict, combo: str, sources: dict[str, Path], folder: Path, thesis: bool = False
) -> SpectrumSet:
    """A combo's train + validation rows, its variants built with the demo's recipes
    (thesis: every shift as eq. 3.1 alone)."""
    from lymannet.combine import combine
    from lymannet.spectra import read_spectra

    members = {}
    for name in config["combos"][combo]["members"]:
        spec = dict(config["variants"][name])
        if thesis:
            spec["ops"] = [
                {"shift": dict(op["shift"], thesis=True)} if "shift" in op else op for op in spec["ops"]
            ]
        members[name] = folder / f"{slugify(name)}.fits"
        if not members[name].exists():
            augment.augment_variant(sources[spec["source"]], members[name], spec, config["seed"], name)
    out = {side: folder / f"{combo}_{side}.fits" for side in ("train", "val")}
    combine(
        {k: str(v) for k, v in members.items()},
        config["combos"][combo],
        config["seed"],
        combo,
        out["train"],
        out["val"],
        folder / f"{combo}.csv",
        folder / f"{combo}.png",
    )
    parts = [read_spectra(out[side]) for side in ("train", "val")]
    return SpectrumSet(
        GRID.wavelength,
        np.concatenate([p.flux for p in parts]),
        np.concatenate([p.ivar for p in parts]),
        pd.concat([p.truth for p in parts], ignore_index=True),
        GRID,
    )


def zero_ivar_ks(spectra: SpectrumSet) -> tuple[float, int, int]:
    """Two-sample KS p-value of the per-spectrum fraction of zero-ivar pixels, LBG vs the rest."""
    from scipy.stats import ks_2samp

    fraction = (spectra.ivar == 0).mean(axis=1)
    lbg = spectra.truth["SPECTYPE"].to_numpy() == "LBG"
    return float(ks_2samp(fraction[lbg], fraction[~lbg]).pvalue), int(lbg.sum()), int((~lbg).sum())


@pytest.mark.parametrize("combo", list(demo_config()["combos"]))
def test_zero_ivar_fraction_is_the_same_for_lbgs_and_contaminants(demo_sources, combo, tmp_path_factory):
    config = demo_config()
    folder = tmp_path_factory.getbasetemp() / "demo_variants"
    folder.mkdir(exist_ok=True)
    p_value, n_lbg, n_contaminants = zero_ivar_ks(build_combo(config, combo, demo_sources, folder))
    assert n_lbg >= 40 and n_contaminants >= 40
    assert p_value > 0.01, f"{combo}: KS p = {p_value:.3g} ({n_lbg} LBG, {n_contaminants} contaminants)"


def test_thesis_shift_gives_lbgs_their_own_gaps(demo_sources, tmp_path):
    """The same KS test fails with eq. 3.1 alone: only shifted LBGs carry empty ends."""
    p_value, _, _ = zero_ivar_ks(
        build_combo(demo_config(), "data_to_train_1", demo_sources, tmp_path, thesis=True)
    )
    assert p_value < 1e-6


def test_boosted_offset_is_not_a_second_offset_of_5_4(demo_sources, tmp_path):
    config = demo_config()
    sets = {}
    for name in ("offset of 5/4", "offset of 5/4 boosted"):
        output = tmp_path / f"{slugify(name)}.fits"
        augment.augment_variant(
            demo_sources["survey"], output, config["variants"][name], config["seed"], name
        )
        sets[name] = read_network(output).truth
    plain, boosted = sets["offset of 5/4"], sets["offset of 5/4 boosted"]
    parent_z = (1 + boosted["Z"]) / 1.25 - 1  # within +-0.1 / 1.25 of z0 (jitter 0.2)
    assert (parent_z > 2.7 - 0.08).all() and boosted["Z"].min() > 3.5
    assert len(boosted) < len(plain) and plain["Z"].min() < 3.5
    assert boosted["Z"].mean() > plain["Z"].mean() + 0.02


# ---------------------------------------------------------------------------------------------
# real DESI coadds: the shift reads only Z and the spectra (no EXPTIME, magnitude or fibre)


def test_real_edr_spectra_shift_with_masked_pixels_kept_in_place(fixtures_dir, tmp_path):
    coadds = [
        fixtures_dir / "desi-edr" / name
        for name in ("coadd-5-169-thru20210419.fits", "coadd-sv3-dark-26065.fits")
    ]
    truth = tmp_path / "vi.csv"
    truth.write_text(
        "TARGETID,Z,SPECTYPE\n39633300968442591,2.8,LBG\n39627866878511337,3.0,LBG\n"
        "39627866878514741,3.2,LBG\n"
    )
    pool = tmp_path / "edr.fits"
    ingest(
        [str(path) for path in coadds],
        str(truth),
        GRID,
        str(pool),
        "edr",
        {**INGEST, "missing_truth": "drop"},
    )
    output = tmp_path / "shifted.fits"
    spec = {"ops": [{"shift": {"ratio": "5/4"}}], "keep_native": True}
    assert augment.augment_variant(pool, output, spec, 1, "edr 5/4") == 3
    with SpectraFile(pool) as spectra_file:
        source, source_native = spectra_file.read("network"), spectra_file.read("native")
    with SpectraFile(output) as spectra_file:
        moved, moved_native = spectra_file.read("network"), spectra_file.read("native")
    assert np.isfinite(moved.flux).all() and np.isfinite(moved_native.flux).all()
    # masked pixels of the observation (35 native pixels of one spectrum) stay where the
    # instrument had them, and only they are empty: the shifted masks and ends are filled
    assert (source_native.ivar == 0).sum() >= 35
    np.testing.assert_array_equal(moved_native.ivar == 0, source_native.ivar == 0)
    np.testing.assert_array_equal(moved.ivar == 0, source.ivar == 0)
    np.testing.assert_allclose(moved.truth["Z"], 1.25 * (1 + source.truth["Z"]) - 1)


# ---------------------------------------------------------------------------------------------
# the IGM factor on its own


def test_igm_correction_is_the_i14_mean_ratio_with_scatter_and_a_bounded_gain():
    from lymannet.desi import native_wavelength
    from lymannet.igm import InoueIGM
    from lymannet.reshift import MAX_IGM_GAIN, igm_correction

    wave = native_wavelength()
    n = 3000
    up, capped = igm_correction(wave, np.full(n, 3.0), np.full(n, 4.0), np.random.default_rng(1))
    assert capped == 0 and up.shape[1] == np.searchsorted(wave, 1215.67 * 4.0, side="right")
    rest = wave[: up.shape[1]] / 4.0
    forest = (rest > 1050) & (rest < 1180)
    expected = (
        InoueIGM(wave * 1.25).transmission(np.array([4.0]))[0]
        / InoueIGM(wave).transmission(np.array([3.0]))[0]
    )
    # <t> over sightlines is the mean ratio (0.69 at rest 1100 A); one sightline scatters around it
    np.testing.assert_allclose(up[:, forest].mean(axis=0), expected[: up.shape[1]][forest], rtol=0.03)
    assert up[:, forest].std(axis=0).min() > 0.1 and (up <= 1.0).all()
    down, capped = igm_correction(wave, np.full(4, 3.8), np.full(4, 2.6), np.random.default_rng(1))
    assert capped > 0 and down.max() == pytest.approx(MAX_IGM_GAIN) and (down >= 1.0).all()
    rest = wave[: down.shape[1]] / 4.8
    gain = (
        InoueIGM(wave * 0.75).transmission(np.array([2.6]))[0]
        / InoueIGM(wave).transmission(np.array([3.8]))[0]
    )
    unbounded = (rest > 1050) & (rest < 1180) & (gain[: down.shape[1]] < MAX_IGM_GAIN)
    np.testing.assert_allclose(
        down[:, unbounded], np.broadcast_to(gain[: down.shape[1]][unbounded], (4, unbounded.sum())), rtol=1e-3
    )


# ---------------------------------------------------------------------------------------------
# online augmentation (lymannet.online): the same physics on the network layer, per batch (issue 26)

ONLINE_SHIFTS = [(3.0, 4.0), (3.8, 2.6), (3.0, 3.3)]


def online_shifted(spectra: SpectrumSet, z1: float, thesis: bool = False, seed: int = 0) -> SpectrumSet:
    """Every row moved to z1 by lymannet.online (p = 1), in batches of 64 as training draws them."""
    import torch

    from lymannet.online import OnlineAugmentation, spectype_codes

    z0 = np.array(spectra.truth["Z"], dtype=np.float64)
    dz = float(z1 - z0[0])
    augmentation = OnlineAugmentation(
        {"shift": {"p": 1.0, "z_range": [dz, dz], "thesis": thesis, "classes": {"LBG": [1.5, 4.5]}}}, GRID
    )
    generator = torch.Generator().manual_seed(seed)
    codes = torch.as_tensor(spectype_codes(spectra.truth["SPECTYPE"].to_numpy()))
    parts = []
    for start in range(0, len(z0), 64):
        rows = slice(start, start + 64)
        parts.append(
            augmentation(
                torch.from_numpy(np.ascontiguousarray(spectra.flux[rows])),
                torch.from_numpy(np.ascontiguousarray(spectra.ivar[rows])),
                torch.from_numpy(z0[rows]),
                generator,
                spectype=codes[rows],
            )
        )
    flux, ivar, z = (torch.cat([part[k] for part in parts]).numpy() for k in range(3))
    return SpectrumSet(GRID.wavelength, flux, ivar, spectra.truth.assign(Z=z.astype(np.float64)), GRID)


@pytest.mark.parametrize("z0, z1", ONLINE_SHIFTS)
def test_online_shift_gives_the_destination_igm_noise_and_no_empty_end(lbg_sets, z0, z1):
    source, target = read_network(lbg_sets[z0]), read_network(lbg_sets[z1])
    moved = online_shifted(source, z1)
    np.testing.assert_allclose(moved.truth["Z"], z1, atol=1e-5)
    reference = forest_over_continuum(target)
    assert forest_over_continuum(moved) == pytest.approx(reference, rel=0.10)
    if z1 != 3.3:  # eq. 3.1 alone keeps z0's forest (and its empty ends)
        old = online_shifted(source, z1, thesis=True)
        assert abs(forest_over_continuum(old) / reference - 1) > 0.25
        assert (old.ivar == 0).sum(axis=1).min() > (source.ivar == 0).sum(axis=1).max()
    # no empty end: zero ivar exactly where the unshifted spectra have none
    np.testing.assert_array_equal(moved.ivar == 0, source.ivar == 0)
    for where, bins in noise_bins().items():
        ratio = noise_level(moved, bins) / noise_level(target, bins)
        assert ratio == pytest.approx(1.0, abs=0.2), f"{z0} -> {z1} at {where}: sigma ratio {ratio:.2f}"
        assert noise_over_ivar(moved, bins) == pytest.approx(1.0, abs=0.2)


def test_online_physical_shift_is_deterministic_and_leaves_its_input(lbg_sets):
    source = read_network(lbg_sets[3.0])
    flux = source.flux.copy()
    a, b = online_shifted(source, 3.4, seed=5), online_shifted(source, 3.4, seed=5)
    np.testing.assert_array_equal(a.flux, b.flux)
    np.testing.assert_array_equal(source.flux, flux)
    assert not np.array_equal(online_shifted(source, 3.4, seed=6).flux, a.flux)
