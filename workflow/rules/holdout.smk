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
        # earlier summary test sets' fractional draws from the same pools: not drawn again
        prior=lambda w: prior_draws(config["testsets"], w.testset),
    script:
        "../scripts/testset.py"


rule check_leakage:
    input:
        train=expand("results/combos/{combo}/train.fits", combo=used_combos(config)),
        val=expand("results/combos/{combo}/val.fits", combo=used_combos(config)),
        testsets=expand("results/testsets/{testset}.fits", testset=TESTSETS),
    output:
        "results/checks/leakage.json",
    log:
        "logs/check_leakage.log",
    conda:
        ENV_DATA
    script:
        "../scripts/check_leakage.py"
