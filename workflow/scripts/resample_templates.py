"""Rule resample_templates: the discrete-z synthetic set made continuous (thesis 3.5.2).

snakemake: input[0] = training pool of the synthetic data set; output.spectra, output.plot (PNG);
params.spec = config `resample_templates.<ds>` ({offset_width}, default 0.1); params.seed;
wildcards.dataset.
"""

from lymannet.templates import resample_templates
from lymannet.runtime import run


def main(pool: str, spec: dict | None, seed: int, dataset: str, output: str, plot: str) -> int:
    offset_width = (spec or {}).get("offset_width", 0.1)
    truth = resample_templates(
        pool,
        output,
        plot,
        offset_width,
        seed,
        dataset,
        config_slice={"resample_templates": spec, "seed": seed, "dataset": dataset},
    )
    return len(truth)


if "snakemake" in globals():
    run(
        main,
        snakemake.log[0],
        pool=snakemake.input[0],
        spec=snakemake.params.spec,  # noqa: F821
        seed=snakemake.params.seed,
        dataset=snakemake.wildcards.dataset,  # noqa: F821
        output=snakemake.output.spectra,
        plot=snakemake.output.plot,
    )  # noqa: F821
