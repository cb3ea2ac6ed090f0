# Named experiments (config `experiments:`, overlays config/experiments/<name>.yaml; README
# "Experiments"): figures and tables under results/experiments/<name>/, built from the runs,
# variants and searches the other rules make. An experiment's runs are trained by `train`,
# predicted by `predict` like any run; they are listed under the experiment, not in `runs:`.
#
#   snakemake --configfile config/config.yaml config/experiments/<name>.yaml experiments
#
# builds the experiments only; without the `experiments` target the demo is built too. Input
# functions: workflow/rules/common.smk.


rule experiments:
    input:
        experiment_outputs(config)
        + [
            f"results/experiments/{name}/leakage.json"
            for name, spec in EXPERIMENTS.items()
            if spec["kind"] in ("runs", "seeds")
        ],


rule experiment_runs:
    input:
        unpack(lambda w: experiment_run_inputs(EXPERIMENTS[w.experiment])),
        leakage="results/experiments/{experiment}/leakage.json",
    output:
        figure=report(
            "results/experiments/{experiment}/figure.png",
            caption="../report/experiment_runs.rst",
            category="6. Experiments",
            subcategory="{experiment}",
        ),
        table_md=report(
            "results/experiments/{experiment}/summary.md",
            caption="../report/experiment_table.rst",
            category="6. Experiments",
            subcategory="{experiment}",
        ),
        table_csv="results/experiments/{experiment}/summary.csv",
    log:
        "logs/experiments/{experiment}.log",
    wildcard_constraints:
        experiment="|".join(experiments_of_kind(config, "runs")),
    conda:
        ENV_SCORE
    params:
        spec=lambda w: EXPERIMENTS[w.experiment],
        score=config["score"],
    script:
        "../scripts/experiment.py"


# kind seeds: the seed-to-seed spread of each run's scores on several test sets, and its ensembles.
rule experiment_seeds:
    input:
        unpack(lambda w: experiment_seeds_inputs(config, EXPERIMENTS[w.experiment])),
        leakage="results/experiments/{experiment}/leakage.json",
    output:
        figure=report(
            "results/experiments/{experiment}/figure.png",
            caption="../report/experiment_seeds.rst",
            category="6. Experiments",
            subcategory="{experiment}",
        ),
        table_md=report(
            "results/experiments/{experiment}/summary.md",
            caption="../report/experiment_table.rst",
            category="6. Experiments",
            subcategory="{experiment}",
        ),
        table_csv="results/experiments/{experiment}/summary.csv",
    log:
        "logs/experiments/{experiment}.log",
    wildcard_constraints:
        experiment="|".join(experiments_of_kind(config, "seeds")),
    conda:
        ENV_SCORE
    params:
        spec=lambda w: EXPERIMENTS[w.experiment],
        score=config["score"],
        testsets=lambda w: experiment_testsets(config, EXPERIMENTS[w.experiment]),
    script:
        "../scripts/experiment.py"


rule experiment_leakage:
    input:
        unpack(lambda w: experiment_leakage_inputs(config, EXPERIMENTS[w.experiment])),
    output:
        "results/experiments/{experiment}/leakage.json",
    log:
        "logs/experiments/{experiment}_leakage.log",
    conda:
        ENV_DATA
    script:
        "../scripts/check_leakage.py"


rule experiment_search_chain:
    input:
        unpack(lambda w: experiment_search_inputs(EXPERIMENTS[w.experiment])),
    output:
        figure=report(
            "results/experiments/{experiment}/figure.png",
            caption="../report/experiment_search_chain.rst",
            category="6. Experiments",
            subcategory="{experiment}",
        ),
        table_md=report(
            "results/experiments/{experiment}/summary.md",
            caption="../report/experiment_table.rst",
            category="6. Experiments",
            subcategory="{experiment}",
        ),
        table_csv="results/experiments/{experiment}/summary.csv",
    log:
        "logs/experiments/{experiment}.log",
    wildcard_constraints:
        experiment="|".join(experiments_of_kind(config, "search_chain")),
    conda:
        ENV_SCORE
    params:
        spec=lambda w: EXPERIMENTS[w.experiment],
    script:
        "../scripts/experiment.py"


rule experiment_gallery:
    input:
        unpack(lambda w: gallery_inputs(config, EXPERIMENTS[w.experiment], w.panel)),
    output:
        figure=report(
            "results/experiments/{experiment}/{panel}.png",
            caption="../report/experiment_gallery.rst",
            category="6. Experiments",
            subcategory="{experiment}",
        ),
    log:
        "logs/experiments/{experiment}/{panel}.log",
    wildcard_constraints:
        experiment="|".join(experiments_of_kind(config, "gallery")),
        panel=NAME,
    conda:
        ENV_SCORE
    params:
        spec=lambda w: EXPERIMENTS[w.experiment],
    script:
        "../scripts/experiment.py"
