rule predict:
    input:
        model="results/models/{model}/{combo}/model.pt",
        testset="results/testsets/{testset}.fits",
    output:
        "results/predictions/{model}/{combo}/{testset}.fits",
    log:
        "logs/predict/{model}/{combo}/{testset}.log",
    benchmark:
        "logs/benchmarks/predict/{model}/{combo}/{testset}.tsv"
    conda:
        ENV_TRAIN
    threads: 2
    resources:
        runtime=30,
        mem_mb=8000,
    params:
        options=lambda w: {**config["predict"], **config["score"]},
    script:
        "../scripts/predict.py"
