"""Snakemake `experiment_*` rules: an experiment's figure and table (lymannet.experiments)."""

from typing import Any

from lymannet.experiment_gallery import gallery_figure
from lymannet.experiment_seeds import compare_seeds
from lymannet.experiments import compare_runs, compare_searches
from lymannet.runtime import run


def main(
    name: str,
    spec: dict[str, Any],
    inputs: dict[str, Any],
    outputs: dict[str, str],
    score: dict[str, Any] | None = None,
    panel: str | None = None,
    testsets: list[str] | None = None,
) -> None:
    if spec["kind"] == "seeds":
        compare_seeds(
            spec,
            inputs["scores"],
            inputs["predictions"],
            inputs["models"],
            list(testsets or []),
            score or {},
            outputs["figure"],
            outputs["table_md"],
            outputs["table_csv"],
            name=name,
        )
    elif spec["kind"] == "runs":
        compare_runs(
            spec,
            inputs["predictions"],
            inputs["histories"],
            score or {},
            outputs["figure"],
            outputs["table_md"],
            outputs["table_csv"],
            name=name,
        )
    elif spec["kind"] == "search_chain":
        compare_searches(
            spec,
            inputs["tables"],
            inputs["trials"],
            outputs["figure"],
            outputs["table_md"],
            outputs["table_csv"],
            name=name,
        )
    else:
        chosen = next(p for p in spec["panels"] if p["name"] == panel)
        gallery_figure(chosen, inputs["original"], inputs["variants"], outputs["figure"])


if "snakemake" in globals():
    sm = snakemake  # noqa: F821
    run(
        main,
        sm.log[0],
        name=sm.wildcards.experiment,
        spec=sm.params.spec,
        inputs={
            key: (
                list(value)
                if key in ("predictions", "histories", "tables", "trials", "variants", "scores", "models")
                else value
            )
            for key, value in sm.input.items()
        },
        outputs=dict(sm.output.items()),
        score=getattr(sm.params, "score", None),
        panel=sm.wildcards.get("panel"),
        testsets=getattr(sm.params, "testsets", None),
    )
