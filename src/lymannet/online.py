"""Online augmentation (thesis, perspectives): random shifts, masks and noise drawn anew at each
epoch, on torch tensors of the network layer, on any device.

The operations mirror the offline ones of :mod:`lymannet.augment_ops` on the network grid:

- shift: z1 = z0 + U(z_range) (or ratio = U(ratio_range)); pixel edges map back to
  u = fractional_index(edge / ratio) on the unshifted spectrum (a pure translation by
  -log10(ratio)/step pixels on a log grid, a stretch on a linear grid) and flux/ivar are
  resampled with pixel-overlap weights; bins no data reaches get ivar 0.
- mask_region / mask_line: windows replaced by local continuum + N(0, 1/sqrt(ivar)).
- add_noise: sigma = fraction x median |flux| (pixels with data), 1/ivar_new = 1/ivar + sigma^2.

Spec (every block optional, p = probability per spectrum)::

    shift:       {p: 0.5, z_range: [-0.3, 0.3]}   # or ratio_range: [0.8, 1.25]; contaminants: false
    mask_region: {p: 0.3, width: 40, center: 5800}  # or center_range: [wmin, wmax] (default: the grid)
    mask_line:   {p: 0.3, width: 40, lines: [1215.67]}  # observed-frame width, window at (1+z) line
    add_noise:   {p: 0.3, fraction: 0.1}
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from .errors import ConfigError
from .grid import Grid
from .augment_ops import OVERLAP_EPSILON
from .lines import LYA

OPERATIONS: dict[str, tuple[str, ...]] = {
    "shift": ("p", "z_range", "ratio_range", "contaminants"),
    "mask_region": ("p", "width", "center", "center_range"),
    "mask_line": ("p", "width", "lines"),
    "add_noise": ("p", "fraction"),
}


def overlap_resample(flux: torch.Tensor, ivar: torch.Tensor, u_lo: torch.Tensor, u_hi: torch.Tensor
                     ) -> tuple[torch.Tensor, torch.Tensor]:
    """Torch twin of :func:`lymannet.augment_ops.overlap_resample`: target bins [u_lo, u_hi) in
    the source pixel coordinate (pixel s covers [s, s+1)): flux = sum(a ivar flux)/sum(a ivar),
    ivar = sum(a ivar), a = overlap of source pixel and target bin (information conserved)."""
    n_source = flux.shape[1]
    first = torch.floor(u_lo).long()
    n_overlaps = int(torch.ceil((u_hi - u_lo).max()).item()) + 1 if u_lo.numel() else 1
    sum_w = torch.zeros_like(u_lo)
    sum_wf = torch.zeros_like(u_lo)
    for k in range(n_overlaps):
        source = first + k
        overlap = torch.minimum(u_hi, (source + 1).to(u_lo.dtype)) - torch.maximum(u_lo, source.to(u_lo.dtype))
        valid = (overlap > OVERLAP_EPSILON) & (source >= 0) & (source < n_source)
        clipped = source.clamp(0, n_source - 1)
        weight = torch.where(valid, overlap, torch.zeros_like(overlap)) * torch.gather(ivar, 1, clipped)
        sum_w += weight
        sum_wf += weight * torch.gather(flux, 1, clipped)
    has_w = sum_w > 0
    out_flux = torch.where(has_w, sum_wf / torch.where(has_w, sum_w, torch.ones_like(sum_w)), torch.zeros_like(sum_w))
    return out_flux, sum_w


def _range(block: dict, key: str, name: str) -> tuple[float, float]:
    value = block[key]
    if not isinstance(value, (list, tuple)) or len(value) != 2 or float(value[0]) > float(value[1]):
        raise ConfigError(f"online augmentation {name}: {key} must be [low, high], not {value!r}")
    return float(value[0]), float(value[1])


class OnlineAugmentation:
    """Random per-spectrum augmentation of (N, P) network-layer batches; call before target
    encoding (the returned z is the new redshift). Deterministic for a seeded generator; the
    generator must live on the tensors' device."""

    def __init__(self, spec: dict, grid: Grid):
        self.grid = grid
        self.spec: dict[str, dict[str, Any]] = {}
        for name, block in (spec or {}).items():
            if name not in OPERATIONS:
                raise ConfigError(f"online augmentation: unknown operation {name!r}; valid operations: "
                                  f"{sorted(OPERATIONS)}")
            block = dict(block or {})
            unknown = sorted(set(block) - set(OPERATIONS[name]))
            if unknown:
                raise ConfigError(f"online augmentation {name}: unknown parameter(s) {unknown}; "
                                  f"valid: {list(OPERATIONS[name])}")
            p = float(block.get("p", 1.0))
            if not 0 <= p <= 1:
                raise ConfigError(f"online augmentation {name}: p must be in [0, 1], not {p}")
            block["p"] = p
            self.spec[name] = block
        self._check()
        self._edges = np.asarray(grid.edges, np.float64)
        self._centres = np.asarray(grid.centres, np.float64)
        self._cache: dict[tuple[torch.device, torch.dtype], tuple[torch.Tensor, torch.Tensor]] = {}

    def _check(self) -> None:
        shift = self.spec.get("shift")
        if shift is not None:
            if ("z_range" in shift) == ("ratio_range" in shift):
                raise ConfigError("online augmentation shift: give exactly one of z_range or ratio_range")
            key = "z_range" if "z_range" in shift else "ratio_range"
            shift[key] = _range(shift, key, "shift")
            if key == "ratio_range" and shift[key][0] <= 0:
                raise ConfigError("online augmentation shift: ratio_range must be positive")
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
            self._cache[key] = (torch.as_tensor(self._edges, dtype=dtype, device=device),
                                torch.as_tensor(self._centres, dtype=dtype, device=device))
        return self._cache[key]

    @staticmethod
    def _uniform(n: int, low: float, high: float, like: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        return low + (high - low) * torch.rand(n, generator=generator, device=like.device, dtype=like.dtype)

    def __call__(self, flux: torch.Tensor, ivar: torch.Tensor, z: torch.Tensor, generator: torch.Generator,
                 shiftable: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Augmented copies of (flux, ivar, z); inputs are not modified. `shiftable` (bool (N,),
        e.g. SPECTYPE == 'LBG') limits the shift to those rows unless shift.contaminants is true;
        default: every row may be shifted."""
        flux, ivar, z = flux.clone(), ivar.clone(), z.clone()
        z = z.to(flux.dtype)
        if "shift" in self.spec:
            flux, ivar, z = self._shift(flux, ivar, z, generator, shiftable)
        if "mask_region" in self.spec:
            block = self.spec["mask_region"]
            rows = self._draw_rows(block["p"], flux, generator)
            low, high = block.get("center_range", (self.grid.wave_min, self.grid.wave_max))
            centre = torch.full((len(rows),), float(block["center"]), dtype=flux.dtype, device=flux.device) \
                if "center" in block else self._uniform(len(rows), low, high, flux, generator)
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
    def _draw_rows(p: float, flux: torch.Tensor, generator: torch.Generator,
                   allowed: torch.Tensor | None = None) -> torch.Tensor:
        chosen = torch.rand(flux.shape[0], generator=generator, device=flux.device) < p
        if allowed is not None:
            chosen &= allowed.to(device=flux.device, dtype=torch.bool)
        return torch.nonzero(chosen, as_tuple=False).flatten()

    def _shift(self, flux: torch.Tensor, ivar: torch.Tensor, z: torch.Tensor, generator: torch.Generator,
               shiftable: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        block = self.spec["shift"]
        allowed = None if block.get("contaminants", False) else shiftable
        rows = self._draw_rows(block["p"], flux, generator, allowed)
        if len(rows) == 0:
            return flux, ivar, z
        z0 = z[rows]
        if "z_range" in block:
            z1 = (z0 + self._uniform(len(rows), *block["z_range"], flux, generator)).clamp_min(0.0)
        else:
            z1 = ((1 + z0) * self._uniform(len(rows), *block["ratio_range"], flux, generator) - 1).clamp_min(0.0)
        ratio = (1 + z1) / (1 + z0)
        # Pixel coordinates in float64: float32 round-off at index ~800 would leave slivers of
        # overlap (ivar ~1e-4 where there is no data) at the edges.
        edges, _ = self._grid_tensors(flux.device, torch.float64)
        ratio64 = ratio.to(torch.float64)
        if self.grid.kind == "log":
            # A log grid: the shift is a translation by log10(ratio)/step pixels.
            u_edges = torch.arange(len(edges), device=flux.device, dtype=torch.float64)[None, :] \
                - (torch.log10(ratio64) / self.grid.step)[:, None]
        else:
            u_edges = (edges[None, :] / ratio64[:, None] - self.grid.start) / self.grid.step
        new_flux, new_ivar = overlap_resample(flux[rows].to(torch.float64), ivar[rows].to(torch.float64),
                                              u_edges[:, :-1], u_edges[:, 1:])
        flux[rows], ivar[rows], z[rows] = new_flux.to(flux.dtype), new_ivar.to(ivar.dtype), z1
        return flux, ivar, z

    def _mask(self, flux: torch.Tensor, ivar: torch.Tensor, rows: torch.Tensor, centre: torch.Tensor,
              width: float, generator: torch.Generator) -> None:
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
    def _add_noise(flux: torch.Tensor, ivar: torch.Tensor, rows: torch.Tensor, fraction: float,
                   generator: torch.Generator) -> None:
        if len(rows) == 0:
            return
        part_flux, part_ivar = flux[rows], ivar[rows]
        has_data = part_ivar > 0
        magnitude = torch.where(has_data, part_flux.abs(), torch.full_like(part_flux, float("nan")))
        sigma = (fraction * torch.nanmedian(magnitude, dim=1).values).nan_to_num(0.0)[:, None]
        noise = torch.randn(part_flux.shape, generator=generator, device=flux.device, dtype=flux.dtype)
        flux[rows] = torch.where(has_data, part_flux + sigma * noise, part_flux)
        ivar[rows] = torch.where(has_data, part_ivar / (1 + part_ivar * sigma**2), part_ivar)
