"""Online augmentation (thesis, perspectives): random shifts, masks and noise drawn anew at each
epoch, on torch tensors of the network layer, on any device.

The operations mirror the offline ones of :mod:`lymannet.augment_ops` on the network grid:

- shift: z1 = z0 + U(z_range) (or ratio = U(ratio_range)), drawn within the destination range of
  the row's class (`classes`; never a star: stars stay at z ~ 0, and a row whose class has no
  range is not shifted); pixel edges map back to u = fractional_index(edge / ratio) on the
  unshifted spectrum (a pure translation by -log10(ratio)/step pixels on a log grid, a stretch on
  a linear grid) and flux/ivar are resampled with pixel-overlap weights (eq. 3.1). Then, unless
  `thesis: true` (eq. 3.1 alone, empty ends and all), the galaxy moves and the instrument stays,
  as :mod:`lymannet.reshift` does offline but on the network layer (:func:`physical_shift`): the
  mean IGM of z1 (I14 transmission ratio T(z1, lambda) / T(z0, lambda / r) per bin; a downward
  shift's gain capped at reshift.MAX_IGM_GAIN), the noise of the unshifted spectrum at the new
  wavelengths (/ r for a stretch; noise added where quieter, quiet-neighbour means where a sky line
  or overlap of the source lands somewhere quieter: :func:`lymannet.reshift.to_destination`) and
  no empty ends (the reshift gap model: power law fitted to rest 1270-3000 A x LyC escape x the
  mean I14 transmission at z1). Unlike the offline shift it works on the network bins (8 A), so
  the extra absorption of an upward shift is the mean one, without a new sightline's
  fluctuations (narrower than a bin).
- mask_region / mask_line: windows replaced by local continuum + N(0, 1/sqrt(ivar)).
- add_noise: sigma = fraction x median |flux| (pixels with data), 1/ivar_new = 1/ivar + sigma^2.

Spec (every block optional, p = probability per spectrum)::

    shift:       {p: 0.5, z_range: [-0.3, 0.3]}   # or ratio_range: [0.8, 1.25]; thesis: false
                 # classes: {LBG: [2.0, 4.5], QSO: [1.8, 4.0]}: which classes move, and the
                 # redshifts each may land at (default: the target class within the simulator's
                 # limits for it; contaminants: true adds every other class but stars)
    mask_region: {p: 0.3, width: 40, center: 5800}  # or center_range: [wmin, wmax] (default: the grid)
    mask_line:   {p: 0.3, width: 40, lines: [1215.67]}  # observed-frame width, window at (1+z) line
    add_noise:   {p: 0.3, fraction: 0.1}
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from functools import lru_cache

from .errors import ConfigError
from .grid import Grid
from .augment_ops import OVERLAP_EPSILON
from .lines import LYA, LYMAN_LIMIT

OPERATIONS: dict[str, tuple[str, ...]] = {
    "shift": ("p", "z_range", "ratio_range", "contaminants", "classes", "thesis"),
    "mask_region": ("p", "width", "center", "center_range"),
    "mask_line": ("p", "width", "lines"),
    "add_noise": ("p", "fraction"),
}


def overlap_resample(
    flux: torch.Tensor, ivar: torch.Tensor, u_lo: torch.Tensor, u_hi: torch.Tensor, noise_ivar: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """Torch twin of :func:`lymannet.augment_ops.overlap_resample`: target bins [u_lo, u_hi) in
    the source pixel coordinate (pixel s covers [s, s+1)): flux = sum(a ivar flux)/sum(a ivar),
    ivar = sum(a ivar), a = overlap of source pixel and target bin (information conserved).

    noise_ivar: ivar = sum(a ivar)^2 / sum(a^2 ivar) instead, the inverse of the variance the
    bin's flux actually has. On 8 A bins a stretch shares a source bin between two target bins,
    whose means are then up to 2x less noisy than their information says; the physical shift
    needs the true noise to bring each bin to its destination's."""
    n_source = flux.shape[1]
    first = torch.floor(u_lo).long()
    n_overlaps = int(torch.ceil((u_hi - u_lo).max()).item()) + 1 if u_lo.numel() else 1
    sum_w = torch.zeros_like(u_lo)
    sum_wf = torch.zeros_like(u_lo)
    sum_aw = torch.zeros_like(u_lo)
    for k in range(n_overlaps):
        source = first + k
        overlap = torch.minimum(u_hi, (source + 1).to(u_lo.dtype)) - torch.maximum(
            u_lo, source.to(u_lo.dtype)
        )
        valid = (overlap > OVERLAP_EPSILON) & (source >= 0) & (source < n_source)
        clipped = source.clamp(0, n_source - 1)
        overlap = torch.where(valid, overlap, torch.zeros_like(overlap))
        weight = overlap * torch.gather(ivar, 1, clipped)
        sum_w += weight
        sum_wf += weight * torch.gather(flux, 1, clipped)
        if noise_ivar:
            sum_aw += overlap * weight
    has_w = sum_w > 0
    out_flux = torch.where(
        has_w, sum_wf / torch.where(has_w, sum_w, torch.ones_like(sum_w)), torch.zeros_like(sum_w)
    )
    if noise_ivar:
        return out_flux, torch.where(
            has_w, sum_w**2 / torch.where(has_w, sum_aw, torch.ones_like(sum_aw)), torch.zeros_like(sum_w)
        )
    return out_flux, sum_w


# Class codes of DeviceData.spectype (train.load_device_data); -1: any other SPECTYPE.
SPECTYPE_CODES = ("LBG", "QSO", "ELG", "STAR", "GALAXY")
# Where each class may be shifted to when `classes` is not given: the simulator's redshift limits
# (lymannet.simulate.POPULATION_Z_LIMITS). Stars are never shifted (their Z is a radial velocity).
DEFAULT_CLASS_Z = {"LBG": (1.5, 4.5), "QSO": (1.0, 4.5), "ELG": (0.0, 0.5), "GALAXY": (0.0, 2.0)}


def spectype_codes(spectype) -> np.ndarray:
    """SPECTYPE strings -> int8 codes of SPECTYPE_CODES (-1 for anything else)."""
    values = np.char.strip(np.asarray(spectype, dtype=str))
    codes = np.full(values.shape, -1, np.int8)
    for code, name in enumerate(SPECTYPE_CODES):
        codes[values == name] = code
    return codes


# --- the physical shift on the network layer -------------------------------------------------

TABLE_Z_STEP = 0.005
TABLE_Z_MAX = 6.5
TABLE_WAVE = (2000.0, 9200.0, 2.0)  # A: min, max (> Ly-alpha at TABLE_Z_MAX), step


@lru_cache(maxsize=1)
def _transmission_table() -> tuple[np.ndarray, np.ndarray]:
    """Mean I14 transmission T(z, lambda) on z = 0..6.5 (step 0.005) x lambda = 2000..9200 A (2 A),
    float32 (19 MB): the online shift interpolates it bilinearly instead of evaluating I14 per batch."""
    from .igm import InoueIGM

    wave = np.arange(TABLE_WAVE[0], TABLE_WAVE[1] + TABLE_WAVE[2] / 2, TABLE_WAVE[2])
    z = np.arange(0.0, TABLE_Z_MAX + TABLE_Z_STEP / 2, TABLE_Z_STEP)
    model = InoueIGM(wave)
    table = np.vstack([model.transmission(z[i : i + 64]).astype(np.float32) for i in range(0, len(z), 64)])
    return table, wave


def mean_transmission(z: np.ndarray, wave: np.ndarray) -> np.ndarray:
    """Mean I14 transmission at (z[row], wave[row, pixel]) by bilinear interpolation of the table."""
    table, table_wave = _transmission_table()
    z = np.clip(np.asarray(z, np.float64), 0.0, TABLE_Z_MAX)[:, None]
    zi = np.minimum(z / TABLE_Z_STEP, table.shape[0] - 1.000001)
    wi = np.clip((np.asarray(wave, np.float64) - table_wave[0]) / TABLE_WAVE[2], 0, table.shape[1] - 1.000001)
    z0, w0 = np.floor(zi).astype(np.int64), np.floor(wi).astype(np.int64)
    fz, fw = zi - z0, wi - w0
    z0 = np.broadcast_to(z0, w0.shape)
    value = (1 - fz) * ((1 - fw) * table[z0, w0] + fw * table[z0, w0 + 1]) + fz * (
        (1 - fw) * table[z0 + 1, w0] + fw * table[z0 + 1, w0 + 1]
    )
    # Redward of Ly-alpha nothing absorbs (the interpolation would smear the edge over a z step).
    return np.where(np.asarray(wave) >= LYA * (1.0 + z), 1.0, value)


def physical_shift(
    moved_flux: np.ndarray,
    moved_ivar: np.ndarray,
    unshifted_ivar: np.ndarray,
    z0: np.ndarray,
    z1: np.ndarray,
    centres: np.ndarray,
    rng: np.random.Generator,
):
    """Eq. 3.1-moved network rows -> the galaxy at z1 seen by the unshifted spectrum's instrument
    (module docstring). Returns float64 (flux, ivar) and a :class:`lymannet.reshift.ShiftReport`."""
    from .reshift import (
        LYC_ESCAPE,
        MAX_IGM_GAIN,
        MIN_TRANSMISSION,
        fit_power_law,
        half_widths_in_pixels,
        to_destination,
    )

    z0, z1 = np.asarray(z0, np.float64), np.asarray(z1, np.float64)
    ratio = ((1.0 + z1) / (1.0 + z0))[:, None]
    wave = np.broadcast_to(centres[None, :], moved_flux.shape)
    # IGM: the bin at lambda holds light from lambda / r, which crossed z0's IGM; give it z1's.
    t_source = mean_transmission(z0, wave / ratio)
    t_destination = mean_transmission(z1, wave)
    gain = np.divide(t_destination, t_source, out=np.ones_like(t_source), where=t_source > 0)
    factor = np.clip(gain, MIN_TRANSMISSION, MAX_IGM_GAIN)
    flux = moved_flux * factor
    ivar = moved_ivar / factor**2
    # No empty ends: the reshift gap model, with the mean transmission of z1.
    amplitude, beta = fit_power_law(centres, flux, ivar, z1)
    rest = wave / (1.0 + z1[:, None])
    model = amplitude[:, None] * np.exp(beta[:, None] * np.log(rest / 1500.0))
    model = np.where(rest < LYMAN_LIMIT, LYC_ESCAPE * model, model) * t_destination
    # The noise of the wavelengths the galaxy now sits at; a stretch spreads each pixel's information.
    target = np.asarray(unshifted_ivar, np.float64) / np.maximum(ratio, 1.0)
    return to_destination(
        flux, ivar, target, model, rng, half_widths_in_pixels(centres), instrument_ivar=moved_ivar
    )


def _range(block: dict, key: str, name: str) -> tuple[float, float]:
    value = block[key]
    if not isinstance(value, (list, tuple)) or len(value) != 2 or float(value[0]) > float(value[1]):
        raise ConfigError(f"online augmentation {name}: {key} must be [low, high], not {value!r}")
    return float(value[0]), float(value[1])


class OnlineAugmentation:
    """Random per-spectrum augmentation of (N, P) network-layer batches; call before target
    encoding (the returned z is the new redshift). Deterministic for a seeded generator; the
    generator must live on the tensors' device."""

    def __init__(self, spec: dict, grid: Grid, target_class: str = "LBG"):
        self.grid = grid
        self.target_class = target_class
        self.spec: dict[str, dict[str, Any]] = {}
        for name, block in (spec or {}).items():
            if name not in OPERATIONS:
                raise ConfigError(
                    f"online augmentation: unknown operation {name!r}; valid operations: "
                    f"{sorted(OPERATIONS)}"
                )
            block = dict(block or {})
            unknown = sorted(set(block) - set(OPERATIONS[name]))
            if unknown:
                raise ConfigError(
                    f"online augmentation {name}: unknown parameter(s) {unknown}; "
                    f"valid: {list(OPERATIONS[name])}"
                )
            p = float(block.get("p", 1.0))
            if not 0 <= p <= 1:
                raise ConfigError(f"online augmentation {name}: p must be in [0, 1], not {p}")
            block["p"] = p
            self.spec[name] = block
        self._check()
        self._edges = np.asarray(grid.edges, np.float64)
        self._centres = np.asarray(grid.centres, np.float64)
        self._cache: dict[tuple[torch.device, torch.dtype], tuple[torch.Tensor, torch.Tensor]] = {}
        self.last_report = None  # the last physical shift's lymannet.reshift.ShiftReport

    def _check(self) -> None:
        shift = self.spec.get("shift")
        if shift is not None:
            if ("z_range" in shift) == ("ratio_range" in shift):
                raise ConfigError("online augmentation shift: give exactly one of z_range or ratio_range")
            key = "z_range" if "z_range" in shift else "ratio_range"
            shift[key] = _range(shift, key, "shift")
            if key == "ratio_range" and shift[key][0] <= 0:
                raise ConfigError("online augmentation shift: ratio_range must be positive")
            if not isinstance(shift.get("thesis", False), bool):
                raise ConfigError(
                    f"online augmentation shift: thesis must be true or false, not {shift['thesis']!r}"
                )
            if not isinstance(shift.get("contaminants", False), bool):
                raise ConfigError(
                    "online augmentation shift: contaminants must be true or false, "
                    f"not {shift['contaminants']!r}"
                )
            classes = shift.get("classes")
            if classes is None:
                names = list(DEFAULT_CLASS_Z) if shift.get("contaminants", False) else [self.target_class]
                classes = {name: DEFAULT_CLASS_Z[name] for name in names if name in DEFAULT_CLASS_Z}
            elif shift.get("contaminants") is not None:
                raise ConfigError("online augmentation shift: give classes or contaminants, not both")
            if not isinstance(classes, dict):
                raise ConfigError(
                    f"online augmentation shift: classes must map a class to [z_min, z_max], not {classes!r}"
                )
            if "STAR" in classes:
                raise ConfigError(
                    "online augmentation shift: stars are never shifted (their Z is a radial "
                    "velocity, z ~ 0); remove STAR from classes"
                )
            unknown = sorted(set(classes) - set(SPECTYPE_CODES))
            if unknown:
                raise ConfigError(
                    f"online augmentation shift: unknown class(es) {unknown}; valid: "
                    f"{[c for c in SPECTYPE_CODES if c != 'STAR']}"
                )
            shift["classes"] = {name: _range(classes, name, "shift.classes") for name in classes}
            if any(low < 0 for low, _ in shift["classes"].values()):
                raise ConfigError("online augmentation shift: class redshift ranges must be >= 0")
        for name in ("mask_region", "mask_line"):
            block = self.spec.get(name)
            if block is not None:
                block["width"] = float(block.get("width", 40.0))
                if block["width"] <= 0:
                    raise ConfigError(f"online augmentation {name}: width must be positive")
        region = self.spec.get("mask_region")
        if region is not None and "center_range" in region:
            region["center_range"] = _range(region, "center_range", "mask_region")
        line = self.spec.get("mask_line")
        if line is not None:
            line["lines"] = [float(v) for v in line.get("lines", [LYA])]
        noise = self.spec.get("add_noise")
        if noise is not None:
            noise["fraction"] = float(noise.get("fraction", 0.1))
            if noise["fraction"] < 0:
                raise ConfigError("online augmentation add_noise: fraction must be >= 0")

    def _grid_tensors(self, device: torch.device, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        key = (device, dtype)
        if key not in self._cache:
            self._cache[key] = (
                torch.as_tensor(self._edges, dtype=dtype, device=device),
                torch.as_tensor(self._centres, dtype=dtype, device=device),
            )
        return self._cache[key]

    @staticmethod
    def _uniform(
        n: int, low: float, high: float, like: torch.Tensor, generator: torch.Generator
    ) -> torch.Tensor:
        return low + (high - low) * torch.rand(n, generator=generator, device=like.device, dtype=like.dtype)

    def __call__(
        self,
        flux: torch.Tensor,
        ivar: torch.Tensor,
        z: torch.Tensor,
        generator: torch.Generator,
        shiftable: torch.Tensor | None = None,
        spectype: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Augmented copies of (flux, ivar, z); inputs are not modified. `spectype` (int codes of
        SPECTYPE_CODES, (N,)) says which rows the shift may move and where to (shift.classes).
        Without it, `shiftable` (bool (N,), SPECTYPE == target) marks the target class's rows and
        every other row stays; without either every row counts as the target class."""
        flux, ivar, z = flux.clone(), ivar.clone(), z.clone()
        z = z.to(flux.dtype)
        if "shift" in self.spec:
            if spectype is None:
                target = (
                    SPECTYPE_CODES.index(self.target_class) if self.target_class in SPECTYPE_CODES else -2
                )
                spectype = torch.full(z.shape, target, dtype=torch.int8, device=z.device)
                if shiftable is not None:
                    spectype[~shiftable.to(device=z.device, dtype=torch.bool)] = -1
            flux, ivar, z = self._shift(flux, ivar, z, generator, spectype)
        if "mask_region" in self.spec:
            block = self.spec["mask_region"]
            rows = self._draw_rows(block["p"], flux, generator)
            low, high = block.get("center_range", (self.grid.wave_min, self.grid.wave_max))
            centre = (
                torch.full((len(rows),), float(block["center"]), dtype=flux.dtype, device=flux.device)
                if "center" in block
                else self._uniform(len(rows), low, high, flux, generator)
            )
            self._mask(flux, ivar, rows, centre, block["width"], generator)
        if "mask_line" in self.spec:
            block = self.spec["mask_line"]
            rows = self._draw_rows(block["p"], flux, generator)
            lines = torch.as_tensor(block["lines"], dtype=flux.dtype, device=flux.device)
            pick = torch.randint(len(lines), (len(rows),), generator=generator, device=flux.device)
            self._mask(flux, ivar, rows, (1 + z[rows]) * lines[pick], block["width"], generator)
        if "add_noise" in self.spec:
            block = self.spec["add_noise"]
            rows = self._draw_rows(block["p"], flux, generator)
            self._add_noise(flux, ivar, rows, block["fraction"], generator)
        return flux, ivar, z

    @staticmethod
    def _draw_rows(
        p: float, flux: torch.Tensor, generator: torch.Generator, allowed: torch.Tensor | None = None
    ) -> torch.Tensor:
        chosen = torch.rand(flux.shape[0], generator=generator, device=flux.device) < p
        if allowed is not None:
            chosen &= allowed.to(device=flux.device, dtype=torch.bool)
        return torch.nonzero(chosen, as_tuple=False).flatten()

    def _destination_bounds(
        self, spectype: torch.Tensor, like: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Per row [z_min, z_max] where its class may land (NaN: not shifted)."""
        low = torch.full(spectype.shape, float("nan"), dtype=like.dtype, device=like.device)
        high = low.clone()
        for name, (z_min, z_max) in self.spec["shift"]["classes"].items():
            rows = spectype == SPECTYPE_CODES.index(name)
            low[rows], high[rows] = z_min, z_max
        return low, high

    def _shift(
        self,
        flux: torch.Tensor,
        ivar: torch.Tensor,
        z: torch.Tensor,
        generator: torch.Generator,
        spectype: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        block = self.spec["shift"]
        spectype = spectype.to(z.device)
        z_min, z_max = self._destination_bounds(spectype, z)
        # The draw: z1 uniform in the part of z0 + z_range (or (1+z0) ratio_range - 1) that lies in
        # the class's range; a row already outside its range, or of a class without one, stays.
        if "z_range" in block:
            low, high = z + block["z_range"][0], z + block["z_range"][1]
        else:
            low, high = (1 + z) * block["ratio_range"][0] - 1, (1 + z) * block["ratio_range"][1] - 1
        low, high = torch.maximum(low, z_min), torch.minimum(high, z_max)
        movable = torch.isfinite(z_min) & (z >= z_min) & (z <= z_max) & (high >= low)
        rows = self._draw_rows(block["p"], flux, generator, movable)
        unit = torch.rand(len(z), generator=generator, device=flux.device, dtype=flux.dtype)
        if len(rows) == 0:
            return flux, ivar, z
        z0 = z[rows]
        z1 = (low + unit * (high - low))[rows].clamp_min(0.0)
        ratio = (1 + z1) / (1 + z0)
        # Pixel coordinates in float64: float32 round-off at index ~800 would leave slivers of
        # overlap (ivar ~1e-4 where there is no data) at the edges.
        edges, _ = self._grid_tensors(flux.device, torch.float64)
        ratio64 = ratio.to(torch.float64)
        if self.grid.kind == "log":
            # A log grid: the shift is a translation by log10(ratio)/step pixels.
            u_edges = (
                torch.arange(len(edges), device=flux.device, dtype=torch.float64)[None, :]
                - (torch.log10(ratio64) / self.grid.step)[:, None]
            )
        else:
            u_edges = (edges[None, :] / ratio64[:, None] - self.grid.start) / self.grid.step
        physical = not block.get("thesis", False)
        new_flux, new_ivar = overlap_resample(
            flux[rows].to(torch.float64),
            ivar[rows].to(torch.float64),
            u_edges[:, :-1],
            u_edges[:, 1:],
            noise_ivar=physical,
        )
        if physical:
            # A numpy generator seeded from the torch one: deterministic, and resumed with it.
            seed = int(torch.randint(0, 2**62, (1,), generator=generator, device=flux.device).item())
            out_flux, out_ivar, self.last_report = physical_shift(
                new_flux.cpu().numpy(),
                new_ivar.cpu().numpy(),
                ivar[rows].to(torch.float64).cpu().numpy(),
                z0.to(torch.float64).cpu().numpy(),
                z1.to(torch.float64).cpu().numpy(),
                self._centres,
                np.random.default_rng(seed),
            )
            new_flux = torch.from_numpy(out_flux).to(flux.device)
            new_ivar = torch.from_numpy(out_ivar).to(flux.device)
        flux[rows], ivar[rows], z[rows] = new_flux.to(flux.dtype), new_ivar.to(ivar.dtype), z1
        return flux, ivar, z

    def _mask(
        self,
        flux: torch.Tensor,
        ivar: torch.Tensor,
        rows: torch.Tensor,
        centre: torch.Tensor,
        width: float,
        generator: torch.Generator,
    ) -> None:
        """Windows [centre - width/2, centre + width/2) of the chosen rows -> continuum + noise;
        the continuum is the line through the ivar-weighted means of the side bands."""
        if len(rows) == 0:
            return
        _, centres = self._grid_tensors(flux.device, flux.dtype)
        part_flux, part_ivar = flux[rows], ivar[rows]
        offset = centres[None, :] - centre[:, None]
        half = width / 2

        def band_mean(inside: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            weight = torch.where(inside, part_ivar, torch.zeros_like(part_ivar))
            total = weight.sum(dim=1)
            mean = (weight * part_flux).sum(dim=1) / total.clamp_min(1e-30)
            return mean, total > 0

        blue, blue_ok = band_mean((offset >= -3 * half) & (offset < -half))
        red, red_ok = band_mean((offset >= half) & (offset < 3 * half))
        blue, red = torch.where(blue_ok, blue, red), torch.where(red_ok, red, blue)
        continuum = (0.5 * (blue + red))[:, None] + ((red - blue) / (2 * width))[:, None] * offset
        inside = (offset >= -half) & (offset < half)
        has_data = inside & (part_ivar > 0)
        noise = torch.randn(part_flux.shape, generator=generator, device=flux.device, dtype=flux.dtype)
        sigma = torch.rsqrt(torch.where(has_data, part_ivar, torch.ones_like(part_ivar)))
        part_flux = torch.where(has_data, continuum + sigma * noise, part_flux)
        part_flux = torch.where(inside & ~(part_ivar > 0), torch.zeros_like(part_flux), part_flux)
        flux[rows] = part_flux

    @staticmethod
    def _add_noise(
        flux: torch.Tensor,
        ivar: torch.Tensor,
        rows: torch.Tensor,
        fraction: float,
        generator: torch.Generator,
    ) -> None:
        if len(rows) == 0:
            return
        part_flux, part_ivar = flux[rows], ivar[rows]
        has_data = part_ivar > 0
        magnitude = torch.where(has_data, part_flux.abs(), torch.full_like(part_flux, float("nan")))
        sigma = (fraction * torch.nanmedian(magnitude, dim=1).values).nan_to_num(0.0)[:, None]
        noise = torch.randn(part_flux.shape, generator=generator, device=flux.device, dtype=flux.dtype)
        flux[rows] = torch.where(has_data, part_flux + sigma * noise, part_flux)
        ivar[rows] = torch.where(has_data, part_ivar / (1 + part_ivar * sigma**2), part_ivar)
