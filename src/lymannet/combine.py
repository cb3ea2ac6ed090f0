"""Training and validation sets from named variants (rule `combine`; thesis 3.6, figs 3.13/3.14).

The members' network layers are concatenated, the contaminant fraction balanced, train and
validation split by PARENT_TARGETID (all copies of one observed object on one side) and shuffled;
rows are gathered from the members' files through short-lived memory maps (`RowReader`), so memory
stays bounded by a chunk. A summary CSV and figure count what went where.
"""

from __future__ import annotations

import logging
from pathlib import Path

import fitsio
import numpy as np
import pandas as pd

from .chunks import Layout, check_same_grid, public_truth, row_slices
from .config import job_seed
from .errors import ConfigError, InputFileError
from .figures import save_figure
from .fileio import provenance, write_text_atomic
from .runtime import Progress
from .spectra import TRUTH_COLUMNS, SpectraFile, SpectraWriter

log = logging.getLogger("lymannet.combine")

TARGET_CLASS = "LBG"  # everything else (QSO, ELG, GALAXY, STAR) is a contaminant


def balance_contaminants(
    spectype: np.ndarray, fraction: float | None, rng: np.random.Generator
) -> np.ndarray:
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
            log.warning(
                "contaminant_fraction %s ignored: the set has %d LBG and %d contaminants",
                fraction,
                n_targets,
                n_contaminants,
            )
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
    if (
        isinstance(validation_fraction, bool)
        or not isinstance(validation_fraction, (int, float))
        or not 0 <= validation_fraction < 1
    ):
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


def combine(
    members: dict[str, str],
    spec: dict,
    seed: int,
    combo: str,
    train: str | Path,
    val: str | Path,
    summary_csv: str | Path,
    summary_png: str | Path,
    chunk_rows: int = 4096,
) -> pd.DataFrame:
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
            check_same_grid(layout, member_layout, path)
            truth = member_file.truth[[c for c in member_file.truth.columns if c in TRUTH_COLUMNS]].copy()
        truth["_member"], truth["_row"] = name, np.arange(len(truth))
        truths.append(truth)
    truth = pd.concat(truths, ignore_index=True)
    rng = np.random.default_rng(job_seed(seed, "combine", combo))
    keep = balance_contaminants(truth["SPECTYPE"].to_numpy(), spec.get("contaminant_fraction"), rng)
    kept = truth[keep].reset_index(drop=True)
    in_validation = split_by_parent(
        kept["PARENT_TARGETID"].to_numpy(), spec.get("validation_fraction", 0.1), rng
    )
    sides = {"train": kept[~in_validation], "val": kept[in_validation]}
    sides = {
        side: rows.iloc[rng.permutation(len(rows))].reset_index(drop=True) for side, rows in sides.items()
    }
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
    log.info(
        "combo %s: %d train + %d val spectra (of %d), contaminant fraction %.3f",
        combo,
        n_train,
        n_val,
        len(truth),
        fraction,
    )
    return summary


def _write_gathered(
    rows: pd.DataFrame,
    readers: dict[str, tuple[RowReader, RowReader]],
    layout: Layout,
    path: str | Path,
    record: dict,
    chunk_rows: int,
) -> None:
    progress = Progress(len(rows), "spectra")
    with SpectraWriter(path, len(rows), layout.wavelength, layout.grid, provenance=record) as writer:
        for _, start, stop in row_slices(len(rows), chunk_rows):
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

    table = (
        pd.DataFrame(
            {"n_input": counts(truth), "n_train": counts(sides["train"]), "n_val": counts(sides["val"])}
        )
        .fillna(0)
        .astype(int)
    )
    table.index.names = ["member", "spectype"]
    table = table.reset_index()
    members_order = {name: i for i, name in enumerate(dict.fromkeys(truth["_member"]))}
    table = table.sort_values(
        ["member", "spectype"], key=lambda c: c.map(members_order) if c.name == "member" else c
    )
    totals = table.groupby("spectype", as_index=False)[["n_input", "n_train", "n_val"]].sum()
    totals.insert(0, "member", "ALL")
    table = pd.concat([table, totals], ignore_index=True)
    table["n_total"] = table["n_train"] + table["n_val"]
    return table


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
    left.set(
        xlabel="redshift",
        ylabel="spectra",
        title=f"{combo}: {len(sides['train'])} train + {len(sides['val'])} val",
    )
    if len(both):
        left.legend()
    per_member = summary[summary["member"] != "ALL"].pivot_table(
        index="member", columns="spectype", values="n_total", aggfunc="sum", sort=False
    )
    if len(per_member):
        per_member.plot.barh(stacked=True, ax=right)
    right.set(xlabel="spectra (train + val)", ylabel="", title="per member")
    save_figure(figure, path)
