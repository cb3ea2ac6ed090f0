"""Throughput and redshift accuracy of the classical baselines (lymannet.templatefit), 200 spectra/s floor.

    .venv/bin/python benchmarks/bench_templatefit.py [--n 2000] [--n-train 2000] [--threads 2] [--repeats 3]

Simulates --n spectra like the demo's survey (LBG 2 < z < 4, QSO 1.8 < z < 4, ELG, and the other
classes the simulator renders; r 22.5-24.5, 7200 s), rebins them onto the demo's network grid as
ingestion does, builds the template set (timed apart: once per test-set job), then fits them in the
predict rule's chunks. The fit time is the best of --repeats passes (the machine is shared). Prints
spectra/s and, per class, the fraction whose redshift (the class's own fit) is within dz < 0.05 and
the fraction classified as their class, and the LBG P = E score of the fit alone.

Twice: the oracle (``template_fit``, the simulator's own templates) and the learned templates
(``template_fit_learned``, lymannet.learned_templates: learned from --n-train other simulated
spectra of the same mix, written to a temporary training split; the learning is timed apart, once
per combo).
"""

from __future__ import annotations

import argparse
import os
import time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument(
        "--n-train", type=int, default=2000, help="training spectra the learned templates come from"
    )
    parser.add_argument("--threads", type=int, default=2, help="BLAS threads (the rule runs with 2)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[name] = str(args.threads)

    from lymannet.grid import Grid
    from lymannet.simulate import POPULATION_Z_LIMITS
    from lymannet.templatefit import TemplateFitOptions, build_template_set

    grid = Grid.from_config({"kind": "linear", "wave_min": 3600.0, "wave_max": 10000.0, "step": 8.0})
    shares = {
        "LBG": (0.4, [2.0, 4.0]),
        "QSO": (0.25, [1.8, 4.0]),
        "ELG": (0.2, [0.05, 0.2]),
        "GALAXY": (0.1, [0.3, 1.6]),
        "STAR": (0.05, [-0.001, 0.001]),
    }
    populations = {
        k: {"n": int(share * args.n), "z": z} for k, (share, z) in shares.items() if k in POPULATION_Z_LIMITS
    }
    flux, ivar, truth = simulate_set(grid, populations, args.seed, args.n)

    report(
        args,
        "template_fit (oracle: the simulator's templates)",
        lambda: build_template_set(grid, TemplateFitOptions()),
        flux,
        ivar,
        truth,
    )

    import tempfile
    from pathlib import Path

    from lymannet.learned_templates import LearnOptions, learn_templates
    from lymannet.spectra import SpectrumSet, write_spectra
    from lymannet.templatefit_learned import build_learned_template_set

    train_flux, train_ivar, train_truth = simulate_set(grid, populations, args.seed + 1000, args.n_train)
    with tempfile.TemporaryDirectory() as folder:
        train = Path(folder) / "train.fits"
        columns = [
            c
            for c in ("TARGETID", "Z", "SPECTYPE", "SUBTYPE", "TEMPLATE", "MAG_R", "EXPTIME")
            if c in train_truth
        ]
        write_spectra(
            train,
            SpectrumSet(
                grid.wavelength, train_flux, train_ivar, train_truth[columns].reset_index(drop=True), grid
            ),
        )
        start = time.perf_counter()
        learned = learn_templates(train, LearnOptions())
        learn = time.perf_counter() - start
    print(
        f"learned templates: {len(train_truth)} training spectra, {LearnOptions().components} eigenvectors per class, "
        f"learned in {learn:.2f} s (once per combo)"
    )
    report(
        args,
        "template_fit_learned (templates learned from a training split)",
        lambda: build_learned_template_set(grid, learned, TemplateFitOptions()),
        flux,
        ivar,
        truth,
    )


def simulate_set(grid, populations, seed, n):
    """Network-grid (flux, ivar, truth) of a demo-like mix of about n spectra, as ingestion makes them."""
    import numpy as np

    from lymannet.arms import NativeRebinner
    from lymannet.simulate import draw_objects, instrument, simulate_chunk

    total = sum(p["n"] for p in populations.values())
    scaled = {k: {**p, "n": max(1, round(p["n"] * n / total))} for k, p in populations.items()}
    spec = {"mode": "continuous", "exptime": [7200], "mag_r": [22.5, 24.5], "populations": scaled}
    objects = draw_objects(spec, seed, "bench-templatefit")
    chunk = simulate_chunk(objects, np.random.default_rng(seed))
    inst = instrument()
    weighted = np.zeros((len(objects), inst.wave.size), np.float32)
    weight = np.zeros_like(weighted)
    for arm, cut in inst.slices.items():
        flux, ivar = chunk.arms[arm]
        weighted[:, cut] += flux * ivar
        weight[:, cut] += ivar
    flux, ivar = NativeRebinner(grid).rebin_sums(weighted, weight)
    return flux, ivar, chunk.truth


def report(args, title, build, flux, ivar, truth) -> None:
    """Build a template set (timed), fit every spectrum in chunks (best of --repeats), print."""
    import numpy as np

    from lymannet.chi2fit import fit_spectra
    from lymannet.evaluation import evaluate
    from lymannet.metrics import ScoreOptions
    from lymannet.templatefit import TemplateFitOptions

    options = TemplateFitOptions()
    start = time.perf_counter()
    tset = build()
    built = time.perf_counter() - start
    best, fit = np.inf, None
    for _ in range(args.repeats):
        start = time.perf_counter()
        parts = [
            fit_spectra(
                tset, flux[i : i + options.chunk_rows], ivar[i : i + options.chunk_rows], "LBG", options
            )
            for i in range(0, len(flux), options.chunk_rows)
        ]
        best = min(best, time.perf_counter() - start)
        fit = {key: np.concatenate([p[key] for p in parts]) for key in parts[0]}
    n = len(flux)
    print(
        f"{title}: {n} spectra, {tset.n_templates} templates x {max(tset.n_basis(c) for c in tset.classes)} "
        f"vectors in {len(tset.classes)} classes ({', '.join(f'{c} {tset.z[c].size} z' for c in tset.classes)}), "
        f"{args.threads} BLAS threads"
    )
    print(f"  template set built in {built:.2f} s (once per test-set job)")
    print(f"  fit: {best:.2f} s = {n / best:,.0f} spectra/s (best of {args.repeats}; floor 200/s)")
    spectype, z_true = truth["SPECTYPE"].to_numpy(), truth["Z"].to_numpy()
    for cls in tset.classes:
        rows = spectype == cls
        if rows.any():
            z_ok = np.abs(fit[f"Z_{cls}"][rows] - z_true[rows]) < 0.05
            dz = np.median(np.abs(fit[f"Z_{cls}"][rows] - z_true[rows]))
            print(
                f"  {cls:6s} {rows.sum():5d}: |dz| < 0.05 for {z_ok.mean():.3f} (median |dz| {dz:.4f}), "
                f"classified {cls} {np.mean(fit['spectype'][rows] == cls):.3f}"
            )
    table = truth[["Z", "SPECTYPE"]].assign(Z_PRED=fit["z_pred"])
    score = evaluate(table, fit["confidence"][:, None], ScoreOptions()).summary["score"]
    print(f"  LBG P = E score of the fit on this set: {score:.3f}")


if __name__ == "__main__":
    main()
