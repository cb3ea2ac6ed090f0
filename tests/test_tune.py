"""Hyper-parameter search workers (lymannet.tune): workers sharing one Optuna journal, reruns, a
killed worker, pruning, and the results tune_best writes. The search space, specs and config
checks (lymannet.search): test_search.py."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import optuna
import pandas as pd
import pytest
import torch
import yaml
from optuna.trial import TrialState

from lymannet.grid import Grid
from lymannet.lines import LYA
from lymannet.models import build_model
from lymannet.search import resolve_spec, search_settings, study_name
from lymannet.spectra import SpectrumSet, write_spectra
from lymannet.tune import full_spec, is_stale, open_study, run_worker, write_results

torch.set_num_threads(1)
optuna.logging.set_verbosity(optuna.logging.WARNING)

REPO = Path(__file__).resolve().parents[1]
GRID = Grid.from_config({"kind": "linear", "wave_min": 3600.0, "wave_max": 10000.0, "step": 32.0})  # 200 px

BASE = {
    "family": "quasarnet",
    "lines": "lbg",
    "n_boxes": 10,
    "conv": {"layers": 2, "filters": 8, "kernel": 5, "stride": 2, "padding": "same", "dropout": 0.0},
    "dense_units": 16,
    "offset_activation": "rescaled_sigmoid",
    "train": {"epochs": 7, "batch_size": 64, "lr": 1e-3, "schedule": "none", "early_stopping": None},
}
SPACE = {
    "conv.layers": {"type": "int", "low": 1, "high": 3},
    "conv.filters": {"type": "int", "low": 4, "high": 16, "log": True},
    "train.lr": {"type": "float", "low": 1e-3, "high": 1e-2, "log": True},
    "offset_activation": {"type": "categorical", "choices": ["sigmoid", "rescaled_sigmoid", "linear"]},
}
SEARCH = {
    "model": "base",
    "combo": "easy",
    "space": SPACE,
    "n_trials": 4,
    "epochs_per_trial": 2,
    "workers": 2,
    "startup_trials": 2,
    "pruner": "none",
}


def make_spectra(path: Path, n: int, seed: int) -> None:
    """LBGs: a Ly-alpha line and a break; contaminants: sloped continua (as in test_train)."""
    rng = np.random.default_rng(seed)
    wavelength = GRID.centres
    is_lbg = rng.random(n) < 0.5
    z = np.where(is_lbg, rng.uniform(2.2, 3.8, n), rng.uniform(0.05, 3.0, n))
    flux = 1.0 + rng.uniform(-0.3, 0.3, n)[:, None] * (wavelength[None, :] - 6800) / 3200
    lya = (1 + z[:, None]) * LYA
    line = 4.0 * np.exp(-0.5 * ((wavelength[None, :] - lya) / 25.0) ** 2)
    flux = np.where(is_lbg[:, None], np.where(wavelength[None, :] < lya, 0.4 * flux, flux) + line, flux)
    flux = flux + rng.normal(0, 0.3, flux.shape)
    truth = pd.DataFrame(
        {"TARGETID": np.arange(n) + 1000 * seed, "Z": z, "SPECTYPE": np.where(is_lbg, "LBG", "QSO")}
    )
    ivar = np.full_like(flux, 1 / 0.3**2)
    write_spectra(
        path, SpectrumSet(GRID.wavelength, flux.astype(np.float32), ivar.astype(np.float32), truth, GRID)
    )


@pytest.fixture(scope="module")
def combo(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("combos") / "easy"
    folder.mkdir()
    make_spectra(folder / "train.fits", 256, seed=1)
    make_spectra(folder / "val.fits", 128, seed=2)
    return folder


def worker_kwargs(combo: Path, folder: Path, search: dict, worker: int = 0, **extra) -> dict:
    return dict(
        search="demo",
        search_config=search,
        base_spec=BASE,
        train_path=combo / "train.fits",
        val_path=combo / "val.fits",
        folder=folder,
        seed=7,
        worker=worker,
        device="cpu",
        threads=1,
        **extra,
    )


def load_study(folder: Path, search: dict) -> optuna.Study:
    settings = search_settings(search)
    return open_study(study_name("demo", settings, full_spec(BASE)), settings, folder)


def states(study: optuna.Study) -> list[str]:
    return [t.state.name for t in study.get_trials(deepcopy=False)]


# ----------------------------------------------------------------------------------------------
# Workers


WORKER_SCRIPT = """
import json, sys, torch
torch.set_num_threads(1)
from lymannet.tune import worker_main
kwargs = json.loads(sys.argv[1])
worker_main(kwargs.pop("marker"), **kwargs)
"""


def spawn_worker(combo: Path, folder: Path, search: dict, worker: int, script: str = WORKER_SCRIPT):
    kwargs = worker_kwargs(combo, folder, search, worker)
    kwargs = {k: str(v) if isinstance(v, Path) else v for k, v in kwargs.items()}
    kwargs["marker"] = str(folder / f"worker_{worker}.done")
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(script), json.dumps(kwargs)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def test_two_workers_share_one_study_then_a_rerun_adds_nothing(combo, tmp_path):
    folder = tmp_path / "tune"
    workers = [spawn_worker(combo, folder, SEARCH, i) for i in range(2)]
    for process in workers:
        output, _ = process.communicate(timeout=120)
        assert process.returncode == 0, output
    markers = [json.loads((folder / f"worker_{i}.done").read_text()) for i in range(2)]
    ran = [set(m["trials_run_here"]) for m in markers]
    assert ran[0] and ran[1], "both workers ran trials"
    assert not ran[0] & ran[1], "no trial ran twice"
    study = load_study(folder, SEARCH)
    assert ran[0] | ran[1] == {t.number for t in study.trials}
    # Exactly n_trials, unless both workers saw the last free slot at the same instant.
    assert SEARCH["n_trials"] <= states(study).count("COMPLETE") <= SEARCH["n_trials"] + 1
    n_before = len(study.trials)
    summary = run_worker(**worker_kwargs(combo, folder, SEARCH))
    assert summary["trials_run_here"] == []
    assert len(load_study(folder, SEARCH).trials) == n_before

    # tune_best: a spec `train` can use, and the table of thesis tables 4.1/4.2.
    out = tmp_path / "best"
    paths = {
        "best_model": out / "best_model.yaml",
        "trials_csv": out / "trials.csv",
        "table_csv": out / "best_params.csv",
        "table_md": out / "best_params.md",
        "history_png": out / "history.png",
        "importance_png": out / "importance.png",
    }
    out.mkdir()
    result = write_results("demo", SEARCH, BASE, folder, **paths)
    spec = yaml.safe_load(paths["best_model"].read_text())
    build_model(spec, GRID.n_pixels)
    assert spec["train"]["epochs"] == BASE["train"]["epochs"]  # the base's, not epochs_per_trial
    assert spec["conv"]["layers"] == result["best_params"]["conv.layers"]
    table = pd.read_csv(paths["table_csv"])
    assert list(table["hyper-parameter"]) == list(SPACE)
    assert list(table.columns) == ["hyper-parameter", "search range", "before search", "best"]
    assert table.set_index("hyper-parameter").loc["conv.layers", "before search"] == "2"
    assert "| conv.filters |" in paths["table_md"].read_text()
    assert paths["history_png"].stat().st_size > 1000 and paths["importance_png"].stat().st_size > 1000


KILLABLE_SCRIPT = """
import json, sys, time, torch
from pathlib import Path
torch.set_num_threads(1)
from lymannet import train as lymannet_train
from lymannet.tune import worker_main

kwargs = json.loads(sys.argv[1])
flag = Path(kwargs["folder"]) / "mid_trial"

def slow_train(*args, epoch_callback=None, **kw):
    def callback(epoch, row):
        epoch_callback(epoch, row)
        flag.write_text("x")
        time.sleep(60)  # killed here, mid-trial
    return lymannet_train.train_model(*args, epoch_callback=callback, **kw)

worker_main(kwargs.pop("marker"), train_fn=slow_train, **kwargs)
"""


def test_a_killed_worker_leaves_its_trial_failed_and_a_rerun_completes(combo, tmp_path):
    folder = tmp_path / "tune"
    search = {**SEARCH, "n_trials": 2}
    process = spawn_worker(combo, folder, search, 0, KILLABLE_SCRIPT)
    deadline = time.time() + 60
    while not (folder / "mid_trial").exists():
        assert process.poll() is None and time.time() < deadline, process.stdout.read()
        time.sleep(0.1)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    assert states(load_study(folder, search)) == ["RUNNING"]
    assert not (folder / "worker_0.done").exists()

    summary = run_worker(**worker_kwargs(combo, folder, search))
    study = load_study(folder, search)
    assert states(study)[0] == "FAIL"
    assert states(study).count("COMPLETE") == 2
    assert summary["trials_run_here"] == [1, 2]


def test_stale_trials_by_heartbeat_age():
    now = time.time()
    trial = optuna.trial.create_trial(state=TrialState.RUNNING, user_attrs={"host": "elsewhere", "pid": 1})
    alive = optuna.trial.create_trial(
        state=TrialState.RUNNING, user_attrs={"host": "elsewhere", "pid": 1, "heartbeat": now - 30}
    )
    dead = optuna.trial.create_trial(
        state=TrialState.RUNNING, user_attrs={"host": "elsewhere", "pid": 1, "heartbeat": now - 700}
    )
    assert not is_stale(alive, 600, now) and is_stale(dead, 600, now)
    assert not is_stale(trial, 600, trial.datetime_start.timestamp() + 10)


# ----------------------------------------------------------------------------------------------
# Pruning and objectives


def stub_train(curves: dict[int, list[float]]):
    """A training that only reports the given validation losses (trial number -> curve)."""

    def train(name, spec, *args, epoch_callback=None, **kwargs):
        number = int(name.rsplit("trial", 1)[1])
        curve = curves.get(number, curves[-1])
        for epoch, loss in enumerate(curve[: spec["train"]["epochs"]], start=1):
            epoch_callback(epoch, {"val_loss": loss})
        return {"epochs_run": len(curve), "best_val_loss": min(curve), "parameters": 0}

    return train


def test_the_median_pruner_stops_a_hopeless_trial(combo, tmp_path):
    search = {
        **SEARCH,
        "n_trials": 4,
        "epochs_per_trial": 4,
        "pruner": "median",
        "startup_trials": 2,
        "warmup_epochs": 0,
        "sampler": "random",
    }
    curves = {0: [3.0, 2.0, 1.5, 1.2], 1: [3.2, 2.1, 1.6, 1.3], -1: [50.0, 50.0, 50.0, 50.0]}
    run_worker(**worker_kwargs(combo, tmp_path, search, train_fn=stub_train(curves)))
    study = load_study(tmp_path, search)
    assert states(study) == ["COMPLETE", "COMPLETE", "PRUNED", "PRUNED"]
    assert list(study.trials[2].intermediate_values) == [1]  # stopped after its first epoch


def test_an_impossible_architecture_is_pruned_not_failed(combo, tmp_path):
    # 8 'valid' layers of kernel 5, stride 4 leave no pixel of 200: prune, so it counts.
    base_conv = {
        "conv.layers": {"type": "int", "low": 8, "high": 8},
        "conv.stride": {"type": "int", "low": 4, "high": 4},
    }
    search = {**SEARCH, "n_trials": 1, "space": base_conv}
    base = {**BASE, "conv": {**BASE["conv"], "padding": "valid"}}
    run_worker(**{**worker_kwargs(combo, tmp_path, search), "base_spec": base})
    settings = search_settings(search)
    study = open_study(study_name("demo", settings, full_spec(base)), settings, tmp_path)
    assert states(study) == ["PRUNED"] and "no pixel" in study.trials[0].user_attrs["invalid"]


def test_pe_score_objective_is_a_score(combo, tmp_path):
    search = {**SEARCH, "n_trials": 1, "objective": "pe_score", "pruner": "median"}
    run_worker(**worker_kwargs(combo, tmp_path, search))
    study = load_study(tmp_path, search)
    assert study.direction.name == "MAXIMIZE"
    assert 0.0 <= study.trials[0].value <= 1.0


def test_a_searched_model_trains_from_the_best_spec(tmp_path):
    best = tmp_path / "best_model.yaml"
    best.write_text(yaml.safe_dump(full_spec(BASE)))
    merged = resolve_spec({"from_search": "demo", "train": {"epochs": 3}}, str(best))
    assert "from_search" not in merged and merged["train"]["epochs"] == 3
    assert merged["conv"] == full_spec(BASE)["conv"]
    assert resolve_spec(BASE, None) is BASE


def test_a_signal_mid_trial_fails_the_trial_and_exits_non_zero(combo, tmp_path):
    from lymannet.train import TrainingInterrupted
    from lymannet.tune import worker_main

    def preempted(*args, **kwargs):
        raise TrainingInterrupted(128 + signal.SIGUSR1)  # what train_model does on Slurm's USR1

    marker = tmp_path / "worker_0.done"
    with pytest.raises(SystemExit) as stop:
        worker_main(marker, **worker_kwargs(combo, tmp_path, SEARCH, train_fn=preempted))
    assert stop.value.code == 128 + signal.SIGUSR1 and not marker.exists()
    assert states(load_study(tmp_path, SEARCH)) == ["FAIL"]


def test_an_rdb_storage_works_like_the_journal(combo, tmp_path):
    search = {**SEARCH, "n_trials": 2, "storage": f"sqlite:///{tmp_path / 'study.db'}"}
    run_worker(**worker_kwargs(combo, tmp_path, search, train_fn=stub_train({-1: [2.0, 1.0]})))
    assert states(load_study(tmp_path, search)) == ["COMPLETE", "COMPLETE"]
    assert not (tmp_path / "journal.log").exists()
