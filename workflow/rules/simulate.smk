rule simulate:
    output:
        coadd="results/simulated/{dataset}/coadd.fits",
        truth="results/simulated/{dataset}/truth.fits",
    params:
        spec=lambda w: config["datasets"][w.dataset]["simulate"],
        seed=config["seed"],
    log:
        "logs/simulate/{dataset}.log",
    benchmark:
        "benchmarks/simulate/{dataset}.tsv"
    threads: 1
    resources:
        runtime=30,
        mem_mb=4000,
    conda:
        ENV
    script:
        "../scripts/simulate.py"


rule plot_simulated:
    input:
        coadd="results/simulated/{dataset}/coadd.fits",
        truth="results/simulated/{dataset}/truth.fits",
    output:
        report(
            "results/plots/simulated_examples_{dataset}.png",
            caption="../report/simulated_examples.rst",
            category="1. Data",
            subcategory="{dataset}",
        ),
    log:
        "logs/plot_simulated/{dataset}.log",
    conda:
        ENV
    script:
        "../scripts/plot_simulated.py"
