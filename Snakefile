# lymannet: from DESI-format FITS spectra to purity/efficiency plots.
#
#   snakemake --cores 2                      # local run of config/config.yaml (the demo)
#   snakemake --profile profiles/slurm       # on a SLURM cluster
#   snakemake --report results/report.html   # the HTML report
#
# One rule file per stage; configuration reaches rules only through `params:`.


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/simulate.smk"
include: "workflow/rules/ingest.smk"
include: "workflow/rules/holdout.smk"
include: "workflow/rules/templates.smk"
include: "workflow/rules/augment.smk"
include: "workflow/rules/combine.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/tune.smk"
include: "workflow/rules/predict.smk"
include: "workflow/rules/score.smk"
include: "workflow/rules/fourmost.smk"
include: "workflow/rules/classify.smk"
include: "workflow/rules/visample.smk"
include: "workflow/rules/experiments.smk"


rule all:
    default_target: True
    input:
        all_outputs() + FOURMOST_PLAN.outputs() + classify_outputs(),
        rules.experiments.input,
