"""Draw a survey catalogue's visual-inspection sample: coadd-vi.fits (the drawn spectra, a DESI
coadd) and vi_sample.csv (each object's stratum, inclusion probability and weight).

snakemake: input.catalogue (catalogue.fits), output.coadd (its folder receives vi_sample.csv, which
is output.table), params.coadd_root (the folder the catalogue's COADD paths are below),
params.options ({n, seed, working_point} of classify.<name>.vi_sample), log[0].
"""

from pathlib import Path
from typing import Any

from lymannet.runtime import run
from lymannet.visample import draw_vi_sample


def main(catalogue: str, folder: str, coadd_root: str, options: dict[str, Any]) -> None:
    draw_vi_sample(catalogue, folder, coadd_root=coadd_root, **options)


if "snakemake" in globals():
    run(
        main,
        snakemake.log[0],
        catalogue=snakemake.input.catalogue,
        folder=str(Path(snakemake.output.coadd).parent),
        coadd_root=snakemake.params.coadd_root,
        options=dict(snakemake.params.options),
    )
