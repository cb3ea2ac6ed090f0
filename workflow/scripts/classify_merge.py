"""Merge a survey catalogue's batches: catalogue.fits, failures.tsv, summary.csv/.md/.png.

snakemake: input.manifests (one TSV per classify job), output.catalogue (its folder receives the
other outputs), wildcards.catalogue (the entry's name, for titles), log[0].
"""

from pathlib import Path

from lymannet.classify import merge_batches
from lymannet.runtime import run


def main(manifests: list[str], folder: str, name: str) -> None:
    merge_batches(manifests, folder, title=name)


if "snakemake" in globals():
    run(main, snakemake.log[0], manifests=list(snakemake.input.manifests),
        folder=str(Path(snakemake.output.catalogue).parent), name=snakemake.wildcards.catalogue)
