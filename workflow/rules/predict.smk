rule predict:
    input:
        model="results/models/{model}/{combo}/calibrated.pt",
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


# The classical baseline (config baseline.template_fit, lymannet.templatefit + chi2fit): a chi-square
# template fit written as a prediction catalogue under its own model/combo names, then scored by
# the score rule and listed by compare like any run.
TEMPLATE_FIT = config["baseline"]["template_fit"]
BASELINE_RUNS = [(TEMPLATE_FIT["name"], TEMPLATE_FIT["combo"])] if TEMPLATE_FIT["enabled"] else []
if any(TEMPLATE_FIT["name"] == model for model, _ in RUNS):
    raise ValueError(
        f"baseline.template_fit.name {TEMPLATE_FIT['name']!r} is also a model of runs:"
        " give the baseline another name"
    )
# The same fit with templates learned from a combo's training split (baseline.learned_templates,
# lymannet.learned_templates): the template_fit row knows the simulator's generating templates
# (an oracle), this one only what a training set shows.
LEARNED_TEMPLATES = config["baseline"]["learned_templates"]
LEARN_KEYS = (
    "components",
    "rest_step",
    "iterations",
    "min_spectra",
    "max_spectra",
    "min_coverage",
    "subtype_classes",
    "classes",
)
if LEARNED_TEMPLATES["enabled"]:
    taken = [model for model, _ in RUNS] + [TEMPLATE_FIT["name"]]
    if LEARNED_TEMPLATES["name"] in taken:
        raise ValueError(
            f"baseline.learned_templates.name {LEARNED_TEMPLATES['name']!r} is also a model"
            " of runs or baseline.template_fit.name: give the baseline another name"
        )
    if LEARNED_TEMPLATES["combo"] not in config["combos"]:
        raise ValueError(
            f"baseline.learned_templates.combo {LEARNED_TEMPLATES['combo']!r} is not a"
            f" combo; combos: {sorted(config['combos'])}"
        )
    BASELINE_RUNS = BASELINE_RUNS + [(LEARNED_TEMPLATES["name"], LEARNED_TEMPLATES["combo"])]


ruleorder: predict_templatefit > predict
ruleorder: predict_templatefit_learned > predict


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
            **{k: v for k, v in TEMPLATE_FIT.items() if k not in ("enabled", "name", "combo")},
            "seed": config["seed"],
        },
        options=lambda w: {**config["predict"], **config["score"]},
        name=TEMPLATE_FIT["name"],
    script:
        "../scripts/predict_templatefit.py"


# Only the combo's training split goes in: no test set, no simulator.
rule learn_templates:
    input:
        train="results/combos/{combo}/train.fits",
    output:
        "results/baseline/learned_templates/{combo}.npz",
    log:
        "logs/learn_templates/{combo}.log",
    benchmark:
        "logs/benchmarks/learn_templates/{combo}.tsv"
    conda:
        ENV_DATA
    threads: 2
    resources:
        runtime=30,
        mem_mb=4000,
    params:
        options={**{k: LEARNED_TEMPLATES[k] for k in LEARN_KEYS}, "seed": config["seed"]},
        variants=lambda w: {name: config["variants"][name] for name in config["combos"][w.combo]["members"]},
    script:
        "../scripts/learn_templates.py"


rule predict_templatefit_learned:
    input:
        testset="results/testsets/{testset}.fits",
        templates=f"results/baseline/learned_templates/{LEARNED_TEMPLATES['combo']}.npz",
    output:
        f"results/predictions/{LEARNED_TEMPLATES['name']}/{LEARNED_TEMPLATES['combo']}/{{testset}}.fits",
    log:
        f"logs/predict/{LEARNED_TEMPLATES['name']}/{LEARNED_TEMPLATES['combo']}/{{testset}}.log",
    benchmark:
        f"logs/benchmarks/predict/{LEARNED_TEMPLATES['name']}/{LEARNED_TEMPLATES['combo']}/{{testset}}.tsv"
    conda:
        ENV_DATA
    threads: 2
    resources:
        runtime=30,
        mem_mb=3000,
    params:
        fit={k: v for k, v in LEARNED_TEMPLATES.items() if k not in ("enabled", "name", "combo", *LEARN_KEYS)},
        options=lambda w: {**config["predict"], **config["score"]},
        name=LEARNED_TEMPLATES["name"],
    script:
        "../scripts/predict_templatefit_learned.py"


# The ensemble of a run's seeds (runs[].ensemble, lymannet.ensemble): mean PROB of the members'
# catalogues, Z_PRED from the most confident member; a catalogue under the model name
# <model>.ensemble, scored by the score rule like any run.
ruleorder: predict_ensemble > predict


rule predict_ensemble:
    input:
        members=ensemble_member_predictions,
    output:
        "results/predictions/{model}.ensemble/{combo}/{testset}.fits",
    log:
        "logs/predict/{model}.ensemble/{combo}/{testset}.log",
    wildcard_constraints:
        model=ensembled_models(),
    conda:
        ENV_DATA
    resources:
        runtime=10,
        mem_mb=2000,
    params:
        seeds=ensemble_seeds,
        name=lambda w: f"{w.model}.ensemble/{w.combo}",
    script:
        "../scripts/predict_ensemble.py"


# A run's redshifts refined by a chi-square fit of its combo's learned templates near the
# network's redshift (runs[].refine, lymannet.refine), as DESI runs Redrock around QuasarNET's:
# the catalogue <model>.refined, scored by the score rule like any run.
ruleorder: predict_refined > predict


# ZERR of the refined redshifts, fitted on the run's validation split (as calibrate does the
# network's): the network predicts it, the templates refine it, the fit's error is scaled.
rule calibrate_refined:
    input:
        model="results/models/{model}/{combo}/calibrated.pt",
        val="results/combos/{combo}/val.fits",
        templates="results/baseline/learned_templates/{combo}.npz",
    output:
        "results/models/{model}/{combo}/refined_zerr.json",
    log:
        "logs/calibrate_refined/{model}/{combo}.log",
    benchmark:
        "logs/benchmarks/calibrate_refined/{model}/{combo}.tsv"
    wildcard_constraints:
        model=refined_models(),
    conda:
        ENV_TRAIN
    threads: 2
    resources:
        runtime=30,
        mem_mb=8000,
    params:
        score=config["score"],
        predict=config["predict"],
        window=config["refine"]["window"],
        fit={k: v for k, v in LEARNED_TEMPLATES.items() if k not in ("enabled", "name", "combo", *LEARN_KEYS)},
    script:
        "../scripts/calibrate_refined.py"


rule predict_refined:
    input:
        prediction="results/predictions/{model}/{combo}/{testset}.fits",
        testset="results/testsets/{testset}.fits",
        templates="results/baseline/learned_templates/{combo}.npz",
        zerr="results/models/{model}/{combo}/refined_zerr.json",
    output:
        "results/predictions/{model}.refined/{combo}/{testset}.fits",
    log:
        "logs/predict/{model}.refined/{combo}/{testset}.log",
    benchmark:
        "logs/benchmarks/predict/{model}.refined/{combo}/{testset}.tsv"
    wildcard_constraints:
        model=refined_models(),
    conda:
        ENV_DATA
    threads: 2
    resources:
        runtime=30,
        mem_mb=3000,
    params:
        window=config["refine"]["window"],
        fit={k: v for k, v in LEARNED_TEMPLATES.items() if k not in ("enabled", "name", "combo", *LEARN_KEYS)},
        name=lambda w: f"{w.model}.refined/{w.combo}",
    script:
        "../scripts/predict_refined.py"
