"""Rule calibrate_refined: ZERR of a run's refined redshifts, fitted on its validation split
(lymannet.refine.calibrate_refined).

snakemake: input.model (calibrated model file), input.val (the combo's validation split),
input.templates (learned templates .npz); params.score, params.predict (config slices),
params.window (ln(1+z)), params.fit (template-fit options); output[0] (JSON record), log[0].
"""

from lymannet.refine import calibrate_refined
from lymannet.runtime import run

if "snakemake" in globals():
    run(
        calibrate_refined,
        snakemake.log[0],  # noqa: F821
        model=snakemake.input.model,  # noqa: F821
        val=snakemake.input.val,  # noqa: F821
        templates=snakemake.input.templates,  # noqa: F821
        out_json=snakemake.output[0],  # noqa: F821
        score=snakemake.params.score,  # noqa: F821
        predict=snakemake.params.predict,  # noqa: F821
        window=snakemake.params.window,  # noqa: F821
        fit_options=snakemake.params.fit,  # noqa: F821
    )
