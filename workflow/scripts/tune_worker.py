"""Snakemake `tune_worker` rule: one worker of a hyper-parameter search (lymannet.tune.worker_main).

All workers of a search share its Optuna study; each runs trials until the study has n_trials
finished ones, then writes its marker file.
"""

from typing import Any

from lymannet.runtime import run
from lymannet.search import resolve_spec
from lymannet.tune import worker_main


def main(
    marker: str,
    train: str,
    val: str,
    search: str,
    search_config: dict[str, Any],
    base_spec: dict[str, Any],
    folder: str,
    seed: int,
    worker: int,
    score: dict[str, Any],
    threads: int,
    base_best_spec: str | None = None,
) -> None:
    # a chained search starts from the previous search's best spec (lymannet.search)
    base_spec = resolve_spec(base_spec, base_best_spec)
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
    sm = snakemake  # noqa: F821
    run(
        main,
        sm.log[0],
        marker=sm.output.marker,
        train=sm.input.train,
        val=sm.input.val,
        search=sm.wildcards.search,
        search_config=sm.params.search,
        base_spec=sm.params.base_spec,
        folder=sm.params.folder,
        seed=sm.params.seed,
        worker=int(sm.wildcards.worker),
        score=sm.params.score,
        threads=sm.threads,
        base_best_spec=sm.input.get("base_best_spec"),
    )
