"""Compare models: P/E curves overlaid per test set, the table 5.1 summary, and scores per combo.

snakemake: input.scores (score JSONs), input.curves (curve CSVs, same order as scores),
input.model_files or input.models (model.pt of every run, for layers/filters/lr/parameters);
params.testsets (test set names, in the order of output.figures); output.summary_csv,
output.summary_md, output.figures (one compare PNG per test set), optional output.combos_png; log[0].
The runs trained with several seeds come from the config's `runs:` (lymannet.config.seed_groups).
"""

from lymannet.config import seed_groups
from lymannet.runtime import run
from lymannet.score import compare_scores

if "snakemake" in globals():
    # The model files may come as input.model_files or input.models; combos_png is optional.
    model_files = getattr(snakemake.input, "model_files", None) or getattr(snakemake.input, "models", [])
    run(
        compare_scores,
        snakemake.log[0],
        scores=list(snakemake.input.scores),
        curves=list(snakemake.input.curves),
        model_files=list(model_files),
        testsets=list(snakemake.params.testsets),
        summary_csv=snakemake.output.summary_csv,
        summary_md=snakemake.output.summary_md,
        figures=list(snakemake.output.figures),
        combos_png=getattr(snakemake.output, "combos_png", None),
        seed_groups=seed_groups(snakemake.config.get("runs") or []),
    )
