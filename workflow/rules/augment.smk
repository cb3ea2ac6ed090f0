rule augment:
    input:
        source=variant_source,
    output:
        "results/variants/{variant}.fits",
    log:
        "logs/augment/{variant}.log",
    benchmark:
        "logs/benchmarks/augment/{variant}.tsv"
    conda:
        ENV_DATA
    resources:
        runtime=30,
        mem_mb=4000,
    params:
        spec=lambda w: config["variants"][VARIANT_NAMES[w.variant]],
        name=lambda w: VARIANT_NAMES[w.variant],
        seed=config["seed"],
    script:
        "../scripts/augment.py"
