"""Benchmark: build an 80,000-spectrum training set from an ingested-like file.

    .venv/bin/python benchmarks/bench_combine.py [--n 20000] [--workdir DIR] [--keep]

Generates (untimed, in a child process) an ingested-like spectra file of N spectra (network +
native layers: continuum, one emission line, Gaussian noise; 70% LBG), then times the pipeline
holdout -> 4 variants (as-is; shift 5/4 + mask 5800; shift 3/4 + noise; Ly-a mask) -> combine
(4 N spectra, train + val), printing each stage's time and the peak RSS (ru_maxrss) of this process.
Target (the thesis's scale, 2 cores): under 2 minutes, memory bounded by the chunk size.
"""

from __future__ import annotations

import argparse
import multiprocessing
import resource
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from lymannet.augment import augment_variant
from lymannet.combine import combine
from lymannet.config import slugify
from lymannet.desi import native_wavelength
from lymannet.grid import Grid
from lymannet.holdout import split_holdout
from lymannet.preprocess import rebin
from lymannet.spectra import SpectraWriter

GRID = Grid.from_config({"kind": "linear", "wave_min": 3600.0, "wave_max": 10000.0, "step": 8.0})
SEED = 20230728
VARIANTS = {
    "normal dataset": [],
    "offset of 5/4": [
        {"shift": {"ratio": "5/4", "jitter": 0.1}},
        {"mask_region": {"center": 5800, "width": 40}},
    ],
    "offset of 3/4 with noise": [
        {"shift": {"ratio": "3/4", "jitter": 0.1}},
        {"add_noise": {"fraction": 0.1}},
    ],
    "tmg": [{"mask_line": {"line": 1215.67, "width": 40}}],
}


def generate(path: Path, n: int, chunk_rows: int = 512) -> None:
    """An ingested-like file, written chunk by chunk (bounded memory)."""
    rng = np.random.default_rng(0)
    wave = native_wavelength()
    spectype = rng.choice(["LBG", "QSO", "ELG"], size=n, p=[0.7, 0.15, 0.15])
    z = np.where(
        spectype == "LBG",
        rng.normal(3.0, 0.22, n),
        np.where(spectype == "QSO", rng.uniform(1.8, 4, n), rng.uniform(0.05, 0.2, n)),
    )
    truth = pd.DataFrame(
        {
            "TARGETID": np.arange(n) + 39627000000000000,
            "Z": z,
            "SPECTYPE": spectype,
            "MAG_R": rng.uniform(22.5, 24.5, n),
            "EXPTIME": 7200.0,
            "SOURCE": "bench",
        }
    )
    line = np.where(spectype == "ELG", 3727.0, 1215.67)
    with SpectraWriter(path, n, GRID.wavelength, GRID, wave) as writer:
        for start in range(0, n, chunk_rows):
            rows = slice(start, start + chunk_rows)
            centre = (line[rows] * (1 + z[rows]))[:, None]
            ivar = np.full((len(centre), len(wave)), 4.0)
            flux = 0.5 + 5 * np.exp(-0.5 * ((wave[None, :] - centre) / 3.0) ** 2)
            flux += rng.normal(0, 0.5, flux.shape)
            net_flux, net_ivar = rebin(wave, flux, ivar, GRID)
            writer.write(
                net_flux, net_ivar, truth.iloc[rows], flux.astype(np.float32), ivar.astype(np.float32)
            )


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=20000, help="spectra in the ingested file")
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    args = parser.parse_args()
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="bench_combine_"))
    workdir.mkdir(parents=True, exist_ok=True)
    ingested = workdir / "ingested.fits"
    try:
        start = time.perf_counter()
        child = multiprocessing.get_context("spawn").Process(target=generate, args=(ingested, args.n))
        child.start()
        child.join()
        print(
            f"generated {args.n} spectra ({ingested.stat().st_size / 1e9:.2f} GB) in "
            f"{time.perf_counter() - start:.1f}s (untimed)"
        )

        timings = {}
        start = time.perf_counter()
        t0 = start
        split_holdout(ingested, workdir / "pool.fits", workdir / "holdout.fits", 0.0, SEED, "bench")
        timings["holdout"] = time.perf_counter() - t0
        members = {}
        for name, ops in VARIANTS.items():
            t0 = time.perf_counter()
            members[name] = str(workdir / f"{slugify(name)}.fits")
            augment_variant(workdir / "pool.fits", members[name], {"source": "bench", "ops": ops}, SEED, name)
            timings[f"variant {name!r}"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        summary = combine(
            members,
            {"contaminant_fraction": None, "validation_fraction": 0.1},
            SEED,
            "bench",
            workdir / "train.fits",
            workdir / "val.fits",
            workdir / "summary.csv",
            workdir / "summary.png",
        )
        timings["combine"] = time.perf_counter() - t0
        total = time.perf_counter() - start
        n_out = int(summary.loc[summary["member"] == "ALL", "n_total"].sum())
        for stage, seconds in timings.items():
            print(f"  {stage:<40s} {seconds:7.1f}s")
        print(
            f"built {n_out} training spectra from {args.n} ingested in {total:.1f}s; "
            f"peak RSS {peak_rss_mb():.0f} MB"
        )
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
