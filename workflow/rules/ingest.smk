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
