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
- ZERR: from the chi-square's curvature at its minimum (Delta chi2 = 1), as Redrock's; a
  statistical error of the fit, not calibrated on validation like the network's (whose ZERR
  becomes ZERR_NET). The score JSON's ZERR coverage shows how far to trust it.
- Confidences, PROB and the working point stay the network's: PROB was calibrated for the
  network's redshifts, so where refining makes more of them correct it is conservative.
"""

from __future__ import annotations

import logging
from dataclasses import asdict
from pathlib import Path
from typing import Any

import fitsio
import numpy as np
import pandas as pd

from .chi2fit import DEFAULT_WINDOW, refine_redshifts
from .errors import InputFileError
from .fileio import file_sha256, provenance
from .lines import Line
from .predict import read_catalogue, write_catalogue
from .spectra import SpectraFile
from .templatefit import TemplateFitOptions, TemplateSet
from .templatefit_learned import build_learned_template_set, load_learned

log = logging.getLogger("lymannet.refine")


def _lines_of(path: Path) -> tuple[Line, ...]:
    """The LINES HDU of a prediction catalogue, as the writer wants them back."""
    with fitsio.FITS(str(path)) as fits:
        rows = fits["LINES"].read()
    return tuple(Line(str(r["NAME"]).strip(), float(r["WAVELENGTH"]), "refined") for r in rows)


def refine_catalogue(
    prediction: str | Path,
    testset: str | Path,
    templates: str | Path,
    output: str | Path,
    window: float = DEFAULT_WINDOW,
    fit_options: dict[str, Any] | None = None,
    name: str = "",
) -> pd.DataFrame:
    """A network's prediction catalogue of a test set -> the same catalogue with refined Z_PRED."""
    prediction, testset = Path(prediction), Path(testset)
    catalogue = read_catalogue(prediction)
    target = str(catalogue.header.get("TARGCLS", "LBG")).strip().upper()
    fit_options = dict(fit_options or {})
    mean_amplitude = str(fit_options.pop("mean_amplitude", "nonnegative"))
    options = TemplateFitOptions.from_dict(fit_options)
    table = catalogue.table.copy()
    z_network = table["Z_PRED"].to_numpy(np.float64)
    z, zerr, refined = (np.empty(len(table)), np.empty(len(table)), np.zeros(len(table), bool))
    with SpectraFile(testset) as spectra:
        if spectra.grid is None:
            raise InputFileError("network layer has no grid header (GRIDKIND)", testset)
        tset = build_learned_template_set(spectra.grid, load_learned(templates), options, mean_amplitude)
        start = 0
        for chunk in spectra.iter_chunks("network", options.chunk_rows):
            ids = np.asarray(chunk.truth["TARGETID"])
            stop = start + len(ids)
            if not np.array_equal(ids, table["TARGETID"].to_numpy()[start:stop]):
                raise InputFileError(
                    f"lists other spectra than the catalogue {prediction} (TARGETIDs differ from row {start})",
                    testset,
                )
            rows = slice(start, stop)
            z[rows], zerr[rows], refined[rows] = refine_redshifts(
                tset, chunk.flux, chunk.ivar, z_network[rows], target, window, options
            )
            start = stop
    if start != len(table):
        raise InputFileError(f"has {start} spectra, the catalogue {prediction} {len(table)}", testset)
    table["Z_NET"] = z_network.astype(np.float32)
    if "ZERR" in table:
        table["ZERR_NET"] = table["ZERR"]
    table["Z_PRED"], table["ZERR"], table["REFINED"] = z.astype(np.float32), zerr.astype(np.float32), refined
    if "Z_QN" in table:
        table["Z_QN"] = table["Z_PRED"]
    record = provenance(
        {"refine": name, "window": window, "fit": asdict(options), "mean_amplitude": mean_amplitude},
        {"prediction": prediction, "testset": testset, "templates": templates},
    )
    record["network"] = {"catalogue": str(prediction), "provenance": catalogue.provenance}
    record["calibration"] = catalogue.provenance.get("calibration")
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
