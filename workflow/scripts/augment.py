"""Rule augment: one named variant (sub-dataset) from its recipe.

snakemake: input.source = training pool (`results/pool/<ds>.fits`) or resampled set
(`results/resampled/<ds>.fits` for source "resampled:<ds>"); output[0] =
`results/variants/<slugify(name)>.fits`; params.spec = config `variants.<name>` ({source, ops,
keep_native?}); params.seed; params.name = the variant's human name.
"""

from lymannet.augment import augment_variant
from lymannet.runtime import run


def main(source: str, spec: dict, seed: int, variant: str, output: str) -> int:
    return augment_variant(source, output, spec, seed, variant)


if "snakemake" in globals():
    run(
        main,
        snakemake.log[0],
        source=snakemake.input.source,
        spec=snakemake.params.spec,  # noqa: F821
        seed=snakemake.params.seed,
        variant=snakemake.params.name,
        output=snakemake.output[0],
    )  # noqa: F821
