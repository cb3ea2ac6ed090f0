"""Snakemake `tune_best` rule: the best model spec, the table and the plots of a search
(lymannet.tune.write_results)."""

from typing import Any

from lymannet.runtime import run
from lymannet.search import resolve_spec
from lymannet.tune import write_results


def main(
    search: str,
    search_config: dict[str, Any],
    base_spec: dict[str, Any],
    folder: str,
    outputs: dict[str, str],
    base_best_spec: str | None = None,
) -> None:
    # a chained search starts from the previous search's best spec (lymannet.search)
    write_results(search, search_config, resolve_spec(base_spec, base_best_spec), folder, **outputs)


if "snakemake" in globals():
    out = snakemake.output  # noqa: F821
    run(
        main,
        snakemake.log[0],  # noqa: F821
        search=snakemake.wildcards.search,  # noqa: F821
        search_config=snakemake.params.search,  # noqa: F821
        base_spec=snakemake.params.base_spec,  # noqa: F821
        folder=snakemake.params.folder,  # noqa: F821
        outputs={
            "best_model": out.best_model,
            "trials_csv": out.trials_csv,
            "table_csv": out.table_csv,
            "table_md": out.table_md,
            "history_png": out.history_png,
            "importance_png": out.importance_png,
        },
        base_best_spec=snakemake.input.get("base_best_spec"),  # noqa: F821
    )
