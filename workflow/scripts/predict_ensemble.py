"""Rule predict_ensemble: the ensemble of a run's seeds on one test set (lymannet.ensemble).

snakemake: input.members (the members' prediction catalogues, in seed order), params.seeds (their
seed indices), params.name (the ensemble's model name), output[0] (catalogue .fits), log[0].
"""

from lymannet.ensemble import ensemble_file
from lymannet.runtime import run

if "snakemake" in globals():
    run(
        ensemble_file,
        snakemake.log[0],
        members=list(snakemake.input.members),  # noqa: F821
        seeds=list(snakemake.params.seeds),
        output=snakemake.output[0],  # noqa: F821
        name=snakemake.params.name,
    )  # noqa: F821
