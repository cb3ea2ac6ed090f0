"""Snakemake `fourmost_train`: train one 4MOST network (dense, gru, quasarnet, presence, location) on the
GPU when there is one; resumes from params.checkpoint after SIGTERM/SIGUSR1 (as rule `train`)."""

from typing import Any

from lymannet.fileio import atomic_path, provenance
from lymannet.modelfile import write_fourmost_model_file
from lymannet.fourmost import plots
from lymannet.fourmost import train as tr
from lymannet.fourmost.tasks import kind_of, redshift_parts
from lymannet.fourmost.ingest import read_ingested
from lymannet.fourmost.models import REDSHIFT_KINDS
from lymannet.runtime import configure_torch, pick_device, run


def main(
    kind: str,
    spec: dict[str, Any],
    settings: dict[str, Any],
    options: dict[str, Any],
    seed: int,
    ingested: str,
    model: str,
    history: str,
    curve: str,
    threads: int,
    checkpoint: str,
) -> None:
    kind = kind_of(kind)  # location_bal: a localiser (its options add the BAL-trough windows)
    device = pick_device("auto")
    configure_torch(device, threads, deterministic=True)
    data = read_ingested(ingested, parts=redshift_parts(kind) if kind in REDSHIFT_KINDS else ("DLA",))
    network, info, table, seconds = tr.train_network(
        kind, spec, settings, options, seed, data, device=str(device), checkpoint_path=checkpoint
    )
    record = provenance(
        {"kind": kind, "spec": spec, "train": settings, "options": options, "seed": seed},
        {"ingested": ingested},
    )
    write_fourmost_model_file(model, network, kind, spec, info, table, seconds, record)
    with atomic_path(history) as tmp:
        table.assign(stop_reason=info["stop_reason"]).to_csv(tmp, index=False)
    plots.learning_curve_figure(curve, kind, table, info["stop_reason"])


if "snakemake" in globals():
    run(
        main,
        snakemake.log[0],
        kind=snakemake.wildcards.fourmost_model,
        spec=snakemake.params.spec,  # noqa: F821
        settings=snakemake.params.settings,
        options=snakemake.params.options,
        seed=snakemake.params.seed,  # noqa: F821
        ingested=snakemake.input.ingested,
        model=snakemake.output.model,
        history=snakemake.output.history,  # noqa: F821
        curve=snakemake.output.curve,
        threads=snakemake.threads,
        checkpoint=snakemake.params.checkpoint,
    )  # noqa: F821
