"""Building training sets by data augmentation (thesis chapter 3, appendix C).

Stages, each streaming spectra files chunk by chunk (bounded memory) and writing atomically:

- :func:`split_holdout`: ingested file -> training pool + held-out objects (by PARENT_TARGETID,
  stratified by SPECTYPE), before any augmentation, so no copy of a test object can be trained on.
- :func:`build_testset`: held-out files -> a test set (network layer), members selected by truth.
- :func:`resample_templates`: the discrete-z synthetic set made continuous (thesis 3.5.2).
- :func:`augment_variant`: a named sub-dataset from a declarative recipe of operations
  (select, shift, mask_region, mask_line, add_noise, simulated).
- :func:`combine`: variants -> balanced, shuffled train/val files plus a summary CSV and plot.
- :func:`check_no_leakage`: no training object descends from a test object.
- :class:`OnlineAugmentation` (in :mod:`lymannet.online`): random shifts/masks/noise on torch
  tensors, at each epoch.

A recipe runs in two passes. The *plan* runs every operation on the truth table alone (selection,
new redshifts, random draws that decide which rows survive), which gives the output size up front
(SpectraWriter needs it) and makes `fraction` and `to_mean_z` exact over the whole sample. The
*apply* pass then streams the source's chunks through the spectral operations.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

import fitsio
import numpy as np
import pandas as pd

from . import augment_ops as ops_np
from .config import job_seed, slugify
from .errors import ConfigError, InputFileError, LymannetError
from .fileio import atomic_path, provenance, write_text_atomic
from .grid import Grid
from .runtime import Progress
from .spectra import TRUTH_COLUMNS, SpectraFile, SpectraWriter

log = logging.getLogger("lymannet.augment")

CHUNK_ROWS = 512  # rows per chunk: 512 x 7781 native pixels x (flux, ivar) float32 = 32 MB
TARGET_CLASS = "LBG"  # everything else (QSO, ELG) is a contaminant
Z_TOLERANCE = 1e-6  # template redshifts are 2.0 + 0.1 k in float: 2.6 may be 2.6000000000000005


class LeakageError(LymannetError):
    """A training set holds a copy of a test object."""


def __getattr__(name: str) -> Any:
    # OnlineAugmentation needs torch; import it only when asked for, so scripts start fast.
    if name == "OnlineAugmentation":
        from .online import OnlineAugmentation

        return OnlineAugmentation
    raise AttributeError(f"module 'lymannet.augment' has no attribute {name!r}")


# ---------------------------------------------------------------------------------------------
# Chunks of spectra

@dataclass
class Layout:
    """What all chunks of one file share: the network grid and the native wavelengths."""

    grid: Grid
    wavelength: np.ndarray  # network WAVELENGTH as stored
    native_wavelength: np.ndarray | None

    @property
    def centres(self) -> np.ndarray:
        """Network pixel centres: where a window test (mask) looks at a pixel."""
        return self.grid.centres

    @classmethod
    def of(cls, spectra_file: SpectraFile) -> "Layout":
        grid = spectra_file.grid
        if grid is None:
            raise InputFileError("network layer has no GRIDKIND/GRIDSTRT/GRIDSTEP header", spectra_file.path)
        native = spectra_file.wavelength_of("native") if spectra_file.has_native else None
        return cls(grid, spectra_file.wavelength_of("network"), native)


@dataclass
class Chunk:
    """Rows of one file: truth, network layer, and the native layer while it is still needed."""

    truth: pd.DataFrame
    flux: np.ndarray
    ivar: np.ndarray
    native_flux: np.ndarray | None = None
    native_ivar: np.ndarray | None = None


def read_chunk(spectra_file: SpectraFile, start: int, stop: int, native: bool) -> Chunk:
    network = spectra_file.read("network", start, stop)
    chunk = Chunk(network.truth, network.flux, network.ivar)
    if native:
        native_set = spectra_file.read("native", start, stop)
        chunk.native_flux, chunk.native_ivar = native_set.flux, native_set.ivar
    return chunk


def take_rows(chunk: Chunk, rows: np.ndarray) -> Chunk:
    native = chunk.native_flux is not None
    return Chunk(chunk.truth.iloc[rows].reset_index(drop=True), chunk.flux[rows], chunk.ivar[rows],
                 chunk.native_flux[rows] if native else None, chunk.native_ivar[rows] if native else None)


# ---------------------------------------------------------------------------------------------
# Selection by truth

SELECT_KEYS = ("spectype", "z", "template", "mag_r", "exptime", "fraction")


def _range(value: Any, where: str, key: str) -> tuple[float | None, float | None]:
    if not isinstance(value, (list, tuple)) or len(value) != 2:
        raise ConfigError(f"{where}: {key} must be [min, max] (null for open), not {value!r}")
    try:
        low, high = (None if v is None else float(v) for v in value)
    except (TypeError, ValueError):
        raise ConfigError(f"{where}: {key} bounds must be numbers or null, not {value!r}") from None
    if low is not None and high is not None and low > high:
        raise ConfigError(f"{where}: {key} minimum {low} exceeds maximum {high}")
    return low, high


def _list(value: Any, where: str, key: str) -> list:
    values = list(value) if isinstance(value, (list, tuple)) else [value]
    if not values:
        raise ConfigError(f"{where}: {key} must list at least one value")
    return values


def validate_select(params: dict | None, where: str, keys: Iterable[str] = SELECT_KEYS) -> dict[str, Any]:
    """Check and normalise selection criteria (see :func:`select_rows`)."""
    params = dict(params or {})
    unknown = sorted(set(params) - set(keys))
    if unknown:
        raise ConfigError(f"{where}: unknown selection key(s) {unknown}; valid: {list(keys)}")
    criteria: dict[str, Any] = {}
    for key, value in params.items():
        if key in ("z", "mag_r"):
            criteria[key] = _range(value, where, key)
        elif key == "spectype":
            criteria[key] = [str(v) for v in _list(value, where, key)]
        elif key in ("template", "exptime"):
            try:
                criteria[key] = [float(v) for v in _list(value, where, key)]
            except (TypeError, ValueError):
                raise ConfigError(f"{where}: {key} values must be numbers, not {value!r}") from None
        elif key == "fraction":
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= 1:
                raise ConfigError(f"{where}: fraction must be a number in (0, 1], not {value!r}")
            criteria[key] = float(value)
    return criteria


def select_rows(truth: pd.DataFrame, criteria: dict[str, Any], rng: np.random.Generator) -> np.ndarray:
    """Boolean mask of the rows meeting every criterion: spectype in list, z and mag_r in
    [min, max] (inclusive, null = open), template and exptime in list; then `fraction`: a random
    subset of exactly round(fraction x n) of the rows that passed (drawn with `rng`)."""
    keep = np.ones(len(truth), bool)
    if "spectype" in criteria:
        keep &= truth["SPECTYPE"].astype(str).str.strip().isin(criteria["spectype"]).to_numpy()
    for key, column in (("z", "Z"), ("mag_r", "MAG_R")):
        if key in criteria:
            low, high = criteria[key]
            values = truth[column].to_numpy(np.float64)
            if low is not None:
                keep &= values >= low - Z_TOLERANCE
            if high is not None:
                keep &= values <= high + Z_TOLERANCE
    for key, column in (("template", "TEMPLATE"), ("exptime", "EXPTIME")):
        if key in criteria:
            values = truth[column].to_numpy(np.float64)
            keep &= np.isclose(values[:, None], np.asarray(criteria[key])[None, :], rtol=0, atol=1e-3).any(axis=1)
    if "fraction" in criteria:
        passed = np.flatnonzero(keep)
        chosen = rng.choice(len(passed), size=int(round(criteria["fraction"] * len(passed))), replace=False)
        keep[:] = False
        keep[passed[chosen]] = True
    return keep


# ---------------------------------------------------------------------------------------------
# Recipe operations

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
    clipped at 0. Spectra move by wavelength x (1+z1)/(1+z0) on the native layer."""

    name, keys, needs_native = "shift", ("ratio", "to_mean_z", "jitter"), True

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
        truth["Z"] = z1
        return truth

    def apply(self, chunk: Chunk, layout: Layout, rng: np.random.Generator) -> None:
        assert chunk.native_flux is not None and layout.native_wavelength is not None
        chunk.flux, chunk.ivar, chunk.native_flux, chunk.native_ivar = ops_np.shift_native(
            layout.native_wavelength, chunk.native_flux, chunk.native_ivar,
            chunk.truth[self.column].to_numpy(np.float64), layout.grid)


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
            chunk.native_flux = ops_np.fill_windows(layout.native_wavelength, chunk.native_flux,
                                                    chunk.native_ivar, centre, width, rng)


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
                chunk.native_flux, chunk.native_ivar, sigma[:, None] * scale[None, :], rng)


OPERATIONS: dict[str, type[Op]] = {op.name: op for op in
                                   (SelectOp, ShiftOp, MaskRegionOp, MaskLineOp, AddNoiseOp, SimulatedOp)}


def parse_recipe(variant: str, spec: dict) -> list[Op]:
    """The operations of a variant's `ops:` list, validated; ConfigError names the variant, the
    operation and the valid operations."""
    raw = (spec or {}).get("ops") or []
    if not isinstance(raw, list):
        raise ConfigError(f"variant {variant!r}: ops must be a list of {{operation: {{parameters}}}}")
    parsed = []
    for index, item in enumerate(raw):
        if not isinstance(item, dict) or len(item) != 1:
            raise ConfigError(f"variant {variant!r}, op #{index + 1}: each op must be a one-key mapping "
                              f"{{operation: {{parameters}}}}, not {item!r}; valid operations: {sorted(OPERATIONS)}")
        (name, params), = item.items()
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


def public_truth(truth: pd.DataFrame) -> pd.DataFrame:
    return truth[[c for c in truth.columns if not c.startswith("_")]].reset_index(drop=True)


def copy_truth(truth: pd.DataFrame, label: str, source: str) -> pd.DataFrame:
    """Truth of augmented copies: fresh TARGETIDs derived from (label, source TARGETID),
    PARENT_TARGETID kept (the observed object, through any chain), SOURCE = `source`."""
    truth = public_truth(truth).copy()
    parent = truth["PARENT_TARGETID"] if "PARENT_TARGETID" in truth else truth["TARGETID"]
    parent = np.where(parent.to_numpy(np.int64) >= 0, parent.to_numpy(np.int64), truth["TARGETID"].to_numpy(np.int64))
    truth["PARENT_TARGETID"] = parent
    truth["TARGETID"] = ops_np.derived_targetids(job_seed(0, "targetid", label), truth["TARGETID"].to_numpy())
    truth["SOURCE"] = source
    return truth


# ---------------------------------------------------------------------------------------------
# Stages

def _row_slices(n_rows: int, chunk_rows: int) -> Iterable[tuple[int, int, int]]:
    for index, start in enumerate(range(0, n_rows, chunk_rows)):
        yield index, start, min(start + chunk_rows, n_rows)


def choose_holdout(truth: pd.DataFrame, fraction: float, rng: np.random.Generator) -> np.ndarray:
    """Boolean mask of held-out rows: round(fraction x n) objects of each SPECTYPE, an object
    being a PARENT_TARGETID (so repeated observations of one target stay together)."""
    if not 0 <= fraction < 1:
        raise ConfigError(f"holdout fraction must be in [0, 1), not {fraction!r}")
    parent = truth["PARENT_TARGETID"].to_numpy(np.int64)
    parent = np.where(parent >= 0, parent, truth["TARGETID"].to_numpy(np.int64))
    objects = pd.DataFrame({"parent": parent, "spectype": truth["SPECTYPE"].astype(str)})
    objects = objects.drop_duplicates("parent")
    held: list[np.ndarray] = []
    for spectype in sorted(objects["spectype"].unique()):
        candidates = objects.loc[objects["spectype"] == spectype, "parent"].to_numpy()
        n_held = int(round(fraction * len(candidates)))
        held.append(rng.choice(candidates, size=n_held, replace=False))
    return np.isin(parent, np.concatenate(held) if held else np.zeros(0, np.int64))


def split_holdout(ingested: str | Path, pool: str | Path, holdout: str | Path, fraction: float, seed: int,
                  dataset: str, config_slice: Any = None, chunk_rows: int = CHUNK_ROWS) -> dict[str, int]:
    """Write the training pool and the held-out objects of one ingested file (both layers)."""
    with SpectraFile(ingested) as source:
        rng = np.random.default_rng(job_seed(seed, "holdout", dataset))
        held = choose_holdout(source.truth, float(fraction), rng)
        layout = Layout.of(source)
        record = provenance(config_slice, {"ingested": ingested})
        progress = Progress(len(source), "spectra")
        with SpectraWriter(pool, int((~held).sum()), layout.wavelength, layout.grid, layout.native_wavelength,
                           record) as pool_writer, \
             SpectraWriter(holdout, int(held.sum()), layout.wavelength, layout.grid, layout.native_wavelength,
                           record) as held_writer:
            for _, start, stop in _row_slices(len(source), chunk_rows):
                chunk = read_chunk(source, start, stop, source.has_native)
                for writer, rows in ((pool_writer, ~held[start:stop]), (held_writer, held[start:stop])):
                    part = take_rows(chunk, np.flatnonzero(rows))
                    writer.write(part.flux, part.ivar, part.truth, part.native_flux, part.native_ivar)
                progress.update(stop - start)
        progress.done()
    counts = {"pool": int((~held).sum()), "holdout": int(held.sum())}
    log.info("%s: %d objects in the training pool, %d held out", dataset, counts["pool"], counts["holdout"])
    return counts


def _check_same_grid(reference: Layout, other: Layout, path: str | Path) -> None:
    if reference.wavelength.shape != other.wavelength.shape or not np.allclose(reference.wavelength, other.wavelength):
        raise InputFileError("network grid differs from the other members'", path)


def build_testset(members: list[dict], holdouts: dict[str, str], seed: int, name: str, output: str | Path,
                  chunk_rows: int = 4096) -> int:
    """Concatenate selected held-out objects (network layer, TARGETIDs kept) into a test set."""
    plans = []
    for index, member in enumerate(members):
        where = f"testset {name!r}, member #{index + 1}"
        unknown = sorted(set(member) - {"dataset", "select"})
        if "dataset" not in member or unknown:
            raise ConfigError(f"{where}: members are {{dataset: <name>, select: {{...}}}}, got {member!r}")
        if member["dataset"] not in holdouts:
            raise ConfigError(f"{where}: no held-out file for dataset {member['dataset']!r}; "
                              f"known: {sorted(holdouts)}")
        criteria = validate_select(member.get("select"), where)
        path = holdouts[member["dataset"]]
        rng = np.random.default_rng(job_seed(seed, "testset", name, str(index)))
        with SpectraFile(path) as source:
            rows = np.flatnonzero(select_rows(source.truth, criteria, rng))
        plans.append((path, rows))
    if not plans:
        raise ConfigError(f"testset {name!r} has no members")
    n_rows = sum(len(rows) for _, rows in plans)
    with SpectraFile(plans[0][0]) as first:
        reference = Layout.of(first)
    record = provenance({"testset": name, "members": members, "seed": seed},
                        {f"holdout_{i}": path for i, (path, _) in enumerate(plans)})
    with SpectraWriter(output, n_rows, reference.wavelength, reference.grid, provenance=record) as writer:
        for path, rows in plans:
            with SpectraFile(path) as source:
                _check_same_grid(reference, Layout.of(source), path)
                for _, start, stop in _row_slices(len(rows), chunk_rows):
                    part = rows[start:stop]
                    chunk = read_chunk(source, int(part[0]), int(part[-1]) + 1, native=False)
                    chunk = take_rows(chunk, part - part[0])
                    writer.write(chunk.flux, chunk.ivar, chunk.truth)
    log.info("testset %s: %d spectra from %d member(s)", name, n_rows, len(members))
    return n_rows


def resample_templates(pool: str | Path, output: str | Path, plot: str | Path, offset_width: float, seed: int,
                       dataset: str, config_slice: Any = None, chunk_rows: int = CHUNK_ROWS) -> pd.DataFrame:
    """Thesis 3.5.2: z1 = z0 + U(-w/2, w/2) per spectrum, wavelengths scaled by (1+z1)/(1+z0)
    on the native layer (eq. 3.1), rebinned onto the network and native grids (both kept, so
    that variants can shift again). Returns the new truth; plots z before/after."""
    if isinstance(offset_width, bool) or not isinstance(offset_width, (int, float)) or offset_width < 0:
        raise ConfigError(f"resample_templates.{dataset}.offset_width must be a number >= 0, not {offset_width!r}")
    label = f"resampled:{dataset}"
    with SpectraFile(pool) as source:
        if not source.has_native:
            raise InputFileError("resample_templates needs the native layer (NATIVE_FLUX)", pool)
        layout = Layout.of(source)
        rng = np.random.default_rng(job_seed(seed, "resample_templates", dataset))
        z0 = source.truth["Z"].to_numpy(np.float64)
        z1 = np.maximum(z0 + rng.uniform(-offset_width / 2, offset_width / 2, len(z0)), 0.0)
        truth = source.truth.copy()
        truth["Z"], truth["Z_ORIG"] = z1, z0
        truth = copy_truth(truth, label, label)
        record = provenance(config_slice, {"pool": pool})
        progress = Progress(len(source), "spectra")
        with SpectraWriter(output, len(source), layout.wavelength, layout.grid, layout.native_wavelength,
                           record) as writer:
            for _, start, stop in _row_slices(len(source), chunk_rows):
                chunk = read_chunk(source, start, stop, native=True)
                ratio = (1 + z1[start:stop]) / (1 + z0[start:stop])
                flux, ivar, native_flux, native_ivar = ops_np.shift_native(
                    layout.native_wavelength, chunk.native_flux, chunk.native_ivar, ratio, layout.grid)
                writer.write(flux, ivar, truth.iloc[start:stop], native_flux, native_ivar)
                progress.update(stop - start)
        progress.done()
    plot_redshift_resampling(z0, z1, plot, dataset)
    return truth


def augment_variant(source: str | Path, output: str | Path, spec: dict, seed: int, variant: str,
                    chunk_rows: int = CHUNK_ROWS) -> int:
    """Apply a variant's recipe to a source file (training pool or resampled set); returns the
    number of spectra written. Output: network layer (plus native with `keep_native: true`)."""
    recipe = parse_recipe(variant, spec)
    keep_native = bool((spec or {}).get("keep_native", False))
    last_native = max((i for i, op in enumerate(recipe) if op.needs_native), default=-1)
    with SpectraFile(source) as source_file:
        layout = Layout.of(source_file)
        read_native = keep_native or last_native >= 0
        if read_native and not source_file.has_native:
            raise InputFileError(f"variant {variant!r} shifts or keeps native spectra but the file has no "
                                 "native layer (NATIVE_FLUX)", source)
        planned = plan_recipe(source_file.truth, recipe, np.random.default_rng(job_seed(seed, "augment", variant)))
        rows = planned["_row"].to_numpy()
        final_truth = copy_truth(planned, slugify(variant), variant)
        record = provenance({"variant": variant, "spec": spec, "seed": seed}, {"source": source})
        progress = Progress(len(planned), "spectra")
        with SpectraWriter(output, len(planned), layout.wavelength, layout.grid,
                           layout.native_wavelength if keep_native else None, record) as writer:
            for index, start, stop in _row_slices(len(source_file), chunk_rows):
                first, last = np.searchsorted(rows, [start, stop])
                if last == first:
                    continue
                local = rows[first:last]
                chunk = read_chunk(source_file, int(local[0]), int(local[-1]) + 1, read_native)
                chunk = take_rows(chunk, local - local[0])
                chunk.truth = planned.iloc[first:last].reset_index(drop=True)
                chunk_rng = np.random.default_rng(job_seed(seed, "augment", variant, f"chunk{index}"))
                _apply_recipe(recipe, chunk, layout, chunk_rng, None if keep_native else last_native)
                writer.write(chunk.flux, chunk.ivar, final_truth.iloc[first:last], chunk.native_flux,
                             chunk.native_ivar)
                progress.update(last - first)
        progress.done()
    log.info("variant %r: %d spectra from %d in %s", variant, len(planned), len(source_file), source)
    return len(planned)


def _apply_recipe(recipe: list[Op], chunk: Chunk, layout: Layout, rng: np.random.Generator,
                  drop_native_after: int | None) -> None:
    """Spectral operations in order; the native layer is dropped as soon as no later operation
    needs it (drop_native_after; None = keep it), so masks and noise after the last shift only
    touch the 10x smaller network layer."""
    if drop_native_after == -1:
        chunk.native_flux = chunk.native_ivar = None
    for index, op in enumerate(recipe):
        op.apply(chunk, layout, rng)
        if drop_native_after == index:
            chunk.native_flux = chunk.native_ivar = None


# ---------------------------------------------------------------------------------------------
# Combination into training sets

def balance_contaminants(spectype: np.ndarray, fraction: float | None, rng: np.random.Generator) -> np.ndarray:
    """Boolean keep-mask bringing (non-LBG)/(all) to `fraction` by dropping random objects of the
    over-represented side (thesis: 0.48); None keeps everything. The achieved count is within
    half an object of fraction x total."""
    keep = np.ones(len(spectype), bool)
    if fraction is None:
        return keep
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not 0 <= fraction <= 1:
        raise ConfigError(f"contaminant_fraction must be in [0, 1] or null, not {fraction!r}")
    contaminant = np.asarray(spectype).astype(str) != TARGET_CLASS
    n_contaminants, n_targets = int(contaminant.sum()), int((~contaminant).sum())
    if n_contaminants == 0 or n_targets == 0:
        # Balancing against an absent class would drop everything: keep the set and say so.
        if n_contaminants + n_targets:
            log.warning("contaminant_fraction %s ignored: the set has %d LBG and %d contaminants",
                        fraction, n_targets, n_contaminants)
        return keep
    current = n_contaminants / (n_contaminants + n_targets)
    if current > fraction:
        side = np.flatnonzero(contaminant)
        n_keep = n_contaminants if fraction >= 1 else int(round(fraction * n_targets / (1 - fraction)))
    elif current < fraction:
        side = np.flatnonzero(~contaminant)
        n_keep = n_targets if fraction <= 0 else int(round(n_contaminants * (1 - fraction) / fraction))
    else:
        return keep
    n_keep = min(n_keep, len(side))
    keep[rng.choice(side, size=len(side) - n_keep, replace=False)] = False
    return keep


def split_by_parent(parent: np.ndarray, validation_fraction: float, rng: np.random.Generator) -> np.ndarray:
    """Boolean validation mask: whole PARENT_TARGETID groups (all copies of one observed object on
    one side), as close as possible to validation_fraction x n rows."""
    if isinstance(validation_fraction, bool) or not isinstance(validation_fraction, (int, float)) \
            or not 0 <= validation_fraction < 1:
        raise ConfigError(f"validation_fraction must be in [0, 1), not {validation_fraction!r}")
    groups, inverse, sizes = np.unique(parent, return_inverse=True, return_counts=True)
    order = rng.permutation(len(groups))
    cumulative = np.concatenate([[0], np.cumsum(sizes[order])])
    n_groups = int(np.argmin(np.abs(cumulative - validation_fraction * len(parent))))
    in_validation = np.zeros(len(groups), bool)
    in_validation[order[:n_groups]] = True
    return in_validation[inverse]


class RowReader:
    """Rows of a float32 FITS image by index, through a short-lived memory map.

    FITS images are contiguous big-endian rows, so gathering shuffled rows from several files
    needs neither reading them whole nor keeping their pages resident: the map lives for one
    gather only (memory stays bounded by the chunk)."""

    def __init__(self, path: str | Path, extname: str):
        self.path = str(path)
        with fitsio.FITS(self.path) as fits:
            hdu = fits[extname]
            header = hdu.read_header()
            self.offset = int(hdu.get_offsets()["data_start"])
            self.shape = tuple(int(d) for d in hdu.get_dims())
        scaled = float(header.get("BZERO", 0.0)) != 0.0 or float(header.get("BSCALE", 1.0)) != 1.0
        if int(header["BITPIX"]) != -32 or scaled or len(self.shape) != 2:
            raise InputFileError(f"HDU {extname} is not a plain float32 image", path)

    def read(self, rows: np.ndarray) -> np.ndarray:
        if len(rows) == 0:
            return np.zeros((0, self.shape[1]), np.float32)
        image = np.memmap(self.path, dtype=">f4", mode="r", offset=self.offset, shape=self.shape)
        try:
            return image[rows].astype(np.float32)
        finally:
            image._mmap.close()  # type: ignore[attr-defined]  # unmap now: bounded resident memory


def combine(members: dict[str, str], spec: dict, seed: int, combo: str, train: str | Path, val: str | Path,
            summary_csv: str | Path, summary_png: str | Path, chunk_rows: int = 4096) -> pd.DataFrame:
    """Concatenate the members' network layers, balance the contaminant fraction, split
    train/validation by PARENT_TARGETID, shuffle, and write train/val files plus a summary."""
    spec = spec or {}
    if not members:
        raise ConfigError(f"combo {combo!r} has no members")
    truths, layout = [], None
    for name, path in members.items():
        with SpectraFile(path) as member_file:
            member_layout = Layout.of(member_file)
            layout = layout or member_layout
            _check_same_grid(layout, member_layout, path)
            truth = member_file.truth[[c for c in member_file.truth.columns if c in TRUTH_COLUMNS]].copy()
        truth["_member"], truth["_row"] = name, np.arange(len(truth))
        truths.append(truth)
    truth = pd.concat(truths, ignore_index=True)
    rng = np.random.default_rng(job_seed(seed, "combine", combo))
    keep = balance_contaminants(truth["SPECTYPE"].to_numpy(), spec.get("contaminant_fraction"), rng)
    kept = truth[keep].reset_index(drop=True)
    in_validation = split_by_parent(kept["PARENT_TARGETID"].to_numpy(), spec.get("validation_fraction", 0.1), rng)
    sides = {"train": kept[~in_validation], "val": kept[in_validation]}
    sides = {side: rows.iloc[rng.permutation(len(rows))].reset_index(drop=True) for side, rows in sides.items()}
    record = provenance({"combo": combo, "spec": spec, "seed": seed}, members)
    assert layout is not None
    readers = {name: (RowReader(path, "FLUX"), RowReader(path, "IVAR")) for name, path in members.items()}
    for side, path in (("train", train), ("val", val)):
        _write_gathered(sides[side], readers, layout, path, record, chunk_rows)
    summary = combo_summary(truth, sides)
    write_text_atomic(summary_csv, summary.to_csv(index=False))
    plot_combo(sides, summary, combo, summary_png)
    n_train, n_val = len(sides["train"]), len(sides["val"])
    fraction = (kept["SPECTYPE"] != TARGET_CLASS).mean() if len(kept) else float("nan")
    log.info("combo %s: %d train + %d val spectra (of %d), contaminant fraction %.3f", combo, n_train, n_val,
             len(truth), fraction)
    return summary


def _write_gathered(rows: pd.DataFrame, readers: dict[str, tuple[RowReader, RowReader]], layout: Layout,
                    path: str | Path, record: dict, chunk_rows: int) -> None:
    progress = Progress(len(rows), "spectra")
    with SpectraWriter(path, len(rows), layout.wavelength, layout.grid, provenance=record) as writer:
        for _, start, stop in _row_slices(len(rows), chunk_rows):
            part = rows.iloc[start:stop]
            flux = np.empty((len(part), len(layout.wavelength)), np.float32)
            ivar = np.empty_like(flux)
            for name, group in part.groupby("_member", sort=False):
                where = group.index.to_numpy() - start
                order = np.argsort(group["_row"].to_numpy(), kind="stable")
                source_rows = group["_row"].to_numpy()[order]
                flux[where[order]] = readers[name][0].read(source_rows)
                ivar[where[order]] = readers[name][1].read(source_rows)
            writer.write(flux, ivar, public_truth(part))
            progress.update(stop - start)
    progress.done()


def combo_summary(truth: pd.DataFrame, sides: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Counts per member and SPECTYPE: before balancing (n_input), in train, in val; member ALL
    for the totals."""
    def counts(frame: pd.DataFrame) -> pd.Series:
        return frame.groupby(["_member", "SPECTYPE"]).size()

    table = pd.DataFrame({"n_input": counts(truth), "n_train": counts(sides["train"]),
                          "n_val": counts(sides["val"])}).fillna(0).astype(int)
    table.index.names = ["member", "spectype"]
    table = table.reset_index()
    members_order = {name: i for i, name in enumerate(dict.fromkeys(truth["_member"]))}
    table = table.sort_values(["member", "spectype"], key=lambda c: c.map(members_order) if c.name == "member" else c)
    totals = table.groupby("spectype", as_index=False)[["n_input", "n_train", "n_val"]].sum()
    totals.insert(0, "member", "ALL")
    table = pd.concat([table, totals], ignore_index=True)
    table["n_total"] = table["n_train"] + table["n_val"]
    return table


# ---------------------------------------------------------------------------------------------
# Leakage

def check_no_leakage(train_paths: Iterable[str | Path], test_paths: Iterable[str | Path]) -> dict[str, int]:
    """Raise LeakageError if an object of a training set (its PARENT_TARGETID or TARGETID) is an
    object of a test set (TARGETID or PARENT_TARGETID); return counts when clean."""
    def ids(paths: Iterable[str | Path]) -> tuple[dict[int, str], int]:
        found: dict[int, str] = {}
        n_rows = 0
        for path in paths:
            with SpectraFile(path) as spectra_file:
                truth = spectra_file.truth
            n_rows += len(truth)
            for column in ("TARGETID", "PARENT_TARGETID"):
                for value in np.unique(truth[column].to_numpy(np.int64)):
                    if value >= 0:
                        found.setdefault(int(value), str(path))
        return found, n_rows

    train_ids, n_train = ids(train_paths)
    test_ids, n_test = ids(test_paths)
    leaked = sorted(set(train_ids) & set(test_ids))
    if leaked:
        examples = ", ".join(f"{tid} ({train_ids[tid]} / {test_ids[tid]})" for tid in leaked[:5])
        raise LeakageError(f"{len(leaked)} test object(s) also in training data, e.g. {examples}")
    return {"train_rows": n_train, "test_rows": n_test, "leaked": 0}


# ---------------------------------------------------------------------------------------------
# Plots

def _save_figure(figure: Any, path: str | Path) -> None:
    import matplotlib.pyplot as plt

    with atomic_path(path) as tmp:
        figure.savefig(tmp, format=Path(path).suffix.lstrip(".") or "png", dpi=110, bbox_inches="tight")
    plt.close(figure)


def plot_redshift_resampling(z0: np.ndarray, z1: np.ndarray, path: str | Path, dataset: str) -> None:
    """Thesis fig. 3.12: discrete z before, continuous z after."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(7, 4))
    both = np.concatenate([z0, z1]) if len(z0) else np.array([0.0, 1.0])
    bins = np.arange(both.min() - 0.01, both.max() + 0.02, 0.01)
    axis.hist(z0, bins=bins, histtype="step", color="k", label=f"before ({len(z0)})")
    axis.hist(z1, bins=bins, histtype="stepfilled", alpha=0.5, color="tab:orange", label="after resampling")
    axis.set(xlabel="redshift", ylabel="spectra per 0.01", title=f"{dataset}: z before / after resampling")
    axis.legend()
    _save_figure(figure, path)


def plot_combo(sides: dict[str, pd.DataFrame], summary: pd.DataFrame, combo: str, path: str | Path) -> None:
    """Thesis figs 3.13/3.14: z histogram per type (train + val), and counts per member."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    both = pd.concat(list(sides.values()), ignore_index=True)
    figure, (left, right) = plt.subplots(1, 2, figsize=(13, 5))
    bins = np.linspace(0, max(float(both["Z"].max()) if len(both) else 1.0, 0.5) + 0.05, 60)
    for spectype, group in both.groupby("SPECTYPE"):
        left.hist(group["Z"], bins=bins, histtype="step", lw=1.5, label=f"{spectype} ({len(group)})")
    left.set(xlabel="redshift", ylabel="spectra", title=f"{combo}: {len(sides['train'])} train + {len(sides['val'])} val")
    if len(both):
        left.legend()
    per_member = summary[summary["member"] != "ALL"].pivot_table(index="member", columns="spectype",
                                                                   values="n_total", aggfunc="sum", sort=False)
    if len(per_member):
        per_member.plot.barh(stacked=True, ax=right)
    right.set(xlabel="spectra (train + val)", ylabel="", title="per member")
    _save_figure(figure, path)
