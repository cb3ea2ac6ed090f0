"""Merge a survey catalogue's batches: catalogue.fits, failures.tsv, summary.csv/.md/.png.

snakemake: input.manifests (one TSV per classify job), optional input.truth (purity and efficiency
against it), output.catalogue (its folder receives the other outputs), params.root (the coadds'
mirror root, header SRCROOT), params.score (config slice), wildcards.catalogue (the entry's name), log[0].
"""

from pathlib import Path

from lymannet.survey import merge_batches
from lymannet.runtime import run


def main(manifests: list[str], folder: str, name: str, root: str, truth: str | None, score: dict) -> None:
    merge_batches(manifests, folder, title=name, root=root, truth=truth, score=score)


if "snakemake" in globals():
    run(
        main,
        snakemake.log[0],
        manifests=list(snakemake.input.manifests),
        folder=str(Path(snakemake.output.catalogue).parent),
        name=snakemake.wildcards.catalogue,
        root=snakemake.params.root,
        truth=snakemake.input.get("truth"),
        score=snakemake.params.score,
    )
