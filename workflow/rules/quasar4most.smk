# 4MOST quasar pipelines (docs/4most.md): simulate -> ingest -> train -> score -> summary, under
# results/4most/<size>/. Config: the `fourmost:` section of config/config.yaml, validated (with
# defaults) against ../schemas/fourmost.schema.yaml in common.smk.
#
#   snakemake --cores 2 results/4most/demo/summary.md     # the CI demo (< 3 min on 2 cores)
#   snakemake --cores 2 results/4most/full/summary.md     # the 10,000-spectrum run


wildcard_constraints:
    qso4m_size=r"[A-Za-z0-9_\-]+",
    qso4m_zmodel=r"dense|gru|quasarnet",
    qso4m_model=r"dense|gru|quasarnet|presence|location",


rule qso4m_simulate:
    output:
        spectra=directory("results/4most/{qso4m_size}/spectra"),
        truth="results/4most/{qso4m_size}/list_templates.txt",
        dlas="results/4most/{qso4m_size}/dlas.fits",
        examples=report(
            "results/4most/{qso4m_size}/examples.png",
            caption="../report/4most_examples.rst",
            category="4MOST quasars",
            subcategory="{qso4m_size}: data",
        ),
    log:
        "logs/4most/{qso4m_size}/simulate.log",
    benchmark:
        "benchmarks/4most/{qso4m_size}/simulate.tsv"
    conda:
        ENV_DATA
    params:
        spec=lambda w: {
            **QSO4M["simulate"],
            "n_spectra": qso4m_size_spec(w.qso4m_size)["n_spectra"],
        },
        seed=QSO4M["seed"],
    script:
        "../scripts/qso4m_simulate.py"


rule qso4m_ingest:
    input:
        spectra="results/4most/{qso4m_size}/spectra",
        truth="results/4most/{qso4m_size}/list_templates.txt",
        dlas="results/4most/{qso4m_size}/dlas.fits",
    output:
        ingested="results/4most/{qso4m_size}/ingested.fits",
    log:
        "logs/4most/{qso4m_size}/ingest.log",
    benchmark:
        "benchmarks/4most/{qso4m_size}/ingest.tsv"
    conda:
        ENV_DATA
    params:
        options=QSO4M["ingest"],
        seed=QSO4M["seed"],
    script:
        "../scripts/qso4m_ingest.py"


rule qso4m_train:
    input:
        ingested="results/4most/{qso4m_size}/ingested.fits",
    output:
        model="results/4most/{qso4m_size}/models/{qso4m_model}.pt",
        history="results/4most/{qso4m_size}/models/{qso4m_model}_history.csv",
    log:
        "logs/4most/{qso4m_size}/train_{qso4m_model}.log",
    benchmark:
        "benchmarks/4most/{qso4m_size}/train_{qso4m_model}.tsv"
    conda:
        ENV_TRAIN
    threads: QSO4M["threads"]
    resources:
        runtime=30,
        mem_mb=16000,
    params:
        spec=lambda w: qso4m_model_config(w.qso4m_model).get("spec", {}),
        settings=qso4m_train_settings,
        options=lambda w: {
            **QSO4M["dla"],
            **QSO4M["redshift"],
            "z": QSO4M["simulate"]["z"],
            "z_grid": QSO4M["ingest"]["z_grid"],
        },
        seed=QSO4M["seed"],
    script:
        "../scripts/qso4m_train.py"


rule qso4m_score_redshift:
    input:
        ingested="results/4most/{qso4m_size}/ingested.fits",
        model="results/4most/{qso4m_size}/models/{qso4m_zmodel}.pt",
    output:
        predictions="results/4most/{qso4m_size}/redshift/{qso4m_zmodel}/predictions.csv",
        metrics="results/4most/{qso4m_size}/redshift/{qso4m_zmodel}/metrics.json",
        figure=report(
            "results/4most/{qso4m_size}/redshift/{qso4m_zmodel}/redshift.png",
            caption="../report/4most_redshift.rst",
            category="4MOST quasars",
            subcategory="{qso4m_size}: redshift",
        ),
    log:
        "logs/4most/{qso4m_size}/score_redshift_{qso4m_zmodel}.log",
    conda:
        ENV_SCORE
    params:
        catastrophic_dz=QSO4M["redshift"]["catastrophic_dz"],
    script:
        "../scripts/qso4m_score_redshift.py"


rule qso4m_score_dla_presence:
    input:
        ingested="results/4most/{qso4m_size}/ingested.fits",
        model="results/4most/{qso4m_size}/models/presence.pt",
    output:
        segments="results/4most/{qso4m_size}/dla_presence/segments.csv",
        metrics="results/4most/{qso4m_size}/dla_presence/metrics.json",
        roc=report(
            "results/4most/{qso4m_size}/dla_presence/roc.png",
            caption="../report/4most_dla_presence.rst",
            category="4MOST quasars",
            subcategory="{qso4m_size}: DLA presence",
        ),
    log:
        "logs/4most/{qso4m_size}/score_dla_presence.log",
    conda:
        ENV_SCORE
    params:
        options=QSO4M["dla"],
    script:
        "../scripts/qso4m_score_presence.py"


rule qso4m_score_dla_location:
    input:
        ingested="results/4most/{qso4m_size}/ingested.fits",
        model="results/4most/{qso4m_size}/models/location.pt",
    output:
        catalogue="results/4most/{qso4m_size}/dla_location/catalogue.csv",
        matched="results/4most/{qso4m_size}/dla_location/truth_matched.csv",
        metrics="results/4most/{qso4m_size}/dla_location/metrics.json",
        figure=report(
            "results/4most/{qso4m_size}/dla_location/residuals.png",
            caption="../report/4most_dla_location.rst",
            category="4MOST quasars",
            subcategory="{qso4m_size}: DLA localisation",
        ),
    log:
        "logs/4most/{qso4m_size}/score_dla_location.log",
    benchmark:
        "benchmarks/4most/{qso4m_size}/score_dla_location.tsv"
    conda:
        ENV_SCORE
    params:
        options=QSO4M["dla"],
    script:
        "../scripts/qso4m_score_location.py"


rule qso4m_summary:
    input:
        unpack(qso4m_summary_inputs),
    output:
        csv="results/4most/{qso4m_size}/summary.csv",
        md=report(
            "results/4most/{qso4m_size}/summary.md",
            caption="../report/4most_summary.rst",
            category="4MOST quasars",
            subcategory="{qso4m_size}: summary",
        ),
        comparison=report(
            "results/4most/{qso4m_size}/redshift/comparison.png",
            caption="../report/4most_redshift_comparison.rst",
            category="4MOST quasars",
            subcategory="{qso4m_size}: redshift",
        ),
    log:
        "logs/4most/{qso4m_size}/summary.log",
    conda:
        ENV_SCORE
    params:
        size=lambda w: w.qso4m_size,
    script:
        "../scripts/qso4m_summary.py"
