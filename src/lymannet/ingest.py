"""Ingestion (rule `ingest`): DESI coadds + truth catalogue -> lymannet spectra file.

Truth: a FITS table or CSV joined on TARGETID (`load_truth`). Planning: per coadd file, the target
rows that have a truth row (`missing_truth: error` or `drop` for the others), duplicate TARGETIDs
refused. Reading, merging and rebinning are `lymannet.coadd`'s.

Streaming: spectra are read, merged, rebinned and written in blocks of at most
min(ingest.chunk_rows, BLOCK_ROWS) rows, so memory does not grow with the number of spectra.
Whether a spectrum has a valid pixel is only known once its data are read, but the output's row
count must be declared up front; so rows are written optimistically and, only when some turn out
empty, the file is copied once more without them (I/O only, no recomputation).
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import fitsio
import numpy as np
import pandas as pd

from .arms import NativeRebinner, check_grid_coverage, merge_arm_sums, sums_to_flux

from .coadd import BLOCK_ROWS, CoaddFile, ingest_options
from .desi import native_wavelength
from .errors import ConfigError, InputFileError
from .fileio import first_line, native_column, provenance
from .grid import Grid
from .runtime import Progress
from .spectra import TRUTH_COLUMNS, SpectraFile, SpectraWriter

__all__ = ["ingest", "load_truth"]

log = logging.getLogger("lymannet.ingest")

TRUTH_EXTNAME = "TRUTH"


# --------------------------------------------------------------------------- truth catalogue


def load_truth(path: str | Path) -> pd.DataFrame:
    """Truth / VI catalogue (FITS binary table, extname TRUTH or the first table; or CSV).

    Column names are upper-cased. TARGETID must be unique integers; Z numeric; standard columns
    (lymannet.spectra.TRUTH_COLUMNS) are typed. NaN Z is checked later, for the targets used."""
    path = str(path)
    if not os.path.isfile(path):
        raise InputFileError("truth catalogue does not exist", path)
    table = _read_truth_fits(path) if _is_fits(path) else _read_truth_csv(path)
    table.columns = [str(name).strip().upper() for name in table.columns]
    if table.columns.duplicated().any():
        duplicated = sorted(set(table.columns[table.columns.duplicated()]))
        raise InputFileError(f"duplicate column names {duplicated}", path)
    for required in ("TARGETID", "Z"):
        if required not in table:
            raise InputFileError(
                f"truth catalogue has no {required} column (columns: " f"{list(table.columns)})", path
            )
    table["TARGETID"] = _integer_targetid(table["TARGETID"], path)
    duplicated = table["TARGETID"].duplicated()
    if duplicated.any():
        raise InputFileError(
            f"duplicate TARGETID {int(table['TARGETID'][duplicated].iloc[0])} in the truth "
            f"catalogue ({int(duplicated.sum())} duplicates)",
            path,
        )
    return _type_truth_columns(table, path)


def _is_fits(path: str) -> bool:
    name = path.lower()
    if name.endswith((".fits", ".fit", ".fts", ".fits.gz", ".fit.gz")):
        return True
    with open(path, "rb") as handle:
        return handle.read(9) == b"SIMPLE  ="


def _read_truth_fits(path: str) -> pd.DataFrame:
    try:
        with fitsio.FITS(path) as fits:
            tables = [hdu for hdu in fits if hdu.get_exttype() in ("BINARY_TBL", "ASCII_TBL")]
            named = [hdu for hdu in tables if hdu.get_extname().upper() == TRUTH_EXTNAME]
            if not tables:
                raise InputFileError("truth FITS file has no table HDU", path)
            records = (named or tables)[0].read()
    except OSError as error:
        raise InputFileError(
            f"truth catalogue is not a readable FITS table ({first_line(error)})", path
        ) from None
    scalar = [name for name in records.dtype.names if records[name].ndim == 1]
    skipped = sorted(set(records.dtype.names) - set(scalar))
    if skipped:
        log.info("%s: ignoring vector columns %s of the truth catalogue", path, skipped)
    return pd.DataFrame({name: native_column(records[name]) for name in scalar})


def _read_truth_csv(path: str) -> pd.DataFrame:
    try:
        # TARGETIDs exceed 2**53: read them as text first, never through float.
        return pd.read_csv(path, dtype={"TARGETID": str, "targetid": str}, skipinitialspace=True)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as error:
        raise InputFileError(
            f"truth catalogue is not a readable CSV file ({first_line(error)})", path
        ) from None


def _integer_targetid(values: pd.Series, path: str) -> pd.Series:
    if values.dtype.kind in "iu":
        return values.astype(np.int64)
    text = values.astype(str).str.strip()
    bad = ~text.str.fullmatch(r"[+-]?\d+")
    if bad.any():
        raise InputFileError(f"TARGETID must be integers; found {values[bad].iloc[0]!r}", path)
    return text.astype(np.int64)


def _type_truth_columns(table: pd.DataFrame, path: str) -> pd.DataFrame:
    """Standard columns to their dtypes, with one clear error for a value that does not convert."""
    for name, (dtype, fill) in TRUTH_COLUMNS.items():
        if name not in table or name == "TARGETID":
            continue
        column = table[name]
        if dtype.startswith("U"):
            table[name] = column.fillna("").astype(str).str.strip()
            continue
        numeric = pd.to_numeric(column, errors="coerce")
        bad = numeric.isna() & column.notna() & (column.astype(str).str.strip().str.lower() != "nan")
        if bad.any():
            row = int(np.flatnonzero(bad.to_numpy())[0])
            raise InputFileError(
                f"column {name} has non-numeric value {column.iloc[row]!r} "
                f"(TARGETID {int(table['TARGETID'].iloc[row])})",
                path,
            )
        if dtype.startswith("i"):
            numeric = numeric.fillna(fill)
            if not np.all(numeric == np.round(numeric)):
                raise InputFileError(f"column {name} must hold integers", path)
        table[name] = numeric.astype(dtype)
    return table


# --------------------------------------------------------------------------- ingest


@dataclass
class _Plan:
    """What to read from one file and the truth rows of those spectra."""

    coadd: CoaddFile
    rows: np.ndarray  # file rows to read (sorted)
    truth: pd.DataFrame  # one row per entry of `rows`


def ingest(
    coadd_paths: list[str],
    truth_path: str | None,
    grid: Grid,
    output: str,
    dataset: str,
    options: dict,
    config_slice: dict | None = None,
) -> dict:
    """DESI coadds + truth -> spectra file at `output` (network + native layers, TRUTH, PROVENANCE).

    Returns counts: files, read, kept, dropped_not_target, dropped_missing_truth,
    dropped_no_valid_pixel, masked_pixels. Raises InputFileError (nothing written) on bad input.
    """
    started = time.perf_counter()
    options = ingest_options(options)
    if not coadd_paths:
        raise ConfigError(f"dataset {dataset!r}: no coadd files given")
    coadds = [CoaddFile(str(path), options) for path in coadd_paths]
    _check_duplicate_targets(coadds)
    data_range = (min(c.wavelength_range[0] for c in coadds), max(c.wavelength_range[1] for c in coadds))
    check_grid_coverage(grid, data_range, coadds[0].path)
    truth = load_truth(truth_path) if truth_path else None
    counts: dict[str, Any] = {
        "files": len(coadds),
        "read": sum(c.n_rows for c in coadds),
        "dropped_not_target": sum(int((~c.is_target).sum()) for c in coadds),
    }
    plans, counts["dropped_missing_truth"] = _plan(coadds, truth, truth_path, dataset, options)
    n_candidates = sum(len(plan.rows) for plan in plans)
    if n_candidates == 0:
        raise InputFileError(f"no target spectra left to ingest ({_describe(counts)})", coadds[0].path)
    if config_slice is None:
        config_slice = {"grid": grid.to_dict(), "ingest": options, "dataset": dataset}
    inputs = {f"coadd{i}": c.path for i, c in enumerate(coadds)}
    if truth_path:
        inputs["truth"] = str(truth_path)
    hashing = time.perf_counter()
    record = provenance(config_slice, inputs=inputs)  # hashes every input: one more read of them
    counts["seconds_provenance"] = round(time.perf_counter() - hashing, 3)
    counts.update(_write(plans, n_candidates, grid, Path(output), record, options["chunk_rows"]))
    counts["kept"] = n_candidates - counts["dropped_no_valid_pixel"]
    counts["seconds"] = round(time.perf_counter() - started, 3)
    log.info("ingest %s: %s -> %s", dataset, _describe(counts), output)
    return counts


def _describe(counts: Mapping[str, Any]) -> str:
    return ", ".join(f"{key} {value}" for key, value in counts.items())


def _check_duplicate_targets(coadds: list[CoaddFile]) -> None:
    """A TARGETID may appear once among all targets of all files (it is the join key)."""
    seen: dict[int, str] = {}
    for coadd in coadds:
        ids = coadd.fibermap["TARGETID"].to_numpy()[coadd.is_target]
        unique, counts = np.unique(ids, return_counts=True)
        if (counts > 1).any():
            raise InputFileError(
                f"duplicate TARGETID {int(unique[counts > 1][0])} "
                f"({int((counts > 1).sum())} duplicated targets)",
                coadd.path,
            )
        for target in unique.tolist():
            if target in seen:
                raise InputFileError(f"TARGETID {target} also appears in {seen[target]}", coadd.path)
            seen[target] = coadd.path


def _plan(
    coadds: list[CoaddFile],
    truth: pd.DataFrame | None,
    truth_path: str | None,
    dataset: str,
    options: Mapping[str, Any],
) -> tuple[list[_Plan], int]:
    """Per file: target rows with a truth row (error or drop for the others), and their truth."""
    plans, n_missing = [], 0
    indexed = None if truth is None else truth.set_index("TARGETID", drop=False)
    for coadd in coadds:
        rows = np.flatnonzero(coadd.is_target)
        fibermap = coadd.fibermap.iloc[rows].reset_index(drop=True)
        if indexed is not None:
            position = indexed.index.get_indexer(fibermap["TARGETID"].to_numpy())
            missing = position < 0
            if missing.any() and options["missing_truth"] == "error":
                raise InputFileError(
                    f"{int(missing.sum())} of {len(rows)} targets have no row in the truth catalogue "
                    f"{truth_path} (first TARGETID {int(fibermap['TARGETID'][missing].iloc[0])}); set "
                    "ingest.missing_truth: drop to skip them",
                    coadd.path,
                )
            if missing.any():
                log.info("%s: dropping %d targets absent from the truth catalogue", coadd.path, missing.sum())
            n_missing += int(missing.sum())
            rows, position = rows[~missing], position[~missing]
            fibermap = fibermap[~missing].reset_index(drop=True)
            matched = indexed.iloc[position].reset_index(drop=True)
            _check_redshifts(matched, truth_path)
        else:
            matched = pd.DataFrame({"TARGETID": fibermap["TARGETID"].to_numpy()})
        plans.append(_Plan(coadd, rows, _truth_rows(matched, fibermap, dataset)))
    return plans, n_missing


def _check_redshifts(matched: pd.DataFrame, truth_path: str | None) -> None:
    bad = matched["Z"].isna().to_numpy()
    if bad.any():
        raise InputFileError(
            f"Z is NaN for {int(bad.sum())} targets (first TARGETID "
            f"{int(matched['TARGETID'][bad].iloc[0])})",
            truth_path,
        )


def _truth_rows(matched: pd.DataFrame, fibermap: pd.DataFrame, dataset: str) -> pd.DataFrame:
    """Truth for the spectra read: catalogue columns, fibermap fallbacks, SOURCE, PARENT_TARGETID."""
    truth = matched.copy()
    truth["TARGETID"] = fibermap["TARGETID"].to_numpy()
    # Fall back on the fibermap for the exposure time and r magnitude a VI catalogue rarely holds.
    if "EXPTIME" not in truth and "COADD_EXPTIME" in fibermap:
        truth["EXPTIME"] = fibermap["COADD_EXPTIME"].to_numpy().astype(np.float32)
    if "MAG_R" not in truth and "FLUX_R" in fibermap:
        flux_r = fibermap["FLUX_R"].to_numpy().astype(np.float64)  # nanomaggies
        with np.errstate(divide="ignore", invalid="ignore"):
            truth["MAG_R"] = np.where(flux_r > 0, 22.5 - 2.5 * np.log10(flux_r), np.nan).astype(np.float32)
    truth["SOURCE"] = dataset
    truth["PARENT_TARGETID"] = truth["TARGETID"]
    return truth


def _write(
    plans: list[_Plan], n_rows: int, grid: Grid, output: Path, record: dict, chunk_rows: int
) -> dict[str, Any]:
    """Stream all planned spectra into `output`; empty spectra are removed by a final copy."""
    rebinner = NativeRebinner(grid)
    block_rows = max(1, min(chunk_rows, BLOCK_ROWS))
    empty: list[np.ndarray] = []
    counts: dict[str, Any] = {"masked_pixels": 0}
    seconds = {"read": 0.0, "process": 0.0, "write": 0.0}
    staging = output.with_name(f".{output.name}.staging.part")
    progress = Progress(total=n_rows, what="spectra")
    try:
        with SpectraWriter(staging, n_rows, grid.wavelength, grid, native_wavelength(), record) as writer:
            for plan in plans:
                clock = time.perf_counter()
                for block in plan.coadd.iter_blocks(plan.rows, block_rows):
                    clock = _lap(seconds, "read", clock)
                    counts["masked_pixels"] += block.n_masked
                    truth = plan.truth.iloc[np.searchsorted(plan.rows, block.rows)].reset_index(drop=True)
                    weighted, weight = merge_arm_sums(block)
                    flux, ivar = rebinner.rebin_sums(weighted, weight)
                    empty.append(~(ivar > 0).any(axis=1))
                    native_flux = sums_to_flux(weighted, weight)
                    clock = _lap(seconds, "process", clock)
                    writer.write(flux, ivar, truth, native_flux, weight)
                    clock = _lap(seconds, "write", clock)
                    progress.update(len(block))
            clock = time.perf_counter()
        _lap(seconds, "write", clock)  # closing writes TRUTH and PROVENANCE
        progress.done()
        keep = ~np.concatenate(empty) if empty else np.zeros(0, bool)
        counts["dropped_no_valid_pixel"] = int((~keep).sum())
        clock = time.perf_counter()
        if keep.all():
            os.replace(staging, output)
        else:
            if not keep.any():
                raise InputFileError(
                    f"none of the {len(keep)} target spectra has a valid pixel on the " "network grid",
                    plans[0].coadd.path,
                )
            _copy_rows(staging, output, keep, record, chunk_rows)
        _lap(seconds, "write", clock)
    finally:
        staging.unlink(missing_ok=True)
    counts.update({f"seconds_{stage}": round(value, 3) for stage, value in seconds.items()})
    return counts


def _lap(seconds: dict[str, float], stage: str, since: float) -> float:
    now = time.perf_counter()
    seconds[stage] += now - since
    return now


def _copy_rows(source: Path, output: Path, keep: np.ndarray, record: dict, chunk_rows: int) -> None:
    """Copy the kept rows of a spectra file into `output` (atomically), chunk by chunk."""
    n_kept = int(keep.sum())
    log.info("dropping %d spectra without a valid pixel on the network grid", len(keep) - n_kept)
    with (
        SpectraFile(source) as spectra,
        SpectraWriter(
            output,
            n_kept,
            spectra.wavelength_of("network"),
            spectra.grid,
            spectra.wavelength_of("native"),
            record,
        ) as writer,
    ):
        for start in range(0, len(keep), chunk_rows):
            stop = min(start + chunk_rows, len(keep))
            rows = np.flatnonzero(keep[start:stop])
            if len(rows) == 0:
                continue
            network = spectra.read("network", start, stop).take(rows)
            native = spectra.read("native", start, stop).take(rows)
            writer.write(network.flux, network.ivar, network.truth, native.flux, native.ivar)
