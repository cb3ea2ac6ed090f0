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
        spec=lambda w: training_spec(w.model),
        seed=config["seed"],
        # Outside the declared outputs so that a failed or preempted job keeps it to resume from.
        checkpoint="results/checkpoints/{model}/{combo}/checkpoint.pt",
    script:
        "../scripts/train.py"


# Calibration on the combo's own validation split (never a test set): PROB, the working point and
# ZERR go into calibrated.pt, the model file every catalogue is made with (lymannet.calibrate).
# Apart from train, so that changing a working point does not retrain.
rule calibrate:
    input:
        model="results/models/{model}/{combo}/model.pt",
        val="results/combos/{combo}/val.fits",
    output:
        model="results/models/{model}/{combo}/calibrated.pt",
        record="results/models/{model}/{combo}/calibration.json",
        figure=report(
            "results/models/{model}/{combo}/calibration.png",
            caption="../report/calibration.rst",
            category="3. Training",
            subcategory="{model} on {combo}",
        ),
    log:
        "logs/calibrate/{model}/{combo}.log",
    benchmark:
        "logs/benchmarks/calibrate/{model}/{combo}.tsv"
    conda:
        ENV_TRAIN
    threads: 2
    resources:
        runtime=30,
        mem_mb=8000,
    params:
        score=config["score"],
        predict=config["predict"],
        working_point=lambda w: working_point(w.model),
    script:
        "../scripts/calibrate.py"


# The run with the lowest best validation loss, for classify entries with model {best_by: val_loss}.
rule select_model:
    input:
        models=[f"results/models/{m}/{c}/calibrated.pt" for m, c in RUNS],
    output:
        model=SELECTED_MODEL,
        record="results/models/selected_by_val_loss.json",
    log:
        "logs/select_model.log",
    conda:
        ENV_TRAIN
    script:
        "../scripts/select_model.py"
