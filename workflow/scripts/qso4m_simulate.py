"""Snakemake `qso4m_simulate`: 4MOST-like quasar spectra, one FITS file each, + truth list + DLA table."""


from pathlib import Path
from typing import Any

import numpy as np

from lymannet.fileio import provenance
from lymannet.fourmost import io, plots
from lymannet.fourmost import simulate as sim
from lymannet.runtime import run


def main(spec: dict[str, Any], seed: int, spectra: str, truth: str, dlas: str, examples: str) -> None:
    out_dir = Path(spectra)
    out_dir.mkdir(parents=True, exist_ok=True)
    wave = sim.wavelength_grid()
    full = sim.complete_spec(spec)
    kept: list[tuple[np.ndarray, float, list]] = []
    state: dict[str, Any] = {}

    def write_chunk(rows: np.ndarray, flux: np.ndarray, ivar: np.ndarray) -> None:
        params = state["params"]
        for k, row in enumerate(rows):
            header = {"Z_QSO": float(params["z_qso"][row]), "MAG_R": float(params["mag"][row]),
                      "EXPTIME": float(full["exptime"]), "N_DLA": int(params["n_dla"][row])}
            io.write_spectrum(out_dir / sim.spectrum_name(int(row)), wave, flux[k], ivar[k], header)
            if len(kept) < 4 and (params["n_dla"][row] > 0 or len(kept) == 3):
                pick = params["dla"]["sightline"] == row
                kept.append((flux[k].copy(), float(params["z_qso"][row]),
                             list(zip(params["dla"]["z_abs"][pick], params["dla"]["log_n"][pick]))))

    # the sightline draws come first and do not depend on the pixels: known before any chunk
    state["params"] = sim.draw_sightlines(full, seed)
    params = sim.simulate(full, seed, write_chunk)
    n = len(params["z_qso"])
    files = [f"{out_dir.name}/{sim.spectrum_name(i)}" for i in range(n)]
    io.write_truth_list(truth, files, params["z_qso"], params["n_abs"], params["n_dla"])
    dla = params["dla"]
    io.write_dla_table(dlas, [files[i] for i in dla["sightline"]], dla["z_abs"], dla["log_n"], dla["b_kms"])
    plots.examples_figure(examples, wave, kept)
    _ = provenance({"spec": full, "seed": seed})  # recorded in the ingested file's PROVENANCE


if "snakemake" in globals():
    run(main, snakemake.log[0], spec=snakemake.params.spec, seed=snakemake.params.seed,  # noqa: F821
        spectra=snakemake.output.spectra, truth=snakemake.output.truth, dlas=snakemake.output.dlas,  # noqa: F821
        examples=snakemake.output.examples)  # noqa: F821
