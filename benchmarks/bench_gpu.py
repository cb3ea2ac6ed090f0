"""Training and prediction on a GPU, end to end (issue 20): spectra/s, peak GPU memory and the
final validation loss of hyp_classic and classic in three arithmetic modes.

    python benchmarks/bench_gpu.py                         # on a CUDA machine, from the repo root
    python benchmarks/bench_gpu.py --device cpu --tiny     # smoke test anywhere (about a minute)

What it does, for each model (default: hyp_classic for 2 epochs on combo `initial`, classic for 3
on `data_to_train_1`, specs from config/config.yaml's `models:`) and each mode:

    fp32          train.precision: fp32 (TF32 matmuls/convolutions on CUDA, as lymannet sets them)
    bf16          train.precision: bf16 (autocast of the forward pass; weights and losses fp32)
    bf16_compile  bf16 and train.compile: true (torch.compile; its first epoch includes compiling)

it trains with lymannet.train.train_model on the real demo combos (data resident on the device),
then predicts the test set (default test_z3) with the saved model file as the `predict` rule does
(lymannet.predict.predict_testset; eager, bf16 autocast in the bf16 modes). The combos and the
test set are built first with Snakemake if they are missing (only the 20 jobs up to them).

Printed and written to --out (default $OUT, else /tmp/bench_gpu): bench_gpu.csv and bench_gpu.md
(one row per model x mode), environment.json (torch, CUDA, device name), and each run's model
file and history under <out>/<mode>/<model>/<combo>/. Training spectra/s come from history.csv
(`spectra_per_s`, training and validation of the epoch included): the first epoch (CUDA warm-up,
compilation) and the last. Peak GPU memory is torch's max_memory_allocated during the run
(reset before each run). With --cpu-reference DIR (a results/models tree of a CPU run, or the
--out of `--device cpu` runs of this script), the CPU's validation loss after the same number of
epochs is printed beside the GPU's.

Needs only the repository's src (put on sys.path here) and the packages of requirements.txt
(snakemake for the data); a CUDA build of torch for --device cuda.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO / "src") not in sys.path:
    sys.path.insert(0, str(REPO / "src"))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402
import yaml  # noqa: E402

from lymannet.modelfile import load_model_file  # noqa: E402
from lymannet.predict import PredictOptions, predict_testset  # noqa: E402
from lymannet.runtime import setup_logging  # noqa: E402
from lymannet.spectra import SpectraFile  # noqa: E402
from lymannet.train import train_model  # noqa: E402

log = logging.getLogger("lymannet.bench_gpu")

# model -> (combo, epochs): issue 20's runs (the demo's combos).
DEFAULT_RUNS = {"hyp_classic": ("initial", 2), "classic": ("data_to_train_1", 3)}
MODES = {
    "fp32": {"precision": "fp32", "compile": False},
    "bf16": {"precision": "bf16", "compile": False},
    "bf16_compile": {"precision": "bf16", "compile": True},
}
TINY_SHAPE = {"n_boxes": 10, "dense_units": 16}
TINY_CONV = {"layers": 2, "filters": 8, "kernel": 5, "stride": 2}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda", help="cuda (default), cuda:N or cpu")
    parser.add_argument(
        "--models",
        default="hyp_classic,classic",
        help="comma-separated model[:combo[:epochs]]; default combos/epochs: "
        + ", ".join(f"{m}:{c}:{e}" for m, (c, e) in DEFAULT_RUNS.items()),
    )
    parser.add_argument("--modes", default=",".join(MODES), help=f"comma-separated, of {', '.join(MODES)}")
    parser.add_argument("--epochs-scale", type=float, default=1.0, help="multiply every run's epochs (min 1)")
    parser.add_argument("--out", type=Path, default=Path(os.environ.get("OUT") or "/tmp/bench_gpu"))
    parser.add_argument(
        "--cpu-reference", type=Path, default=None, help="CPU runs to compare val losses with"
    )
    parser.add_argument("--config", type=Path, default=REPO / "config" / "config.yaml")
    parser.add_argument(
        "--results", type=Path, default=REPO / "results", help="where combos and test sets are"
    )
    parser.add_argument("--testset", default="test_z3")
    parser.add_argument("--cores", type=int, default=os.cpu_count() or 2, help="Snakemake cores for the data")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: the spec's)")
    parser.add_argument("--batch-size", type=int, default=None, help="override every spec's batch size")
    parser.add_argument(
        "--tiny", action="store_true", help="small synthetic combo and shrunken models, 1 epoch"
    )
    return parser.parse_args(argv)


# ----------------------------------------------------------------------------------------------
# Data


def demo_data(args: argparse.Namespace, combos: list[str]) -> dict[str, Path]:
    """Paths of the combos and the test set, built with Snakemake (only up to them) if missing."""
    paths = {
        f"{combo}/{split}": args.results / "combos" / combo / f"{split}.fits"
        for combo in combos
        for split in ("train", "val")
    }
    paths["testset"] = args.results / "testsets" / f"{args.testset}.fits"
    missing = [path for path in paths.values() if not path.exists()]
    if missing:
        if args.results.resolve() != (REPO / "results").resolve():
            raise SystemExit(
                f"missing {', '.join(map(str, missing))} (Snakemake builds only under {REPO}/results)"
            )
        targets = [str(path.resolve().relative_to(REPO)) for path in paths.values()]
        command = [
            sys.executable,
            "-m",
            "snakemake",
            "--cores",
            str(args.cores),
            "--configfile",
            str(args.config),
            "--rerun-incomplete",
            *targets,
        ]
        log.info("building the data: %s", " ".join(command))
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO / "src"), os.environ.get("PYTHONPATH")])),
        }
        start = time.perf_counter()
        result = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True)
        if result.returncode != 0:
            sys.stderr.write(result.stdout[-4000:] + result.stderr[-8000:])
            raise SystemExit(f"snakemake failed ({result.returncode}) building the combos")
        log.info("data built in %.0f s", time.perf_counter() - start)
    return paths


def tiny_data(folder: Path, seed: int = 1) -> tuple[dict[str, Path], Any]:
    """A small synthetic combo written with lymannet's spectra writer (the easy task of
    tests/test_train.py: LBGs with a Ly-alpha line and a break, featureless contaminants)."""
    from lymannet.grid import Grid
    from lymannet.lines import LYA
    from lymannet.spectra import SpectrumSet, write_spectra

    grid = Grid.from_config({"kind": "linear", "wave_min": 3600.0, "wave_max": 10000.0, "step": 32.0})
    rng = np.random.default_rng(seed)

    def write(path: Path, n: int, first_id: int) -> None:
        wave = grid.centres
        is_lbg = rng.random(n) < 0.5
        z = np.where(is_lbg, rng.uniform(2.2, 3.8, n), rng.uniform(0.05, 3.0, n))
        flux = 1.0 + rng.uniform(-0.3, 0.3, n)[:, None] * (wave[None, :] - 6800) / 3200
        lya = (1 + z[:, None]) * LYA
        line = 4.0 * np.exp(-0.5 * ((wave[None, :] - lya) / 25.0) ** 2)
        flux = np.where(is_lbg[:, None], np.where(wave[None, :] < lya, 0.4 * flux, flux) + line, flux)
        flux = flux + rng.normal(0, 0.3, flux.shape)
        truth = pd.DataFrame(
            {
                "TARGETID": np.arange(n) + first_id,
                "Z": z,
                "SPECTYPE": np.where(is_lbg, "LBG", np.where(rng.random(n) < 0.5, "QSO", "ELG")),
            }
        )
        path.parent.mkdir(parents=True, exist_ok=True)
        ivar = np.full_like(flux, 1 / 0.3**2)
        write_spectra(
            path, SpectrumSet(grid.wavelength, flux.astype(np.float32), ivar.astype(np.float32), truth, grid)
        )

    paths = {
        "tiny/train": folder / "combos" / "tiny" / "train.fits",
        "tiny/val": folder / "combos" / "tiny" / "val.fits",
        "testset": folder / "testsets" / "tiny.fits",
    }
    for i, (key, n) in enumerate((("tiny/train", 512), ("tiny/val", 256), ("testset", 256))):
        write(paths[key], n, first_id=100_000 * (i + 1))
    return paths, grid


# ----------------------------------------------------------------------------------------------
# Runs


def parse_runs(text: str, epochs_scale: float, tiny: bool) -> list[tuple[str, str, int]]:
    runs = []
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, *rest = item.split(":")
        combo, epochs = DEFAULT_RUNS.get(name, ("initial", 2))
        if rest:
            combo = rest[0]
        if len(rest) > 1:
            epochs = int(rest[1])
        epochs = 1 if tiny else max(1, round(epochs * epochs_scale))
        runs.append((name, "tiny" if tiny else combo, epochs))
    return runs


def model_spec(config: dict[str, Any], name: str, epochs: int, mode: str, args: argparse.Namespace) -> dict:
    if name not in config["models"]:
        raise SystemExit(f"model {name!r} not in {args.config}'s models: {sorted(config['models'])}")
    spec = json.loads(json.dumps(config["models"][name]))  # deep copy
    if "from_search" in spec:
        raise SystemExit(f"model {name!r} comes from a search; pick a model with a full spec")
    train = dict(spec.get("train") or {})
    train.update(MODES[mode], epochs=epochs, early_stopping=None)  # a fixed number of epochs
    if args.batch_size:
        train["batch_size"] = args.batch_size
    if args.tiny:
        spec.update(TINY_SHAPE)
        spec["conv"] = {**spec["conv"], **TINY_CONV, "dropout": 0.0}
        train["batch_size"] = 32
    spec["train"] = train
    return spec


def find_cpu_history(reference: Path, mode: str, name: str, combo: str) -> Path | None:
    for candidate in (
        reference / mode / name / combo,
        reference / name / combo,
        reference / "models" / name / combo,
    ):
        if (candidate / "history.csv").exists():
            return candidate / "history.csv"
    return None


def cpu_val_loss(reference: Path | None, mode: str, name: str, combo: str, epochs: int) -> float:
    """The CPU run's validation loss after `epochs` epochs (NaN where there is none)."""
    if reference is None:
        return math.nan
    path = find_cpu_history(reference, mode, name, combo)
    if path is None:
        return math.nan
    history = pd.read_csv(path)
    row = history[history["epoch"] == epochs]
    return float(row["val_loss"].iloc[0]) if len(row) else math.nan


def bench_run(
    name: str,
    combo: str,
    epochs: int,
    mode: str,
    spec: dict,
    paths: dict[str, Path],
    device: torch.device,
    seed: int,
    args: argparse.Namespace,
) -> dict[str, Any]:
    folder = args.out / mode / name / combo
    if folder.exists():
        shutil.rmtree(folder)  # a fresh run: no checkpoint to resume from
    folder.mkdir(parents=True)
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    torch._dynamo.reset()  # compile caches of an earlier run must not shorten this one's first epoch
    log.info("=== %s on %s, %s, %d epochs", name, combo, mode, epochs)
    start = time.perf_counter()
    summary = train_model(
        name,
        spec,
        paths[f"{combo}/train"],
        paths[f"{combo}/val"],
        folder / "model.pt",
        folder / "history.csv",
        folder / "learning_curve.png",
        folder / "checkpoint.pt",
        seed=seed,
        device=str(device),
        threads=args.threads,
        combo=combo,
    )
    train_wall = time.perf_counter() - start
    history = pd.read_csv(folder / "history.csv")

    loaded = load_model_file(folder / "model.pt", device=str(device))
    options = PredictOptions(bf16=MODES[mode]["precision"] == "bf16")
    with SpectraFile(paths["testset"]) as spectra_file:  # warm-up (cuDNN autotuning) on one batch
        chunk = next(spectra_file.iter_chunks("network", options.batch_size))
        loaded.predict(chunk.flux, chunk.ivar, batch_size=options.batch_size, bf16=options.bf16)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    catalogue = predict_testset(loaded, paths["testset"], options, folder / "model.pt")
    predict_seconds = time.perf_counter() - start
    n_flagged = int(catalogue[f"IS_{loaded.target_class.upper()}"].sum())
    peak_gpu = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else math.nan
    return {
        "model": name,
        "combo": combo,
        "mode": mode,
        "epochs": int(len(history)),
        "parameters": summary["parameters"],
        "n_train": summary["n_train"],
        "batch_size": spec["train"].get("batch_size"),
        "train_spectra_s_epoch1": float(history["spectra_per_s"].iloc[0]),
        "train_spectra_s_last": float(history["spectra_per_s"].iloc[-1]),
        "train_wall_s": train_wall,
        "predict_spectra_s": len(catalogue) / max(predict_seconds, 1e-9),
        "n_test": len(catalogue),
        "flagged": n_flagged,
        "peak_gpu_mb_train": float(history["peak_gpu_mb"].max()),
        "peak_gpu_mb_all": peak_gpu,
        "final_val_loss": float(history["val_loss"].iloc[-1]),
        "cpu_val_loss": cpu_val_loss(args.cpu_reference, mode, name, combo, int(len(history))),
    }


def environment(device: torch.device) -> dict[str, Any]:
    info = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "device": str(device),
        "cpu_count": os.cpu_count(),
        "machine": platform.machine(),
    }
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
        info["cudnn"] = torch.backends.cudnn.version()
    return info


TABLE_COLUMNS = {
    "model": "model",
    "mode": "mode",
    "epochs": "epochs",
    "train_spectra_s_epoch1": "train/s ep1",
    "train_spectra_s_last": "train/s last",
    "predict_spectra_s": "predict/s",
    "peak_gpu_mb_train": "peak GPU MB",
    "final_val_loss": "val loss",
    "cpu_val_loss": "CPU val loss",
    "train_wall_s": "train s",
}


def markdown(table: pd.DataFrame) -> str:
    shown = table[list(TABLE_COLUMNS)].rename(columns=TABLE_COLUMNS)
    lines = ["| " + " | ".join(shown.columns) + " |", "|" + "---|" * len(shown.columns)]
    for _, row in shown.iterrows():
        cells = []
        for column, value in row.items():
            if isinstance(value, float) and "loss" in column:
                cells.append("n/a" if math.isnan(value) else f"{value:.5g}")
            elif isinstance(value, float):
                cells.append(
                    "n/a" if math.isnan(value) else f"{value:.4g}" if abs(value) < 100 else f"{value:,.0f}"
                )
            else:
                cells.append(str(value))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    setup_logging(args.out / "bench_gpu.log")
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit(
            "--device cuda but torch.cuda.is_available() is False (a CPU build of torch, or no GPU)"
        )
    modes = [mode.strip() for mode in args.modes.split(",") if mode.strip()]
    unknown = sorted(set(modes) - set(MODES))
    if unknown:
        raise SystemExit(f"unknown modes {unknown}; valid: {list(MODES)}")
    with open(args.config) as handle:
        config = yaml.safe_load(handle)
    seed = int(config.get("seed", 0))
    runs = parse_runs(args.models, args.epochs_scale, args.tiny)
    started = time.perf_counter()
    if args.tiny:
        paths, _ = tiny_data(args.out / "tiny_data")
    else:
        paths = demo_data(args, sorted({combo for _, combo, _ in runs}))
    data_seconds = time.perf_counter() - started
    info = {
        **environment(device),
        "data_seconds": data_seconds,
        "tiny": args.tiny,
        "config": str(args.config),
    }
    log.info("environment: %s", info)

    rows = []
    for name, combo, epochs in runs:
        for mode in modes:
            spec = model_spec(config, name, epochs, mode, args)
            rows.append(bench_run(name, combo, epochs, mode, spec, paths, device, seed, args))
            pd.DataFrame(rows).to_csv(
                args.out / "bench_gpu.csv", index=False
            )  # partial results survive a timeout
    table = pd.DataFrame(rows)
    info["total_seconds"] = time.perf_counter() - started
    (args.out / "environment.json").write_text(json.dumps(info, indent=2, default=str) + "\n")
    text = markdown(table)
    (args.out / "bench_gpu.md").write_text(text + "\n")
    header = f"{info.get('gpu', info['device'])}, torch {info['torch']} (CUDA {info['cuda']})"
    print(
        f"\n{header}; data {data_seconds:.0f} s, total {info['total_seconds']:.0f} s; "
        f"train/s = training spectra per second of an epoch (its validation included)\n"
    )
    print(text)
    print(
        f"\nwritten: {args.out / 'bench_gpu.csv'}, {args.out / 'bench_gpu.md'}, {args.out / 'environment.json'}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
