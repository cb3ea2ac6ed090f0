"""Score one prediction catalogue: purity/efficiency curve, P = E score, JSON summary and figures.

snakemake: input.prediction (catalogue .fits); output.score_json, output.curve_csv,
output.figure (six-panel PNG), optional output.pe_figure (P/E curve alone); params.options (config
`score` slice); model/combo/testset from params of those names or else the wildcards; log[0].
"""


import logging
from typing import Any

import numpy as np

from lymannet.errors import LymannetError
from lymannet.fileio import write_json_atomic, write_text_atomic
from lymannet.metrics import ScoreOptions, best_line_counts, correct_redshift, evaluate, is_detected
from lymannet.plots import plot_pe_curve, score_figure
from lymannet.predict import read_catalogue
from lymannet.runtime import run

log = logging.getLogger("lymannet.score")


def main(prediction: str, options: dict[str, Any], model: str, combo: str, testset: str,
         score_json: str, curve_csv: str, figure: str, pe_figure: str | None = None) -> dict[str, Any]:
    opts = ScoreOptions.from_config(options)
    catalogue = read_catalogue(prediction)
    table, c_line = catalogue.table, catalogue.c_line
    bad = ~np.isfinite(c_line).all(axis=1) | ~np.isfinite(table["Z_PRED"].to_numpy(float))
    if bad.any():
        raise LymannetError(f"{int(bad.sum())} rows with NaN predictions from model {catalogue.model}", prediction)

    evaluation = evaluate(table, c_line, opts)
    summary = dict(evaluation.summary, model=model, combo=combo, testset=testset, prediction=str(prediction),
                   model_file=catalogue.model, model_sha256=str(catalogue.header.get("MODELSHA", "")),
                   lines=catalogue.line_names)
    for warning in summary["warnings"]:
        log.warning("%s/%s on %s: %s", model, combo, testset, warning)
    write_json_atomic(score_json, summary)
    write_text_atomic(curve_csv, evaluation.curve.to_csv(index=False, float_format="%.6g"))

    is_target = table["SPECTYPE"].astype(str).str.strip().str.upper().to_numpy() == opts.target_class.upper()
    is_good = (is_target & is_detected(c_line, opts.default_threshold, opts.min_lines)
               & correct_redshift(table["Z_PRED"], table["Z"], opts.dz_max, opts.dv_max_kms))
    title = f"model {model}, trained on {combo}, tested on {testset}"
    score_figure(figure, curve=evaluation.curve, crossing=evaluation.crossing, table=table, is_target=is_target,
                 is_good_default=is_good, line_counts=best_line_counts(c_line[is_target], catalogue.line_names),
                 dz_max=opts.dz_max, target_class=opts.target_class, default_threshold=opts.default_threshold,
                 title=title)
    if pe_figure:
        plot_pe_curve(pe_figure, evaluation.curve, evaluation.crossing, title)
    log.info("%s: score %s at c_th %s (%d targets, %d contaminants)", title, summary["score"],
             summary["threshold_at_crossing"], summary["n_targets"], summary["n_contaminants"])
    return summary


if "snakemake" in globals():
    # model/combo/testset: params if the rule gives them, else the wildcards; pe_figure is optional.
    names = {key: getattr(snakemake.params, key, None) or getattr(snakemake.wildcards, key)
             for key in ("model", "combo", "testset")}
    run(main, snakemake.log[0], prediction=snakemake.input.prediction, options=snakemake.params.options,
        score_json=snakemake.output.score_json, curve_csv=snakemake.output.curve_csv,
        figure=snakemake.output.figure, pe_figure=getattr(snakemake.output, "pe_figure", None), **names)
