"""Named sub-datasets (variants) by data augmentation (rule `augment`; thesis chapter 3, appendix C).

:func:`augment_variant` applies a declarative recipe of operations (select, shift, mask_region,
mask_line, add_noise, simulated) to a training pool or a resampled template set. Random
shifts/masks/noise at each training epoch are :class:`lymannet.online.OnlineAugmentation`'s.

A recipe runs in two passes. The *plan* runs every operation on the truth table alone (selection,
new redshifts, random draws that decide which rows survive), which gives the output size up front
(SpectraWriter needs it) and makes `fraction` and `to_mean_z` exact over the whole sample. The
*apply* pass then streams the source's chunks through the spectral operations.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from . import augment_ops as ops_np
from .chunks import CHUNK_ROWS, Chunk, Layout, copy_truth, read_chunk, row_slices, take_rows
from .config import job_seed, slugify
from .errors import ConfigError, InputFileError
from .fileio import provenance
from .reshift import ShiftReport, shift_galaxy
from .runtime import Progress
from .selection import SELECT_KEYS, select_rows, validate_select
from .spectra import SpectraFile, SpectraWriter

log = logging.getLogger("lymannet.augment")


class Op:
    """One step of a variant recipe: `plan` works on truth alone, `apply` on spectra."""

    name = ""
    keys: tuple[str, ...] = ()
    required: tuple[str, ...] = ()
    needs_native = False

    def __init__(self, index: int, params: dict | None, where: str):
        self.index, self.where = index, where
        params = dict(params or {})
        unknown = sorted(set(params) - set(self.keys))
        if unknown:
            raise ConfigError(f"{where}: unknown parameter(s) {unknown}; valid: {list(self.keys)}")
        missing = [key for key in self.required if key not in params]
        if missing:
            raise ConfigError(f"{where}: missing parameter(s) {missing}")
        self.params = params
        self.setup()

    def setup(self) -> None:
        pass

    def number(self, key: str, default: float | None = None, positive: bool = False) -> float:
        value = self.params.get(key, default)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not np.isfinite(value):
            raise ConfigError(f"{self.where}: {key} must be a number, not {value!r}")
        if positive and value <= 0:
            raise ConfigError(f"{self.where}: {key} must be positive, not {value!r}")
        return float(value)

    def plan(self, truth: pd.DataFrame, rng: np.random.Generator) -> pd.DataFrame:
        return truth

    def apply(self, chunk: Chunk, layout: Layout, rng: np.random.Generator) -> None:
        pass


class SelectOp(Op):
    name, keys = "select", SELECT_KEYS

    def setup(self) -> None:
        self.criteria = validate_select(self.params, self.where, self.keys)

    def plan(self, truth: pd.DataFrame, rng: np.random.Generator) -> pd.DataFrame:
        return truth[select_rows(truth, self.criteria, rng)].reset_index(drop=True)


class SimulatedOp(SelectOp):
    """A slice of the synthetic set: rows with a template number (TEMPLATE >= 0), by exposure
    time, template and magnitude."""

    name, keys = "simulated", ("exptime", "templates", "mag_r")

    def setup(self) -> None:
        renamed = {("template" if k == "templates" else k): v for k, v in self.params.items()}
        self.criteria = validate_select(renamed, self.where, ("exptime", "template", "mag_r"))

    def plan(self, truth: pd.DataFrame, rng: np.random.Generator) -> pd.DataFrame:
        synthetic = truth["TEMPLATE"].to_numpy() >= 0
        return truth[synthetic & select_rows(truth, self.criteria, rng)].reset_index(drop=True)


class ShiftOp(Op):
    """z0 -> z1 with (1+z1)/(1+z0) = ratio, or the ratio moving the sample's mean z to `to_mean_z`;
    `jitter` adds U(-jitter/2, jitter/2) to each z1 (two shifted copies then differ). z1 is
    clipped at 0. Spectra move by wavelength x (1+z1)/(1+z0) on the native layer (eq. 3.1), then
    (unless `thesis: true`, eq. 3.1 alone) :func:`lymannet.reshift.shift_galaxy` gives them z1's
    IGM, the noise of the wavelengths they now sit at, and no empty ends."""

    name, keys, needs_native = "shift", ("ratio", "to_mean_z", "jitter", "thesis"), True

    def setup(self) -> None:
        if ("ratio" in self.params) == ("to_mean_z" in self.params):
            raise ConfigError(f"{self.where}: give exactly one of 'ratio' (e.g. \"5/4\") or 'to_mean_z'")
        if "ratio" in self.params:
            try:
                self.ratio: float | None = ops_np.parse_ratio(self.params["ratio"])
            except (ValueError, ZeroDivisionError) as error:
                raise ConfigError(f"{self.where}: bad ratio: {error}") from None
        else:
            self.ratio = None
            self.to_mean_z = self.number("to_mean_z")
            if self.to_mean_z < 0:
                raise ConfigError(f"{self.where}: to_mean_z must be >= 0, not {self.to_mean_z}")
        self.jitter = self.number("jitter", 0.0)
        if self.jitter < 0:
            raise ConfigError(f"{self.where}: jitter must be >= 0, not {self.jitter}")
        self.thesis = self.params.get("thesis", False)
        if not isinstance(self.thesis, bool):
            raise ConfigError(f"{self.where}: thesis must be true or false, not {self.thesis!r}")
        self.report = ShiftReport()
        self.native_after = True  # does anything after this shift read the native layer?

    @property
    def column(self) -> str:
        return f"_ratio{self.index}"

    def plan(self, truth: pd.DataFrame, rng: np.random.Generator) -> pd.DataFrame:
        truth = truth.copy()
        z0 = truth["Z"].to_numpy(np.float64)
        if self.ratio is not None:
            ratio = self.ratio
        else:
            ratio = (1 + self.to_mean_z) / (1 + z0.mean()) if len(z0) else 1.0
        z1 = (1 + z0) * ratio - 1
        if self.jitter > 0:
            z1 = z1 + rng.uniform(-self.jitter / 2, self.jitter / 2, len(z1))
        z1 = np.maximum(z1, 0.0)
        truth[self.column] = (1 + z1) / (1 + z0)
        truth[f"_z0{self.index}"] = z0
        truth["Z"] = z1
        return truth

    def apply(self, chunk: Chunk, layout: Layout, rng: np.random.Generator) -> None:
        assert chunk.native_flux is not None and layout.native_wavelength is not None
        ratio = chunk.truth[self.column].to_numpy(np.float64)
        if self.thesis:
            chunk.flux, chunk.ivar, chunk.native_flux, chunk.native_ivar = ops_np.shift_native(
                layout.native_wavelength, chunk.native_flux, chunk.native_ivar, ratio, layout.grid
            )
            return
        z0 = chunk.truth[f"_z0{self.index}"].to_numpy(np.float64)
        z1 = (1 + z0) * ratio - 1
        chunk.flux, chunk.ivar, chunk.native_flux, chunk.native_ivar, report = shift_galaxy(
            layout.native_wavelength,
            chunk.native_flux,
            chunk.native_ivar,
            chunk.ivar,
            z0,
            z1,
            layout.grid,
            rng,
            native=self.native_after,
        )
        self.report.add(report)


class MaskRegionOp(Op):
    """Observed-frame window [center - width/2, center + width/2) A replaced by local continuum +
    N(0, 1/sqrt(ivar)) (see :func:`lymannet.augment_ops.fill_windows`), on every layer held."""

    name, keys, required = "mask_region", ("center", "width"), ("center", "width")

    def setup(self) -> None:
        self.center, self.width = self.number("center", positive=True), self.number("width", positive=True)

    def centres(self, truth: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        n = len(truth)
        return np.full(n, self.center), np.full(n, self.width)

    def apply(self, chunk: Chunk, layout: Layout, rng: np.random.Generator) -> None:
        centre, width = self.centres(chunk.truth)
        chunk.flux = ops_np.fill_windows(layout.centres, chunk.flux, chunk.ivar, centre, width, rng)
        if chunk.native_flux is not None and layout.native_wavelength is not None:
            chunk.native_flux = ops_np.fill_windows(
                layout.native_wavelength, chunk.native_flux, chunk.native_ivar, centre, width, rng
            )


class MaskLineOp(MaskRegionOp):
    """The same window around a rest-frame line, centred at (1+z) x line. `width` is in
    observed-frame Angstrom (the thesis's 40 A), or rest-frame (x (1+z)) with rest_frame: true."""

    name, keys, required = "mask_line", ("line", "width", "rest_frame"), ("line", "width")

    def setup(self) -> None:
        self.line, self.width = self.number("line", positive=True), self.number("width", positive=True)
        self.rest_frame = self.params.get("rest_frame", False)
        if not isinstance(self.rest_frame, bool):
            raise ConfigError(f"{self.where}: rest_frame must be true or false, not {self.rest_frame!r}")

    @property
    def column(self) -> str:
        return f"_z{self.index}"

    def plan(self, truth: pd.DataFrame, rng: np.random.Generator) -> pd.DataFrame:
        truth = truth.copy()
        truth[self.column] = truth["Z"].to_numpy(np.float64)  # z at this step of the chain
        return truth

    def centres(self, truth: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        one_plus_z = 1 + truth[self.column].to_numpy(np.float64)
        width = self.width * one_plus_z if self.rest_frame else np.full(len(truth), self.width)
        return self.line * one_plus_z, width


class AddNoiseOp(Op):
    """Extra Gaussian noise, sigma = fraction x median |flux| over the network pixels with data
    (per spectrum); ivar: 1/ivar_new = 1/ivar + sigma^2. On the native layer the per-pixel sigma
    is scaled by sqrt(network bin width / native pixel width), so that rebinning it gives about
    the same extra noise per network pixel."""

    name, keys, required = "add_noise", ("fraction",), ("fraction",)

    def setup(self) -> None:
        self.fraction = self.number("fraction", positive=True)

    def apply(self, chunk: Chunk, layout: Layout, rng: np.random.Generator) -> None:
        sigma = ops_np.extra_noise_sigma(chunk.flux, chunk.ivar, self.fraction)
        chunk.flux, chunk.ivar = ops_np.add_noise(chunk.flux, chunk.ivar, sigma, rng)
        if chunk.native_flux is not None and layout.native_wavelength is not None:
            scale = ops_np.native_noise_scale(layout.native_wavelength, layout.grid)
            chunk.native_flux, chunk.native_ivar = ops_np.add_noise(
                chunk.native_flux, chunk.native_ivar, sigma[:, None] * scale[None, :], rng
            )


OPERATIONS: dict[str, type[Op]] = {
    op.name: op for op in (SelectOp, ShiftOp, MaskRegionOp, MaskLineOp, AddNoiseOp, SimulatedOp)
}


def parse_recipe(variant: str, spec: dict) -> list[Op]:
    """The operations of a variant's `ops:` list, validated; ConfigError names the variant, the
    operation and the valid operations."""
    raw = (spec or {}).get("ops") or []
    if not isinstance(raw, list):
        raise ConfigError(f"variant {variant!r}: ops must be a list of {{operation: {{parameters}}}}")
    parsed = []
    for index, item in enumerate(raw):
        if not isinstance(item, dict) or len(item) != 1:
            raise ConfigError(
                f"variant {variant!r}, op #{index + 1}: each op must be a one-key mapping "
                f"{{operation: {{parameters}}}}, not {item!r}; valid operations: {sorted(OPERATIONS)}"
            )
        ((name, params),) = item.items()
        where = f"variant {variant!r}, op #{index + 1} {name!r}"
        if name not in OPERATIONS:
            raise ConfigError(f"{where}: unknown operation; valid operations: {sorted(OPERATIONS)}")
        if params is not None and not isinstance(params, dict):
            raise ConfigError(f"{where}: parameters must be a mapping, not {params!r}")
        parsed.append(OPERATIONS[name](index, params, where))
    return parsed


def plan_recipe(truth: pd.DataFrame, recipe: list[Op], rng: np.random.Generator) -> pd.DataFrame:
    """Run the recipe on the truth table: surviving rows (column _row: their source row, in
    order), their final truth, and each operation's per-row parameters (private _ columns)."""
    planned = truth.reset_index(drop=True).copy()
    planned["_row"] = np.arange(len(planned))
    for op in recipe:
        planned = op.plan(planned, rng).reset_index(drop=True)
    return planned


def augment_variant(
    source: str | Path, output: str | Path, spec: dict, seed: int, variant: str, chunk_rows: int = CHUNK_ROWS
) -> int:
    """Apply a variant's recipe to a source file (training pool or resampled set); returns the
    number of spectra written. Output: network layer (plus native with `keep_native: true`)."""
    recipe = parse_recipe(variant, spec)
    keep_native = bool((spec or {}).get("keep_native", False))
    last_native = max((i for i, op in enumerate(recipe) if op.needs_native), default=-1)
    for index, op in enumerate(recipe):
        if isinstance(op, ShiftOp):
            op.native_after = keep_native or index < last_native
    with SpectraFile(source) as source_file:
        layout = Layout.of(source_file)
        read_native = keep_native or last_native >= 0
        if read_native and not source_file.has_native:
            raise InputFileError(
                f"variant {variant!r} shifts or keeps native spectra but the file has no "
                "native layer (NATIVE_FLUX)",
                source,
            )
        planned = plan_recipe(
            source_file.truth, recipe, np.random.default_rng(job_seed(seed, "augment", variant))
        )
        rows = planned["_row"].to_numpy()
        final_truth = copy_truth(planned, slugify(variant), variant)
        record = provenance({"variant": variant, "spec": spec, "seed": seed}, {"source": source})
        progress = Progress(len(planned), "spectra")
        with SpectraWriter(
            output,
            len(planned),
            layout.wavelength,
            layout.grid,
            layout.native_wavelength if keep_native else None,
            record,
        ) as writer:
            for index, start, stop in row_slices(len(source_file), chunk_rows):
                first, last = np.searchsorted(rows, [start, stop])
                if last == first:
                    continue
                local = rows[first:last]
                chunk = read_chunk(source_file, int(local[0]), int(local[-1]) + 1, read_native)
                chunk = take_rows(chunk, local - local[0])
                chunk.truth = planned.iloc[first:last].reset_index(drop=True)
                chunk_rng = np.random.default_rng(job_seed(seed, "augment", variant, f"chunk{index}"))
                _apply_recipe(recipe, chunk, layout, chunk_rng, None if keep_native else last_native)
                writer.write(
                    chunk.flux, chunk.ivar, final_truth.iloc[first:last], chunk.native_flux, chunk.native_ivar
                )
                progress.update(last - first)
        progress.done()
    log.info("variant %r: %d spectra from %d in %s", variant, len(planned), len(source_file), source)
    for op in recipe:
        if isinstance(op, ShiftOp) and not op.thesis:
            log.info("%s, network pixels: %s", op.where, op.report.describe())
    return len(planned)


def _apply_recipe(
    recipe: list[Op], chunk: Chunk, layout: Layout, rng: np.random.Generator, drop_native_after: int | None
) -> None:
    """Spectral operations in order; the native layer is dropped as soon as no later operation
    needs it (drop_native_after; None = keep it), so masks and noise after the last shift only
    touch the 10x smaller network layer."""
    if drop_native_after == -1:
        chunk.native_flux = chunk.native_ivar = None
    for index, op in enumerate(recipe):
        op.apply(chunk, layout, rng)
        if drop_native_after == index:
            chunk.native_flux = chunk.native_ivar = None
