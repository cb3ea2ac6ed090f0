"""Experiments of ``kind: gallery`` (lymannet.experiments; rule `experiment_gallery`): an original
spectrum from its data set's training pool and its copies in augmented variant files, one figure
per panel (thesis figs 3.3, 3.6, 3.9, 3.10, 3.12).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # headless: cluster nodes have no display
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from .figures import save_figure  # noqa: E402
from .lines import LYA  # noqa: E402
from .spectra import SpectraFile  # noqa: E402

OVERLAP_A = 5800.0


def _pick_parent(original: pd.DataFrame, variants: list[pd.DataFrame], seed: int = 0) -> int:
    """An LBG present in the original and in every variant: the brightest of those within 0.3 of
    the median redshift (lines and breaks then show best, away from the grid's edges), ties
    broken by TARGETID."""
    parents = set(original["TARGETID"].to_numpy(np.int64))
    for truth in variants:
        parents &= set(truth["PARENT_TARGETID"].to_numpy(np.int64))
    candidates = original[original["TARGETID"].isin(parents)]
    lbg = candidates[candidates["SPECTYPE"].astype(str).str.strip() == "LBG"]
    candidates = lbg if len(lbg) else candidates
    if not len(candidates):
        raise ValueError("no object of the original file has a copy in every variant of the panel")
    z = candidates["Z"].to_numpy(float)
    if np.isfinite(z).any():
        central = np.abs(z - np.nanmedian(z)) < 0.3
        candidates = candidates[central] if central.any() else candidates
    if "MAG_R" in candidates and np.isfinite(candidates["MAG_R"].to_numpy(float)).any():
        candidates = candidates.sort_values(["MAG_R", "TARGETID"])
    return int(candidates["TARGETID"].iloc[0])


def _smooth(flux: np.ndarray, ivar: np.ndarray, width: int = 3) -> np.ndarray:
    kernel = np.ones(width) / width
    return np.convolve(np.where(ivar > 0, flux, 0.0), kernel, mode="same")


def gallery_figure(
    panel: dict[str, Any], original: str, variant_files: list[str], figure: str
) -> dict[str, Any]:
    """One panel: the original spectrum on top, each variant's copy below it (thesis figs 3.3,
    3.6, 3.9, 3.10), the overlap window and the Ly-alpha line marked where asked."""

    with SpectraFile(original) as handle:
        truth0 = handle.truth
        copies = []
        for path in variant_files:
            with SpectraFile(path) as vhandle:
                copies.append(vhandle.truth)
        parent = _pick_parent(truth0, copies)
        row0 = int(np.flatnonzero(truth0["TARGETID"].to_numpy(np.int64) == parent)[0])
        spectra0 = handle.read("network", row0, row0 + 1)
        wave = handle.wavelength_of("network")
    fig, axes = plt.subplots(
        1 + len(variant_files), 1, figsize=(11, 2.6 * (1 + len(variant_files))), sharex=True, squeeze=False
    )
    axes = axes[:, 0]
    z0 = float(truth0["Z"].iloc[row0])

    def draw(ax: Any, flux: np.ndarray, ivar: np.ndarray, z: float, title: str, color: str) -> None:
        ax.plot(wave, _smooth(flux, ivar), color=color, linewidth=0.8)
        if "overlap" in panel.get("mark", []):
            width = 40.0
            ax.axvspan(OVERLAP_A - width / 2, OVERLAP_A + width / 2, color="orange", alpha=0.3, linewidth=0)
        if "lya" in panel.get("mark", []) and np.isfinite(z):
            ax.axvline(LYA * (1 + z), color="crimson", linestyle="--", linewidth=0.8)
            ax.axvspan(LYA * (1 + z) - 20, LYA * (1 + z) + 20, color="crimson", alpha=0.12, linewidth=0)
        ax.set_title(title, fontsize=9, loc="left")
        ax.set_ylabel("network input")
        ax.grid(alpha=0.3)

    draw(
        axes[0],
        spectra0.flux[0],
        spectra0.ivar[0],
        z0,
        f"original (training pool {Path(original).stem}): " f"TARGETID {parent}, z = {z0:.3f}",
        "tab:blue",
    )
    facts = {"parent_targetid": parent, "z_original": z0, "copies": []}
    for ax, path, truth in zip(axes[1:], variant_files, copies):
        row = int(np.flatnonzero(truth["PARENT_TARGETID"].to_numpy(np.int64) == parent)[0])
        with SpectraFile(path) as vhandle:
            spectra = vhandle.read("network", row, row + 1)
        z = float(truth["Z"].iloc[row])
        source = str(truth["SOURCE"].iloc[row]) if "SOURCE" in truth else Path(path).stem
        draw(
            ax,
            spectra.flux[0],
            spectra.ivar[0],
            z,
            f"variant {source!r} ({Path(path).name}): z = {z:.3f}",
            "tab:orange",
        )
        facts["copies"].append({"variant": source, "z": z})
    axes[-1].set_xlabel("observed wavelength [A]")
    fig.suptitle(panel.get("title") or panel["name"], fontsize=11)
    fig.tight_layout()
    save_figure(fig, figure)
    return facts
