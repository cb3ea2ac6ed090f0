"""Bayesian hyper-parameter search (thesis section 4.4) with Optuna, run as parallel workers.

Every worker (one Snakemake job each, a GPU job on a cluster) opens the same study and runs trials
until the study holds `n_trials` finished (COMPLETE or PRUNED) trials. The study lives in an
Optuna JournalStorage file (`results/tune/<search>/journal.log`; its file lock works on a
cluster's shared file system, no database server) or in an RDB given by URL. The storage hands
each trial to exactly one worker.

A trial trains the base model with the sampled values (`lymannet.search`) for `epochs_per_trial`
epochs with `lymannet.train.train_model`, reporting the validation loss after every epoch so that
the pruner can stop hopeless trials. Its value is the best validation loss, or the
purity = efficiency score on the validation split (`pe_score`, maximised).

Crashed workers: a running trial carries its worker's host, pid and a heartbeat (a timestamp
refreshed every `heartbeat_seconds`). A worker starting a trial first marks FAIL every RUNNING trial
whose process is gone (same host) or whose heartbeat is older than `stale_after_seconds`. A worker
stopped by SIGTERM/SIGUSR1 (Slurm time limit, scancel, preemption) marks its own trial FAIL and
exits non-zero; the retry continues the study.
"""

from __future__ import annotations

import logging
import math
import os
import socket
import tempfile
import threading
import time
import warnings
from pathlib import Path
from typing import Any, Callable

import numpy as np
import optuna
import pandas as pd
import torch
import yaml
from optuna.trial import TrialState

from .config import job_seed
from .errors import ConfigError
from .evaluation import evaluate
from .figures import save_figure
from .fileio import atomic_path, write_json_atomic, write_text_atomic
from .metrics import ScoreOptions
from .modelfile import load_model_file
from .models import build_model, complete_spec
from .search import DIRECTIONS, Param, apply_params, get_path, parse_space, search_settings, study_name
from .spectra import SpectraFile, read_spectra
from .train import TrainingInterrupted, train_settings, train_model

log = logging.getLogger("lymannet")

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)


class WorkerInterrupted(Exception):
    """A signal stopped the worker mid-trial; Optuna marks the trial FAIL, the worker exits."""

    def __init__(self, exit_code: int):
        super().__init__(f"interrupted by a signal (exit code {exit_code})")
        self.exit_code = exit_code


def full_spec(spec: dict[str, Any]) -> dict[str, Any]:
    """A model spec with every model and train key present (what tune_best writes)."""
    full = complete_spec(spec)
    full["train"] = train_settings(full)
    return full


# ----------------------------------------------------------------------------------------------
# Storage and study


def default_storage_path(folder: str | Path) -> Path:
    return Path(folder) / "journal.log"


def open_storage(storage: str | None, folder: str | Path) -> optuna.storages.BaseStorage:
    """An RDB URL as given, otherwise a journal file under `folder`."""
    if storage:
        return optuna.storages.RDBStorage(storage)
    path = default_storage_path(folder)
    path.parent.mkdir(parents=True, exist_ok=True)
    return optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(path)))


def make_sampler(settings: dict[str, Any], seed: int) -> optuna.samplers.BaseSampler:
    startup = int(settings["startup_trials"])
    if settings["sampler"] == "gp":
        return optuna.samplers.GPSampler(seed=seed, n_startup_trials=startup)
    if settings["sampler"] == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    # constant_liar: parallel workers do not all sample next to the same promising point.
    return optuna.samplers.TPESampler(seed=seed, n_startup_trials=startup, constant_liar=True)


def make_pruner(settings: dict[str, Any]) -> optuna.pruners.BasePruner:
    warmup = int(settings["warmup_epochs"])
    if settings["pruner"] == "median":
        return optuna.pruners.MedianPruner(
            n_startup_trials=int(settings["startup_trials"]), n_warmup_steps=warmup
        )
    if settings["pruner"] == "hyperband":
        return optuna.pruners.HyperbandPruner(
            min_resource=max(1, warmup), max_resource=int(settings["epochs_per_trial"])
        )
    return optuna.pruners.NopPruner()


def open_study(
    name: str,
    settings: dict[str, Any],
    folder: str | Path,
    sampler: optuna.samplers.BaseSampler | None = None,
    pruner: optuna.pruners.BasePruner | None = None,
) -> optuna.Study:
    direction = DIRECTIONS[settings["objective"]]
    study = optuna.create_study(
        study_name=name,
        storage=open_storage(settings["storage"], folder),
        direction=direction,
        sampler=sampler,
        pruner=pruner,
        load_if_exists=True,
    )
    if study.direction.name.lower() != direction:
        raise ConfigError(
            f"study {name!r} exists with direction {study.direction.name.lower()}, not {direction}"
        )
    return study


# ----------------------------------------------------------------------------------------------
# Crashed workers: heartbeats and stale trials


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


def is_stale(trial: optuna.trial.FrozenTrial, stale_after_s: float, now: float | None = None) -> bool:
    now = time.time() if now is None else now
    attrs = trial.user_attrs
    if attrs.get("host") == socket.gethostname() and "pid" in attrs and not _process_alive(int(attrs["pid"])):
        return True
    started = trial.datetime_start.timestamp() if trial.datetime_start else now
    return now - float(attrs.get("heartbeat", started)) > stale_after_s


def fail_stale_trials(study: optuna.Study, stale_after_s: float) -> list[int]:
    """Mark FAIL the RUNNING trials of dead workers; returns their numbers."""
    failed = []
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if is_stale(trial, stale_after_s):
            # skip_if_finished: another worker may have failed it a moment ago
            study.tell(trial.number, state=TrialState.FAIL, skip_if_finished=True)
            failed.append(trial.number)
            log.warning("trial %d: its worker is gone (%s); marked FAIL", trial.number, trial.user_attrs)
    return failed


class Heartbeat:
    """Records host and pid on the trial, then a timestamp every `interval_s` seconds."""

    def __init__(self, trial: optuna.Trial, interval_s: float):
        self.trial, self.interval_s = trial, interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, daemon=True)

    def _beat(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.trial.set_user_attr("heartbeat", time.time())
            except Exception as error:  # noqa: BLE001 - a missed beat must not kill the trial
                log.warning("trial %d: heartbeat not recorded (%s)", self.trial.number, error)

    def __enter__(self) -> "Heartbeat":
        self.trial.set_user_attr("host", socket.gethostname())
        self.trial.set_user_attr("pid", os.getpid())
        self.trial.set_user_attr("heartbeat", time.time())
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()


# ----------------------------------------------------------------------------------------------
# The objective


def suggest(trial: optuna.Trial, space: list[Param]) -> dict[str, Any]:
    params: dict[str, Any] = {}
    for p in space:
        if p.kind == "int":
            params[p.path] = trial.suggest_int(p.path, p.low, p.high, step=int(p.step or 1), log=p.log)
        elif p.kind == "float":
            params[p.path] = trial.suggest_float(p.path, p.low, p.high, step=p.step, log=p.log)
        else:
            params[p.path] = trial.suggest_categorical(p.path, list(p.choices))
    return params


def trial_spec(base_spec: dict[str, Any], params: dict[str, Any], epochs: int) -> dict[str, Any]:
    spec = apply_params(base_spec, params)
    spec.setdefault("train", {})["epochs"] = epochs
    return spec


def pe_score(model_path: str | Path, val_path: str | Path, score: dict[str, Any] | None) -> float:
    """Purity = efficiency score of a trained model on the validation spectra (0 if undefined)."""
    options = ScoreOptions.from_config(score)
    loaded = load_model_file(model_path)
    val = read_spectra(val_path)
    outputs = loaded.predict(val.flux, val.ivar)
    c_line = outputs["c_line"]
    if np.isnan(c_line).all():  # a model without line finder: its class probability
        c_line = outputs["confidence"][:, None]
    catalogue = pd.DataFrame(
        {"Z": val.truth["Z"], "SPECTYPE": val.truth["SPECTYPE"], "Z_PRED": outputs["z_pred"]}
    )
    score = evaluate(catalogue, c_line, options).crossing.score
    # No crossing means the model finds nothing useful: the worst score, not a failed trial.
    return 0.0 if math.isnan(score) else score


class Objective:
    """Trains one trial's model; value = best val loss or the P=E score on the validation set."""

    def __init__(
        self,
        search: str,
        settings: dict[str, Any],
        base_spec: dict[str, Any],
        train_path: str | Path,
        val_path: str | Path,
        seed: int,
        score: dict[str, Any] | None = None,
        device: str = "auto",
        threads: int = 1,
        train_fn: Callable[..., dict[str, Any]] = train_model,
    ):
        self.search, self.settings, self.base_spec = search, settings, base_spec
        self.space = parse_space(settings["space"])
        self.train_path, self.val_path = Path(train_path), Path(val_path)
        self.seed, self.score, self.device, self.threads = seed, score, device, threads
        self.train_fn = train_fn  # tests swap in a stub
        self.minimize = DIRECTIONS[settings["objective"]] == "minimize"
        with SpectraFile(val_path) as spectra:
            self.n_pixels = spectra.grid.n_pixels if spectra.grid else 0
        self.trials_run: list[int] = []  # numbers of the trials this worker ran

    def __call__(self, trial: optuna.Trial) -> float:
        self.trials_run.append(trial.number)
        params = suggest(trial, self.space)
        spec = trial_spec(self.base_spec, params, int(self.settings["epochs_per_trial"]))
        try:
            build_model(spec, self.n_pixels)
        except ConfigError as error:
            # E.g. too many stride-8 layers for the spectrum: prune, so that the sampler learns
            # to avoid the region and the trial still counts.
            trial.set_user_attr("invalid", str(error))
            raise optuna.TrialPruned(f"invalid architecture: {error}") from None
        with (
            Heartbeat(trial, float(self.settings["heartbeat_seconds"])),
            tempfile.TemporaryDirectory() as tmp,
        ):
            summary = self._train(trial, spec, Path(tmp))
            trial.set_user_attr("epochs_run", summary["epochs_run"])
            trial.set_user_attr("best_val_loss", summary["best_val_loss"])
            trial.set_user_attr("parameters", summary["parameters"])
            if self.settings["objective"] == "val_loss":
                return float(summary["best_val_loss"])
            return pe_score(Path(tmp) / "model.pt", self.val_path, self.score)

    def _report(self, trial: optuna.Trial) -> Callable[[int, dict[str, Any]], None]:
        def report(epoch: int, row: dict[str, Any]) -> None:
            val_loss = float(row["val_loss"])
            if not math.isfinite(val_loss):
                raise optuna.TrialPruned(f"validation loss {val_loss} at epoch {epoch}")
            # Intermediate values follow the study's direction (a pe_score study maximises).
            trial.report(val_loss if self.minimize else -val_loss, epoch)
            if trial.should_prune():
                raise optuna.TrialPruned(f"val loss {val_loss:.4f} at epoch {epoch}")

        return report

    def _train(self, trial: optuna.Trial, spec: dict[str, Any], tmp: Path) -> dict[str, Any]:
        try:
            return self.train_fn(
                f"{self.search}-trial{trial.number}",
                spec,
                self.train_path,
                self.val_path,
                tmp / "model.pt",
                tmp / "history.csv",
                tmp / "learning_curve.png",
                tmp / "checkpoint.pt",
                seed=self.seed,
                device=self.device,
                threads=self.threads,
                epoch_callback=self._report(trial),
                combo=self.settings["combo"],
            )
        except TrainingInterrupted as stop:
            raise WorkerInterrupted(int(stop.code)) from None
        except torch.cuda.OutOfMemoryError as error:
            # Too big for the GPU: like an impossible architecture, a pruned (counted) trial.
            trial.set_user_attr("invalid", f"out of GPU memory: {error}")
            raise optuna.TrialPruned("out of GPU memory") from None


# ----------------------------------------------------------------------------------------------
# The worker


def finished_count(study: optuna.Study) -> int:
    return len(study.get_trials(deepcopy=False, states=FINISHED))


def trials_left(study: optuna.Study, n_trials: int) -> int:
    """Trials this worker may still start: running trials of other workers count as taken."""
    running = len(study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)))
    return n_trials - finished_count(study) - running


def run_worker(
    search: str,
    search_config: dict[str, Any],
    base_spec: dict[str, Any],
    train_path: str | Path,
    val_path: str | Path,
    folder: str | Path,
    seed: int,
    worker: int = 0,
    score: dict[str, Any] | None = None,
    device: str = "auto",
    threads: int = 1,
    train_fn: Callable[..., dict[str, Any]] = train_model,
) -> dict[str, Any]:
    """Run trials of the search's study until it has n_trials finished ones; returns a summary."""
    settings = search_settings(search_config)
    base = full_spec(base_spec)
    name = study_name(search, settings, base)
    n_trials = int(settings["n_trials"])
    probe = open_study(name, settings, folder)
    # The sampler's seed also depends on how far the study is, so that a rerun worker does not
    # replay the random start-up draws of its previous run.
    sampler_seed = job_seed(seed, search, str(worker), str(len(probe.trials))) % 2**32
    study = open_study(name, settings, folder, make_sampler(settings, sampler_seed), make_pruner(settings))
    objective = Objective(
        search, settings, base, train_path, val_path, seed, score, device, threads, train_fn
    )
    # One trial per optimize() call: between trials, dead workers' trials are failed and the
    # running trials of live workers count against n_trials (MaxTrialsCallback counts only
    # finished ones, so parallel workers would overshoot).
    while True:
        fail_stale_trials(study, float(settings["stale_after_seconds"]))
        if trials_left(study, n_trials) <= 0:
            break
        study.optimize(objective, n_trials=1, gc_after_trial=True)
    summary = {
        "search": search,
        "study": name,
        "worker": worker,
        "trials_run_here": objective.trials_run,
        "finished_trials": finished_count(study),
        "n_trials": n_trials,
    }
    log.info(
        "worker %d of search %s: ran trials %s; study has %d/%d finished",
        worker,
        search,
        objective.trials_run,
        summary["finished_trials"],
        n_trials,
    )
    return summary


def worker_main(marker: str | Path, **kwargs: Any) -> None:
    """run_worker, then the marker file; a signal mid-trial exits 128 + signal (trial FAIL)."""
    # Optuna's own lines (trial finished/pruned, best so far) into the rule's log file too.
    optuna.logging.disable_default_handler()
    optuna.logging.enable_propagation()
    try:
        summary = run_worker(**kwargs)
    except WorkerInterrupted as stop:
        log.warning("%s; the trial is marked FAIL and a rerun continues the study", stop)
        raise SystemExit(stop.exit_code) from None
    write_json_atomic(marker, summary)


# ----------------------------------------------------------------------------------------------
# Results: the best spec, the table, the plots


def load_finished_study(
    search: str, search_config: dict[str, Any], base_spec: dict[str, Any], folder: str | Path
) -> optuna.Study:
    settings = search_settings(search_config)
    study = open_study(study_name(search, settings, full_spec(base_spec)), settings, folder)
    if not study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        raise ConfigError(f"search {search!r}: no completed trial in study {study.study_name!r}")
    return study


def best_spec(study: optuna.Study, base_spec: dict[str, Any], search: str) -> dict[str, Any]:
    """The base model with the best trial's values: a complete spec that `train` can use (the
    training length stays the base model's, not epochs_per_trial)."""
    best = study.best_trial
    spec = full_spec(apply_params(full_spec(base_spec), best.params))
    spec["description"] = (
        f"best of hyper-parameter search {search!r} (study {study.study_name}): trial {best.number}, "
        f"objective {best.value:.6g}"
    )
    return spec


def params_table(space: list[Param], base_spec: dict[str, Any], best: dict[str, Any]) -> pd.DataFrame:
    """Thesis tables 4.1/4.2: hyper-parameter, search range, value before the search, best."""
    base = full_spec(base_spec)
    return pd.DataFrame(
        {
            "hyper-parameter": [p.path for p in space],
            "search range": [p.describe() for p in space],
            "before search": [_fmt(get_path(base, p.path)) for p in space],
            "best": [_fmt(best[p.path]) for p in space],
        }
    )


def _fmt(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def table_markdown(table: pd.DataFrame, caption: str) -> str:
    header = "| " + " | ".join(table.columns) + " |"
    rule = "|" + "|".join("---" for _ in table.columns) + "|"
    rows = ["| " + " | ".join(str(v) for v in row) + " |" for row in table.itertuples(index=False)]
    return "\n".join([header, rule, *rows, "", caption, ""])


def study_caption(study: optuna.Study, search: str) -> str:
    counts = {state.name: len(study.get_trials(deepcopy=False, states=(state,))) for state in TrialState}
    best = study.best_trial
    return (
        f"Search {search!r}: {counts['COMPLETE']} complete, {counts['PRUNED']} pruned, "
        f"{counts['FAIL']} failed trials; best trial {best.number}, objective {best.value:.6g}."
    )


def _save(fig: Any, path: str | Path) -> None:
    fig.tight_layout()
    save_figure(fig, path, dpi=100, tight=False)


def plot_history(study: optuna.Study, objective: str, path: str | Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    with warnings.catch_warnings():  # "experimental" since Optuna 2.2: noise in the log
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        ax = optuna.visualization.matplotlib.plot_optimization_history(study)
    ax.set_ylabel(f"objective ({objective})")
    _save(ax.figure, path)


def plot_importance(study: optuna.Study, path: str | Path) -> None:
    """fANOVA (Optuna's historical default) needs scikit-learn, which lymannet does not install;
    PED-ANOVA needs only numpy. With too few trials there is nothing to rank: say so."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    evaluator = optuna.importance.PedAnovaImportanceEvaluator()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            ax = optuna.visualization.matplotlib.plot_param_importances(study, evaluator=evaluator)
        fig = ax.figure
    except (ValueError, RuntimeError, ZeroDivisionError) as error:
        fig, ax = plt.subplots(figsize=(6, 3))
        ax.axis("off")
        ax.text(0.5, 0.5, f"no parameter importance: {error}", ha="center", va="center", wrap=True)
    _save(fig, path)


def write_results(
    search: str,
    search_config: dict[str, Any],
    base_spec: dict[str, Any],
    folder: str | Path,
    best_model: str | Path,
    trials_csv: str | Path,
    table_csv: str | Path,
    table_md: str | Path,
    history_png: str | Path,
    importance_png: str | Path,
) -> dict[str, Any]:
    study = load_finished_study(search, search_config, base_spec, folder)
    spec = best_spec(study, base_spec, search)
    write_text_atomic(best_model, yaml.safe_dump(spec, sort_keys=False))
    with atomic_path(trials_csv) as tmp:
        study.trials_dataframe().to_csv(tmp, index=False)
    table = params_table(parse_space(search_settings(search_config)["space"]), base_spec, study.best_params)
    with atomic_path(table_csv) as tmp:
        table.to_csv(tmp, index=False)
    write_text_atomic(table_md, table_markdown(table, study_caption(study, search)))
    plot_history(study, search_settings(search_config)["objective"], history_png)
    plot_importance(study, importance_png)
    log.info(
        "%s best: trial %d, value %.6g, %s",
        search,
        study.best_trial.number,
        study.best_value,
        study.best_params,
    )
    return {
        "best_trial": study.best_trial.number,
        "best_value": study.best_value,
        "best_params": study.best_params,
    }
