"""The classical baseline over one test set: chi-square template fit -> prediction catalogue (QN_RR).

snakemake: input.testset (spectra file), output[0] (catalogue .fits), params.fit
(baseline.template_fit), params.options ({**predict, **score}), params.name (the summary's model
name), log[0].
"""

from typing import Any

from lymannet.runtime import run
from lymannet.chi2fit import predict_testset_templatefit


def main(testset: str, output: str, fit: dict[str, Any], options: dict[str, Any], name: str) -> None:
    predict_testset_templatefit(testset, output, fit, options, name)


if "snakemake" in globals():
    run(
        main,
        snakemake.log[0],
        testset=snakemake.input.testset,
        output=snakemake.output[0],
        fit=snakemake.params.fit,
        options=snakemake.params.options,
        name=snakemake.params.name,
    )
