# 4MOST quasar pipelines (docs/fourmost.md): simulate -> ingest -> train -> score -> summary, under
# results/fourmost/<size>/. Config: the `fourmost:` section of config/config.yaml, validated (with
# defaults) against ../schemas/fourmost.schema.yaml in common.smk.
#
#   snakemake --cores 2 results/fourmost/demo/summary.md     # the CI demo (< 3 min on 2 cores)
#   snakemake --cores 2 results/fourmost/full/summary.md     # the 10,000-spectrum run


wildcard_constraints:
    fourmost_size=r"[A-Za-z0-9_\-]+",
    fourmost_zmodel=r"dense|gru|quasarnet|dense_slides",
    fourmost_model=r"dense|gru|quasarnet|dense_slides|presence|location|location_bal",
    fourmost_study=r"[A-Za-z0-9_\-]+",
    fourmost_variant=r"[A-Za-z0-9_\-]+",


rule fourmost_simulate:
    output:
        spectra=directory("results/fourmost/{fourmost_size}/spectra"),
        truth="results/fourmost/{fourmost_size}/list_templates.txt",
        dlas="results/fourmost/{fourmost_size}/dlas.fits",
        examples=report(
            "results/fourmost/{fourmost_size}/examples.png",
            caption="../report/fourmost_examples.rst",
            category="4MOST quasars",
            subcategory="{fourmost_size}: data",
        ),
    log:
        "logs/fourmost/{fourmost_size}/simulate.log",
    benchmark:
        "logs/benchmarks/fourmost/{fourmost_size}/simulate.tsv"
    conda:
        ENV_DATA
    params:
        spec=lambda w: {
            **FOURMOST["simulate"],
            "n_spectra": FOURMOST_PLAN.size_spec(w.fourmost_size)["n_spectra"],
            # the DLA incidence is set per split (absorbers.dla_boost): the ingestion's split
            "split": FOURMOST_PLAN.split(w.fourmost_size),
        },
        seed=FOURMOST["seed"],
    script:
        "../scripts/fourmost_simulate.py"


rule fourmost_ingest:
    input:
        spectra="results/fourmost/{fourmost_size}/spectra",
        truth="results/fourmost/{fourmost_size}/list_templates.txt",
        dlas="results/fourmost/{fourmost_size}/dlas.fits",
    output:
        ingested="results/fourmost/{fourmost_size}/ingested.fits",
    log:
        "logs/fourmost/{fourmost_size}/ingest.log",
    benchmark:
        "logs/benchmarks/fourmost/{fourmost_size}/ingest.tsv"
    conda:
        ENV_DATA
    params:
        options=lambda w: {**FOURMOST["ingest"], "split": FOURMOST_PLAN.split(w.fourmost_size)},
        seed=FOURMOST["seed"],
    script:
        "../scripts/fourmost_ingest.py"


rule fourmost_train:
    input:
        ingested="results/fourmost/{fourmost_size}/ingested.fits",
    output:
        model="results/fourmost/{fourmost_size}/models/{fourmost_model}.pt",
        history="results/fourmost/{fourmost_size}/models/{fourmost_model}_history.csv",
        curve=report(
            "results/fourmost/{fourmost_size}/models/{fourmost_model}_learning_curve.png",
            caption="../report/fourmost_learning_curve.rst",
            category="4MOST quasars",
            subcategory="{fourmost_size}: training",
        ),
    log:
        "logs/fourmost/{fourmost_size}/train_{fourmost_model}.log",
    benchmark:
        "logs/benchmarks/fourmost/{fourmost_size}/train_{fourmost_model}.tsv"
    conda:
        ENV_TRAIN
    threads: FOURMOST["threads"]
    # As rule `train`: one GPU on Slurm (profiles/slurm set-resources: cpus_per_gpu, --signal=USR1@120);
    # SIGTERM/SIGUSR1 -> checkpoint -> non-zero exit -> the retry resumes from params.checkpoint.
    resources:
        gpu=1,
        runtime=240,
        mem_mb=16000,
    params:
        spec=lambda w: FOURMOST_PLAN.model_config(w.fourmost_model).get("spec", {}),
        # Outside the declared outputs so that a failed or preempted job keeps it to resume from.
        checkpoint="results/fourmost/checkpoints/{fourmost_size}/{fourmost_model}.pt",
        settings=lambda w: FOURMOST_PLAN.train_settings(w.fourmost_size, w.fourmost_model),
        # only what training reads: a new working point or BAL handling does not retrain
        options=lambda w: FOURMOST_PLAN.train_options(w.fourmost_model),
        seed=FOURMOST["seed"],
    script:
        "../scripts/fourmost_train.py"


rule fourmost_score_redshift:
    input:
        ingested="results/fourmost/{fourmost_size}/ingested.fits",
        model="results/fourmost/{fourmost_size}/models/{fourmost_zmodel}.pt",
    output:
        predictions="results/fourmost/{fourmost_size}/redshift/{fourmost_zmodel}/predictions.csv",
        metrics="results/fourmost/{fourmost_size}/redshift/{fourmost_zmodel}/metrics.json",
        figure=report(
            "results/fourmost/{fourmost_size}/redshift/{fourmost_zmodel}/redshift.png",
            caption="../report/fourmost_redshift.rst",
            category="4MOST quasars",
            subcategory="{fourmost_size}: redshift",
        ),
    log:
        "logs/fourmost/{fourmost_size}/score_redshift_{fourmost_zmodel}.log",
    conda:
        ENV_SCORE
    params:
        catastrophic_dz=FOURMOST["redshift"]["catastrophic_dz"],
    script:
        "../scripts/fourmost_score_redshift.py"


rule fourmost_score_dla_presence:
    input:
        ingested="results/fourmost/{fourmost_size}/ingested.fits",
        model="results/fourmost/{fourmost_size}/models/presence.pt",
    output:
        segments="results/fourmost/{fourmost_size}/dla_presence/segments.csv",
        metrics="results/fourmost/{fourmost_size}/dla_presence/metrics.json",
        roc=report(
            "results/fourmost/{fourmost_size}/dla_presence/roc.png",
            caption="../report/fourmost_dla_presence.rst",
            category="4MOST quasars",
            subcategory="{fourmost_size}: DLA presence",
        ),
    log:
        "logs/fourmost/{fourmost_size}/score_dla_presence.log",
    conda:
        ENV_SCORE
    params:
        options=FOURMOST["dla"],
    script:
        "../scripts/fourmost_score_dla_presence.py"


# DLA probabilities for nature's incidence, the working point, BAL handling and NHI_ERR, fitted on
# the validation split reweighted to nature's DLA incidence (lymannet.fourmost.dla_calibration).
rule fourmost_calibrate_dla:
    input:
        unpack(lambda w: FOURMOST_PLAN.calibrate_dla_inputs(w.fourmost_size)),
    output:
        **(
            {"presence": "results/fourmost/{fourmost_size}/models/presence_calibrated.pt"}
            if FOURMOST["pipelines"]["dla_presence"]
            else {}
        ),
        location="results/fourmost/{fourmost_size}/models/location_calibrated.pt",
        # the presence CNN with its calibration, when that pipeline runs
        record="results/fourmost/{fourmost_size}/dla_calibration/validation.json",
        figure=report(
            "results/fourmost/{fourmost_size}/dla_calibration/reliability.png",
            caption="../report/fourmost_dla_calibration.rst",
            category="4MOST quasars",
            subcategory="{fourmost_size}: DLA catalogue",
        ),
    log:
        "logs/fourmost/{fourmost_size}/calibrate_dla.log",
    benchmark:
        "logs/benchmarks/fourmost/{fourmost_size}/calibrate_dla.tsv"
    conda:
        ENV_SCORE
    params:
        options=FOURMOST["dla"],
        simulate=lambda w: {
            **FOURMOST["simulate"],
            "n_spectra": FOURMOST_PLAN.size_spec(w.fourmost_size)["n_spectra"],
            "split": FOURMOST_PLAN.split(w.fourmost_size),
        },
    script:
        "../scripts/fourmost_calibrate_dla.py"


rule fourmost_score_dla_location:
    input:
        unpack(lambda w: FOURMOST_PLAN.score_dla_location_inputs(w.fourmost_size)),
    output:
        catalogue="results/fourmost/{fourmost_size}/dla_location/catalogue.csv",
        matched="results/fourmost/{fourmost_size}/dla_location/truth_matched.csv",
        metrics="results/fourmost/{fourmost_size}/dla_location/metrics.json",
        dla_catalogue="results/fourmost/{fourmost_size}/dla_location/dla_catalogue.fits",
        figure=report(
            "results/fourmost/{fourmost_size}/dla_location/residuals.png",
            caption="../report/fourmost_dla_location.rst",
            category="4MOST quasars",
            subcategory="{fourmost_size}: DLA localisation",
        ),
        reliability=report(
            "results/fourmost/{fourmost_size}/dla_location/reliability.png",
            caption="../report/fourmost_dla_reliability.rst",
            category="4MOST quasars",
            subcategory="{fourmost_size}: DLA catalogue",
        ),
    log:
        "logs/fourmost/{fourmost_size}/score_dla_location.log",
    benchmark:
        "logs/benchmarks/fourmost/{fourmost_size}/score_dla_location.tsv"
    conda:
        ENV_SCORE
    params:
        options=FOURMOST["dla"],
    script:
        "../scripts/fourmost_score_dla_location.py"


rule fourmost_summary:
    input:
        unpack(lambda w: FOURMOST_PLAN.summary_inputs(w.fourmost_size)),
    output:
        csv="results/fourmost/{fourmost_size}/summary.csv",
        md=report(
            "results/fourmost/{fourmost_size}/summary.md",
            caption="../report/fourmost_summary.rst",
            category="4MOST quasars",
            subcategory="{fourmost_size}: summary",
        ),
        comparison=report(
            "results/fourmost/{fourmost_size}/redshift/comparison.png",
            caption="../report/fourmost_redshift_comparison.rst",
            category="4MOST quasars",
            subcategory="{fourmost_size}: redshift",
        ),
    log:
        "logs/fourmost/{fourmost_size}/summary.log",
    conda:
        ENV_SCORE
    params:
        size=lambda w: w.fourmost_size,
    script:
        "../scripts/fourmost_summary.py"


# --- the slides' studies (batch size, sample size): overlays of a model's train settings -------------


rule fourmost_study_train:
    input:
        ingested="results/fourmost/{fourmost_size}/ingested.fits",
    output:
        model="results/fourmost/{fourmost_size}/studies/{fourmost_study}/{fourmost_variant}/models/{fourmost_model}.pt",
        history="results/fourmost/{fourmost_size}/studies/{fourmost_study}/{fourmost_variant}/models/{fourmost_model}_history.csv",
        curve="results/fourmost/{fourmost_size}/studies/{fourmost_study}/{fourmost_variant}/models/{fourmost_model}_learning_curve.png",
    log:
        "logs/fourmost/{fourmost_size}/studies/{fourmost_study}/{fourmost_variant}/train_{fourmost_model}.log",
    benchmark:
        "logs/benchmarks/fourmost/{fourmost_size}/studies/{fourmost_study}/{fourmost_variant}/train_{fourmost_model}.tsv"
    conda:
        ENV_TRAIN
    threads: FOURMOST["threads"]
    resources:
        gpu=1,
        runtime=240,
        mem_mb=16000,
    params:
        spec=lambda w: FOURMOST_PLAN.model_config(w.fourmost_model).get("spec", {}),
        settings=lambda w: FOURMOST_PLAN.variant_settings(
            w.fourmost_size, w.fourmost_model, w.fourmost_study, w.fourmost_variant
        ),
        options=lambda w: FOURMOST_PLAN.train_options(w.fourmost_model),
        seed=FOURMOST["seed"],
        checkpoint="results/fourmost/checkpoints/{fourmost_size}/studies/{fourmost_study}/{fourmost_variant}/{fourmost_model}.pt",
    script:
        "../scripts/fourmost_train.py"


use rule fourmost_score_redshift as fourmost_study_score with:
    input:
        ingested="results/fourmost/{fourmost_size}/ingested.fits",
        model="results/fourmost/{fourmost_size}/studies/{fourmost_study}/{fourmost_variant}/models/{fourmost_zmodel}.pt",
    output:
        predictions="results/fourmost/{fourmost_size}/studies/{fourmost_study}/{fourmost_variant}/redshift/{fourmost_zmodel}/predictions.csv",
        metrics="results/fourmost/{fourmost_size}/studies/{fourmost_study}/{fourmost_variant}/redshift/{fourmost_zmodel}/metrics.json",
        figure="results/fourmost/{fourmost_size}/studies/{fourmost_study}/{fourmost_variant}/redshift/{fourmost_zmodel}/redshift.png",
    log:
        "logs/fourmost/{fourmost_size}/studies/{fourmost_study}/{fourmost_variant}/score_redshift_{fourmost_zmodel}.log",


rule fourmost_study:
    input:
        unpack(lambda w: FOURMOST_PLAN.study_inputs(w.fourmost_size, w.fourmost_study)),
    output:
        csv="results/fourmost/{fourmost_size}/studies/{fourmost_study}.csv",
        figure=report(
            "results/fourmost/{fourmost_size}/studies/{fourmost_study}.png",
            caption="../report/fourmost_study.rst",
            category="4MOST quasars",
            subcategory="{fourmost_size}: studies",
        ),
    log:
        "logs/fourmost/{fourmost_size}/studies/{fourmost_study}.log",
    conda:
        ENV_SCORE
    params:
        study=lambda w: w.fourmost_study,
        labels=lambda w: [
            (m, v)
            for m in FOURMOST_PLAN.study(w.fourmost_study)["models"]
            for v in FOURMOST_PLAN.study(w.fourmost_study)["variants"]
        ],
    script:
        "../scripts/fourmost_study.py"
