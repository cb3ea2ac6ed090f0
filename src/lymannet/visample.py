"""Visual-inspection (VI) samples: a stratified draw from a survey catalogue, with its spectra.

A survey team measures the purity of a catalogue (`lymannet.classify`, extension ``QN_RR``) by
looking at a sample of its objects. A uniform draw would be nearly all confident non-targets, the
bulk of a survey; `draw_vi_sample` draws in strata of the classifier's score instead, with more
objects where the catalogue's decision is made (around the working point), and writes each object's
inclusion probability, so that the inspected objects can be weighted back to the whole catalogue.

The design: stratified random sampling without replacement, reproducible from a seed.

* Score: PROB (the calibrated probability) where the catalogue has that column with finite values,
  else CONFIDENCE (the best line's confidence).
* Eligible rows: ZWARN == 0 (where the column exists), a finite score and a finite Z; no other row
  is ever drawn.
* Working point: the `working_point` argument; else, for PROB, the catalogue's WPPROB header; for
  CONFIDENCE, its CTHRESH (c_th: WPPROB is a threshold on PROB, not on CONFIDENCE); else 0.5.
* Strata: N_BINS equal-width bins of the score over [0, 1] (a score of exactly 1 in the last).
* Stratum weight: w_h = 1 + WP_BOOST * max(0, 1 - |centre_h - WP| / (WP_HALF_WIDTH * bin width)),
  so 4 for the bin centred on the working point and 2 for each of its neighbours; a working point on
  a bin edge gives the two bins beside it 3 each; every other bin 1.
* Allocation: n_h proportional to w_h, not to the stratum's size N_h (the few confident objects of a
  survey would get no draw), after one object in every non-empty stratum when n allows (so that the
  weights cover the whole catalogue); capped at N_h, what a full stratum cannot take goes to the
  others; the last units to the largest remainders.
* Draw: n_h of the N_h eligible objects of each stratum, uniformly without replacement.

Each drawn object's inclusion probability is pi = n_h / N_h and its weight 1 / pi = N_h / n_h (the
inverse-probability, Horvitz-Thompson, weight): a stratum's weights sum to N_h, the sample's to the
number of eligible objects when every non-empty stratum was drawn from. The purity of a selection S
(say PROB > WP) is then sum(w_i * [VI: a true target]) / sum(w_i) over the inspected objects in S.

Outputs in `out_dir`: ``coadd-vi.fits``, a DESI coadd holding only the drawn targets (FIBERMAP rows
of the source coadds; per arm WAVELENGTH, FLUX, IVAR, and MASK and RESOLUTION where every source has
them; HDU names, dtypes and units as DESI's, so DESI's spectrum viewers and `lymannet.coadd` read
it), and ``vi_sample.csv``, one line per object in the coadd's row order. Objects are ordered by
coadd and row, not by score, so that the order does not tell the inspectors the probability.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import fitsio
import numpy as np
import pandas as pd

from . import __version__
from .classify import EXTNAME
from .desi import ARMS
from .errors import ConfigError, InputFileError
from .fileio import atomic_path, first_line, native_column, write_text_atomic
from .metrics import DEFAULT_C_TH

log = logging.getLogger("lymannet.visample")

N_BINS = 10
WP_BOOST = 3.0  # a stratum centred on the working point weighs 1 + WP_BOOST
WP_HALF_WIDTH = 1.5  # in bin widths: the boost falls linearly to 0 at this distance from the WP
DEFAULT_WORKING_POINT = DEFAULT_C_TH  # a catalogue that records no threshold
COADD_NAME = "coadd-vi.fits"
CSV_NAME = "vi_sample.csv"
SAMPLE_FORMAT = "lymannet-vi-sample-1"
REQUIRED_COLUMNS = ("TARGETID", "COADD", "ROW", "Z", "CONFIDENCE")
OPTIONAL_COLUMNS = ("TARGET_RA", "TARGET_DEC", "PROB", "ZERR", "ZWARN")
ARM_HDUS = ("WAVELENGTH", "FLUX", "IVAR", "MASK", "RESOLUTION")  # DESI's order within an arm
OPTIONAL_HDUS = ("MASK", "RESOLUTION")  # QuasarNP's test coadd, for one, has neither
WAVELENGTH_ATOL = 1e-4  # Angstrom: arms of two coadds closer than this share one grid
# Catalogue header keys that say where the sample comes from, copied to the coadd's primary header.
PROVENANCE_KEYS = ("TARGCLS", "CTHRESH", "MINLINES", "MODEL", "MODELSHA", "WPPROB")


# --------------------------------------------------------------------------- the catalogue


@dataclass(frozen=True)
class Catalogue:
    """The columns of a survey catalogue that a VI sample needs, and its header."""

    path: str
    table: pd.DataFrame
    header: dict[str, Any]

    @property
    def score(self) -> str:
        """PROB where it was calibrated (some finite value), else CONFIDENCE."""
        if "PROB" in self.table and np.isfinite(self.table["PROB"]).any():
            return "PROB"
        return "CONFIDENCE"

    def eligible(self) -> np.ndarray:
        """Rows a sample may draw: classified (ZWARN 0), with a finite score and redshift."""
        ok = np.isfinite(self.table[self.score].to_numpy()) & np.isfinite(self.table["Z"].to_numpy())
        if "ZWARN" in self.table:
            ok &= self.table["ZWARN"].to_numpy() == 0
        return ok

    def working_point(self, given: float | None) -> float:
        """`given`, else the catalogue's threshold on its score (WPPROB or CTHRESH), else 0.5."""
        key = "WPPROB" if self.score == "PROB" else "CTHRESH"
        point = float(given if given is not None else self.header.get(key, DEFAULT_WORKING_POINT))
        if given is None and not np.isfinite(point):
            point = DEFAULT_WORKING_POINT
        if not 0.0 <= point <= 1.0:
            raise ConfigError(f"working point {point} for {self.score} is outside [0, 1]")
        return point

    def coadd_names(self, rows: np.ndarray) -> np.ndarray:
        """COADD of the given sorted catalogue rows, read only now: a survey's millions of paths
        would outweigh every other column in memory."""
        with fitsio.FITS(self.path) as fits:
            names = fits[EXTNAME].read(columns=["COADD"], rows=rows)["COADD"]
        return np.char.strip(native_column(names).astype(str))


def read_catalogue(path: str | Path) -> Catalogue:
    """The QN_RR extension of a catalogue written by lymannet.classify (merged or per file)."""
    path = str(path)
    if not os.path.isfile(path):
        raise InputFileError("catalogue does not exist", path)
    try:
        with fitsio.FITS(path) as fits:
            if EXTNAME not in fits:
                raise InputFileError(f"no {EXTNAME} extension: not a lymannet survey catalogue", path)
            hdu = fits[EXTNAME]
            names = set(hdu.get_colnames())
            missing = [name for name in REQUIRED_COLUMNS if name not in names]
            if missing:
                raise InputFileError(f"{EXTNAME} has no column {', '.join(missing)}", path)
            columns = [
                name for name in REQUIRED_COLUMNS + OPTIONAL_COLUMNS if name in names and name != "COADD"
            ]
            records, header = hdu.read(columns=columns), hdu.read_header()
    except (OSError, ValueError) as error:
        raise InputFileError(f"not a readable FITS catalogue ({first_line(error)})", path) from None
    table = pd.DataFrame({name: native_column(records[name]) for name in columns})
    return Catalogue(path, table, {key: header[key] for key in header.keys()})


# --------------------------------------------------------------------------- the design


@dataclass(frozen=True)
class StratifiedDesign:
    """Strata of the score, their weights, and how many objects each holds and gives."""

    score: str  # "PROB" or "CONFIDENCE"
    working_point: float
    edges: np.ndarray  # (n_bins + 1,) stratum edges over [0, 1]
    weights: np.ndarray  # (n_bins,) allocation weight w_h
    n_eligible: np.ndarray  # (n_bins,) N_h
    n_drawn: np.ndarray  # (n_bins,) n_h

    def inclusion_probability(self, stratum: np.ndarray) -> np.ndarray:
        return self.n_drawn[stratum] / self.n_eligible[stratum]

    def describe(self) -> list[str]:
        """One line per stratum, for the log."""
        return [
            f"{self.score} [{lo:.2f}, {hi:.2f}): weight {w:.2f}, {big_n} eligible, {n} drawn"
            for lo, hi, w, big_n, n in zip(
                self.edges[:-1], self.edges[1:], self.weights, self.n_eligible, self.n_drawn
            )
        ]


def stratum_of(score: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Stratum index of each score; a score of exactly 1 (or beyond) falls in the last bin."""
    return np.searchsorted(edges[1:-1], np.clip(score, 0.0, 1.0), side="right")


def stratum_weights(edges: np.ndarray, working_point: float) -> np.ndarray:
    """1 + WP_BOOST, falling linearly with the bin centre's distance to the working point."""
    centres, width = (edges[:-1] + edges[1:]) / 2, edges[1] - edges[0]
    return 1.0 + WP_BOOST * np.clip(
        1.0 - np.abs(centres - working_point) / (WP_HALF_WIDTH * width), 0.0, None
    )


def allocate(n_eligible: np.ndarray, weights: np.ndarray, n: int) -> np.ndarray:
    """n_h: one per non-empty stratum when n allows, the rest in proportion to the weights,
    capped at N_h (a full stratum's share goes to the others)."""
    n_drawn = np.zeros(len(n_eligible), np.int64)
    if n >= np.count_nonzero(n_eligible):
        n_drawn[n_eligible > 0] = 1
    left = min(n, int(n_eligible.sum())) - int(n_drawn.sum())
    while left > 0:
        share = np.where(n_drawn < n_eligible, weights, 0.0)
        quota = left * share / share.sum()
        take = np.minimum(np.floor(quota).astype(np.int64), n_eligible - n_drawn)
        if not take.any():  # every quota below one: the largest ones get one object each
            take[np.argsort(-quota, kind="stable")[:left]] = 1
        n_drawn += take
        left -= int(take.sum())
    return n_drawn


def stratified_draw(
    score: np.ndarray, n: int, working_point: float, seed: int, score_name: str, n_bins: int = N_BINS
) -> tuple[np.ndarray, StratifiedDesign]:
    """(sorted indices into `score` of the objects drawn, the design)."""
    edges = np.arange(n_bins + 1) / n_bins  # exact decimal edges (0.7, not 0.7000000000000001)
    stratum = stratum_of(score, edges)
    n_eligible = np.bincount(stratum, minlength=n_bins)
    weights = stratum_weights(edges, working_point)
    design = StratifiedDesign(
        score_name, working_point, edges, weights, n_eligible, allocate(n_eligible, weights, n)
    )
    rng = np.random.default_rng(seed)
    picks = [
        rng.choice(np.flatnonzero(stratum == h), size=k, replace=False)
        for h, k in enumerate(design.n_drawn)
        if k
    ]
    return np.sort(np.concatenate(picks)), design


def sample_table(
    catalogue: Catalogue, n: int, seed: int, working_point: float | None = None, n_bins: int = N_BINS
) -> tuple[pd.DataFrame, StratifiedDesign]:
    """The drawn objects (the CSV's columns), ordered by coadd and row, and the design."""
    score = catalogue.score
    eligible = catalogue.table[catalogue.eligible()]  # its index: the rows of the catalogue
    if eligible.empty:
        raise InputFileError(f"no eligible row (ZWARN 0, finite {score} and Z) to draw from", catalogue.path)
    if len(eligible) < n:
        log.warning(
            "%s: %d eligible rows, fewer than the %d asked for: drawing them all",
            catalogue.path,
            len(eligible),
            n,
        )
    chosen, design = stratified_draw(
        eligible[score].to_numpy(np.float64), n, catalogue.working_point(working_point), seed, score, n_bins
    )
    drawn = eligible.iloc[chosen]
    stratum = stratum_of(drawn[score].to_numpy(np.float64), design.edges)
    probability = design.inclusion_probability(stratum)
    table = pd.DataFrame(
        {
            "TARGETID": drawn["TARGETID"],
            "TARGET_RA": drawn.get("TARGET_RA", np.nan),
            "TARGET_DEC": drawn.get("TARGET_DEC", np.nan),
            "COADD": catalogue.coadd_names(drawn.index.to_numpy()),
            "ROW": drawn["ROW"],
            score: drawn[score],
            "Z": drawn["Z"],
            "ZERR": drawn.get("ZERR", np.nan),
            "STRATUM": stratum,
            "STRATUM_LO": design.edges[stratum],
            "STRATUM_HI": design.edges[stratum + 1],
            "N_STRATUM": design.n_eligible[stratum],
            "P_INCLUSION": probability,
            "WEIGHT": 1.0 / probability,
        }
    )
    return table.sort_values(["COADD", "ROW"], kind="stable").reset_index(drop=True), design


# --------------------------------------------------------------------------- the spectra


@dataclass
class CoaddRows:
    """Some rows of one source coadd: FIBERMAP records and the arms' HDUs, as the file has them."""

    path: str
    fibermap: np.ndarray  # structured, one record per object
    units: dict[str, str]  # FIBERMAP column -> unit
    images: dict[str, np.ndarray]  # "B_FLUX" -> (n, ...) rows; "B_WAVELENGTH" -> the whole grid
    headers: dict[str, Any]  # HDU name -> its header (units, ...)


def locate_coadd(root: str, name: str) -> str:
    """The source of a catalogue's COADD below `root`; classify names a .fits.gz coadd .fits."""
    path = os.path.join(root, name)
    for candidate in (path, path + ".gz"):
        if os.path.isfile(candidate):
            return candidate
    raise InputFileError(f"coadd of catalogue rows (COADD {name}) does not exist below {root}", path)


def read_coadd_rows(path: str, objects: pd.DataFrame) -> CoaddRows:
    """The FIBERMAP records and spectra HDUs of `objects` (sorted ROWs) in the coadd at `path`."""
    rows = objects["ROW"].to_numpy(np.int64)
    images, headers = {}, {}
    try:
        with fitsio.FITS(path) as fits:
            names = {hdu.get_extname().upper() for hdu in fits}
            for arm in ARMS:
                for kind in ARM_HDUS:
                    name = f"{arm}_{kind}"
                    if name not in names and kind in OPTIONAL_HDUS:
                        continue
                    if name not in names:
                        raise InputFileError(f"missing HDU {name}; is this a DESI coadd file?", path)
                    images[name] = read_image_rows(fits[name], None if kind == "WAVELENGTH" else rows, path)
                    headers[name] = fits[name].read_header()
            fibermap, units = read_fibermap_rows(fits, names, objects, path)
    except (OSError, ValueError) as error:
        raise InputFileError(f"not a readable coadd ({first_line(error)})", path) from None
    return CoaddRows(path, fibermap, units, images, headers)


def check_rows(rows: np.ndarray, n_rows: int, what: str, path: str) -> None:
    if len(rows) and (rows.min() < 0 or rows.max() >= n_rows):
        raise InputFileError(
            f"catalogue row {rows.max()} is beyond the {n_rows} rows of {what}: has the coadd "
            "changed since it was classified?",
            path,
        )


def read_image_rows(hdu: Any, rows: np.ndarray | None, path: str) -> np.ndarray:
    """The whole image (rows None), or the given sorted rows: one read per run of rows."""
    if rows is None:
        return hdu.read()
    dims = hdu.get_dims()
    check_rows(rows, dims[0], hdu.get_extname(), path)
    rest = (slice(None),) * (len(dims) - 1)
    breaks = np.flatnonzero(np.diff(rows) != 1) + 1
    return np.concatenate(
        [
            hdu[(slice(int(rows[start]), int(rows[stop - 1]) + 1),) + rest]
            for start, stop in zip(np.r_[0, breaks], np.r_[breaks, len(rows)])
        ]
    )


def read_fibermap_rows(
    fits: fitsio.FITS, names: set[str], objects: pd.DataFrame, path: str
) -> tuple[np.ndarray, dict[str, str]]:
    """FIBERMAP records of the objects, checked against the catalogue's TARGETIDs."""
    if "FIBERMAP" not in names:
        return index_fibermap(objects), {"TARGET_RA": "deg", "TARGET_DEC": "deg"}
    hdu = fits["FIBERMAP"]
    rows = objects["ROW"].to_numpy(np.int64)
    check_rows(rows, hdu.get_nrows(), "FIBERMAP", path)
    records = hdu.read(rows=rows)
    wrong = np.flatnonzero(records["TARGETID"] != objects["TARGETID"].to_numpy())
    if len(wrong):
        raise InputFileError(
            f"FIBERMAP row {rows[wrong[0]]} has TARGETID {records['TARGETID'][wrong[0]]}, the "
            f"catalogue says {objects['TARGETID'].iloc[wrong[0]]}: has the coadd changed since it "
            "was classified?",
            path,
        )
    return records, column_units(hdu.read_header())


def index_fibermap(objects: pd.DataFrame) -> np.ndarray:
    """A coadd without FIBERMAP (QuasarNP's test file): TARGETID, as lymannet.coadd numbers its rows,
    and the coordinates the catalogue has."""
    records = np.zeros(
        len(objects), [("TARGETID", "i8"), ("TARGET_RA", "f8"), ("TARGET_DEC", "f8"), ("OBJTYPE", "U3")]
    )
    for name in ("TARGETID", "TARGET_RA", "TARGET_DEC"):
        records[name] = objects[name] if name in objects else np.nan
    records["OBJTYPE"] = "TGT"
    return records


def column_units(header: Any) -> dict[str, str]:
    n_columns = int(header.get("TFIELDS", 0))
    return {
        str(header[f"TTYPE{i}"]).strip(): str(header[f"TUNIT{i}"]).strip()
        for i in range(1, n_columns + 1)
        if f"TUNIT{i}" in header
    }


def merged_fibermap(parts: list[CoaddRows]) -> np.ndarray:
    """Every part's FIBERMAP records in one table: the union of their columns, each in a type that
    holds them all; a column a coadd lacks is NaN (floats), 0 or '' for its objects."""
    dtypes: dict[str, np.dtype] = {}
    for part in parts:
        for name in part.fibermap.dtype.names:
            dtypes[name] = common_dtype(dtypes.get(name), part.fibermap.dtype[name], name, part.path)
    merged = np.zeros(sum(len(part.fibermap) for part in parts), list(dtypes.items()))
    lacking = [name for name in dtypes if any(name not in part.fibermap.dtype.names for part in parts)]
    for name in lacking:
        if merged.dtype[name].kind == "f":
            merged[name] = np.nan
    start = 0
    for part in parts:
        for name in part.fibermap.dtype.names:
            merged[name][start : start + len(part.fibermap)] = part.fibermap[name]
        start += len(part.fibermap)
    if lacking:
        log.warning(
            "%d FIBERMAP columns missing from some coadds, filled with NaN, 0 or '' there: %s%s",
            len(lacking),
            ", ".join(lacking[:8]),
            ", ..." if len(lacking) > 8 else "",
        )
    return merged


def common_dtype(current: np.dtype | None, new: np.dtype, column: str, path: str) -> np.dtype:
    if current is not None and (current.kind in "SU") != (new.kind in "SU"):
        raise InputFileError(f"FIBERMAP column {column} is {new} here but {current} in another coadd", path)
    try:
        return np.promote_types(new if current is None else current, new)
    except TypeError:
        raise InputFileError(
            f"FIBERMAP column {column} ({new}) does not merge with another coadd's ({current})", path
        ) from None


def shared_hdus(parts: list[CoaddRows]) -> list[str]:
    """The arm HDUs every part has, in DESI's order; an optional one some lack is left out."""
    kept = []
    for name in (f"{arm}_{kind}" for arm in ARMS for kind in ARM_HDUS):
        lacking = [part.path for part in parts if name not in part.images]
        if not lacking:
            kept.append(name)
        elif len(lacking) < len(parts):
            log.warning("%s has no %s HDU: the VI coadd leaves it out for every object", lacking[0], name)
    return kept


def stacked_hdu(parts: list[CoaddRows], name: str) -> np.ndarray:
    """One HDU of the VI coadd: the parts' rows concatenated, or their common wavelength grid."""
    first = parts[0].images[name]
    for part in parts[1:]:
        data = part.images[name]
        if name.endswith("_WAVELENGTH") and (
            data.shape != first.shape or not np.allclose(data, first, rtol=0, atol=WAVELENGTH_ATOL)
        ):
            raise InputFileError(
                f"{name} ({grid_text(data)}) differs from that of {parts[0].path} "
                f"({grid_text(first)}): a coadd holds one wavelength grid per arm",
                part.path,
            )
        if data.shape[1:] != first.shape[1:]:
            raise InputFileError(
                f"{name} rows have shape {data.shape[1:]}, those of {parts[0].path} " f"{first.shape[1:]}",
                part.path,
            )
    return first if name.endswith("_WAVELENGTH") else np.concatenate([part.images[name] for part in parts])


def grid_text(wavelength: np.ndarray) -> str:
    return f"{len(wavelength)} pixels, {wavelength[0]:.4f}-{wavelength[-1]:.4f} A"


def write_vi_coadd(path: str | Path, parts: list[CoaddRows], cards: list[dict[str, Any]]) -> None:
    """A DESI coadd of the parts' objects, in their order: PRIMARY (cards), FIBERMAP, arm HDUs."""
    fibermap = merged_fibermap(parts)
    units = {name: unit for part in reversed(parts) for name, unit in part.units.items()}
    with atomic_path(path) as tmp, fitsio.FITS(str(tmp), "rw", clobber=True) as fits:
        fits.write(None, header=cards)
        fits.write(fibermap, extname="FIBERMAP", units=[units.get(name, "") for name in fibermap.dtype.names])
        for name in shared_hdus(parts):
            header = parts[0].headers[name]
            header.delete(["BZERO", "BSCALE"])  # fitsio writes its own for the data's type
            fits.write(stacked_hdu(parts, name), extname=name, header=header)


# --------------------------------------------------------------------------- the command


@dataclass(frozen=True)
class VISample:
    """What `draw_vi_sample` wrote."""

    coadd: Path
    table: Path
    design: StratifiedDesign
    n_drawn: int


def coadd_root_of(catalogue: Catalogue, coadd_root: str | Path | None) -> str:
    root = coadd_root if coadd_root is not None else catalogue.header.get("SRCROOT")
    if not root:
        raise InputFileError(
            "no SRCROOT header (the coadds' folder): give the coadds' root folder "
            "(coadd_root, --coadd-root)",
            catalogue.path,
        )
    return str(root).strip()


def primary_cards(
    catalogue: Catalogue, design: StratifiedDesign, n: int, seed: int, root: str
) -> list[dict[str, Any]]:
    """The VI coadd's primary header: how the sample was drawn, and from what."""
    cards = [
        {"name": "LNFORMAT", "value": SAMPLE_FORMAT, "comment": "lymannet visual-inspection sample"},
        {"name": "VICAT", "value": os.path.basename(catalogue.path), "comment": "catalogue drawn from"},
        {"name": "SRCROOT", "value": os.path.abspath(root), "comment": "folder of the source coadds"},
        {"name": "VISCORE", "value": design.score, "comment": "column the strata are bins of"},
        {"name": "VIWP", "value": design.working_point, "comment": "working point on VISCORE"},
        {"name": "VINBINS", "value": len(design.weights), "comment": "equal-width strata over [0, 1]"},
        {"name": "VISEED", "value": int(seed), "comment": "numpy default_rng seed of the draw"},
        {"name": "VINASK", "value": int(n), "comment": "objects asked for"},
        {"name": "VINDRAW", "value": int(design.n_drawn.sum()), "comment": "objects drawn"},
        {"name": "VINELIG", "value": int(design.n_eligible.sum()), "comment": "eligible catalogue rows"},
        {"name": "LNVER", "value": __version__, "comment": "lymannet version"},
    ]
    return cards + [
        {"name": key, "value": catalogue.header[key]} for key in PROVENANCE_KEYS if key in catalogue.header
    ]


def draw_vi_sample(
    catalogue_path: str | Path,
    out_dir: str | Path,
    n: int = 100,
    coadd_root: str | Path | None = None,
    seed: int = 0,
    working_point: float | None = None,
    n_bins: int = N_BINS,
) -> VISample:
    """Draw `n` objects of a survey catalogue (see the module's docstring for the design) and write
    `out_dir`/coadd-vi.fits (their spectra, from `coadd_root`/COADD; coadd_root defaults to the
    catalogue's SRCROOT header) and `out_dir`/vi_sample.csv (stratum, inclusion probability, weight)."""
    if n < 1 or n_bins < 1:
        raise ConfigError(
            f"a VI sample needs n >= 1 objects and n_bins >= 1 strata, not n={n}, n_bins={n_bins}"
        )
    catalogue = read_catalogue(catalogue_path)
    root = coadd_root_of(catalogue, coadd_root)
    table, design = sample_table(catalogue, n, seed, working_point, n_bins)
    why = "" if design.score == "PROB" else " (the catalogue has no calibrated PROB)"
    log.info(
        "%s: %d of %d eligible rows drawn, stratified in %s%s, working point %.3f, seed %d",
        catalogue.path,
        len(table),
        design.n_eligible.sum(),
        design.score,
        why,
        design.working_point,
        seed,
    )
    for line in design.describe():
        log.info("  %s", line)
    n_strata, n_drawn_strata = np.count_nonzero(design.n_eligible), np.count_nonzero(design.n_drawn)
    if n_drawn_strata < n_strata:  # n smaller than the number of non-empty strata
        log.warning(
            "%d of %d non-empty strata got no draw: the weights do not cover their objects",
            n_strata - n_drawn_strata,
            n_strata,
        )
    parts = [
        read_coadd_rows(locate_coadd(root, name), objects)
        for name, objects in table.groupby("COADD", sort=False)
    ]
    out_dir = Path(out_dir)
    write_vi_coadd(out_dir / COADD_NAME, parts, primary_cards(catalogue, design, n, seed, root))
    write_text_atomic(out_dir / CSV_NAME, table.to_csv(index=False))
    return VISample(out_dir / COADD_NAME, out_dir / CSV_NAME, design, len(table))
