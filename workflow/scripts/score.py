"""Score one prediction catalogue: purity/efficiency curve, P = E score, JSON summary and figures.

snakemake: input.prediction (catalogue .fits); output.score_json, output.curve_csv,
output.figure (six-panel PNG), optional output.pe_figure (P/E curve alone), optional
output.false_positives (the most confident false positives, from input.testset), optional
output.calibration (reliability, ZERR coverage, N(z)); params.options (config
`score` slice); optional input.train (the training split: its N(z) sets the chance level);
model/combo/testset from params of those names or else the wildcards; log[0].
"""

from lymannet.runtime import run
from lymannet.score import score_catalogue

if "snakemake" in globals():
    # model/combo/testset: params if the rule gives them, else the wildcards; pe_figure is optional.
    names = {
        key: getattr(snakemake.params, key, None) or getattr(snakemake.wildcards, key)
        for key in ("model", "combo", "testset")
    }
    run(
        score_catalogue,
        snakemake.log[0],
        prediction=snakemake.input.prediction,
        options=snakemake.params.options,
        score_json=snakemake.output.score_json,
        curve_csv=snakemake.output.curve_csv,
        figure=snakemake.output.figure,
        pe_figure=getattr(snakemake.output, "pe_figure", None),
        testset_file=getattr(snakemake.input, "testset", None),
        train_file=getattr(snakemake.input, "train", None),
        fp_figure=getattr(snakemake.output, "false_positives", None),
        calibration_figure=getattr(snakemake.output, "calibration", None),
        **names,
    )
