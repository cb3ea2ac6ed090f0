"""Cost per batch of the online augmentation's shift: the physical shift (lymannet.online's
physical_shift: the IGM of z1, the destination's noise, no empty ends) against eq. 3.1 alone, next
to one training step of the network it feeds.

    .venv/bin/python benchmarks/bench_online.py [--data results/combos/data_to_train_1/train.fits]
        [--model classic] [--batch 64] [--threads 2] [--batches 40]

Rows are real training rows when --data exists (a combo's train.fits), else simulated LBGs. Each
timing is the median over --batches batches of the same augmentation the train rule runs (the
model's online_augmentation spec from config/config.yaml, shift p as configured), alternating
physical and eq. 3.1 batch by batch so that a shared machine's load hits both alike.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np
import torch
import yaml

from lymannet.grid import Grid
from lymannet.models import build_model, encode_targets, quasarnet_loss
from lymannet.online import OnlineAugmentation, spectype_codes
from lymannet.batches import network_input_torch

REPO = Path(__file__).resolve().parents[1]


def load_rows(path: Path, grid: Grid) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    if path.exists():
        from lymannet.spectra import read_spectra

        spectra = read_spectra(path)
        truth = spectra.truth
        return spectra.flux, spectra.ivar, truth["Z"].to_numpy(np.float64), truth["SPECTYPE"].to_numpy()
    import tempfile

    from lymannet import simulate
    from lymannet.ingest import ingest

    folder = Path(tempfile.mkdtemp())
    spec = {
        "mode": "continuous",
        "exptime": [7200],
        "mag_r": [22.5, 24.5],
        "populations": {
            "LBG": {"n": 600, "z": [2.2, 3.8], "z_mean": 3.0, "z_sigma": 0.22},
            "QSO": {"n": 200, "z": [1.8, 4.0]},
            "ELG": {"n": 200, "z": [0.05, 0.2]},
        },
    }
    simulate.simulate_dataset(spec, 1, "bench", folder / "coadd.fits", folder / "truth.fits")
    ingest(
        [str(folder / "coadd.fits")],
        str(folder / "truth.fits"),
        grid,
        str(folder / "net.fits"),
        "bench",
        {"fiberstatus": "zero_only", "missing_truth": "error", "chunk_rows": 4096},
    )
    return load_rows(folder / "net.fits", grid)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--data", type=Path, default=REPO / "results" / "combos" / "data_to_train_1" / "train.fits"
    )
    parser.add_argument("--model", default="classic")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batches", type=int, default=40)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    grid = Grid.from_config(config["grid"])
    spec = config["models"][args.model]
    online = dict(spec["train"].get("online_augmentation") or {"shift": {"p": 0.5, "z_range": [-0.3, 0.3]}})
    flux, ivar, z, spectype = (np.array(a) for a in load_rows(args.data, grid))
    codes = torch.as_tensor(spectype_codes(spectype))
    physical = OnlineAugmentation({"shift": dict(online["shift"], thesis=False)}, grid)
    thesis = OnlineAugmentation({"shift": dict(online["shift"], thesis=True)}, grid)
    physical(
        torch.from_numpy(flux[:4]),
        torch.from_numpy(ivar[:4]),
        torch.from_numpy(z[:4]),
        torch.Generator().manual_seed(0),
        spectype=codes[:4],
    )  # builds the transmission table once
    model = build_model(spec, grid.n_pixels)
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-3)
    rng = np.random.default_rng(0)
    times: dict[str, list[float]] = {"physical": [], "eq. 3.1": [], "train step": []}
    shifted = []
    for k in range(args.batches):
        index = rng.choice(len(z), args.batch, replace=False)
        batch = (torch.from_numpy(flux[index]), torch.from_numpy(ivar[index]), torch.from_numpy(z[index]))
        for name, augmentation in (("physical", physical), ("eq. 3.1", thesis))[:: 1 if k % 2 else -1]:
            generator = torch.Generator().manual_seed(k)
            start = time.perf_counter()
            out = augmentation(*batch, generator, spectype=codes[index])
            times[name].append(time.perf_counter() - start)
            if name == "physical":
                shifted.append(int((out[2].double() != batch[2].to(out[2].dtype).double()).sum()))
        inputs = network_input_torch(out[0], out[1], spec.get("snr_channel", False))
        targets = encode_targets(
            out[2], torch.from_numpy(spectype[index] == "LBG"), model.lines, grid, model.n_boxes
        )
        start = time.perf_counter()
        optimiser.zero_grad()
        loss, _ = quasarnet_loss(model(inputs), targets)
        loss.backward()
        optimiser.step()
        times["train step"].append(time.perf_counter() - start)
    median = {name: statistics.median(values) * 1e3 for name, values in times.items()}
    print(
        f"batch {args.batch}, {statistics.mean(shifted):.1f} rows shifted per batch on average, "
        f"{args.threads} threads, {args.batches} batches, {args.model} ({sum(p.numel() for p in model.parameters()):,} parameters)"
    )
    for name, value in median.items():
        print(f"  {name:>10}: {value:7.2f} ms per batch (median)")
    print(
        f"  physical - eq. 3.1 = {median['physical'] - median['eq. 3.1']:.2f} ms per batch, "
        f"{(median['physical'] - median['eq. 3.1']) / median['train step'] * 100:.1f}% of a training step"
    )


if __name__ == "__main__":
    main()
