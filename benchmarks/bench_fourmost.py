"""Throughput of the 4MOST pipeline pieces on this machine (CPU, torch threads = --threads).

    python benchmarks/bench_fourmost.py --threads 2

Prints spectra/s for the simulator and training examples/s (forward + backward + Adam step) for
each network at its configured input size, plus parameter counts.
"""

import argparse
import time

import numpy as np
import torch

from lymannet.fourmost import simulate as sim
from lymannet.fourmost.models import build
from lymannet.models import count_parameters

INPUTS = {
    "dense": (1, 1533),
    "gru": (1, 1533),
    "quasarnet": (1, 1533),
    "presence": (2, 400),
    "location": (2, 800),
}


def bench_simulator(n: int = 256) -> float:
    start = time.perf_counter()
    sim.simulate({"n_spectra": n, "chunk": 128}, 1, lambda rows, flux, ivar: None)
    return n / (time.perf_counter() - start)


def bench_model(kind: str, batch: int = 64, steps: int = 5) -> tuple[int, float]:
    channels, pixels = INPUTS[kind]
    model = build(kind, None, pixels)
    optimizer = torch.optim.Adam(model.parameters())
    x = torch.randn(batch, channels, pixels)

    def step() -> None:
        out = model(x)
        loss = (
            sum(v.float().mean() for v in out.values() if v.is_floating_point())
            if isinstance(out, dict)
            else out.mean()
        )
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    step()  # warm-up
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return count_parameters(model), batch * steps / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"simulator: {bench_simulator():.0f} spectra/s (23,411 pixels each, no file writing)")
    for kind in INPUTS:
        try:
            parameters, rate = bench_model(kind)
        except ImportError as error:  # quasarnet needs lymannet.models
            print(f"{kind}: skipped ({error})")
            continue
        print(f"{kind:10s} {parameters:>9,d} parameters  {rate:8.0f} training examples/s")


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
