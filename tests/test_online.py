"""lymannet.online: augmentation of training batches on the device (shift, masks, noise), and its
overlap resampling against the numpy twin of the offline shift (lymannet.augment_ops)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import GRID, LOG_GRID, PARITY_Z, network_batch
from lymannet import augment_ops, online
from lymannet.errors import ConfigError
from lymannet.grid import Grid
from lymannet.online import OnlineAugmentation, spectype_codes

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


# ---------------------------------------------------------------------------------------------
# numpy/torch parity of the overlap resampling (augment_ops.overlap_resample, online.overlap_resample)


@pytest.mark.parametrize("grid", [GRID, LOG_GRID], ids=["linear", "log"])
@pytest.mark.parametrize("ratio", [0.4, 0.97, 1.3, 2.5])
def test_torch_overlap_resample_matches_numpy(grid, ratio):
    """Bins narrower and up to 2.5x wider than a pixel, most of them off the data at 0.4; rows with
    ivar-0 bins (grid ends, the arm overlap) and one without any data. Both sum in float64; numpy
    rounds to float32, so they agree to float32 round-off (rtol 1e-6) and on which bins are empty."""
    flux, ivar = network_batch(grid, PARITY_Z)
    flux[1], ivar[1] = 0.0, 0.0
    u = np.repeat(grid.fractional_index(grid.edges / ratio)[None, :], len(flux), axis=0)
    expected_flux, expected_ivar = augment_ops.overlap_resample(flux, ivar, u[:, :-1], u[:, 1:])
    got_flux, got_ivar = online.overlap_resample(
        torch.from_numpy(flux).double(),
        torch.from_numpy(ivar).double(),
        torch.from_numpy(u[:, :-1]),
        torch.from_numpy(u[:, 1:]),
    )
    got_flux, got_ivar = got_flux.numpy(), got_ivar.numpy()
    np.testing.assert_array_equal(got_ivar > 0, expected_ivar > 0)
    assert (expected_ivar[1] == 0).all() and (expected_ivar > 0).any()
    np.testing.assert_allclose(got_ivar, expected_ivar, rtol=1e-6, atol=1e-6 * expected_ivar.max())
    np.testing.assert_allclose(got_flux, expected_flux, rtol=1e-6, atol=1e-6 * np.abs(expected_flux).max())


@pytest.mark.parametrize("grid", [GRID, LOG_GRID], ids=["linear", "log"])
@pytest.mark.parametrize("dz", [-0.6, -0.05, 0.05, 0.6])
def test_online_eq31_shift_is_the_numpy_overlap_resample(grid, dz):
    """The online shift (eq. 3.1 alone) on float32 batches, bin edges and all, is numpy's overlap
    resampling onto edges / ratio: within float32 round-off (rtol 1e-5), with the same empty bins
    (at the end a shift empties, in the arm overlap)."""
    flux, ivar = network_batch(grid, PARITY_Z)
    z0 = PARITY_Z.astype(np.float32)
    shift = OnlineAugmentation(
        {"shift": {"z_range": [dz, dz], "thesis": True, "classes": {"LBG": [0.0, 8.0]}}}, grid
    )
    got_flux, got_ivar, z1 = shift(
        torch.from_numpy(flux), torch.from_numpy(ivar), torch.from_numpy(z0), torch.Generator().manual_seed(0)
    )
    z1 = z1.numpy()
    np.testing.assert_allclose(z1, z0 + np.float32(dz), rtol=1e-6)
    ratio = ((1 + z1) / (1 + z0)).astype(np.float64)  # as the online shift computes it (float32)
    u = grid.fractional_index(grid.edges[None, :] / ratio[:, None])
    expected_flux, expected_ivar = augment_ops.overlap_resample(flux, ivar, u[:, :-1], u[:, 1:])
    got_flux, got_ivar = got_flux.numpy(), got_ivar.numpy()
    assert got_flux.dtype == got_ivar.dtype == np.float32
    np.testing.assert_array_equal(got_ivar > 0, expected_ivar > 0)
    np.testing.assert_allclose(got_ivar, expected_ivar, rtol=1e-5, atol=1e-5 * expected_ivar.max())
    np.testing.assert_allclose(got_flux, expected_flux, rtol=1e-5, atol=1e-5 * np.abs(expected_flux).max())
