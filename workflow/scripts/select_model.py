"""Copy the run with the lowest best validation loss (lymannet.calibrate.select_model).

snakemake: input.models (calibrated.pt of every run), output.model, output.record (JSON), log[0].
"""

from lymannet.calibrate import select_model
from lymannet.runtime import run

if "snakemake" in globals():
    run(
        select_model,
        snakemake.log[0],
        models=list(snakemake.input.models),
        out_model=snakemake.output.model,
        out_json=snakemake.output.record,
    )
