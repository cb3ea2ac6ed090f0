"""Rule testset: a test set from held-out objects (network layer, TRUTH kept).

snakemake: input = one named input per dataset used (name = dataset, value = held-out file);
output[0] = test set file; params.members = config `testsets.<name>.members`
([{dataset, select}]); params.seed; params.prior = the earlier summary test sets' fractional
draws from the same data sets (lymannet.holdout.prior_draws: no object drawn twice);
wildcards.testset = the test set's name.
"""

from lymannet.holdout import build_testset
from lymannet.runtime import run


def main(
    members: list[dict],
    holdouts: dict[str, str],
    seed: int,
    name: str,
    output: str,
    prior: list[dict] | None = None,
) -> int:
    return build_testset(members, holdouts, seed, name, output, prior=prior)


if "snakemake" in globals():
    run(
        main,
        snakemake.log[0],
        members=snakemake.params.members,  # noqa: F821
        holdouts=dict(snakemake.input.items()),
        seed=snakemake.params.seed,  # noqa: F821
        name=snakemake.wildcards.testset,
        output=snakemake.output[0],  # noqa: F821
        prior=snakemake.params.prior,
    )  # noqa: F821
