"""Wavelength grids: the network's input grid (linear or log-lambda) and pixel lookups on it.

QuasarNET's grid is log-lambda: log10(3600) + i*1e-3, 443 bins, a wavelength w falls in pixel
floor((log10(w) - llmin) / dll). The LBG thesis used a linear grid, 3600-10000 A in 8 A bins (800).
Both are constant-step grids in some coordinate u (u = lambda or u = log10(lambda)), which is all
this module needs.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from .errors import ConfigError


@dataclass(frozen=True)
class Grid:
    """A constant-step grid: bin i covers [u0 + i*step, u0 + (i+1)*step) in coordinate u."""

    kind: str  # "linear" (u = lambda, Angstrom) or "log" (u = log10(lambda))
    start: float  # u0: lower edge of bin 0, in the grid's coordinate
    step: float
    n_pixels: int

    def __post_init__(self) -> None:
        if self.kind not in ("linear", "log"):
            raise ConfigError(f"grid kind must be 'linear' or 'log', not {self.kind!r}")
        if self.step <= 0 or self.n_pixels <= 0:
            raise ConfigError(f"grid step and n_pixels must be positive, got {self.step}, {self.n_pixels}")

    @classmethod
    def from_config(cls, spec: dict[str, Any]) -> "Grid":
        """Build from the config's `grid:` block ({kind, wave_min, wave_max, step})."""
        kind = spec["kind"]
        wave_min, wave_max, step = float(spec["wave_min"]), float(spec["wave_max"]), float(spec["step"])
        if wave_max <= wave_min:
            raise ConfigError(f"grid wave_max ({wave_max}) must exceed wave_min ({wave_min})")
        start = np.log10(wave_min) if kind == "log" else wave_min
        stop = np.log10(wave_max) if kind == "log" else wave_max
        n_pixels = int(np.floor((stop - start) / step + 1e-9))
        return cls(kind=kind, start=float(start), step=step, n_pixels=n_pixels)

    @classmethod
    def quasarnet(cls) -> "Grid":
        """QuasarNET's published grid: log10(3600) + i*1e-3, 443 bins."""
        return cls(kind="log", start=float(np.log10(3600.0)), step=1e-3, n_pixels=443)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def _to_u(self, wavelength: np.ndarray) -> np.ndarray:
        wavelength = np.asarray(wavelength, dtype=np.float64)
        return np.log10(wavelength) if self.kind == "log" else wavelength

    def _from_u(self, u: np.ndarray) -> np.ndarray:
        u = np.asarray(u, dtype=np.float64)
        return 10.0**u if self.kind == "log" else u

    @property
    def edges(self) -> np.ndarray:
        """Bin edges in Angstrom, n_pixels + 1 of them."""
        return self._from_u(self.start + self.step * np.arange(self.n_pixels + 1))

    @property
    def wavelength(self) -> np.ndarray:
        """Lower bin edges in Angstrom: QuasarNET's convention for the pixel wavelength."""
        return self.edges[:-1]

    @property
    def centres(self) -> np.ndarray:
        return self._from_u(self.start + self.step * (np.arange(self.n_pixels) + 0.5))

    @property
    def wave_min(self) -> float:
        return float(self.edges[0])

    @property
    def wave_max(self) -> float:
        return float(self.edges[-1])

    def fractional_index(self, wavelength: np.ndarray) -> np.ndarray:
        """Continuous pixel coordinate: 0 at the lower edge of bin 0, n_pixels at the top edge."""
        return (self._to_u(wavelength) - self.start) / self.step

    def pixel_index(self, wavelength: np.ndarray) -> np.ndarray:
        """Bin of each wavelength (int64); -1 or n_pixels and beyond are outside the grid."""
        index = np.floor(self.fractional_index(wavelength)).astype(np.int64)
        return np.clip(index, -1, self.n_pixels)

    def wavelength_at(self, fractional_index: np.ndarray) -> np.ndarray:
        """Inverse of fractional_index."""
        return self._from_u(self.start + self.step * np.asarray(fractional_index, dtype=np.float64))
