"""Run one trained model over one test set and write its prediction catalogue (FITS, QN_RR).

snakemake: input.model (model.pt), input.testset (spectra file), output[0] (catalogue .fits),
params.options ({c_th, min_lines, batch_size, bf16}), log[0].
"""

from typing import Any

from lymannet.predict import predict_file
from lymannet.runtime import run


def main(model: str, testset: str, output: str, options: dict[str, Any]) -> None:
    predict_file(model, testset, output, options)


if "snakemake" in globals():
    run(
        main,
        snakemake.log[0],
        model=snakemake.input.model,
        testset=snakemake.input.testset,
        output=snakemake.output[0],
        options=snakemake.params.options,
    )
