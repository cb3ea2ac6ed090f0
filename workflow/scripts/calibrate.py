"""Calibrate one trained model on its combo's validation split (lymannet.calibrate.calibrate_model).

snakemake: input.model (model.pt), input.val (validation spectra); output.model (calibrated.pt),
output.record (JSON), output.figure (reliability diagram); params.score, params.predict (config
slices), params.working_point ({purity: P} or {efficiency: E}); log[0].
"""

from lymannet.calibrate import calibrate_model
from lymannet.runtime import run

if "snakemake" in globals():
    run(
        calibrate_model,
        snakemake.log[0],
        model=snakemake.input.model,
        val=snakemake.input.val,
        out_model=snakemake.output.model,
        out_json=snakemake.output.record,
        out_figure=snakemake.output.figure,
        score=snakemake.params.score,
        predict=snakemake.params.predict,
        working_point=snakemake.params.working_point,
    )
