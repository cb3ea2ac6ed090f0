"""Classify one batch of coadd files: a catalogue per coadd (mirrored below the catalogue's folder)
and the batch manifest (what became of each file).

snakemake: input.model (model.pt or Keras .h5), input.coadds, output.manifest, params.root (the
folder the catalogues mirror), params.folder (results/classify/<name>), params.options
({c_th, min_lines, strict, batch_size, bf16, device, fiberstatus}), threads, log[0].
"""

from typing import Any

from lymannet.classify import classify_batch
from lymannet.runtime import run


def main(
    model: str,
    coadds: list[str],
    root: str,
    folder: str,
    manifest: str,
    options: dict[str, Any],
    threads: int,
) -> None:
    import torch

    torch.set_num_threads(max(1, threads))
    classify_batch(model, coadds, root, folder, manifest, options)


if "snakemake" in globals():
    run(
        main,
        snakemake.log[0],
        model=snakemake.input.model,
        coadds=list(snakemake.input.coadds),
        root=snakemake.params.root,
        folder=snakemake.params.folder,
        manifest=snakemake.output.manifest,
        options=dict(snakemake.params.options),
        threads=snakemake.threads,
    )
