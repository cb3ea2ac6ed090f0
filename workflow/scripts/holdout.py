"""Rule holdout: split an ingested file into a training pool and held-out test objects.

snakemake: input[0] = ingested file; output.pool, output.holdout; params.spec = config
`holdout.<ds>` ({fraction}; None or absent -> fraction 0, an empty held-out file);
params.seed = config seed; wildcards.dataset.
"""

from lymannet.holdout import split_holdout
from lymannet.runtime import run


def main(
    ingested: str, spec: dict | None, seed: int, dataset: str, pool: str, holdout: str
) -> dict[str, int]:
    fraction = (spec or {}).get("fraction", 0.0)
    return split_holdout(
        ingested,
        pool,
        holdout,
        fraction,
        seed,
        dataset,
        config_slice={"holdout": spec, "seed": seed, "dataset": dataset},
    )


if "snakemake" in globals():
    run(
        main,
        snakemake.log[0],
        ingested=snakemake.input[0],
        spec=snakemake.params.spec,  # noqa: F821
        seed=snakemake.params.seed,
        dataset=snakemake.wildcards.dataset,  # noqa: F821
        pool=snakemake.output.pool,
        holdout=snakemake.output.holdout,
    )  # noqa: F821
