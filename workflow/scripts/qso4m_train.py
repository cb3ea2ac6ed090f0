"""Snakemake `qso4m_train`: train one 4MOST network (dense, gru, quasarnet, presence, location)."""


import logging
import time
from typing import Any

from lymannet.config import job_seed
from lymannet.fileio import provenance
from lymannet.fourmost import train as tr
from lymannet.fourmost.io import read_ingested
from lymannet.fourmost.models import count_parameters
from lymannet.runtime import run

log = logging.getLogger("lymannet")


def main(kind: str, spec: dict[str, Any], settings: dict[str, Any], options: dict[str, Any], seed: int,
         ingested: str, model: str, history: str, threads: int) -> None:
    model_seed = job_seed(seed, "fourmost", "train", kind)
    tr.configure_torch(model_seed, threads)
    data = read_ingested(ingested, parts=("Z",) if kind in ("dense", "gru", "quasarnet") else ("DLA",))
    if kind in ("dense", "gru", "quasarnet"):
        network, train, val, loss_fn, info = tr.redshift_task(kind, spec, data, options)
    elif kind == "presence":
        network, train, val, loss_fn, info = tr.presence_task(spec, data, options, seed)
    else:
        network, train, val, loss_fn, info = tr.location_task(spec, data, options, seed)
    log.info("%s: %d trainable parameters, %d training / %d validation examples", kind, count_parameters(network),
             len(next(iter(train.values()))), len(next(iter(val.values()))))
    start = time.perf_counter()
    table = tr.fit(network, train, val, loss_fn, settings, model_seed,
                   what="spectra" if info["task"] == "redshift" else "windows")
    seconds = time.perf_counter() - start
    log.info("%s trained in %.1f s", kind, seconds)
    record = provenance({"kind": kind, "spec": spec, "train": settings, "options": options, "seed": seed},
                        {"ingested": ingested})
    tr.write_model_file(model, network, kind, spec, {**info, "n_train": len(next(iter(train.values())))}, table,
                        seconds, record)
    table.to_csv(history, index=False)


if "snakemake" in globals():
    run(main, snakemake.log[0], kind=snakemake.wildcards.qso4m_model, spec=snakemake.params.spec,  # noqa: F821
        settings=snakemake.params.settings, options=snakemake.params.options, seed=snakemake.params.seed,  # noqa: F821
        ingested=snakemake.input.ingested, model=snakemake.output.model, history=snakemake.output.history,  # noqa: F821
        threads=snakemake.threads)  # noqa: F821
