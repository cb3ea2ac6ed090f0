"""Held-out objects and test sets (rules `holdout`, `testset`, `check_leakage`).

- :func:`split_holdout`: ingested file -> training pool + held-out objects (by PARENT_TARGETID,
  stratified by SPECTYPE), before any augmentation, so no copy of a test object can be trained on.
- :func:`build_testset`: held-out files -> a test set (network layer), members selected by truth.
  Members that draw a random `fraction` of a data set's held-out objects draw without replacement
  across the summary's test sets (:func:`prior_draws`): no object is in two such draws.
- :func:`check_no_leakage`: no training object descends from a test object.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import pandas as pd

from .chunks import CHUNK_ROWS, Layout, check_same_grid, read_chunk, row_slices, take_rows
from .config import job_seed
from .errors import ConfigError, LymannetError
from .fileio import provenance
from .runtime import Progress
from .selection import select_rows, validate_select
from .spectra import SpectraFile, SpectraWriter

log = logging.getLogger("lymannet.holdout")


class LeakageError(LymannetError):
    """A training set holds a copy of a test object."""


def choose_holdout(truth: pd.DataFrame, fraction: float, rng: np.random.Generator) -> np.ndarray:
    """Boolean mask of held-out rows: round(fraction x n) objects of each SPECTYPE, an object
    being a PARENT_TARGETID (so repeated observations of one target stay together). Fraction 1
    makes a test-only data set (e.g. a visually inspected sample kept whole for testing): every
    object is held out and the training pool is empty."""
    if not 0 <= fraction <= 1:
        raise ConfigError(f"holdout fraction must be in [0, 1] (1: a test-only data set), not {fraction!r}")
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


def split_holdout(
    ingested: str | Path,
    pool: str | Path,
    holdout: str | Path,
    fraction: float,
    seed: int,
    dataset: str,
    config_slice: Any = None,
    chunk_rows: int = CHUNK_ROWS,
) -> dict[str, int]:
    """Write the training pool and the held-out objects of one ingested file (both layers)."""
    with SpectraFile(ingested) as source:
        rng = np.random.default_rng(job_seed(seed, "holdout", dataset))
        held = choose_holdout(source.truth, float(fraction), rng)
        layout = Layout.of(source)
        record = provenance(config_slice, {"ingested": ingested})
        progress = Progress(len(source), "spectra")
        with (
            SpectraWriter(
                pool, int((~held).sum()), layout.wavelength, layout.grid, layout.native_wavelength, record
            ) as pool_writer,
            SpectraWriter(
                holdout, int(held.sum()), layout.wavelength, layout.grid, layout.native_wavelength, record
            ) as held_writer,
        ):
            for _, start, stop in row_slices(len(source), chunk_rows):
                chunk = read_chunk(source, start, stop, source.has_native)
                for writer, rows in ((pool_writer, ~held[start:stop]), (held_writer, held[start:stop])):
                    part = take_rows(chunk, np.flatnonzero(rows))
                    writer.write(part.flux, part.ivar, part.truth, part.native_flux, part.native_ivar)
                progress.update(stop - start)
        progress.done()
    counts = {"pool": int((~held).sum()), "holdout": int(held.sum())}
    log.info("%s: %d objects in the training pool, %d held out", dataset, counts["pool"], counts["holdout"])
    return counts


def _draws_fraction(member: Any) -> bool:
    return isinstance(member, dict) and "fraction" in (member.get("select") or {})


def prior_draws(testsets: dict[str, dict], name: str) -> list[dict[str, Any]]:
    """The random draws that come before test set `name`'s own on the data sets it draws a
    `fraction` from: every member with a `select.fraction` of a summary test set (`in_summary`
    true, the default), ordered by (test set name, member index). Test set `name` draws its
    objects from those left by the earlier draws, so the summary's fractional draws from one
    held-out pool never share an object. A member without `fraction` takes every matching object
    and may overlap them (test_z3, the whole held-out survey, holds test_lowz's and test_highz's
    contaminants). An `in_summary: false` test set (an experiment's) draws from the whole pool and
    moves no summary draw. The testset rule passes the result as a param, so a test set is rebuilt
    when an earlier draw changes."""
    spec = testsets.get(name) or {}
    if not spec.get("in_summary", True):
        return []
    own = {(m["dataset"], index) for index, m in enumerate(spec.get("members") or []) if _draws_fraction(m)}
    if not own:
        return []
    last = {dataset: max(index for d, index in own if d == dataset) for dataset, _ in own}
    draws = []
    for other in sorted(testsets):
        other_spec = testsets[other]
        if other == name or not other_spec.get("in_summary", True):
            continue
        for index, member in enumerate(other_spec.get("members") or []):
            dataset = member.get("dataset") if isinstance(member, dict) else None
            if dataset in last and _draws_fraction(member) and (other, index) < (name, last[dataset]):
                draws.append(
                    {"testset": other, "index": index, "dataset": dataset, "select": member["select"]}
                )
    return draws


def _draw(
    truth: pd.DataFrame,
    criteria: dict[str, Any],
    rng: np.random.Generator,
    taken: np.ndarray | None,
    where: str,
) -> np.ndarray:
    """Rows of one member: select_rows' selection; a `fraction` draws round(fraction x n) of the n
    matching rows (the size it has alone) from those not `taken` by earlier draws."""
    if "fraction" not in criteria or taken is None or not taken.any():
        return np.flatnonzero(select_rows(truth, criteria, rng))
    passed = np.flatnonzero(select_rows(truth, {k: v for k, v in criteria.items() if k != "fraction"}, rng))
    n_draw = int(round(criteria["fraction"] * len(passed)))
    available = passed[~taken[passed]]
    if n_draw > len(available):
        raise ConfigError(
            f"{where}: fraction {criteria['fraction']} asks for {n_draw} of {len(passed)} matching "
            f"held-out objects, but earlier test sets' draws left {len(available)}: lower a fraction"
        )
    return np.sort(available[rng.choice(len(available), size=n_draw, replace=False)])


def build_testset(
    members: list[dict],
    holdouts: dict[str, str],
    seed: int,
    name: str,
    output: str | Path,
    chunk_rows: int = 4096,
    prior: list[dict[str, Any]] | None = None,
) -> int:
    """Concatenate selected held-out objects (network layer, TARGETIDs kept) into a test set.

    `prior` (:func:`prior_draws`): earlier test sets' fractional draws from the same held-out
    files; they are replayed (each with its own test set's seed) and their objects are not drawn
    again here."""
    draws = []  # (test set, index, member, own): every draw in (test set, index) order
    for index, member in enumerate(members):
        draws.append((name, index, member, True))
    for draw in prior or []:
        draws.append(
            (
                draw["testset"],
                int(draw["index"]),
                {"dataset": draw["dataset"], "select": draw["select"]},
                False,
            )
        )
    draws.sort(key=lambda d: (d[0], d[1]))
    taken: dict[str, np.ndarray] = {}
    plans: list[tuple[int, str, np.ndarray]] = []
    for testset, index, member, own in draws:
        where = f"testset {testset!r}, member #{index + 1}"
        unknown = sorted(set(member) - {"dataset", "select"})
        if "dataset" not in member or unknown:
            raise ConfigError(f"{where}: members are {{dataset: <name>, select: {{...}}}}, got {member!r}")
        if member["dataset"] not in holdouts:
            raise ConfigError(
                f"{where}: no held-out file for dataset {member['dataset']!r}; " f"known: {sorted(holdouts)}"
            )
        criteria = validate_select(member.get("select"), where)
        path = holdouts[member["dataset"]]
        rng = np.random.default_rng(job_seed(seed, "testset", testset, str(index)))
        with SpectraFile(path) as source:
            truth = source.truth
        rows = _draw(truth, criteria, rng, taken.get(member["dataset"]), where)
        if "fraction" in criteria:
            mask = taken.setdefault(member["dataset"], np.zeros(len(truth), bool))
            mask[rows] = True
        if own:
            plans.append((index, path, rows))
    plans = [(path, rows) for _, path, rows in sorted(plans, key=lambda p: p[0])]
    if not plans:
        raise ConfigError(f"testset {name!r} has no members")
    n_rows = sum(len(rows) for _, rows in plans)
    with SpectraFile(plans[0][0]) as first:
        reference = Layout.of(first)
    config_slice = {"testset": name, "members": members, "seed": seed}
    if prior:
        config_slice["prior_draws"] = prior
    record = provenance(config_slice, {f"holdout_{i}": path for i, (path, _) in enumerate(plans)})
    with SpectraWriter(output, n_rows, reference.wavelength, reference.grid, provenance=record) as writer:
        for path, rows in plans:
            with SpectraFile(path) as source:
                check_same_grid(reference, Layout.of(source), path)
                for _, start, stop in row_slices(len(rows), chunk_rows):
                    part = rows[start:stop]
                    chunk = read_chunk(source, int(part[0]), int(part[-1]) + 1, native=False)
                    chunk = take_rows(chunk, part - part[0])
                    writer.write(chunk.flux, chunk.ivar, chunk.truth)
    log.info(
        "testset %s: %d spectra from %d member(s)%s",
        name,
        n_rows,
        len(members),
        (
            f", none of them in the {len(prior)} earlier draw(s) {sorted({d['testset'] for d in prior})}"
            if prior
            else ""
        ),
    )
    return n_rows


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
