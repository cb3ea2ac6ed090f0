"""Figure of simulated spectra (rule `plot_simulated`): one panel per LBG template and per
contaminant class (QSO, BAL QSO, ELG, passive and weak-line galaxy, M/K/G/F star).

Each panel shows the three DESI arms merged (inverse-variance weighted, `lymannet.coadd`), then
smoothed with an 8-pixel = 6.4 A boxcar, the smoothed 1-sigma noise, and the rest-frame lines at
(1 + z) lambda.
"""

from __future__ import annotations

from pathlib import Path

import fitsio
import matplotlib

matplotlib.use("Agg")  # headless: cluster nodes have no display
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from . import desi  # noqa: E402
from .arms import merge_arms  # noqa: E402
from .coadd import read_coadd  # noqa: E402
from .errors import InputFileError  # noqa: E402
from .figures import save_figure  # noqa: E402
from .lines import LBG_LINES, LYA, LYMAN_LIMIT, QSO_LINES  # noqa: E402
from .spectra import records_to_truth  # noqa: E402

SMOOTH_PIXELS = 8
ELG_MARKS = (
    (3728.5, "[OII]"),
    (4862.68, "Hb"),
    (5008.24, "[OIII]"),
    (6564.61, "Ha"),
    (6585.27, "[NII]"),
    (6725.0, "[SII]"),
)
QSO_MARKS = tuple((line.wavelength, line.name) for line in QSO_LINES) + ((1399.8, "SIIV"),)
LBG_MARKS = tuple((line.wavelength, line.name) for line in LBG_LINES) + ((LYMAN_LIMIT, "LL"),)
STAR_MARKS = (
    (3934.78, "CaK"),
    (3969.59, "CaH"),
    (4305.0, "G"),
    (4862.68, "Hb"),
    (5176.7, "Mgb"),
    (5895.6, "NaD"),
    (6564.61, "Ha"),
    (7055.0, "TiO"),
    (8544.4, "CaT"),
)
GALAXY_MARKS = (
    (2798.75, "MgII"),
    (3728.5, "[OII]"),
    (3934.78, "CaK"),
    (3969.59, "CaH"),
    (4000.0, "D4000"),
    (4305.0, "G"),
    (5176.7, "Mgb"),
    (5895.6, "NaD"),
)
MARKS = {"QSO": QSO_MARKS, "ELG": ELG_MARKS, "STAR": STAR_MARKS, "GALAXY": GALAXY_MARKS}
# Contaminant panels: (SPECTYPE, SUBTYPE) in this order, the brightest of each.
CONTAMINANT_PANELS = (
    ("QSO", ""),
    ("QSO", "BAL"),
    ("ELG", ""),
    ("GALAXY", "PASSIVE"),
    ("GALAXY", "WEAKLINE"),
    ("STAR", "M"),
    ("STAR", "K"),
    ("STAR", "G"),
    ("STAR", "F"),
)


def smooth(wave: np.ndarray, flux: np.ndarray, ivar: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Boxcar-rebin by SMOOTH_PIXELS with inverse-variance weights: wavelength, flux, sigma."""
    n = wave.size // SMOOTH_PIXELS * SMOOTH_PIXELS
    w = ivar[:n].reshape(-1, SMOOTH_PIXELS)
    total = w.sum(1)
    binned = np.divide(
        (flux[:n].reshape(-1, SMOOTH_PIXELS) * w).sum(1), total, out=np.zeros(total.size), where=total > 0
    )
    sigma = np.divide(1.0, np.sqrt(total), out=np.full(total.size, np.nan), where=total > 0)
    return wave[:n].reshape(-1, SMOOTH_PIXELS).mean(1), binned, sigma


def pick_rows(truth) -> list[tuple[int, str]]:
    """One bright example per LBG template (near z = 3 for comparable panels) and per contaminant
    class and subtype present (a truth without SUBTYPE counts as subtype "")."""
    picks = []
    bright = truth["MAG_R"] <= truth["MAG_R"].quantile(0.35)
    for template in range(4):
        pool = truth[(truth["SPECTYPE"] == "LBG") & (truth["TEMPLATE"] == template)]
        if pool.empty:
            continue
        score = (
            (pool["Z"] - 3.0).abs() + 0.5 * (~bright[pool.index]) + (pool["EXPTIME"] < pool["EXPTIME"].max())
        )
        row = int(score.idxmin())
        picks.append((row, f"LBG template {template}"))
    subtype = truth["SUBTYPE"].astype(str) if "SUBTYPE" in truth else ""
    for spectype, sub in CONTAMINANT_PANELS:
        pool = truth[(truth["SPECTYPE"] == spectype) & (subtype == sub)]
        if not pool.empty:
            picks.append((int(pool["MAG_R"].idxmin()), f"{spectype} {sub}".strip()))
    return picks


def plot_panel(ax, wave, flux, sigma, entry, label: str) -> None:
    z = float(entry["Z"])
    ax.plot(wave, flux, color="k", lw=0.7, label="flux (6.4 A bins)")
    ax.plot(wave, sigma, color="tab:red", lw=0.6, alpha=0.8, label="1-sigma noise")
    top = np.nanpercentile(flux, 99.5) * 1.25
    near_lya = np.abs(wave - LYA * (1 + z)) < 15 * (1 + z)
    if near_lya.any():  # keep a strong Ly-alpha line on the panel
        top = max(top, 1.1 * float(np.nanmax(flux[near_lya])))
    ax.set_ylim(min(-0.1 * top, np.nanpercentile(flux, 0.5)), top)
    marks = MARKS.get(str(entry["SPECTYPE"]), LBG_MARKS)
    for rest, name in marks:
        observed = rest * (1 + z)
        if wave[0] < observed < wave[-1]:
            ax.axvline(observed, color="tab:blue", lw=0.5, ls=":")
            ax.text(
                observed, top * 0.97, name, rotation=90, fontsize=6, va="top", ha="right", color="tab:blue"
            )
    for lo, hi in desi.ARM_OVERLAPS:
        ax.axvspan(lo, hi, color="0.85", zorder=0)
    ew = entry["LYA_EW"]
    ew_text = f", Lya EW {ew:+.0f} A" if np.isfinite(ew) else ""
    teff = float(entry.get("TEFF", np.nan))
    ew_text += f", Teff {teff:.0f} K" if np.isfinite(teff) else ""
    ax.set_title(
        f"{label}: z = {z:.3f}, r = {entry['MAG_R']:.2f}, {entry['EXPTIME']:.0f} s{ew_text}", fontsize=8
    )
    ax.tick_params(labelsize=7)


def plot_simulated_examples(coadd: str, truth: str, png: str) -> None:
    """One panel per population and LBG template of a simulated data set, lines marked."""
    for path in (coadd, truth):
        if not Path(path).exists():
            raise InputFileError("file does not exist", path)
    table = records_to_truth(fitsio.read(truth, ext="TRUTH"))
    picks = pick_rows(table)
    if not picks:
        raise InputFileError("no spectra to plot", truth)
    fig, axes = plt.subplots(len(picks), 1, figsize=(11, 2.3 * len(picks)), sharex=True)
    axes = np.atleast_1d(axes)
    spectra = read_coadd(coadd, rows=np.array(sorted(row for row, _ in picks)))
    flux, ivar = merge_arms(spectra)
    position = {int(row): index for index, row in enumerate(spectra.rows)}
    for ax, (row, label) in zip(axes, picks):
        wave, binned, sigma = smooth(desi.native_wavelength(), flux[position[row]], ivar[position[row]])
        plot_panel(ax, wave, binned, sigma, table.iloc[row], label)
    axes[0].legend(fontsize=7, loc="upper right")
    axes[-1].set_xlabel("observed wavelength [A]  (grey: dichroic overlaps)")
    fig.supylabel("flux [1e-17 erg/s/cm2/A]", fontsize=8)
    fig.tight_layout()
    save_figure(fig, png, dpi=110, tight=False)
