"""lymannet.holdout, .templates, .augment, .online: holdout, test sets, template resampling, variant
recipes, online augmentation.

Spectra are synthetic: a flat continuum plus one Gaussian emission line at (1+z) x LINE, with
constant ivar, on the DESI native grid and rebinned onto the network grid as ingestion does.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from lymannet import augment
from lymannet.desi import native_wavelength
from lymannet.errors import ConfigError, InputFileError
from lymannet.grid import Grid
from lymannet.holdout import build_testset, split_holdout
from lymannet.online import OnlineAugmentation, spectype_codes
from lymannet.preprocess import rebin
from lymannet.selection import select_rows, validate_select
from lymannet.spectra import SpectraFile, SpectrumSet, read_spectra, write_spectra
from lymannet.templates import resample_templates

GRID = Grid.from_config({"kind": "linear", "wave_min": 3600.0, "wave_max": 10000.0, "step": 8.0})
LOG_GRID = Grid.quasarnet()
NATIVE = native_wavelength()
LINE = 1215.67
CONTINUUM, NATIVE_IVAR = 1.0, 4.0


def make_truth(
    n: int, z: np.ndarray | float = 3.0, spectype: list[str] | str = "LBG", first_id: int = 1000, **columns
) -> pd.DataFrame:
    truth = pd.DataFrame(
        {
            "TARGETID": np.arange(first_id, first_id + n),
            "Z": np.broadcast_to(z, (n,)),
            "SPECTYPE": np.broadcast_to(np.asarray(spectype), (n,)),
        }
    )
    for name, value in columns.items():
        truth[name] = np.broadcast_to(np.asarray(value), (n,))
    return truth


def write_file(
    path: Path,
    truth: pd.DataFrame,
    native: bool = True,
    line_amplitude: float = 20.0,
    noise_seed: int | None = None,
) -> Path:
    """Continuum + a Gaussian line (sigma 2 A) at (1+z) LINE, native ivar 4; network = rebin."""
    z = truth["Z"].to_numpy()[:, None]
    flux = CONTINUUM + line_amplitude * np.exp(-0.5 * ((NATIVE[None, :] - LINE * (1 + z)) / 2.0) ** 2)
    ivar = np.full_like(flux, NATIVE_IVAR)
    if noise_seed is not None:
        flux = flux + np.random.default_rng(noise_seed).normal(0, 1 / np.sqrt(NATIVE_IVAR), flux.shape)
    net_flux, net_ivar = rebin(NATIVE, flux, ivar, GRID)
    network = SpectrumSet(GRID.wavelength, net_flux, net_ivar, truth, GRID)
    native_set = (
        SpectrumSet(NATIVE, flux.astype(np.float32), ivar.astype(np.float32), truth) if native else None
    )
    write_spectra(path, network, native_set)
    return path


def read_both(path: Path) -> tuple[SpectrumSet, SpectrumSet | None]:
    with SpectraFile(path) as spectra_file:
        return spectra_file.read("network"), spectra_file.read("native") if spectra_file.has_native else None


def run_variant(tmp_path: Path, source: Path, ops: list, name: str = "v", seed: int = 7, **extra) -> Path:
    output = tmp_path / f"{name.replace('/', '_')}.fits"
    augment.augment_variant(source, output, {"source": "survey", "ops": ops, **extra}, seed, name)
    return output


# ---------------------------------------------------------------------------------------------
# shift

# Eq. 3.1 alone (thesis: true): the geometry every shift shares; the physics of the default
# (IGM, destination noise, filled ends) is tested further down on simulated spectra.


def test_shift_moves_line_on_native_and_network_layers(tmp_path):
    source = write_file(tmp_path / "pool.fits", make_truth(3, z=[2.5, 3.0, 3.3]))
    output = run_variant(tmp_path, source, [{"shift": {"ratio": "5/4", "thesis": True}}], keep_native=True)
    network, native = read_both(output)
    z1 = (1 + np.array([2.5, 3.0, 3.3])) * 1.25 - 1
    np.testing.assert_allclose(network.truth["Z"], z1)
    expected = LINE * (1 + z1)
    # native: the line's peak lands within one 0.8 A pixel of L(1+z1)
    assert np.all(np.abs(NATIVE[np.argmax(native.flux, axis=1)] - expected) <= 0.8)
    # network: the flux-weighted centroid of the line (continuum removed) is at L(1+z1)
    excess = np.clip(network.flux - CONTINUUM, 0, None)
    centroid = (excess * GRID.centres).sum(axis=1) / excess.sum(axis=1)
    np.testing.assert_allclose(centroid, expected, atol=2.0)
    assert np.all(np.abs(GRID.pixel_index(centroid) - GRID.pixel_index(expected)) <= 1)


def test_thesis_shift_to_higher_z_leaves_blue_end_empty_and_conserves_information(tmp_path):
    ratio = 1.25
    source = write_file(tmp_path / "pool.fits", make_truth(2, z=3.0))
    network, native = read_both(
        run_variant(tmp_path, source, [{"shift": {"ratio": ratio, "thesis": True}}], keep_native=True)
    )
    # nothing observed below 3600 A before the shift -> nothing below 3600 x ratio after
    empty_native = NATIVE + 0.4 <= (NATIVE[0] - 0.4) * ratio  # upper edges below the first shifted pixel
    assert np.all(native.ivar[:, empty_native] == 0) and np.all(native.flux[:, empty_native] == 0)
    assert np.all(native.ivar[:, NATIVE > NATIVE[0] * ratio + 1] > 0)
    empty_net = GRID.edges[1:] <= (NATIVE[0] - 0.4) * ratio
    assert empty_net.sum() >= 100  # 900 A of blue end
    assert np.all(network.ivar[:, empty_net] == 0) and np.all(network.flux[:, empty_net] == 0)
    # stretched pixels share their information out: ivar per pixel drops by the ratio
    interior = (NATIVE > 5000) & (NATIVE < 9000)
    np.testing.assert_allclose(native.ivar[:, interior], NATIVE_IVAR / ratio, rtol=1e-5)
    net_interior = (GRID.edges[:-1] > 5000) & (GRID.edges[1:] < 9000)
    np.testing.assert_allclose(network.ivar[:, net_interior].mean(), 10 * NATIVE_IVAR / ratio, rtol=0.02)


def test_thesis_shift_to_lower_z_leaves_red_end_empty(tmp_path):
    ratio = 0.75
    source = write_file(tmp_path / "pool.fits", make_truth(2, z=3.0))
    network, _ = read_both(run_variant(tmp_path, source, [{"shift": {"ratio": "3/4", "thesis": True}}]))
    red_limit = (NATIVE[-1] + 0.4) * ratio
    assert np.all(network.ivar[:, GRID.edges[:-1] >= red_limit] == 0)
    assert np.all(network.ivar[:, (GRID.edges[:-1] > 3700) & (GRID.edges[1:] < red_limit - 8)] > 0)
    np.testing.assert_allclose(network.truth["Z"], 4 * 0.75 - 1)


def test_shift_to_mean_z_and_jitter(tmp_path):
    z = np.linspace(2.6, 3.4, 40)
    source = write_file(tmp_path / "pool.fits", make_truth(40, z=z))
    network, _ = read_both(run_variant(tmp_path, source, [{"shift": {"to_mean_z": 4.0}}]))
    assert network.truth["Z"].mean() == pytest.approx(4.0)
    a, _ = read_both(run_variant(tmp_path, source, [{"shift": {"ratio": "5/4", "jitter": 0.2}}], name="a"))
    b, _ = read_both(run_variant(tmp_path, source, [{"shift": {"ratio": "5/4", "jitter": 0.2}}], name="b"))
    offset = a.truth["Z"].to_numpy() - ((1 + z) * 1.25 - 1)
    assert np.all(np.abs(offset) <= 0.1) and offset.std() > 0.03
    assert not np.allclose(a.truth["Z"], b.truth["Z"])  # two jittered copies differ


def test_shift_chain_keeps_parent_and_fresh_ids(tmp_path):
    source = write_file(tmp_path / "pool.fits", make_truth(5, z=3.0))
    output = run_variant(
        tmp_path,
        source,
        [{"shift": {"ratio": "5/4", "thesis": True}}, {"shift": {"ratio": "4/5", "thesis": True}}],
        name="offset of 5/4",
    )
    network, native = read_both(output)
    assert native is None  # variants hold the network layer unless keep_native
    truth = network.truth
    np.testing.assert_array_equal(truth["PARENT_TARGETID"], np.arange(1000, 1005))
    assert set(truth["TARGETID"]).isdisjoint(range(1000, 1005)) and truth["TARGETID"].is_unique
    assert (truth["SOURCE"] == "offset of 5/4").all()
    np.testing.assert_allclose(truth["Z"], 3.0)
    # there and back: the line is where it started
    excess = np.clip(network.flux - CONTINUUM, 0, None)
    centroid = (excess * GRID.centres).sum(axis=1) / excess.sum(axis=1)
    np.testing.assert_allclose(centroid, 4 * LINE, atol=2.0)


# ---------------------------------------------------------------------------------------------
# masks and noise


def _normalised_residuals(flux, ivar, inside):
    return ((flux[:, inside] - CONTINUUM) * np.sqrt(ivar[:, inside])).ravel()


def test_mask_region_holds_noise_of_the_local_ivar(tmp_path):
    # a line sitting in the window: masking must erase it
    z = 5800 / LINE - 1
    source = write_file(tmp_path / "pool.fits", make_truth(300, z=z), noise_seed=1)
    before, _ = read_both(source)
    network, native = read_both(
        run_variant(tmp_path, source, [{"mask_region": {"center": 5800, "width": 40}}], keep_native=True)
    )
    inside = (GRID.centres >= 5780) & (GRID.centres < 5820)
    assert inside.sum() == 5
    residual = _normalised_residuals(network.flux, network.ivar, inside)
    assert residual.std() == pytest.approx(1.0, abs=0.08) and abs(residual.mean()) < 0.1
    np.testing.assert_array_equal(network.ivar, before.ivar)  # the noise drawn is what ivar says
    np.testing.assert_array_equal(network.flux[:, ~inside], before.flux[:, ~inside])
    native_inside = (NATIVE >= 5780) & (NATIVE < 5820)
    residual = _normalised_residuals(native.flux, native.ivar, native_inside)
    assert residual.std() == pytest.approx(1.0, abs=0.03)
    assert before.flux[:, inside].max() > 3 and network.flux[:, inside].max() < 2.5


def test_mask_line_follows_redshift(tmp_path):
    z = np.linspace(2.4, 3.6, 200)
    source = write_file(tmp_path / "pool.fits", make_truth(200, z=z), noise_seed=2)
    network, _ = read_both(run_variant(tmp_path, source, [{"mask_line": {"line": LINE, "width": 40}}]))
    centre = LINE * (1 + z)[:, None]
    inside = np.abs(GRID.centres[None, :] - centre) < 20
    residual = (network.flux - CONTINUUM) * np.sqrt(network.ivar)
    assert residual[inside].std() == pytest.approx(1.0, abs=0.1)
    assert network.flux[inside].max() < 3  # the 20-sigma line is gone
    # rest-frame width: 10 A rest = 10 (1+z) A observed
    rest, _ = read_both(
        run_variant(
            tmp_path, source, [{"mask_line": {"line": LINE, "width": 10, "rest_frame": True}}], name="rest"
        )
    )
    assert rest.flux[inside].max() < 3


def test_add_noise_scatter_and_ivar(tmp_path):
    source = write_file(tmp_path / "pool.fits", make_truth(200, z=3.0), line_amplitude=0.0)
    before, _ = read_both(source)
    network, _ = read_both(run_variant(tmp_path, source, [{"add_noise": {"fraction": 0.1}}]))
    sigma = 0.1 * CONTINUUM  # fraction x median |flux| of a flat continuum at 1
    has_data = before.ivar > 0
    extra = (network.flux - before.flux)[has_data]
    assert extra.std() == pytest.approx(sigma, rel=0.03)
    expected_ivar = 1 / (1 / before.ivar[has_data] + sigma**2)
    np.testing.assert_allclose(network.ivar[has_data], expected_ivar, rtol=1e-5)
    assert np.all(network.ivar[~has_data] == 0) and np.all(network.flux[~has_data] == 0)


def test_native_noise_rebins_to_the_network_sigma():
    from lymannet.augment_ops import add_noise, native_noise_scale

    rng = np.random.default_rng(3)
    flux, ivar = np.ones((400, len(NATIVE))), np.full((400, len(NATIVE)), 1e12)
    noisy, noisy_ivar = add_noise(flux, ivar, 0.1 * native_noise_scale(NATIVE, GRID)[None, :], rng)
    net_flux, _ = rebin(NATIVE, noisy, noisy_ivar, GRID)
    interior = (GRID.edges[:-1] > 3700) & (GRID.edges[1:] < 9700)
    assert net_flux[:, interior].std() == pytest.approx(0.1, rel=0.05)


# ---------------------------------------------------------------------------------------------
# selection


@pytest.fixture
def mixed_truth() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    n = 2000
    return pd.DataFrame(
        {
            "TARGETID": np.arange(n),
            "Z": np.round(rng.uniform(0, 4, n), 1),
            "SPECTYPE": rng.choice(["LBG", "QSO", "ELG"], n),
            "TEMPLATE": rng.integers(0, 4, n),
            "MAG_R": rng.uniform(22, 25, n),
            "EXPTIME": rng.choice([1800.0, 7200.0], n),
        }
    )


def test_select_by_each_criterion(mixed_truth):
    rng = np.random.default_rng(0)
    t = mixed_truth

    def rows(**criteria):
        return select_rows(t, validate_select(criteria, "test"), rng)

    np.testing.assert_array_equal(rows(spectype=["QSO", "ELG"]), t["SPECTYPE"].isin(["QSO", "ELG"]))
    np.testing.assert_array_equal(rows(z=[2.6, None]), t["Z"] >= 2.6 - 1e-9)
    np.testing.assert_array_equal(rows(z=[None, 2.6]), t["Z"] <= 2.6 + 1e-9)  # 2.6 itself is in
    assert rows(z=[None, 2.6]).sum() > (t["Z"] < 2.6).sum()
    np.testing.assert_array_equal(rows(template=[0, 3]), t["TEMPLATE"].isin([0, 3]))
    np.testing.assert_array_equal(rows(mag_r=[23, 24]), t["MAG_R"].between(23, 24))
    np.testing.assert_array_equal(rows(exptime=[7200]), t["EXPTIME"] == 7200)
    both = rows(spectype=["LBG"], z=[2.7, None])
    np.testing.assert_array_equal(both, (t["SPECTYPE"] == "LBG") & (t["Z"] >= 2.7 - 1e-9))
    half = rows(spectype=["LBG"], fraction=0.5)
    assert half.sum() == round(0.5 * (t["SPECTYPE"] == "LBG").sum())
    assert (t["SPECTYPE"][half] == "LBG").all()
    third = rows(fraction=0.3333333)
    assert third.sum() == round(len(t) / 3)


@pytest.mark.parametrize(
    "criteria",
    [{"z": [3, 2]}, {"z": 3}, {"fraction": 1.5}, {"fraction": 0}, {"colour": ["red"]}, {"exptime": ["long"]}],
)
def test_bad_selection_raises(criteria):
    with pytest.raises(ConfigError):
        validate_select(criteria, "variant 'x'")


def test_select_and_simulated_ops_in_a_recipe(tmp_path):
    truth = make_truth(24, z=np.tile([2.0, 3.0, 4.0], 8))
    truth["TEMPLATE"] = np.repeat([0, 1, 2, 3], 6)
    truth["EXPTIME"] = np.tile([1800.0, 7200.0], 12)
    source = write_file(tmp_path / "templates.fits", truth, native=False)
    network, _ = read_both(
        run_variant(
            tmp_path,
            source,
            [{"simulated": {"exptime": [7200], "templates": [1, 2]}}, {"select": {"z": [2.5, None]}}],
        )
    )
    t = network.truth
    assert len(t) == 4 and (t["EXPTIME"] == 7200).all() and t["TEMPLATE"].isin([1, 2]).all()
    assert (t["Z"] >= 2.5).all()
    half, _ = read_both(
        run_variant(
            tmp_path, source, [{"simulated": {"exptime": [1800]}}, {"select": {"fraction": 0.5}}], name="half"
        )
    )
    assert len(half) == 6


# ---------------------------------------------------------------------------------------------
# recipe validation and determinism


def test_unknown_op_names_variant_op_and_valid_ops():
    with pytest.raises(ConfigError) as error:
        augment.parse_recipe("offset of 5/4", {"ops": [{"select": {}}, {"shfit": {"ratio": "5/4"}}]})
    message = str(error.value)
    assert "offset of 5/4" in message and "shfit" in message and "#2" in message
    for valid in ("select", "shift", "mask_region", "mask_line", "add_noise", "simulated"):
        assert valid in message


@pytest.mark.parametrize(
    "op",
    [
        {"shift": {}},
        {"shift": {"ratio": "5/0"}},
        {"shift": {"ratio": "a/b"}},
        {"shift": {"ratio": 1.2, "to_mean_z": 3}},
        {"shift": {"ratio": -1}},
        {"shift": {"ratio": 1.2, "thesis": "yes"}},
        {"mask_region": {"center": 5800}},
        {"mask_region": {"center": 5800, "width": -4}},
        {"mask_line": {"line": LINE, "width": 40, "frame": "rest"}},
        {"add_noise": {"fraction": "lots"}},
        {"select": {"z": [1]}},
        "shift",
        {"shift": {"ratio": 1}, "select": {}},
    ],
)
def test_bad_op_parameters_raise_config_error(op):
    with pytest.raises(ConfigError, match="variant 'v'"):
        augment.parse_recipe("v", {"ops": [op]})


def test_shift_without_native_layer_is_a_clear_error(tmp_path):
    source = write_file(tmp_path / "pool.fits", make_truth(2), native=False)
    with pytest.raises(InputFileError, match="native"):
        run_variant(tmp_path, source, [{"shift": {"ratio": "5/4"}}])


def test_same_seed_same_output(tmp_path):
    source = write_file(tmp_path / "pool.fits", make_truth(30, z=np.linspace(2.5, 3.5, 30)), noise_seed=4)
    ops = [
        {"select": {"fraction": 0.7}},
        {"shift": {"ratio": "4.3/4", "jitter": 0.1}},
        {"add_noise": {"fraction": 0.1}},
        {"mask_region": {"center": 5800, "width": 40}},
    ]
    runs = []
    for folder, seed in (("a", 5), ("b", 5), ("c", 6)):
        (tmp_path / folder).mkdir()
        runs.append(read_both(run_variant(tmp_path / folder, source, ops, seed=seed))[0])
    np.testing.assert_array_equal(runs[0].flux, runs[1].flux)
    np.testing.assert_array_equal(runs[0].ivar, runs[1].ivar)
    pd.testing.assert_frame_equal(runs[0].truth, runs[1].truth)
    assert len(runs[0]) == 21
    assert not np.array_equal(runs[0].truth["Z"], runs[2].truth["Z"])


def test_chunking_streams_rows_in_order(tmp_path):
    truth = make_truth(50, z=np.linspace(2.5, 3.5, 50), spectype=["LBG", "QSO"] * 25)
    source = write_file(tmp_path / "pool.fits", truth)
    output = tmp_path / "v.fits"
    augment.augment_variant(
        source,
        output,
        {"ops": [{"select": {"spectype": ["LBG"]}}, {"shift": {"ratio": "5/4", "thesis": True}}]},
        1,
        "v",
        chunk_rows=7,
    )
    network = read_spectra(output)
    np.testing.assert_array_equal(network.truth["PARENT_TARGETID"], truth["TARGETID"][::2])
    excess = np.clip(network.flux - CONTINUUM, 0, None)
    centroid = (excess * GRID.centres).sum(axis=1) / excess.sum(axis=1)
    np.testing.assert_allclose(centroid, LINE * (1 + network.truth["Z"]), atol=2.0)


# ---------------------------------------------------------------------------------------------
# holdout, test sets, resampled templates


def test_holdout_stratified_by_spectype(tmp_path):
    truth = make_truth(200, z=3.0, spectype=["LBG"] * 120 + ["QSO"] * 40 + ["ELG"] * 40)
    source = write_file(tmp_path / "ingested.fits", truth)
    counts = split_holdout(source, tmp_path / "pool.fits", tmp_path / "hold.fits", 0.25, 1, "survey")
    assert counts == {"pool": 150, "holdout": 50}
    pool, pool_native = read_both(tmp_path / "pool.fits")
    held, held_native = read_both(tmp_path / "hold.fits")
    assert pool_native is not None and held_native is not None  # both layers kept
    assert held.truth["SPECTYPE"].value_counts().to_dict() == {"LBG": 30, "QSO": 10, "ELG": 10}
    assert set(pool.truth["TARGETID"]).isdisjoint(held.truth["TARGETID"])
    assert len(set(pool.truth["TARGETID"]) | set(held.truth["TARGETID"])) == 200
    before = read_spectra(source)
    row = int(np.flatnonzero(before.truth["TARGETID"] == held.truth["TARGETID"][0])[0])
    np.testing.assert_array_equal(held.flux[0], before.flux[row])
    split_holdout(source, tmp_path / "pool0.fits", tmp_path / "hold0.fits", 0.0, 1, "survey")
    assert (
        len(read_spectra(tmp_path / "hold0.fits")) == 0 and len(read_spectra(tmp_path / "pool0.fits")) == 200
    )
    # A test-only data set: every object held out, an empty (valid) training pool.
    assert split_holdout(source, tmp_path / "pool1.fits", tmp_path / "hold1.fits", 1.0, 1, "survey") == {
        "pool": 0,
        "holdout": 200,
    }
    assert (
        len(read_spectra(tmp_path / "pool1.fits")) == 0 and len(read_spectra(tmp_path / "hold1.fits")) == 200
    )


def test_holdout_keeps_copies_of_one_object_together(tmp_path):
    truth = make_truth(60, z=3.0)
    truth["PARENT_TARGETID"] = np.repeat(np.arange(20), 3)  # three spectra per object
    source = write_file(tmp_path / "ingested.fits", truth, native=False)
    split_holdout(source, tmp_path / "pool.fits", tmp_path / "hold.fits", 0.3, 2, "survey")
    held = read_spectra(tmp_path / "hold.fits").truth
    assert len(held) == 18 and held["PARENT_TARGETID"].value_counts().eq(3).all()


def test_testset_from_members(tmp_path):
    templates = make_truth(20, z=np.linspace(2.0, 3.9, 20), first_id=1, TEMPLATE=1, EXPTIME=7200.0)
    survey = make_truth(30, z=0.1, spectype=["LBG", "QSO", "ELG"] * 10, first_id=500)
    holdouts = {
        "templates": str(write_file(tmp_path / "t.fits", templates)),
        "survey": str(write_file(tmp_path / "s.fits", survey)),
    }
    members = [
        {"dataset": "templates", "select": {"spectype": ["LBG"], "z": [None, 2.6], "exptime": [7200]}},
        {"dataset": "survey", "select": {"spectype": ["QSO", "ELG"]}},
    ]
    output = tmp_path / "test_lowz.fits"
    assert build_testset(members, holdouts, 1, "test_lowz", output) == 7 + 20
    test = read_spectra(output)
    assert test.truth["TARGETID"].tolist()[:7] == list(range(1, 8))  # TARGETIDs kept
    with SpectraFile(output) as spectra_file:
        assert not spectra_file.has_native
    with pytest.raises(ConfigError, match="templatez"):
        build_testset([{"dataset": "templatez"}], holdouts, 1, "t", tmp_path / "x.fits")


def test_resample_templates_makes_redshifts_continuous(tmp_path):
    z_grid = np.round(np.arange(2.0, 4.0001, 0.1), 1)
    truth = make_truth(len(z_grid) * 4, z=np.repeat(z_grid, 4), TEMPLATE=0)
    pool = write_file(tmp_path / "pool.fits", truth)
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


# ---------------------------------------------------------------------------------------------
# online augmentation


def _spike_batch(grid: Grid, pixels: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    flux = torch.zeros(len(pixels), grid.n_pixels)
    flux[torch.arange(len(pixels)), torch.tensor(pixels)] = 10.0
    return flux, torch.ones_like(flux)


@pytest.mark.parametrize("grid", [GRID, LOG_GRID], ids=["linear", "log"])
def test_online_shift_moves_a_line_to_the_right_pixel(grid):
    pixels = [150, 200, 250]
    flux, ivar = _spike_batch(grid, pixels)
    z0 = torch.tensor([2.8, 3.0, 3.2])
    dz = 0.37
    shift = OnlineAugmentation(
        {"shift": {"z_range": [dz, dz], "p": 1.0, "thesis": True}}, grid
    )  # eq. 3.1 alone
    new_flux, new_ivar, z1 = shift(flux, ivar, z0, torch.Generator().manual_seed(0))
    torch.testing.assert_close(z1, z0 + dz)
    ratio = ((1 + z0 + dz) / (1 + z0)).double().numpy()
    expected = grid.pixel_index(grid.centres[pixels] * ratio)
    assert new_flux.argmax(dim=1).tolist() == expected.tolist()
    # nothing observed blueward of the grid start moved in: the first pixels are empty
    for row, first_data in enumerate(grid.fractional_index(grid.wave_min * ratio)):
        empty = int(np.floor(first_data))  # pixels wholly blueward of the first shifted pixel
        assert torch.all(new_ivar[row, :empty] == 0) and torch.all(new_flux[row, :empty] == 0)
        assert torch.all(new_ivar[row, empty:] > 0)


def test_online_log_shift_by_whole_pixels_is_exact():
    flux = torch.rand(4, LOG_GRID.n_pixels, generator=torch.Generator().manual_seed(1))
    ivar = torch.rand(4, LOG_GRID.n_pixels, generator=torch.Generator().manual_seed(2)) + 0.5
    z0 = torch.full((4,), 3.0, dtype=torch.float64)
    ratio = 10 ** (7 * LOG_GRID.step)  # exactly 7 pixels
    dz = 4.0 * ratio - 4.0
    shift = OnlineAugmentation({"shift": {"z_range": [dz, dz], "thesis": True}}, LOG_GRID)
    new_flux, new_ivar, _ = shift(flux.double(), ivar.double(), z0, torch.Generator().manual_seed(0))
    torch.testing.assert_close(new_flux[:, 7:], flux[:, :-7].double(), atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(new_ivar[:, 7:], ivar[:, :-7].double(), atol=1e-6, rtol=1e-6)
    assert torch.all(new_ivar[:, :7] == 0)


def test_online_shift_spares_contaminants_unless_asked():
    flux, ivar = _spike_batch(GRID, [300, 300, 300])
    z = torch.tensor([3.0, 1.0, 0.0])
    shiftable = torch.tensor([True, False, False])
    spectype = torch.as_tensor(spectype_codes(["LBG", "QSO", "STAR"]))
    spec = {"shift": {"z_range": [0.5, 0.5]}}
    new_flux, _, new_z = OnlineAugmentation(spec, GRID)(
        flux, ivar, z, torch.Generator().manual_seed(0), shiftable
    )
    torch.testing.assert_close(new_z, torch.tensor([3.5, 1.0, 0.0]))
    torch.testing.assert_close(new_flux[1:], flux[1:])
    spec["shift"]["contaminants"] = True  # every class within its physical range; stars never
    _, _, new_z = OnlineAugmentation(spec, GRID)(
        flux, ivar, z, torch.Generator().manual_seed(0), shiftable, spectype=spectype
    )
    torch.testing.assert_close(new_z, torch.tensor([3.5, 1.5, 0.0]))
    # without SPECTYPE codes only the target rows are known: contaminants stay where they are
    _, _, new_z = OnlineAugmentation(spec, GRID)(flux, ivar, z, torch.Generator().manual_seed(0), shiftable)
    torch.testing.assert_close(new_z, torch.tensor([3.5, 1.0, 0.0]))


DEMO_CLASSES = {"LBG": [2.0, 4.5], "QSO": [1.8, 4.0], "ELG": [0.05, 0.2], "GALAXY": [0.3, 1.6]}


@pytest.mark.parametrize(
    "draw", [{"z_range": [-0.3, 0.3]}, {"ratio_range": [0.75, 1.3]}], ids=["z_range", "ratio_range"]
)
@pytest.mark.parametrize("thesis", [False, True], ids=["physical", "eq3.1"])
def test_online_shift_never_makes_an_unphysical_redshift(draw, thesis):
    """Every class lands inside its own range; stars (z ~ 0) and rows already outside their class's
    range are never touched; only classes with a range move."""
    generator = torch.Generator().manual_seed(3)
    kinds = np.array(["LBG", "QSO", "ELG", "GALAXY", "STAR"] * 80)
    rng = np.random.default_rng(0)
    z = np.select(
        [kinds == "LBG", kinds == "QSO", kinds == "ELG", kinds == "GALAXY"],
        [
            rng.uniform(1.9, 4.5, 400),
            rng.uniform(1.8, 4.0, 400),
            rng.uniform(0.05, 0.2, 400),
            rng.uniform(0.3, 1.6, 400),
        ],
        rng.normal(0, 3e-4, 400),
    )
    flux = torch.rand(len(kinds), GRID.n_pixels, generator=generator) + 0.5
    ivar = torch.full_like(flux, 4.0)
    spec = {"shift": {"p": 1.0, "classes": DEMO_CLASSES, "thesis": thesis, **draw}}
    new_flux, new_ivar, new_z = OnlineAugmentation(spec, GRID)(
        flux, ivar, torch.as_tensor(z), generator, spectype=torch.as_tensor(spectype_codes(kinds))
    )
    new_z = new_z.double().numpy()
    for kind, (low, high) in DEMO_CLASSES.items():
        rows = (kinds == kind) & (z >= low) & (z <= high)
        assert (new_z[rows] >= low - 1e-6).all() and (new_z[rows] <= high + 1e-6).all(), kind
        assert (np.abs(new_z[rows] - z[rows]) > 1e-4).mean() > 0.9, f"{kind} rows did not move"
    untouched = (kinds == "STAR") | ((kinds == "LBG") & (z < 2.0))
    assert untouched.sum() > 80
    np.testing.assert_allclose(new_z[untouched], z[untouched], atol=1e-7)
    assert torch.equal(new_flux[untouched], flux[untouched]) and torch.equal(
        new_ivar[untouched], ivar[untouched]
    )
    # no shift ever leaves the class's range, whatever it is asked for
    assert (new_z[kinds == "ELG"] <= 0.2 + 1e-6).all() and (new_z[kinds == "STAR"] < 0.01).all()


def test_online_shift_spec_rejects_stars_and_ambiguity():
    with pytest.raises(ConfigError, match="stars are never shifted"):
        OnlineAugmentation({"shift": {"z_range": [0, 0.3], "classes": {"STAR": [0, 0.3]}}}, GRID)
    with pytest.raises(ConfigError, match="classes or contaminants"):
        OnlineAugmentation(
            {"shift": {"z_range": [0, 0.3], "classes": {"LBG": [2, 4]}, "contaminants": True}}, GRID
        )
    with pytest.raises(ConfigError, match="unknown class"):
        OnlineAugmentation({"shift": {"z_range": [0, 0.3], "classes": {"AGN": [2, 4]}}}, GRID)
    with pytest.raises(ConfigError, match="thesis"):
        OnlineAugmentation({"shift": {"z_range": [0, 0.3], "thesis": "yes"}}, GRID)


def test_online_masks_noise_and_determinism():
    n = 400
    flux = torch.ones(n, GRID.n_pixels)
    ivar = torch.full_like(flux, 25.0)
    z = torch.full((n,), 3.0)
    spec = {
        "shift": {"z_range": [-0.3, 0.3], "p": 0.5},
        "mask_region": {"p": 1.0, "width": 40, "center": 5800},
        "mask_line": {"p": 1.0, "width": 40},
        "add_noise": {"p": 0.0, "fraction": 0.1},
    }
    augmentation = OnlineAugmentation(spec, GRID)
    a = augmentation(flux, ivar, z, torch.Generator().manual_seed(11))
    b = augmentation(flux, ivar, z, torch.Generator().manual_seed(11))
    c = augmentation(flux, ivar, z, torch.Generator().manual_seed(12))
    for x, y in zip(a, b):
        torch.testing.assert_close(x, y)
    assert not torch.equal(a[0], c[0])
    assert torch.equal(flux, torch.ones_like(flux))  # inputs untouched
    new_flux, new_ivar, new_z = a
    inside = torch.as_tensor((GRID.centres >= 5780) & (GRID.centres < 5820))
    residual = ((new_flux[:, inside] - 1) * new_ivar[:, inside].sqrt()).flatten()
    has_data = new_ivar[:, inside].flatten() > 0
    assert residual[has_data].std().item() == pytest.approx(1.0, abs=0.08)
    shifted = new_z != 3.0
    assert 0.35 < shifted.float().mean().item() < 0.65


def test_online_add_noise_updates_ivar():
    flux = torch.ones(200, GRID.n_pixels)
    ivar = torch.full_like(flux, 4.0)
    ivar[:, :10] = 0
    flux[:, :10] = 0
    augmentation = OnlineAugmentation({"add_noise": {"p": 1.0, "fraction": 0.2}}, GRID)
    new_flux, new_ivar, _ = augmentation(
        flux, ivar, torch.full((200,), 3.0), torch.Generator().manual_seed(0)
    )
    assert (new_flux[:, 10:] - 1).std().item() == pytest.approx(0.2, rel=0.03)
    torch.testing.assert_close(new_ivar[:, 10:], torch.full_like(new_ivar[:, 10:], 1 / (1 / 4 + 0.04)))
    assert torch.all(new_ivar[:, :10] == 0) and torch.all(new_flux[:, :10] == 0)


def test_online_spec_errors():
    with pytest.raises(ConfigError, match="valid operations"):
        OnlineAugmentation({"blur": {}}, GRID)
    with pytest.raises(ConfigError, match="z_range"):
        OnlineAugmentation({"shift": {"p": 0.5}}, GRID)
    with pytest.raises(ConfigError):
        OnlineAugmentation({"add_noise": {"p": 2}}, GRID)
