# Bayesian hyper-parameter search (thesis section 4.4): config `tune.searches.<search>`.
# `workers` tune_worker jobs share one Optuna study (results/tune/<search>/journal.log, or an RDB
# URL in `storage`); tune_best turns the study into a model spec that `train` uses for models
# defined as {from_search: <search>}. A search whose base model is {from_search: <first>} starts
# from the first search's best spec (a chained search, thesis tables 4.1 then 4.2).


rule tune_worker:
    input:
        unpack(tune_combo),
        unpack(tune_base_best_spec),
    output:
        marker="results/tune/{search}/worker_{worker}.done",
    log:
        "logs/tune/{search}/worker_{worker}.log",
    benchmark:
        "logs/benchmarks/tune/{search}/worker_{worker}.tsv"
    conda:
        ENV_TRAIN
    # One core each: on a laptop the workers then run side by side; on Slurm the GPU does the
    # work and cpus_per_gpu (profile) sizes the job.
    threads: 1
    resources:
        gpu=1,
        runtime=240,
        mem_mb=16000,
    params:
        search=lambda w: SEARCHES[w.search],
        base_spec=lambda w: config["models"][SEARCHES[w.search]["model"]],
        seed=config["seed"],
        score=config["score"],
        # The study's storage: shared by all workers, so not an output of any one of them.
        folder="results/tune/{search}",
    script:
        "../scripts/tune_worker.py"


rule tune_best:
    input:
        unpack(tune_base_best_spec),
        markers=tune_worker_markers,
    output:
        best_model="results/tune/{search}/best_model.yaml",
        trials_csv="results/tune/{search}/trials.csv",
        table_csv=report(
            "results/tune/{search}/best_params.csv",
            caption="../report/tune_table.rst",
            category="3. Training",
            subcategory="search {search}",
        ),
        table_md=report(
            "results/tune/{search}/best_params.md",
            caption="../report/tune_table.rst",
            category="3. Training",
            subcategory="search {search}",
        ),
        history_png=report(
            "results/tune/{search}/history.png",
            caption="../report/tune_history.rst",
            category="3. Training",
            subcategory="search {search}",
        ),
        importance_png=report(
            "results/tune/{search}/importance.png",
            caption="../report/tune_importance.rst",
            category="3. Training",
            subcategory="search {search}",
        ),
    log:
        "logs/tune/{search}/best.log",
    conda:
        ENV_TRAIN
    params:
        search=lambda w: SEARCHES[w.search],
        base_spec=lambda w: config["models"][SEARCHES[w.search]["model"]],
        folder="results/tune/{search}",
    script:
        "../scripts/tune_best.py"
