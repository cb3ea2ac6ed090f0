rule predict:
    input:
        model="results/models/{model}/{combo}/model.pt",
        testset="results/testsets/{testset}.fits",
    output:
        "results/predictions/{model}/{combo}/{testset}.fits",
    log:
        "logs/predict/{model}/{combo}/{testset}.log",
    benchmark:
        "logs/benchmarks/predict/{model}/{combo}/{testset}.tsv"
    conda:
        ENV_TRAIN
    threads: 2
    resources:
        runtime=30,
        mem_mb=8000,
    params:
        options=lambda w: {**config["predict"], **config["score"]},
    script:
        "../scripts/predict.py"


# The classical baseline (config baseline.template_fit, lymannet.templatefit): a chi-square
# template fit written as a prediction catalogue under its own model/combo names, then scored by
# the score rule and listed by compare like any run.
TEMPLATE_FIT = config["baseline"]["template_fit"]
BASELINE_RUNS = (
    [(TEMPLATE_FIT["name"], TEMPLATE_FIT["combo"])] if TEMPLATE_FIT["enabled"] else []
)
if any(TEMPLATE_FIT["name"] == model for model, _ in RUNS):
    raise ValueError(
        f"baseline.template_fit.name {TEMPLATE_FIT['name']!r} is also a model of runs:"
        " give the baseline another name"
    )


ruleorder: predict_templatefit > predict


rule predict_templatefit:
    input:
        testset="results/testsets/{testset}.fits",
    output:
        f"results/predictions/{TEMPLATE_FIT['name']}/{TEMPLATE_FIT['combo']}/{{testset}}.fits",
    log:
        f"logs/predict/{TEMPLATE_FIT['name']}/{TEMPLATE_FIT['combo']}/{{testset}}.log",
    benchmark:
        f"logs/benchmarks/predict/{TEMPLATE_FIT['name']}/{TEMPLATE_FIT['combo']}/{{testset}}.tsv"
    conda:
        ENV_DATA
    threads: 2
    resources:
        runtime=30,
        mem_mb=2000,  # peak RSS ~400 MB on the demo's test sets (chunks of 512 spectra)
    params:
        fit={
            **{
                k: v
                for k, v in TEMPLATE_FIT.items()
                if k not in ("enabled", "name", "combo")
            },
            "seed": config["seed"],
        },
        options=lambda w: {**config["predict"], **config["score"]},
        name=TEMPLATE_FIT["name"],
    script:
        "../scripts/predict_templatefit.py"
