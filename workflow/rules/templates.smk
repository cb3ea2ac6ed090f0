rule resample_templates:
    input:
        "results/pool/{dataset}.fits",
    output:
        spectra="results/resampled/{dataset}.fits",
        plot=report(
            "results/plots/resampled_z_{dataset}.png",
            caption="../report/resampled_z.rst",
            category="1. Data",
            subcategory="{dataset}",
        ),
    log:
        "logs/resample_templates/{dataset}.log",
    benchmark:
        "logs/benchmarks/resample_templates/{dataset}.tsv"
    conda:
        ENV_DATA
    resources:
        runtime=30,
        mem_mb=4000,
    params:
        spec=lambda w: config["resample_templates"][w.dataset],
        seed=config["seed"],
    script:
        "../scripts/resample_templates.py"
