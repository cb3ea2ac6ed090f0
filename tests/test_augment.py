"""lymannet.augment: variant recipes (shift, masks, noise, chains), their errors, seeds and
chunking.

Spectra are synthetic (tests/conftest.py: make_truth, write_spectra_file): a flat continuum plus one
Gaussian emission line at (1+z) x LINE, with constant ivar, on the DESI native grid and rebinned
onto the network grid as ingestion does.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from conftest import (
    GRID,
    NATIVE,
    LINE,
    CONTINUUM,
    NATIVE_IVAR,
    make_truth,
    write_spectra_file,
    read_both,
    run_variant,
)
from lymannet import augment
from lymannet.errors import ConfigError, InputFileError
from lymannet.preprocess import rebin
from lymannet.spectra import read_spectra

# ---------------------------------------------------------------------------------------------
# shift

# Eq. 3.1 alone (thesis: true): the geometry every shift shares; the physics of the default
# (IGM, destination noise, filled ends) is tested further down on simulated spectra.


def test_shift_moves_line_on_native_and_network_layers(tmp_path):
    source = write_spectra_file(tmp_path / "pool.fits", make_truth(3, z=[2.5, 3.0, 3.3]))
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
    source = write_spectra_file(tmp_path / "pool.fits", make_truth(2, z=3.0))
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
    source = write_spectra_file(tmp_path / "pool.fits", make_truth(2, z=3.0))
    network, _ = read_both(run_variant(tmp_path, source, [{"shift": {"ratio": "3/4", "thesis": True}}]))
    red_limit = (NATIVE[-1] + 0.4) * ratio
    assert np.all(network.ivar[:, GRID.edges[:-1] >= red_limit] == 0)
    assert np.all(network.ivar[:, (GRID.edges[:-1] > 3700) & (GRID.edges[1:] < red_limit - 8)] > 0)
    np.testing.assert_allclose(network.truth["Z"], 4 * 0.75 - 1)


def test_shift_to_mean_z_and_jitter(tmp_path):
    z = np.linspace(2.6, 3.4, 40)
    source = write_spectra_file(tmp_path / "pool.fits", make_truth(40, z=z))
    network, _ = read_both(run_variant(tmp_path, source, [{"shift": {"to_mean_z": 4.0}}]))
    assert network.truth["Z"].mean() == pytest.approx(4.0)
    a, _ = read_both(run_variant(tmp_path, source, [{"shift": {"ratio": "5/4", "jitter": 0.2}}], name="a"))
    b, _ = read_both(run_variant(tmp_path, source, [{"shift": {"ratio": "5/4", "jitter": 0.2}}], name="b"))
    offset = a.truth["Z"].to_numpy() - ((1 + z) * 1.25 - 1)
    assert np.all(np.abs(offset) <= 0.1) and offset.std() > 0.03
    assert not np.allclose(a.truth["Z"], b.truth["Z"])  # two jittered copies differ


def test_shift_chain_keeps_parent_and_fresh_ids(tmp_path):
    source = write_spectra_file(tmp_path / "pool.fits", make_truth(5, z=3.0))
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
    source = write_spectra_file(tmp_path / "pool.fits", make_truth(300, z=z), noise_seed=1)
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
    source = write_spectra_file(tmp_path / "pool.fits", make_truth(200, z=z), noise_seed=2)
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
    source = write_spectra_file(tmp_path / "pool.fits", make_truth(200, z=3.0), line_amplitude=0.0)
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
    source = write_spectra_file(tmp_path / "pool.fits", make_truth(2), native=False)
    with pytest.raises(InputFileError, match="native"):
        run_variant(tmp_path, source, [{"shift": {"ratio": "5/4"}}])


def test_same_seed_same_output(tmp_path):
    source = write_spectra_file(
        tmp_path / "pool.fits", make_truth(30, z=np.linspace(2.5, 3.5, 30)), noise_seed=4
    )
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
    source = write_spectra_file(tmp_path / "pool.fits", truth)
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
