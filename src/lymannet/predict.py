"""Prediction catalogues: a trained model run over a test set, one FITS row per spectrum.

The catalogue mirrors DESI's QuasarNET afterburner files (``qso_qn-*.fits``, extension ``QN_RR``;
desihub/desispec ``qn_afterburner``): per line ``C_<LINE>`` (confidence) and ``Z_<LINE>``
(redshift from that line), ``Z_QN`` (the redshift of the most confident line), ``Z_QN_CONF`` and
``IS_<CLASS>_QN`` (int16, 1 for a detected target). lymannet adds explicit names:

- TARGETID, Z, SPECTYPE (+ TEMPLATE, MAG_R, EXPTIME when the test set knows them): the truth
- Z_PRED (= Z_QN), BEST_LINE (name of the most confident line), C_BEST (= Z_QN_CONF)
- IS_<CLASS> (logical): at least ``min_lines`` line confidences > ``c_th``
- C_<LINE>, Z_<LINE> for every line of the model, in the model's order
- PROB, ZERR when the model file is calibrated (rule `calibrate`, `lymannet.calibration`): the
  probability of a true target with a correct redshift, at the validation split's class mix, and
  the redshift's 68% error; header WPCTH/WPPROB hold the working point, PRIORVAL the class mix

Extension ``LINES`` lists the model's lines (NAME, WAVELENGTH); ``PROVENANCE`` holds the JSON
record (model file and its sha256, options, config hash, versions, git revision). The most useful
of these are also header keywords of ``QN_RR``.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import fitsio
import numpy as np
import pandas as pd

from . import __version__
from .calibration import Calibration, header_cards, object_columns
from .errors import InputFileError, LymannetError
from .fileio import atomic_path, file_sha256, provenance
from .lines import Line, votes_by_name
from .metrics import DEFAULT_C_TH, is_detected
from .preprocess import INFERENCE_BATCH
from .runtime import Progress
from .spectra import SpectraFile, records_to_truth, truth_to_records

log = logging.getLogger("lymannet.predict")

EXTNAME = "QN_RR"
TRUTH_KEEP = ("TARGETID", "Z", "SPECTYPE", "SUBTYPE", "TEMPLATE", "MAG_R", "EXPTIME")
MODEL_OUTPUTS = ("c_line", "z_line", "z_pred", "best_line", "confidence")
# End-to-end models (thesis 4.2) have no line finder: their class probability becomes one
# pseudo-line, so the catalogue and the scores treat every model family alike.
CLASS_LINE = Line("CLASS", float("nan"), "class")


def has_line_finder(loaded: Any) -> bool:
    spec = getattr(loaded, "spec", None) or {}
    if "family" not in spec:
        return True
    from .models import has_line_finder as spec_has_line_finder

    return spec_has_line_finder(spec)


def catalogue_lines(loaded: Any) -> tuple[Line, ...]:
    """The lines whose C_/Z_ columns the catalogue holds."""
    return tuple(loaded.lines) if has_line_finder(loaded) else (CLASS_LINE,)


def as_line_outputs(outputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Outputs of a model without line finder, expressed with the single CLASS pseudo-line."""
    confidence = np.asarray(outputs["confidence"], float)
    z_pred = np.asarray(outputs["z_pred"], float)
    return dict(
        outputs,
        c_line=confidence[:, None],
        z_line=z_pred[:, None],
        best_line=np.zeros(len(confidence), np.int64),
    )


@dataclass(frozen=True)
class PredictOptions:
    c_th: float = DEFAULT_C_TH
    min_lines: int = 1
    batch_size: int = INFERENCE_BATCH
    bf16: bool = False
    chunk_rows: int = 8192  # spectra read from the test set at a time (bounded memory)

    @classmethod
    def from_dict(cls, options: dict[str, Any] | None) -> "PredictOptions":
        options = dict(options or {})
        known = {k: options[k] for k in cls.__dataclass_fields__ if k in options and options[k] is not None}
        return cls(**known)


def check_outputs(outputs: dict[str, np.ndarray], n_rows: int, n_lines: int, model_path: str | Path) -> None:
    """Model outputs have the promised shapes and no NaN (a NaN would silently wreck the scores)."""
    for key in MODEL_OUTPUTS:
        if key not in outputs:
            raise LymannetError(f"model predict() returned no {key!r}", model_path)
    for key in ("c_line", "z_line"):
        if np.shape(outputs[key]) != (n_rows, n_lines):
            raise LymannetError(
                f"model output {key} has shape {np.shape(outputs[key])}, " f"expected ({n_rows}, {n_lines})",
                model_path,
            )
    bad = np.zeros(n_rows, bool)
    for key in ("c_line", "z_line", "z_pred", "confidence"):
        values = np.asarray(outputs[key], float).reshape(n_rows, -1)
        bad |= ~np.isfinite(values).all(axis=1)
    if bad.any():
        raise LymannetError(
            f"model outputs contain NaN/inf for {int(bad.sum())} of {n_rows} spectra "
            f"(first row {int(np.flatnonzero(bad)[0])})",
            model_path,
        )


def catalogue_rows(
    truth: pd.DataFrame,
    outputs: dict[str, np.ndarray],
    line_names: list[str],
    target_class: str,
    options: PredictOptions,
    calibration: Calibration | None = None,
) -> pd.DataFrame:
    """The catalogue columns for one chunk of spectra."""
    c_line = np.asarray(outputs["c_line"], np.float32)
    z_line = np.asarray(outputs["z_line"], np.float32)
    best = np.asarray(outputs["best_line"], np.int64)
    rows = np.arange(len(best))
    # A BAL head (QuasarNET's CIV_BAL) flags a trough, not the class: it does not vote (as in decode).
    votes = votes_by_name(line_names)
    is_target = is_detected(c_line[:, votes], options.c_th, options.min_lines)
    cls = target_class.upper()
    table = {name: truth[name].to_numpy() for name in TRUTH_KEEP if name in truth}
    table.update(
        {
            "Z_PRED": np.asarray(outputs["z_pred"], np.float32),
            "BEST_LINE": np.asarray(line_names)[best],
            "C_BEST": c_line[rows, best],
            f"IS_{cls}": is_target,
            "Z_QN": np.asarray(outputs["z_pred"], np.float32),
            "Z_QN_CONF": np.asarray(outputs["confidence"], np.float32),
            f"IS_{cls}_QN": is_target.astype(np.int16),
        }
    )
    if calibration is not None:
        table.update(object_columns(calibration, c_line, z_line, votes, table["Z_PRED"]))
    for j, name in enumerate(line_names):
        table[f"C_{name}"] = c_line[:, j]
    for j, name in enumerate(line_names):
        table[f"Z_{name}"] = z_line[:, j]
    return pd.DataFrame(table)


def _header(
    model_path: Path,
    model_sha: str,
    target_class: str,
    options: PredictOptions,
    record: dict[str, Any],
    n_lines: int,
    calibration: Calibration | None = None,
) -> list[dict[str, Any]]:
    git = record.get("git_revision", "unknown")
    return header_cards(calibration) + [
        {"name": "MODEL", "value": str(model_path), "comment": "trained model file"},
        {"name": "MODELSHA", "value": model_sha, "comment": "sha256 of the model file"},
        {
            "name": "TESTSET",
            "value": str(record.get("inputs", {}).get("testset", {}).get("path", "")),
            "comment": "test set spectra file",
        },
        {"name": "TARGCLS", "value": target_class, "comment": "class the model detects"},
        {"name": "CTHRESH", "value": options.c_th, "comment": "confidence threshold of IS_*"},
        {"name": "MINLINES", "value": options.min_lines, "comment": "lines above CTHRESH for IS_*"},
        {"name": "NLINES", "value": n_lines, "comment": "lines of the model (see LINES HDU)"},
        {"name": "CFGHASH", "value": record.get("config_hash", ""), "comment": "hash of the predict options"},
        {"name": "LNVER", "value": __version__, "comment": "lymannet version"},
        {"name": "GITREV", "value": git, "comment": "git describe of the code"},
    ]


def predict_testset(
    loaded: Any, testset: str | Path, options: PredictOptions, model_path: str | Path
) -> pd.DataFrame:
    """Run ``loaded.predict`` over a spectra file chunk by chunk; return the catalogue."""
    line_finder = has_line_finder(loaded)
    line_names = [line.name for line in catalogue_lines(loaded)]
    calibration = model_calibration(loaded)
    chunks = []
    with SpectraFile(testset) as spectra_file:
        progress = Progress(len(spectra_file), what="spectra")
        for chunk in spectra_file.iter_chunks("network", options.chunk_rows):
            outputs = loaded.predict(chunk.flux, chunk.ivar, batch_size=options.batch_size, bf16=options.bf16)
            if not line_finder:
                outputs = as_line_outputs(outputs)
            check_outputs(outputs, len(chunk), len(line_names), model_path)
            chunks.append(
                catalogue_rows(chunk.truth, outputs, line_names, loaded.target_class, options, calibration)
            )
            progress.update(len(chunk))
        progress.done()
    if not chunks:
        raise InputFileError("test set has no spectra", testset)
    return pd.concat(chunks, ignore_index=True)


def model_calibration(loaded: Any) -> Calibration | None:
    record = getattr(loaded, "calibration", None)
    return Calibration.from_dict(record) if record else None


def box_edges(loaded: Any) -> list[float]:
    """Observed wavelengths of the line finder's box edges (where N(z) features may sit)."""
    grid, n_boxes = loaded.grid, getattr(loaded, "n_boxes", 0)
    if not n_boxes:
        return []
    return [
        float(w) for w in np.atleast_1d(grid.wavelength_at(np.arange(n_boxes + 1) * grid.n_pixels / n_boxes))
    ]


def write_catalogue(
    path: str | Path,
    catalogue: pd.DataFrame,
    lines: tuple,
    header: list[dict[str, Any]],
    record: dict[str, Any],
) -> None:
    """Write QN_RR + LINES + PROVENANCE atomically."""
    line_table = np.array(
        [(line.name, float(line.wavelength)) for line in lines],
        dtype=[("NAME", f"U{max(len(line.name) for line in lines)}"), ("WAVELENGTH", "f8")],
    )
    with atomic_path(path) as tmp:
        with fitsio.FITS(str(tmp), "rw", clobber=True) as fits:
            fits.write(None, header={"LNFORMAT": "lymannet-predictions-1"})
            fits.write(truth_to_records(catalogue), extname=EXTNAME, header=header)
            fits.write(line_table, extname="LINES")
            fits.write(
                {"JSON": np.array([json.dumps(record, sort_keys=True, default=str)])}, extname="PROVENANCE"
            )


@dataclass
class Catalogue:
    """A prediction catalogue read back: the table, the line names, header and provenance."""

    table: pd.DataFrame
    line_names: list[str]
    header: dict[str, Any]
    provenance: dict[str, Any]
    path: Path

    @property
    def c_line(self) -> np.ndarray:
        return self.table[[f"C_{name}" for name in self.line_names]].to_numpy(float)

    @property
    def z_line(self) -> np.ndarray:
        return self.table[[f"Z_{name}" for name in self.line_names]].to_numpy(float)

    @property
    def model(self) -> str:
        return str(self.header.get("MODEL", "unknown model"))


def read_catalogue(path: str | Path) -> Catalogue:
    """Read a catalogue written by :func:`write_catalogue`, with clear errors for other files."""
    path = Path(path)
    if not path.exists():
        raise InputFileError("prediction catalogue does not exist", path)
    try:
        with fitsio.FITS(str(path)) as fits:
            names = {hdu.get_extname() for hdu in fits}
            extname = EXTNAME if EXTNAME in names else "PREDICTIONS"
            if extname not in names:
                raise InputFileError(
                    f"no {EXTNAME} or PREDICTIONS extension; is this a prediction catalogue?", path
                )
            table = records_to_truth(fits[extname].read())
            header = {key: fits[extname].read_header()[key] for key in fits[extname].read_header().keys()}
            lines = [str(n).strip() for n in fits["LINES"].read()["NAME"]] if "LINES" in names else None
            record = json.loads(fits["PROVENANCE"].read()["JSON"][0]) if "PROVENANCE" in names else {}
    except OSError as error:
        raise InputFileError(f"unreadable FITS file ({error})", path) from None
    if lines is None:  # fall back on the column names: C_<LINE> with a matching Z_<LINE>
        lines = [
            c[2:] for c in table.columns if c.startswith("C_") and c != "C_BEST" and f"Z_{c[2:]}" in table
        ]
    missing = [c for c in ("Z", "SPECTYPE", "Z_PRED") if c not in table]
    if missing or not lines:
        raise InputFileError(f"catalogue lacks columns {missing or 'C_<LINE>'}", path)
    return Catalogue(table, lines, header, record, path)


def predict_file(
    model: str | Path, testset: str | Path, output: str | Path, options: dict[str, Any] | None = None
) -> pd.DataFrame:
    """Load a model file, predict a test set, write the catalogue; return the table."""
    from .modelfile import load_model_file  # imported here: torch is heavy and only needed here

    opts = PredictOptions.from_dict(options)
    loaded = load_model_file(model)
    log.info(
        "model %s (%d lines, target %s), test set %s", model, len(loaded.lines), loaded.target_class, testset
    )
    catalogue = predict_testset(loaded, testset, opts, model)
    record = provenance(dict(options or {}), {"model": model, "testset": testset})
    record["model_provenance"] = getattr(loaded, "provenance", {})
    record["model_spec"] = getattr(loaded, "spec", {})
    record["box_edges_wavelength"] = box_edges(loaded)
    record["calibration"] = getattr(loaded, "calibration", None)
    model_sha = getattr(loaded, "sha256", None) or file_sha256(model)
    lines = catalogue_lines(loaded)
    header = _header(
        Path(model), model_sha, loaded.target_class, opts, record, len(lines), model_calibration(loaded)
    )
    write_catalogue(output, catalogue, lines, header, record)
    n_target = int(catalogue[f"IS_{loaded.target_class.upper()}"].sum())
    log.info(
        "wrote %s: %d spectra, %d flagged %s at c_th=%g",
        output,
        len(catalogue),
        n_target,
        loaded.target_class,
        opts.c_th,
    )
    return catalogue
