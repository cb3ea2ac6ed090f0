rule train:
    input:
        unpack(searched_model_spec),
        unpack(transfer_source),
        train="results/combos/{combo}/train.fits",
        val="results/combos/{combo}/val.fits",
    output:
        model="results/models/{model}/{combo}/model.pt",
        history="results/models/{model}/{combo}/history.csv",
        curve=report(
            "results/models/{model}/{combo}/learning_curve.png",
            caption="../report/learning_curve.rst",
            category="3. Training",
            subcategory="{model} on {combo}",
        ),
    log:
        "logs/train/{model}/{combo}.log",
    benchmark:
        "logs/benchmarks/train/{model}/{combo}.tsv"
    conda:
        ENV_TRAIN
    threads: 2
    resources:
        gpu=1,
        runtime=240,
        mem_mb=16000,
    params:
        spec=lambda w: config["models"][w.model],
        seed=config["seed"],
        # Outside the declared outputs so that a failed or preempted job keeps it to resume from.
        checkpoint="results/checkpoints/{model}/{combo}/checkpoint.pt",
    script:
        "../scripts/train.py"
