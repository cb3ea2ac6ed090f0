rule simulate:
    output:
        coadd="results/simulated/{dataset}/coadd.fits",
        truth="results/simulated/{dataset}/truth.fits",
    log:
        "logs/simulate/{dataset}.log",
    benchmark:
        "logs/benchmarks/simulate/{dataset}.tsv"
    conda:
        ENV_DATA
    threads: 1
    resources:
        runtime=30,
        mem_mb=4000,
    params:
        spec=lambda w: config["datasets"][w.dataset]["simulate"],
        seed=config["seed"],
    script:
        "../scripts/simulate.py"


rule plot_simulated:
    input:
        coadd="results/simulated/{dataset}/coadd.fits",
        truth="results/simulated/{dataset}/truth.fits",
    output:
        png=report(
            "results/plots/simulated_examples_{dataset}.png",
            caption="../report/simulated_examples.rst",
            category="1. Data",
            subcategory="{dataset}",
        ),
    log:
        "logs/plot_simulated/{dataset}.log",
    conda:
        ENV_DATA
    script:
        "../scripts/plot_simulated.py"
