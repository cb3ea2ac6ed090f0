"""Snakemake `train` rule: train one model on one combo (lymannet.train.train_model).

A model defined as `{from_search: <search>}` trains from the search's best spec (an input of the
rule); other keys next to `from_search` override that spec.
"""


from typing import Any

import yaml

from lymannet.runtime import run
from lymannet.search import merge_spec
from lymannet.train import train_model


def resolve_spec(spec: dict[str, Any], best_spec: str | None) -> dict[str, Any]:
    if best_spec is None:
        return spec
    with open(best_spec) as handle:
        best = yaml.safe_load(handle)
    return merge_spec(best, {key: value for key, value in spec.items() if key != "from_search"})


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
        best_spec=snakemake.input.get("best_spec"),  # noqa: F821
    )  # noqa: F821
