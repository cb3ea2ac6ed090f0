rule ingest:
    input:
        unpack(ingest_inputs),
    output:
        "results/ingested/{dataset}.fits",
    log:
        "logs/ingest/{dataset}.log",
    benchmark:
        "logs/benchmarks/ingest/{dataset}.tsv"
    conda:
        ENV_DATA
    threads: 1
    resources:
        runtime=30,
        mem_mb=4000,
    params:
        grid=config["grid"],
        options=config["ingest"],
    script:
        "../scripts/ingest.py"


rule holdout:
    input:
        "results/ingested/{dataset}.fits",
    output:
        pool="results/pool/{dataset}.fits",
        holdout="results/holdout/{dataset}.fits",
    log:
        "logs/holdout/{dataset}.log",
    conda:
        ENV_DATA
    params:
        spec=lambda w: config["holdout"].get(w.dataset, {"fraction": 0.0}),
        seed=config["seed"],
    script:
        "../scripts/holdout.py"


rule testset:
    input:
        unpack(testset_holdouts),
    output:
        "results/testsets/{testset}.fits",
    log:
        "logs/testset/{testset}.log",
    conda:
        ENV_DATA
    params:
        members=lambda w: config["testsets"][w.testset]["members"],
        seed=config["seed"],
    script:
        "../scripts/testset.py"
