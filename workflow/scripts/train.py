"""Snakemake `train` rule: train one model on one combo (lymannet.train.train_model)."""


from typing import Any

from lymannet.runtime import run
from lymannet.train import train_model


def main(
    model_name: str,
    spec: dict[str, Any],
    seed: int,
    train: str,
    val: str,
    model: str,
    history: str,
    curve: str,
    checkpoint: str,
    threads: int,
) -> None:
    train_model(
        model_name,
        spec,
        train_path=train,
        val_path=val,
        out_model=model,
        out_history=history,
        out_curve=curve,
        checkpoint_path=checkpoint,
        seed=seed,
        device="auto",
        threads=threads,
    )


if "snakemake" in globals():
    run(
        main,
        snakemake.log[0],
        model_name=snakemake.wildcards.model,
        spec=snakemake.params.spec,  # noqa: F821
        seed=snakemake.params.seed,
        train=snakemake.input.train,
        val=snakemake.input.val,  # noqa: F821
        model=snakemake.output.model,
        history=snakemake.output.history,
        curve=snakemake.output.curve,  # noqa: F821
        checkpoint=snakemake.params.checkpoint,
        threads=snakemake.threads,
    )  # noqa: F821
