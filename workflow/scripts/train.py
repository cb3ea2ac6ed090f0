"""Snakemake `train` rule: train one model on one combo (lymannet.train.train_model).

A model defined as `{from_search: <search>}` trains from the search's best spec (input.best_spec).
"""

from typing import Any

from lymannet.runtime import run
from lymannet.search import resolve_spec
from lymannet.train import train_model


def main(
    model_name: str,
    combo: str,
    spec: dict[str, Any],
    seed: int,
    train: str,
    val: str,
    model: str,
    history: str,
    curve: str,
    checkpoint: str,
    threads: int,
    best_spec: str | None = None,
) -> None:
    train_model(
        model_name,
        resolve_spec(spec, best_spec),
        train_path=train,
        val_path=val,
        out_model=model,
        out_history=history,
        out_curve=curve,
        checkpoint_path=checkpoint,
        seed=seed,
        device="auto",
        threads=threads,
        combo=combo,
    )


if "snakemake" in globals():
    run(
        main,
        snakemake.log[0],
        model_name=snakemake.wildcards.model,
        combo=snakemake.wildcards.combo,
        spec=snakemake.params.spec,
        seed=snakemake.params.seed,
        train=snakemake.input.train,
        val=snakemake.input.val,
        model=snakemake.output.model,
        history=snakemake.output.history,
        curve=snakemake.output.curve,
        checkpoint=snakemake.params.checkpoint,
        threads=snakemake.threads,
        best_spec=snakemake.input.get("best_spec"),
    )
