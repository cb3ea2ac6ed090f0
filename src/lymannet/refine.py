"""A network's redshifts refined by a chi-square fit of learned templates near them (config
`runs: [{model, combo, refine: true}]`, rule `predict_refined`), as DESI runs Redrock with a prior
around QuasarNET's redshift (the QN+RR afterburner).

The line finder places a line within a box by one regressed offset; its redshifts scatter by
|dz| ~ 0.01 at z ~ 3 and 4-8% of the LBGs it finds land 0.05-0.2 away, outside the scoring's dz_max,
where a template fit is precise to ~0.001. Here the network keeps what it does well (which
spectra are LBGs, and roughly where their lines are) and a chi-square scan of the target class's
learned templates (:mod:`lymannet.templatefit_learned`: a mean and eigenvectors from the run's own
training split, never the simulator's templates nor a test set) within +-``window`` in ln(1+z)
of the network's redshift gives Z_PRED, Redrock's way (:mod:`lymannet.chi2fit`'s fine scan and
parabola).

- Z_NET: the network's redshift; Z_PRED: the refined one, or Z_NET where the fit cannot say
  (no valid pixels, no convex minimum, or the minimum on the window's edge: the best redshift
  lies outside it); REFINED says which.
- ZERR: the chi-square's curvature at its minimum (Delta chi2 = 1, Redrock's error; ZERR_FIT)
  calibrated on the run's validation split like the network's ZERR (rule `calibrate_refined`,
  :func:`lymannet.calibration.fit_redshift_error` with the fit's error as the spread): the
  Delta chi2 = 1 error of templates that are not the data's undercovers by ~3x. The network's
  own ZERR becomes ZERR_NET.
- Confidences, PROB and the working point stay the network's: PROB was calibrated for the
  network's redshifts, so where refining makes more of them correct it is conservative.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict
from pathlib import Path
from typing import Any

import fitsio
import numpy as np
import pandas as pd

from .calibrate import _is_target
from .calibration import fit_redshift_error, redshift_error, zerr_coverage
from .chi2fit import DEFAULT_WINDOW, refine_redshifts
from .errors import InputFileError, LymannetError
from .fileio import file_sha256, provenance, write_json_atomic
from .lines import Line
from .metrics import ScoreOptions, correct_redshift
from .modelfile import load_model_file
from .predict import PredictOptions, predict_testset, read_catalogue, write_catalogue
from .spectra import SpectraFile
from .templatefit import TemplateFitOptions
from .templatefit_learned import build_learned_template_set, load_learned

log = logging.getLogger("lymannet.refine")


def _lines_of(path: Path) -> tuple[Line, ...]:
    """The LINES HDU of a prediction catalogue, as the writer wants them back."""
    with fitsio.FITS(str(path)) as fits:
        rows = fits["LINES"].read()
    return tuple(Line(str(r["NAME"]).strip(), float(r["WAVELENGTH"]), "refined") for r in rows)


def refine_file(
    spectra_path: str | Path,
    table: pd.DataFrame,
    templates: str | Path,
    target: str,
    window: float = DEFAULT_WINDOW,
    fit_options: dict[str, Any] | None = None,
    catalogue: str | Path = "",
) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
    """(z, zerr_fit, refined, options) of every spectrum of a spectra file whose network
    predictions are `table` (same rows, same order: checked by TARGETID)."""
    fit_options = dict(fit_options or {})
    mean_amplitude = str(fit_options.pop("mean_amplitude", "nonnegative"))
    options = TemplateFitOptions.from_dict(fit_options)
    z_network = table["Z_PRED"].to_numpy(np.float64)
    ids = table["TARGETID"].to_numpy()
    z, zerr, refined = np.empty(len(table)), np.empty(len(table)), np.zeros(len(table), bool)
    start = 0
    with SpectraFile(spectra_path) as spectra:
        if spectra.grid is None:
            raise InputFileError("network layer has no grid header (GRIDKIND)", spectra_path)
        tset = build_learned_template_set(spectra.grid, load_learned(templates), options, mean_amplitude)
        for chunk in spectra.iter_chunks("network", options.chunk_rows):
            stop = start + len(chunk)
            if not np.array_equal(np.asarray(chunk.truth["TARGETID"]), ids[start:stop]):
                raise InputFileError(
                    f"lists other spectra than the catalogue {catalogue} (TARGETIDs differ from row {start})",
                    spectra_path,
                )
            z[start:stop], zerr[start:stop], refined[start:stop] = refine_redshifts(
                tset, chunk.flux, chunk.ivar, z_network[start:stop], target, window, options
            )
            start = stop
    if start != len(table):
        raise InputFileError(f"has {start} spectra, the catalogue {catalogue} {len(table)}", spectra_path)
    return z, zerr, refined, {**asdict(options), "mean_amplitude": mean_amplitude}


def calibrate_refined(
    model: str | Path,
    val: str | Path,
    templates: str | Path,
    out_json: str | Path,
    score: dict[str, Any] | None = None,
    predict: dict[str, Any] | None = None,
    window: float = DEFAULT_WINDOW,
    fit_options: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """ZERR of the refined redshifts, fitted on the run's validation split: the network predicts
    it, the learned templates refine it, and :func:`fit_redshift_error` scales the fit's
    Delta chi2 = 1 error so that 68% of the correct refined targets lie within ZERR."""
    opts = ScoreOptions.from_config(score or {})
    loaded = load_model_file(model)
    table = predict_testset(loaded, val, PredictOptions.from_dict(predict), model)
    target = str(getattr(loaded, "target_class", opts.target_class)).upper()
    z, zerr_fit, refined, options = refine_file(val, table, templates, target, window, fit_options, model)
    z_true = table["Z"].to_numpy(float)
    is_target = _is_target(table, opts)
    good_network = is_target & correct_redshift(table["Z_PRED"], z_true, opts.dz_max, opts.dv_max_kms)
    good = is_target & refined & correct_redshift(z, z_true, opts.dz_max, opts.dv_max_kms)
    # the detections a catalogue would list (PROB >= 0.5), as the network's ZERR is fitted on
    detected = good & (table["PROB"].to_numpy(float) >= 0.5) if "PROB" in table else good
    fitted = detected if detected.sum() >= 10 else good
    if fitted.sum() < 10:
        raise LymannetError(
            f"refined ZERR needs at least 10 correct refined validation targets in {val}, got {int(fitted.sum())}"
        )
    spread = zerr_fit / (1.0 + z)
    coefficients = fit_redshift_error(z[fitted], (z - z_true)[fitted], spread[fitted])
    record = {
        "zerr": list(coefficients),
        "window": window,
        "fit": options,
        "validation_file": str(val),
        "model": str(model),
        "n_spectra": int(len(table)),
        "n_fitted": int(fitted.sum()),
        "zerr_coverage": zerr_coverage(
            (z - z_true)[fitted], redshift_error(z[fitted], spread[fitted], coefficients)
        ),
        "zerr_fit_coverage": zerr_coverage((z - z_true)[fitted], zerr_fit[fitted]),
        "correct_network": float(good_network[is_target].mean()),
        "correct_refined": float(
            (is_target & correct_redshift(z, z_true, opts.dz_max, opts.dv_max_kms))[is_target].mean()
        ),
        "median_abs_dz_network": float(
            np.median(np.abs(table["Z_PRED"].to_numpy(float) - z_true)[good_network])
        ),
        "median_abs_dz_refined": float(np.median(np.abs(z - z_true)[good])),
        "refined_share": float(refined.mean()),
    }
    write_json_atomic(out_json, record)
    log.info(
        "refined ZERR on %s (%d correct targets): a=%.3g b=%.3g covers %.2f / %.2f (Delta chi2 = 1 alone "
        "%.2f / %.2f); correct redshifts %.3f -> %.3f of the targets, median |dz| %.4f -> %.4f",
        val,
        record["n_fitted"],
        *coefficients,
        record["zerr_coverage"]["within_1"],
        record["zerr_coverage"]["within_2"],
        record["zerr_fit_coverage"]["within_1"],
        record["zerr_fit_coverage"]["within_2"],
        record["correct_network"],
        record["correct_refined"],
        record["median_abs_dz_network"],
        record["median_abs_dz_refined"],
    )
    return record


def refine_catalogue(
    prediction: str | Path,
    testset: str | Path,
    templates: str | Path,
    output: str | Path,
    window: float = DEFAULT_WINDOW,
    fit_options: dict[str, Any] | None = None,
    name: str = "",
    zerr_calibration: str | Path | None = None,
) -> pd.DataFrame:
    """A network's prediction catalogue of a test set -> the same catalogue with refined Z_PRED
    and, given `calibrate_refined`'s record, calibrated ZERR (NaN without it); rows not refined
    keep the network's Z_PRED and ZERR."""
    prediction, testset = Path(prediction), Path(testset)
    catalogue = read_catalogue(prediction)
    target = str(catalogue.header.get("TARGCLS", "LBG")).strip().upper()
    table = catalogue.table.copy()
    z_network = table["Z_PRED"].to_numpy(np.float64)
    z, zerr_fit, refined, options = refine_file(
        testset, table, templates, target, window, fit_options, prediction
    )
    # where nothing was refined the network's redshift and its calibrated ZERR stand
    zerr = table["ZERR"].to_numpy(np.float64).copy() if "ZERR" in table else np.full(len(table), np.nan)
    zerr[refined] = np.nan
    calibration = None
    if zerr_calibration is not None:
        calibration = json.loads(Path(zerr_calibration).read_text())
        fitted = redshift_error(z, zerr_fit / (1.0 + z), tuple(calibration["zerr"]))
        zerr[refined] = fitted[refined]
    table["Z_NET"] = z_network.astype(np.float32)
    if "ZERR" in table:
        table["ZERR_NET"] = table["ZERR"]
    table["Z_PRED"], table["ZERR"] = z.astype(np.float32), zerr.astype(np.float32)
    table["ZERR_FIT"], table["REFINED"] = zerr_fit.astype(np.float32), refined
    if "Z_QN" in table:
        table["Z_QN"] = table["Z_PRED"]
    inputs = {"prediction": prediction, "testset": testset, "templates": templates}
    if zerr_calibration is not None:
        inputs["zerr_calibration"] = zerr_calibration
    record = provenance({"refine": name, "window": window, "fit": options}, inputs)
    record["network"] = {"catalogue": str(prediction), "provenance": catalogue.provenance}
    record["calibration"] = catalogue.provenance.get("calibration")
    # the network's box grid, against which the score looks for N(z) excesses
    record["box_edges_wavelength"] = catalogue.provenance.get("box_edges_wavelength", [])
    record["refined_zerr"] = calibration
    header = [
        {"name": key, "value": catalogue.header[key], "comment": ""}
        for key in ("CALIB", "TARGCLS", "CTHRESH", "MINLINES", "NLINES", "MODELSHA")
        if key in catalogue.header
    ]
    header += [
        {
            "name": "MODEL",
            "value": f"{name or catalogue.model} refined"[:60],
            "comment": "network + learned templates",
        },
        {"name": "REFINE", "value": window, "comment": "Z_PRED: chi2 of learned templates, +-ln(1+z)"},
        {"name": "TEMPLSHA", "value": file_sha256(templates), "comment": "sha256 of the learned templates"},
    ]
    write_catalogue(output, table, _lines_of(prediction), header, record)
    moved = np.abs(z - z_network) > 0.05  # the scoring's dz_max
    log.info(
        "refined %s: %d of %d redshifts inside +-%.3f in ln(1+z) (%d moved by more than 0.05), "
        "median |z - z_network| %.4f -> %s",
        prediction,
        int(refined.sum()),
        len(table),
        window,
        int(moved.sum()),
        float(np.median(np.abs(z - z_network))),
        output,
    )
    return table
