"""The learned-template baseline over one test set: chi-square fit with templates learned from a
training split -> prediction catalogue (QN_RR), scored like any run.

snakemake: input.testset (spectra file), input.templates (learn_templates' .npz), output[0]
(catalogue .fits), params.fit (baseline.learned_templates' fit keys), params.options
({**predict, **score}), params.name (the summary's model name), log[0].
"""

from typing import Any

from lymannet.templatefit_learned import predict_testset_learned
from lymannet.runtime import run


def main(
    testset: str, templates: str, output: str, fit: dict[str, Any], options: dict[str, Any], name: str
) -> None:
    predict_testset_learned(testset, templates, output, fit, options, name)


if "snakemake" in globals():
    run(
        main,
        snakemake.log[0],
        testset=snakemake.input.testset,
        templates=snakemake.input.templates,
        output=snakemake.output[0],
        fit=snakemake.params.fit,
        options=snakemake.params.options,
        name=snakemake.params.name,
    )
