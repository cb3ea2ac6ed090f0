"""Rule predict_refined: a run's catalogue of one test set with redshifts refined by the learned
templates of its combo (lymannet.refine).

snakemake: input.prediction (the network's catalogue), input.testset, input.templates (learned
templates .npz), input.zerr (calibrate_refined's record); params.window (ln(1+z)), params.fit (template-fit options), params.name;
output[0] (catalogue .fits), log[0].
"""

from lymannet.refine import refine_catalogue
from lymannet.runtime import run

if "snakemake" in globals():
    run(
        refine_catalogue,
        snakemake.log[0],  # noqa: F821
        prediction=snakemake.input.prediction,  # noqa: F821
        testset=snakemake.input.testset,  # noqa: F821
        templates=snakemake.input.templates,  # noqa: F821
        output=snakemake.output[0],  # noqa: F821
        window=snakemake.params.window,  # noqa: F821
        fit_options=snakemake.params.fit,  # noqa: F821
        name=snakemake.params.name,  # noqa: F821
        zerr_calibration=snakemake.input.zerr,  # noqa: F821
    )
