rule predict:
    input:
        model="results/models/{model}/{combo}/model.pt",
        testset="results/testsets/{testset}.fits",
    output:
        "results/predictions/{model}/{combo}/{testset}.fits",
    params:
        options=lambda w: {**config["predict"], **config["score"]},
    log:
        "logs/predict/{model}/{combo}/{testset}.log",
    benchmark:
        "benchmarks/predict/{model}/{combo}/{testset}.tsv"
    threads: 2
    resources:
        runtime=30,
        mem_mb=8000,
    conda:
        ENV
    script:
        "../scripts/predict.py"
