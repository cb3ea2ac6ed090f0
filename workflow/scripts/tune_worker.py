"""Snakemake `tune_worker` rule: one worker of a hyper-parameter search (lymannet.tune.run_worker).

All workers of a search share its Optuna study; each runs trials until the study has n_trials
finished ones, then writes its marker file.
"""

from typing import Any

from lymannet.runtime import run
from lymannet.tune import worker_main


def main(
    search: str,
    search_config: dict[str, Any],
    base_spec: dict[str, Any],
    seed: int,
    score: dict[str, Any],
    train: str,
    val: str,
    folder: str,
    worker: int,
    marker: str,
    threads: int,
) -> None:
    worker_main(
        marker,
        search=search,
        search_config=search_config,
        base_spec=base_spec,
        train_path=train,
        val_path=val,
        folder=folder,
        seed=seed,
        worker=worker,
        score=score,
        device="auto",
        threads=threads,
    )


if "snakemake" in globals():
    run(
        main,
        snakemake.log[0],  # noqa: F821
        search=snakemake.wildcards.search,  # noqa: F821
        search_config=snakemake.params.search,  # noqa: F821
        base_spec=snakemake.params.base_spec,  # noqa: F821
        seed=snakemake.params.seed,  # noqa: F821
        score=snakemake.params.score,  # noqa: F821
        train=snakemake.input.train,  # noqa: F821
        val=snakemake.input.val,  # noqa: F821
        folder=snakemake.params.folder,  # noqa: F821
        worker=int(snakemake.wildcards.worker),  # noqa: F821
        marker=snakemake.output.marker,  # noqa: F821
        threads=snakemake.threads,  # noqa: F821
    )
