"""Throughput of the networks: training and inference spectra/s, parameter counts (thesis table 5.1).

    .venv/bin/python benchmarks/bench_models.py [--config config/config.yaml] [--threads 2] [--seconds 2]

Uses CUDA when available, the CPU otherwise; training is timed in fp32 and under bf16 autocast
(lymannet.train's `precision: auto` picks bf16 on CUDA, fp32 on CPU; `precision: bf16` asks for it
on CPU).
Inputs are random, shaped like real network inputs. Also times the imported 6-layer QuasarNET
(Keras weights, 443 pixels) at the inference batch in fp32 and bf16, next to QuasarNP's numpy speed.
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path
from typing import Callable

import torch
import yaml

from lymannet.grid import Grid
from lymannet.models import build_model, count_parameters, encode_targets, fold_batchnorm, quasarnet_loss
from lymannet.preprocess import INFERENCE_BATCH
from lymannet.runtime import CPU_ISA_PINS, cpu_arithmetic, cpu_has_native_bf16, pin_cpu_isa

REPO = Path(__file__).resolve().parents[1]
FIXTURES = REPO.parent / "shared" / "fixtures" / "quasarnp"
THESIS_PARAMS = {"initial": 788e3, "classic": 788e3, "hyp_classic": 16.6e6, "hyp_snr": 2.45e6}  # table 5.1
QUASARNP_NUMPY = 315.0  # spectra/s, QuasarNP (numpy) on the 6-layer model, measured on 2 cores


def rate(
    step: Callable[[], None], n_per_step: int, seconds: float, device: torch.device, windows: int = 3
) -> float:
    """Spectra per second of `step` after one warm-up call: the best of `windows` timing windows
    (each >= seconds/windows and >= 1 step), since shared machines make single timings noisy."""
    step()
    best = 0.0
    for _ in range(windows):
        if device.type == "cuda":
            torch.cuda.synchronize()
        n_steps, start = 0, time.perf_counter()
        while n_steps < 1 or time.perf_counter() - start < seconds / windows:
            step()
            n_steps += 1
        if device.type == "cuda":
            torch.cuda.synchronize()
        best = max(best, n_steps * n_per_step / (time.perf_counter() - start))
    return best


def keras_style_count(model: torch.nn.Module) -> int:
    """Parameters as Keras counts them: BatchNorm moving mean/variance included."""
    buffers = sum(
        b.numel() for name, b in model.named_buffers() if name.endswith(("running_mean", "running_var"))
    )
    return count_parameters(model) + buffers


def train_rate(
    model: torch.nn.Module, grid: Grid, batch: int, bf16: bool, seconds: float, device: torch.device
) -> float:
    channels = 2 if model.spec["snr_channel"] else 1
    x = torch.randn(batch, channels, grid.n_pixels, device=device)
    z = torch.rand(batch, device=device, dtype=torch.float64) * 2 + 2
    targets = encode_targets(z, torch.rand(batch, device=device) < 0.5, model.lines, grid, model.n_boxes)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    model.train()

    def step() -> None:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            outputs = model(x)
        loss, _ = quasarnet_loss(outputs, targets)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return rate(step, batch, seconds, device)


def infer_rate(
    model: torch.nn.Module,
    n_pixels: int,
    channels: int,
    batch: int,
    bf16: bool,
    seconds: float,
    device: torch.device,
) -> float:
    x = torch.randn(batch, channels, n_pixels, device=device)
    model.eval()

    def step() -> None:
        with torch.no_grad(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            model(x)

    return rate(step, batch, seconds, device)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=str(REPO / "config" / "config.yaml"))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=2.0, help="minimum timing window per measurement")
    parser.add_argument(
        "--cpu-isa",
        default="avx2",
        choices=sorted(CPU_ISA_PINS),
        help="CPU kernels, as the pipeline's config cpu_isa (default: the pipeline's default)",
    )
    parser.add_argument(
        "--bf16",
        default="auto",
        choices=["auto", "on", "off"],
        help="time bf16 autocast; auto: on a GPU or a CPU with native bf16 only (elsewhere "
        "it is emulated and ~30x slower)",
    )
    args = parser.parse_args()
    pin_cpu_isa(args.cpu_isa)  # before the first kernel runs
    torch.set_num_threads(args.threads)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    time_bf16 = args.bf16 == "on" or (
        args.bf16 == "auto" and (device.type == "cuda" or cpu_has_native_bf16())
    )
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    config = yaml.safe_load(Path(args.config).read_text())
    grid = Grid.from_config(config["grid"])
    where = torch.cuda.get_device_name() if device.type == "cuda" else f"CPU, {args.threads} threads"
    print(
        f"device: {where}; grid: {grid.kind} {grid.n_pixels} pixels; torch {torch.__version__}; "
        f"CPU kernels {cpu_arithmetic()['capability']} (cpu_isa {args.cpu_isa})"
        + ("" if time_bf16 else "; bf16 not timed (no native bf16 on this CPU; --bf16 on forces it)")
    )
    # On CPU the large models would need minutes per batch of 256: time the demo's batch there.
    train_batch = 256 if device.type == "cuda" else 64

    print(
        f"\n{'model':<12} {'params':>11} {'keras-style':>12} {'thesis 5.1':>11} {'ratio':>6} "
        f"{'train fp32/s':>13} {'train bf16/s':>13} {'infer fp32/s':>13} {'infer bf16/s':>13}"
    )
    for name, spec in config["models"].items():
        if "from_search" in spec:  # defined by a search's results, not by the config alone
            continue
        torch.manual_seed(0)
        model = build_model(spec, grid.n_pixels).to(device)
        n_params, n_keras = count_parameters(model), keras_style_count(model)
        thesis = THESIS_PARAMS.get(name)
        channels = 2 if model.spec["snr_channel"] else 1
        train_fp32 = train_rate(model, grid, train_batch, False, args.seconds, device)
        train_bf16 = (
            train_rate(model, grid, train_batch, True, args.seconds, device) if time_bf16 else math.nan
        )
        inference = fold_batchnorm(model)  # as LoadedModel.predict runs it
        fp32 = infer_rate(inference, grid.n_pixels, channels, INFERENCE_BATCH, False, args.seconds, device)
        bf16 = (
            infer_rate(inference, grid.n_pixels, channels, INFERENCE_BATCH, True, args.seconds, device)
            if time_bf16
            else math.nan
        )
        ratio = f"{n_params / thesis:6.2f}" if thesis else "     -"
        thesis_text = f"{thesis:11,.0f}" if thesis else f"{'-':>11}"
        print(
            f"{name:<12} {n_params:>11,} {n_keras:>12,} {thesis_text} {ratio} {train_fp32:>13,.0f} "
            f"{train_bf16:>13,.0f} {fp32:>13,.0f} {bf16:>13,.0f}"
        )
    print(
        f"(training at batch {train_batch}, inference at batch {INFERENCE_BATCH} with BatchNorm folded, as predict)"
    )

    h5 = FIXTURES / "test_weights_6_layer.h5"
    if not h5.exists():
        print(f"\nskipping the Keras 6-layer model: {h5} not found")
        return
    from lymannet.keras_import import load_keras_quasarnet

    keras_model, spec = load_keras_quasarnet(h5)
    n_keras_params = count_parameters(keras_model)
    keras_model = fold_batchnorm(keras_model.to(device))
    fp32 = infer_rate(keras_model, spec["n_pixels"], 1, INFERENCE_BATCH, False, args.seconds, device)
    bf16 = (
        infer_rate(keras_model, spec["n_pixels"], 1, INFERENCE_BATCH, True, args.seconds, device)
        if time_bf16
        else math.nan
    )
    print(
        f"\nimported QuasarNET 6-layer ({n_keras_params:,} params, {spec['n_pixels']} pixels), batch {INFERENCE_BATCH}:"
    )
    print(
        f"  fp32 {fp32:>10,.0f} spectra/s  ({fp32 / QUASARNP_NUMPY:5.1f} x QuasarNP numpy ~{QUASARNP_NUMPY:.0f}/s)"
    )
    print(
        f"  bf16 {bf16:>10,.0f} spectra/s  ({bf16 / QUASARNP_NUMPY:5.1f} x QuasarNP numpy; {bf16 / fp32:.2f} x fp32)"
    )


if __name__ == "__main__":
    main()
