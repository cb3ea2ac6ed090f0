"""Survey classification: a trained network run over DESI coadd files, one catalogue per coadd.

Rules `classify` / `classify_merge` (config `classify:`) and the command `lymannet classify` share
this module. The model is a lymannet `model.pt` or QuasarNET's Keras weights (`.h5`, log grid
from the file's `model_grid` or QuasarNET's default). Each coadd is read, merged and rebinned in
blocks by `lymannet.coadd` (the code ingestion uses), standardised, run through the network and
decoded (`lymannet.models.decode`); memory stays bounded by a block, whatever the file's size.

Catalogue columns follow DESI's QuasarNET afterburner (extension ``QN_RR``): TARGETID, TARGET_RA,
TARGET_DEC, COADD (the coadd's path below the mirror root) and ROW (its row in that file), Z (the
redshift of the most confident non-BAL line), ZERR (its 68% error), CONFIDENCE (that line's
confidence), PROB (calibrated probability of a true target with a correct redshift, for the
validation split's class mix or the stated `target_fraction`), ZWARN, BEST_LINE, C_<LINE> and
Z_<LINE> per line (C_CIV_BAL / Z_CIV_BAL for QuasarNET's BAL head, which never chooses Z),
IS_<CLASS>_QN (1 when at least min_lines non-BAL lines have C > c_th). c_th is the model's working
point (calibrated models) unless given. The header holds c_th, min_lines, the working point, the
class mixes, the model's sha256 and origin, lymannet's version and git revision.

One row per FIBERMAP row, in the coadd's order, as DESI's redshift catalogues: a row that is not
classified has ZWARN bits (`lymannet.coadd.ZWARN_BITS`: NOT_TARGET for sky/stuck/empty fibres,
BAD_FIBERSTATUS, NODATA for no valid pixel on the model's grid), Z, ZERR, PROB, CONFIDENCE and the
line columns NaN, BEST_LINE empty and IS_<CLASS>_QN 0. Uncalibrated weights (QuasarNET's Keras
files) have PROB and ZERR NaN everywhere and CALIB = F in the header.

Files that cannot be read are listed with a one-line reason (failures.tsv) and the others are
classified; with `strict` the first bad file stops the job, naming it. A per-file catalogue whose
header matches the model, options and the coadd's size and mtime is up to date and is not redone,
so rerunning a batch after adding files classifies only the new ones.
"""

from __future__ import annotations

import csv
import logging
import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Mapping, Sequence

import fitsio
import h5py
import numpy as np
import torch

from . import __version__
from .calibration import Calibration, detection_score, header_cards, object_columns
from .arms import NativeRebinner, check_grid_coverage, merge_arm_sums
from .coadd import BLOCK_ROWS, NODATA, CoaddFile
from .errors import ConfigError, InputFileError, LymannetError
from .fileio import atomic_path, file_sha256, first_line, git_revision
from .grid import Grid
from .keras_import import load_keras_quasarnet
from .lines import line_set, line_votes
from .metrics import DEFAULT_C_TH
from .modelfile import LoadedModel, load_model_file
from .models import has_line_finder
from .plan import mirrored_name
from .preprocess import INFERENCE_BATCH
from .runtime import Progress, pick_device

log = logging.getLogger("lymannet.classify")

EXTNAME = "QN_RR"  # DESI's afterburner extension
CATALOGUE_FORMAT = "lymannet-classify-2"
KERAS_SUFFIXES = (".h5", ".hdf5", ".keras")
MANIFEST_FIELDS = (
    "file",
    "catalogue",
    "status",
    "n_rows",
    "n_non_science",
    "n_no_data",
    "n_classified",
    "n_selected",
    "reason",
)
# Header keys that must match for an existing per-file catalogue to count as up to date.
UP_TO_DATE_KEYS = (
    "LNFORMAT",
    "LNVER",
    "MODELSHA",
    "CTHRESH",
    "MINLINES",
    "FIBSTAT",
    "PRIORSRV",
    "SRCSIZE",
    "SRCMTIME",
)


@dataclass(frozen=True)
class ClassifyOptions:
    """The detection rule and how to run: `classify.<name>` of the config, or the CLI's flags."""

    c_th: float | None = None  # None: the model's working point, else DEFAULT_C_TH
    min_lines: int = 1
    default_c_th: float = DEFAULT_C_TH  # uncalibrated weights without c_th (score.c_th)
    target_fraction: float | None = None  # the survey's expected class mix (None: the validation's)
    working_point: Mapping[str, float] | None = None  # another working point than the model's
    batch_size: int = INFERENCE_BATCH
    bf16: bool = False
    device: str = "auto"
    strict: bool = False
    fiberstatus: str = "zero_only"  # as ingest: "any" keeps fibres with COADD_FIBERSTATUS != 0
    block_rows: int = BLOCK_ROWS  # coadd rows read, merged and rebinned at a time

    @classmethod
    def from_dict(cls, options: Mapping[str, Any] | None) -> "ClassifyOptions":
        names = {field.name for field in fields(cls)}
        known = {k: v for k, v in (options or {}).items() if k in names and v is not None}
        opts = cls(**known)
        if opts.target_fraction is not None and not 0.0 < opts.target_fraction < 1.0:
            raise ConfigError(f"classify target_fraction must be in (0, 1), not {opts.target_fraction}")
        if (
            opts.c_th is not None
            and not 0.0 <= opts.c_th <= 1.0
            or opts.min_lines < 1
            or opts.batch_size < 1
            or opts.block_rows < 1
        ):
            raise ConfigError(
                f"classify options out of range: c_th {opts.c_th} (0-1), min_lines "
                f"{opts.min_lines}, batch_size {opts.batch_size}, block_rows {opts.block_rows} (>= 1)"
            )
        return opts


@dataclass(frozen=True)
class DetectionRule:
    """The cut IS_<CLASS>_QN applies, resolved for one model: an explicit c_th wins; else the
    calibrated model's working point (chosen again for a stated target fraction); else DEFAULT_C_TH."""

    c_th: float
    min_lines: int
    target_fraction: float | None  # the class mix PROB refers to (None: uncalibrated)
    source: str

    @classmethod
    def resolve(cls, calibration: "Calibration | None", options: ClassifyOptions) -> "DetectionRule":
        if calibration is None:
            if options.working_point or options.target_fraction is not None:
                raise ConfigError(
                    "working_point / target_fraction need a calibrated model (rule calibrate); "
                    "these weights are uncalibrated"
                )
            c_th = options.default_c_th if options.c_th is None else options.c_th
            return cls(
                c_th, options.min_lines, None, "c_th given" if options.c_th is not None else "default c_th"
            )
        fraction = calibration.target_fraction if options.target_fraction is None else options.target_fraction
        if options.c_th is not None:
            return cls(options.c_th, options.min_lines, fraction, "c_th given")
        working_point = dict(options.working_point or calibration.working_point)
        c_th = calibration.threshold_for(options.target_fraction, options.working_point and working_point)
        mix = "validation" if options.target_fraction is None else f"stated {options.target_fraction:g}"
        return cls(c_th, calibration.min_lines, fraction, f"working point {working_point} ({mix} class mix)")


# --------------------------------------------------------------------------- the model


@dataclass
class Classifier:
    """A loaded model (`lymannet.modelfile.LoadedModel`) and where its weights come from."""

    loaded: Any  # LoadedModel: predict(), grid, lines, target_class, sha256
    path: Path
    origin: str

    @property
    def calibration(self) -> Calibration | None:
        record = getattr(self.loaded, "calibration", None)
        return Calibration.from_dict(record) if record else None

    @property
    def line_names(self) -> list[str]:
        return [line.name for line in self.loaded.lines]

    @property
    def target_class(self) -> str:
        return str(self.loaded.target_class).upper()


def load_classifier(path: str | Path, device: str = "auto") -> Classifier:
    """A lymannet model.pt or a QuasarNET Keras .h5, ready to classify on `device`."""
    path = Path(path)
    if path.suffix.lower() in KERAS_SUFFIXES:
        loaded = _load_keras(path, pick_device(device))
        return Classifier(loaded, path, f"QuasarNET Keras weights {path.name}")

    loaded = load_model_file(path, device=pick_device(device))
    if not has_line_finder(loaded.spec):
        raise InputFileError(
            f"model family {loaded.spec['family']!r} has no line finder: survey catalogues need "
            "per-line confidences (use a quasarnet or quasarnet_mlp_z model)",
            path,
        )
    trained = loaded.config or {}
    origin = f"lymannet model {trained.get('model', '?')} trained on {trained.get('combo', '?')}"
    return Classifier(loaded, path, origin)


def _load_keras(path: Path, device: str) -> Any:

    model, spec = load_keras_quasarnet(path)
    n_pixels = spec.pop("n_pixels")
    grid = keras_grid(path, n_pixels)
    return LoadedModel(
        model=model.to(torch.device(device)),
        spec=spec,
        grid=grid,
        lines=line_set(spec["lines"]),
        n_boxes=spec["n_boxes"],
        snr_channel=spec["snr_channel"],
        target_class="QSO",
        provenance={"origin": str(path)},
        sha256=file_sha256(path),
    )


def keras_grid(path: Path, n_pixels: int) -> Grid:
    """The input grid of QuasarNET weights: the file's `model_grid` (as QuasarNP reads it) when it
    has one, else QuasarNET's log grid, which such files were trained on."""

    with h5py.File(path, "r") as h5:
        wave = np.asarray(h5["model_grid"][:], np.float64) if "model_grid" in h5 else None
    if wave is None:
        grid = Grid.quasarnet()
    elif np.allclose(np.diff(wave), wave[1] - wave[0]):
        grid = Grid(kind="linear", start=float(wave[0]), step=float(wave[1] - wave[0]), n_pixels=len(wave))
    else:
        log_wave = np.log10(wave)
        grid = Grid(
            kind="log", start=float(log_wave[0]), step=float(log_wave[1] - log_wave[0]), n_pixels=len(wave)
        )
    if grid.n_pixels != n_pixels:
        raise InputFileError(
            f"the network takes {n_pixels} pixels but its grid has {grid.n_pixels}; "
            "add the training grid as a 'model_grid' dataset",
            path,
        )
    return grid


# --------------------------------------------------------------------------- one coadd file


@dataclass
class FileOutcome:
    """What became of one coadd: its catalogue and counts, or why it failed."""

    file: str
    catalogue: str
    status: str  # "classified", "up to date" or "failed"
    n_rows: int = 0
    n_non_science: int = 0
    n_no_data: int = 0
    n_classified: int = 0
    n_selected: int = 0
    reason: str = ""

    def row(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in MANIFEST_FIELDS}


def catalogue_dtype(line_names: Sequence[str], target_class: str, coadd_width: int) -> np.dtype:
    columns = [
        ("TARGETID", "i8"),
        ("TARGET_RA", "f8"),
        ("TARGET_DEC", "f8"),
        ("COADD", f"U{max(coadd_width, 1)}"),
        ("ROW", "i4"),
        ("Z", "f8"),
        ("ZERR", "f4"),
        ("CONFIDENCE", "f4"),
        ("PROB", "f4"),
        ("ZWARN", "i8"),
        ("BEST_LINE", f"U{max(map(len, line_names))}"),
    ]
    columns += [(f"C_{name}", "f4") for name in line_names]
    columns += [(f"Z_{name}", "f8") for name in line_names]
    columns.append((f"IS_{target_class}_QN", "i2"))
    return np.dtype(columns)


def empty_rows(coadd: CoaddFile, coadd_name: str, dtype: np.dtype) -> np.ndarray:
    """One unclassified row per FIBERMAP row: identity columns filled, results NaN, ZWARN the fibre's flags."""
    records = np.zeros(coadd.n_rows, dtype)
    for name in dtype.names:
        if dtype[name].kind == "f":
            records[name] = np.nan
    records["TARGETID"] = coadd.fibermap["TARGETID"].to_numpy()
    for column in ("TARGET_RA", "TARGET_DEC"):
        if column in coadd.fibermap:
            records[column] = coadd.fibermap[column].to_numpy()
    records["COADD"] = coadd_name
    records["ROW"] = np.arange(coadd.n_rows)
    records["ZWARN"] = coadd.flags
    return records


def classify_coadd(
    classifier: Classifier,
    path: str,
    coadd_name: str,
    options: ClassifyOptions,
    progress: Progress | None = None,
    rule: DetectionRule | None = None,
) -> tuple[np.ndarray, dict[str, int]]:
    """(catalogue records, one per FIBERMAP row, and counts) of one coadd file; InputFileError if
    it cannot be used."""
    rule = rule or DetectionRule.resolve(classifier.calibration, options)
    calibration = classifier.calibration
    coadd = CoaddFile(path, {"fiberstatus": options.fiberstatus})
    check_grid_coverage(classifier.loaded.grid, coadd.wavelength_range, path)
    rebinner = NativeRebinner(classifier.loaded.grid)
    names, votes = classifier.line_names, line_votes(classifier.loaded.lines)
    records = empty_rows(coadd, coadd_name, catalogue_dtype(names, classifier.target_class, len(coadd_name)))
    science_rows = np.flatnonzero(coadd.is_target)
    for block in coadd.iter_blocks(science_rows, options.block_rows):
        flux, ivar = rebinner.rebin_sums(*merge_arm_sums(block))
        has_data = ivar.sum(axis=1) > 0  # QuasarNET drops spectra with no weight on its grid
        records["ZWARN"][block.rows[~has_data]] |= NODATA
        outputs = classifier.loaded.predict(
            flux[has_data], ivar[has_data], batch_size=options.batch_size, bf16=options.bf16
        )
        _check_finite(outputs, path)
        rows = records[block.rows[has_data]]
        rows["Z"], rows["CONFIDENCE"] = outputs["z_pred"], outputs["confidence"]
        rows["BEST_LINE"] = np.asarray(names)[outputs["best_line"]]
        for j, name in enumerate(names):
            rows[f"C_{name}"], rows[f"Z_{name}"] = outputs["c_line"][:, j], outputs["z_line"][:, j]
        if calibration is not None:
            columns = object_columns(
                calibration,
                outputs["c_line"],
                outputs["z_line"],
                votes,
                outputs["z_pred"],
                rule.target_fraction,
            )
            rows["PROB"], rows["ZERR"] = columns["PROB"], columns["ZERR"]
        score = detection_score(outputs["c_line"], votes, rule.min_lines)
        rows[f"IS_{classifier.target_class}_QN"] = score > rule.c_th
        records[block.rows[has_data]] = rows
        if progress is not None:
            progress.update(len(block))
    classified = records["ZWARN"] == 0
    counts = {
        "n_rows": coadd.n_rows,
        "n_non_science": coadd.n_rows - len(science_rows),
        "n_no_data": int(np.count_nonzero(records["ZWARN"] & NODATA)),
        "n_classified": int(classified.sum()),
        "n_selected": int(records[f"IS_{classifier.target_class}_QN"].sum()),
    }
    return records, counts


def _check_finite(outputs: dict[str, np.ndarray], path: str) -> None:
    bad = ~np.isfinite(outputs["c_line"]).all(axis=1) | ~np.isfinite(outputs["z_pred"])
    if bad.any():
        raise InputFileError(
            f"the network gives NaN/inf for {int(bad.sum())} spectra (corrupt flux values?)", path
        )


# --------------------------------------------------------------------------- catalogue files


def catalogue_header(
    classifier: Classifier, options: ClassifyOptions, revision: str, rule: DetectionRule | None = None
) -> list[dict[str, Any]]:
    rule = rule or DetectionRule.resolve(classifier.calibration, options)
    calibration = classifier.calibration
    cards = [
        {"name": "LNFORMAT", "value": CATALOGUE_FORMAT, "comment": "lymannet survey catalogue"},
        {"name": "TARGCLS", "value": classifier.target_class, "comment": "class of IS_<CLASS>_QN"},
        {"name": "CTHRESH", "value": float(rule.c_th), "comment": "c_th: line confidence threshold"},
        {"name": "CTHSRC", "value": rule.source[:68], "comment": "where c_th comes from"},
        {"name": "MINLINES", "value": int(rule.min_lines), "comment": "non-BAL lines above c_th for IS_*_QN"},
        {
            "name": "FIBSTAT",
            "value": options.fiberstatus,
            "comment": "COADD_FIBERSTATUS rule (zero_only/any)",
        },
        {
            "name": "PRIORSRV",
            "value": float(rule.target_fraction) if rule.target_fraction is not None else -1.0,
            "comment": "target fraction PROB is for (-1: uncalibrated)",
        },
        {"name": "MODEL", "value": classifier.path.name, "comment": "model file"},
        {"name": "MODELSHA", "value": classifier.loaded.sha256, "comment": "sha256 of the model file"},
        {"name": "WORIGIN", "value": classifier.origin[:68], "comment": "where the weights come from"},
        {"name": "LNVER", "value": __version__, "comment": "lymannet version"},
        {"name": "GITREV", "value": revision, "comment": "git describe of lymannet"},
        {"name": "ZWBITS", "value": "1 NOT_TARGET, 2 BAD_FIBERSTATUS, 4 NODATA", "comment": "ZWARN bits"},
    ]
    if calibration is not None:
        fitted = [
            c
            for c in header_cards(
                calibration,
                None if rule.source == "c_th given" else rule.c_th,
                rule.target_fraction,
                options.working_point,
            )
            if c["name"] not in {card["name"] for card in cards}
        ]
        return cards + fitted
    return cards + header_cards(None)


def _source_header(path: str, counts: Mapping[str, int]) -> list[dict[str, Any]]:
    stat = os.stat(path)
    return [
        {"name": "SRCSIZE", "value": int(stat.st_size), "comment": "coadd size (bytes) when classified"},
        {"name": "SRCMTIME", "value": str(stat.st_mtime_ns), "comment": "coadd mtime (ns) when classified"},
        {"name": "NROWS", "value": counts["n_rows"], "comment": "rows of the coadd"},
        {"name": "NNONSCI", "value": counts["n_non_science"], "comment": "non-science fibres left out"},
        {
            "name": "NNODATA",
            "value": counts["n_no_data"],
            "comment": "spectra without valid pixels (ZWARN NODATA)",
        },
        {"name": "NCLASSIF", "value": counts["n_classified"], "comment": "rows classified (ZWARN = 0)"},
        {"name": "NSELECT", "value": counts["n_selected"], "comment": "spectra with IS_<CLASS>_QN = 1"},
    ]


def write_catalogue(path: str | Path, catalogue: np.ndarray, header: list[dict[str, Any]]) -> None:
    with atomic_path(path) as tmp:
        with fitsio.FITS(str(tmp), "rw", clobber=True) as fits:
            fits.write(catalogue, extname=EXTNAME, header=header)


def _up_to_date(catalogue: Path, source: str, expected: Mapping[str, Any]) -> dict[str, int] | None:
    """Counts of an existing catalogue made from this very coadd with this model and rule, or None."""
    if not catalogue.is_file() or not os.path.isfile(source):
        return None
    try:
        header = fitsio.read_header(str(catalogue), ext=EXTNAME)
    except (OSError, ValueError):
        return None
    stat = os.stat(source)
    wanted = {**expected, "SRCSIZE": int(stat.st_size), "SRCMTIME": str(stat.st_mtime_ns)}
    if any(key not in header or header[key] != wanted[key] for key in UP_TO_DATE_KEYS):
        return None
    return {
        "n_rows": int(header["NROWS"]),
        "n_non_science": int(header["NNONSCI"]),
        "n_no_data": int(header["NNODATA"]),
        "n_classified": int(header["NCLASSIF"]),
        "n_selected": int(header["NSELECT"]),
    }


# --------------------------------------------------------------------------- a batch of files


def classify_files(
    classifier: Classifier, files: Sequence[str], root: str, out_dir: str | Path, options: ClassifyOptions
) -> list[FileOutcome]:
    """Classify every coadd of `files` into `out_dir`/<path below root>; return what became of each.

    A file that cannot be used is a failed outcome (with `strict`: an InputFileError naming it)."""
    out_dir = Path(out_dir)
    rule = DetectionRule.resolve(classifier.calibration, options)
    log.info(
        "IS_%s_QN: detection score > %.4f with min_lines %d (%s)",
        classifier.target_class,
        rule.c_th,
        rule.min_lines,
        rule.source,
    )
    header = catalogue_header(classifier, options, git_revision(), rule)
    expected = {card["name"]: card["value"] for card in header}
    progress = Progress(sum(_row_count(path) for path in files), what="spectra")
    outcomes = []
    for path in files:
        name = mirrored_name(path, root)
        outcome = FileOutcome(path, str(out_dir / name), "classified")
        counts = _up_to_date(out_dir / name, path, expected)
        if counts is not None:
            outcome.status = "up to date"
            progress.total -= counts["n_rows"]
        else:
            try:
                catalogue, counts = classify_coadd(classifier, path, name, options, progress, rule)
                write_catalogue(out_dir / name, catalogue, header + _source_header(path, counts))
            except (LymannetError, OSError, ValueError) as error:
                reason = error.problem if isinstance(error, LymannetError) else first_line(error)
                if options.strict:
                    raise InputFileError(
                        reason + " (classify.strict: a bad file stops the job)", path
                    ) from None
                log.warning("%s: %s (skipped)", path, reason)
                outcome.status, outcome.reason, counts = "failed", reason, {}
        for key, value in counts.items():
            setattr(outcome, key, value)
        outcomes.append(outcome)
    progress.done()
    _log_outcomes(outcomes)
    return outcomes


def classify_batch(
    model: str | Path,
    files: Sequence[str],
    root: str,
    out_dir: str | Path,
    manifest: str | Path,
    options: Mapping[str, Any] | ClassifyOptions,
) -> list[FileOutcome]:
    """One `classify` job: load the model once, classify its files, write the batch manifest."""
    opts = options if isinstance(options, ClassifyOptions) else ClassifyOptions.from_dict(options)
    classifier = load_classifier(model, opts.device)
    log.info(
        "model %s (%s), %d lines, target %s, on %s; %d files",
        model,
        classifier.origin,
        len(classifier.line_names),
        classifier.target_class,
        classifier.loaded.device,
        len(files),
    )
    outcomes = classify_files(classifier, files, root, out_dir, opts)
    write_manifest(manifest, outcomes)
    return outcomes


def _row_count(path: str) -> int:
    """Rows of a coadd from its header (0 if unreadable): the progress line's total."""
    try:
        with fitsio.FITS(path) as fits:
            return int(fits["B_FLUX"].get_dims()[0])
    except Exception:  # noqa: BLE001 - a bad file is reported when it is classified
        return 0


def _log_outcomes(outcomes: Sequence[FileOutcome]) -> None:
    by_status = {
        status: sum(o.status == status for o in outcomes) for status in ("classified", "up to date", "failed")
    }
    log.info("%d files: %d classified, %d up to date, %d failed", len(outcomes), *by_status.values())
    if by_status["failed"]:
        print(f"lymannet classify: {by_status['failed']} of {len(outcomes)} files failed (see failures.tsv)")


def write_manifest(path: str | Path, outcomes: Sequence[FileOutcome]) -> None:
    """One TSV row per file (MANIFEST_FIELDS): what `merge_catalogues` reads."""
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as handle:
        writer = csv.DictWriter(handle, MANIFEST_FIELDS, delimiter="\t", lineterminator="\n")
        writer.writeheader()
        writer.writerows(outcome.row() for outcome in outcomes)


def read_manifest(path: str | Path) -> list[FileOutcome]:
    if not os.path.isfile(path):
        raise InputFileError("batch manifest does not exist", path)
    with open(path, newline="") as handle:
        rows = list(csv.DictReader(handle, delimiter="\t"))
    if rows and set(rows[0]) != set(MANIFEST_FIELDS):
        raise InputFileError(f"not a classify manifest (columns {sorted(rows[0])})", path)
    integers = {name for name in MANIFEST_FIELDS if name.startswith("n_")}
    return [FileOutcome(**{k: int(v) if k in integers else v for k, v in row.items()}) for row in rows]
