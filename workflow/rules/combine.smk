rule combine:
    input:
        unpack(combo_members),
    output:
        train="results/combos/{combo}/train.fits",
        val="results/combos/{combo}/val.fits",
        summary_csv=report(
            "results/combos/{combo}/summary.csv",
            caption="../report/combo_summary.rst",
            category="2. Training sets",
            subcategory="{combo}",
        ),
        summary_png=report(
            "results/combos/{combo}/summary.png",
            caption="../report/combo_summary.rst",
            category="2. Training sets",
            subcategory="{combo}",
        ),
    log:
        "logs/combine/{combo}.log",
    benchmark:
        "logs/benchmarks/combine/{combo}.tsv"
    conda:
        ENV_DATA
    resources:
        runtime=30,
        mem_mb=8000,
    params:
        spec=lambda w: config["combos"][w.combo],
        names=lambda w: {slugify(n): n for n in config["combos"][w.combo]["members"]},
        seed=config["seed"],
    script:
        "../scripts/combine.py"
