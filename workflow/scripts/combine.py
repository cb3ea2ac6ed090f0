"""Rule combine: variants -> balanced, shuffled train/val files plus a summary (CSV + PNG).

snakemake: input = one named input per member (name = slugify(variant name), value = variant
file), params.names = {slug: variant name}; output.train, output.val, output.summary_csv,
output.summary_png; params.spec = config `combos.<combo>` ({members, contaminant_fraction,
validation_fraction}); params.seed; wildcards.combo.
"""

from lymannet.combine import combine
from lymannet.runtime import run


def main(
    members: dict[str, str],
    spec: dict,
    seed: int,
    combo: str,
    train: str,
    val: str,
    summary_csv: str,
    summary_png: str,
) -> int:
    summary = combine(members, spec, seed, combo, train, val, summary_csv, summary_png)
    return int(summary.loc[summary["member"] == "ALL", "n_total"].sum())


if "snakemake" in globals():
    run(
        main,
        snakemake.log[0],
        members={snakemake.params.names[slug]: path for slug, path in snakemake.input.items()},  # noqa: F821
        spec=snakemake.params.spec,
        seed=snakemake.params.seed,
        combo=snakemake.wildcards.combo,  # noqa: F821
        train=snakemake.output.train,
        val=snakemake.output.val,  # noqa: F821
        summary_csv=snakemake.output.summary_csv,
        summary_png=snakemake.output.summary_png,
    )  # noqa: F821
