"""profiles/slurm on a real (local, single-node) Slurm with slurmdbd accounting.

The cluster comes from scripts/local-slurm.sh through the `slurm_cluster` session fixture (root
only; skipped otherwise). Most tests run the toy workflow in tests/slurm_toy/; the last one runs
the real DAG. Every Snakemake runs with `--profile profiles/slurm` plus a generated profile that
only swaps the site values (account, partition, sizes) for the local cluster's.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from slurm_cluster import (  # noqa: F401  (slurm_cluster is a fixture)
    PROFILE,
    REPO,
    SNAKEMAKE,
    TIMINGS,
    cleanup_runs,
    run_snakemake_on_slurm,
    sacct_jobs,
    slurm_cluster,
    squeue_jobs,
    start_snakemake_on_slurm,
    wait_until,
)

TOY = Path(__file__).resolve().parent / "slurm_toy"


def toy_workdir(tmp_path: Path, **config) -> Path:
    workdir = tmp_path / "toy"
    shutil.copytree(TOY, workdir, ignore=shutil.ignore_patterns("__pycache__"))
    cfg = yaml.safe_load((workdir / "config.yaml").read_text())
    cfg.update(config)
    (workdir / "config.yaml").write_text(yaml.safe_dump(cfg))
    return workdir


def toy_args(*extra: str) -> list[str]:
    # --configfile takes several values: it goes last, after targets
    return [*extra, "--configfile", "config.yaml"]


def rules_of(jobs: list[dict[str, str]]) -> list[str]:
    """'process:b', 'combine', ... from the sacct Comment the plugin sets (rule_<r>_wildcards_<w>)."""
    out = []
    for job in jobs:
        comment = job["Comment"].removeprefix("rule_")
        rule, _, wildcards = comment.partition("_wildcards_")
        out.append(f"{rule}:{wildcards}" if wildcards else rule)
    return sorted(out)


def mtimes(workdir: Path, *paths: str) -> dict[str, int]:
    return {p: (workdir / p).stat().st_mtime_ns for p in paths}


@pytest.fixture(autouse=True)
def _time_each_test_and_clean_up(request):
    t0 = time.monotonic()
    yield
    TIMINGS[request.node.name] = time.monotonic() - t0
    cleanup_runs()  # a failed test must not leave snakemake or Slurm jobs behind


def test_profile_dry_run_parses_without_cluster(tmp_path):
    """No cluster needed: the profile parses and plans the toy DAG with the train resources."""
    workdir = toy_workdir(tmp_path)
    result = subprocess.run(
        [
            "timeout",
            "-s",
            "KILL",
            "300",
            SNAKEMAKE,
            "--profile",
            str(PROFILE),
            "--workflow-profile",
            "none",
            "-n",
            *toy_args(),
        ],
        cwd=workdir,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    out = result.stdout
    assert "train" in out and "gpu=1" in out and "cpus_per_gpu=" in out, out[-4000:]
    assert "slurm_extra=--signal=USR1@120" in out, out[-4000:]
    assert "cpus_per_task" not in out  # would override cpus_per_gpu of the GPU rules
    profile = yaml.safe_load((PROFILE / "config.yaml").read_text())
    assert profile["executor"] == "slurm" and profile["retries"] >= 1 and profile["rerun-incomplete"]
    for rule, res in profile["set-resources"].items():
        assert "--gres" not in str(res.get("slurm_extra", "")) and "--gpus" not in str(
            res.get("slurm_extra", "")
        )


@pytest.mark.slurm
def test_jobs_go_through_sbatch_and_sacct_gpu_rule_sees_device(slurm_cluster, tmp_path):
    workdir = toy_workdir(tmp_path)
    run = run_snakemake_on_slurm(workdir, extra_args=toy_args(), timeout=300)
    assert run.returncode == 0, run.tail()
    jobs = sacct_jobs(run.started)
    assert rules_of(jobs) == ["combine", "gpu_probe", "process:a", "process:b", "process:c", "train"], jobs
    assert {j["State"] for j in jobs} == {"COMPLETED"}, jobs
    assert {j["Account"] for j in jobs} == {slurm_cluster.account}
    # each job ran inside its own allocation
    job_ids = {j["JobIDRaw"] for j in jobs}
    for item in "abc":
        text = (workdir / f"results/processed/{item}.txt").read_text()
        assert text.startswith(f"ITEM {item.upper()} job=") and text.split("job=")[1].strip() in job_ids
    gpu = dict(line.split("=", 1) for line in (workdir / "results/gpu.txt").read_text().split())
    assert gpu["CUDA_VISIBLE_DEVICES"] == "0", gpu
    assert gpu["SLURM_JOB_ID"] in job_ids
    assert "resumed_from=0" in (workdir / "results/model.txt").read_text()
    # the GPU rule asked for its GPU the plugin's way, with cpus per GPU and the signal
    assert "--gpus=1" in run.output or "gpu=1" in run.output


@pytest.mark.slurm
def test_failed_job_reported_others_finish_rerun_completes_only_missing(slurm_cluster, tmp_path):
    workdir = toy_workdir(tmp_path)
    (workdir / "inputs/b.txt").write_text("item b BAD\n")
    # --retries 0: a bad input fails the same way on every attempt; retries are tested below
    run = run_snakemake_on_slurm(workdir, extra_args=toy_args("--retries", "0"), timeout=300)
    assert run.returncode != 0, run.tail()
    assert "Error in rule process" in run.output and "item=b" in run.output, run.tail()
    states = {rules_of([j])[0]: j["State"] for j in sacct_jobs(run.started)}
    assert states == {
        "gpu_probe": "COMPLETED",
        "process:a": "COMPLETED",
        "process:b": "FAILED",
        "process:c": "COMPLETED",
    }, states
    assert (workdir / "results/processed/a.txt").exists() and (workdir / "results/processed/c.txt").exists()
    # the failed job's partial output was removed; nothing downstream of it was made
    assert not (workdir / "results/processed/b.txt").exists()
    assert not (workdir / "results/combined.txt").exists() and not (workdir / "results/model.txt").exists()
    assert "bad input" in (workdir / "logs/process/b.log").read_text()
    before = mtimes(workdir, "results/processed/a.txt", "results/processed/c.txt", "results/gpu.txt")

    (workdir / "inputs/b.txt").write_text("item b\n")
    rerun = run_snakemake_on_slurm(workdir, extra_args=toy_args(), timeout=300)
    assert rerun.returncode == 0, rerun.tail()
    assert rules_of(sacct_jobs(rerun.started)) == ["combine", "process:b", "train"]
    assert mtimes(workdir, *before) == before
    assert (workdir / "results/combined.txt").read_text().count("\n") == 3


def _train_job_id() -> str | None:
    for job in squeue_jobs():
        if job["Comment"] == "rule_train" and job["State"] == "RUNNING":
            return job["JobID"]
    return None


def _checkpoint_step(workdir: Path) -> int:
    try:
        return json.loads((workdir / "ckpt/train.json").read_text())["next_step"]
    except (OSError, ValueError, KeyError):
        return 0


def _signal_train_when_started(workdir: Path, run, *scancel_args: str, min_step: int = 3):
    """Wait for the train job to run and make progress, then `scancel [args] <jobid>`."""
    job_id = wait_until(_train_job_id, 240, what="the train job to run")
    wait_until(
        lambda: _checkpoint_step(workdir) >= min_step or run.proc.poll() is not None,
        120,
        what="training to make progress",
    )
    assert run.proc.poll() is None, run.wait().tail()
    subprocess.run(["scancel", *scancel_args, job_id], check=True)
    return job_id, _checkpoint_step(workdir)


@pytest.mark.slurm
def test_scancel_of_training_then_rerun_resumes_from_checkpoint(slurm_cluster, tmp_path):
    workdir = toy_workdir(tmp_path, items=["a"], train_steps=60, step_seconds=0.5)
    run = start_snakemake_on_slurm(workdir, extra_args=toy_args("results/model.txt"), timeout=400)
    job_id, step = _signal_train_when_started(workdir, run)
    # snakemake-executor-plugin-slurm 2.8.0 does not recognise sacct's "CANCELLED by <uid>" as a
    # failure and keeps waiting for a job cancelled from outside; the user stops it (Ctrl-C) and
    # runs again (docs/slurm.md). Allow for a plugin that does notice.
    try:
        run.proc.wait(timeout=30)
        stopped_by_itself = True
    except subprocess.TimeoutExpired:
        stopped_by_itself = False
        os.kill(run.snakemake_pid(), signal.SIGINT)
    run.wait()
    TIMINGS["scancel: snakemake stopped by itself"] = float(stopped_by_itself)
    assert run.returncode != 0, run.tail()
    history = (workdir / "ckpt/history.txt").read_text()
    assert "signal SIGTERM" in history, history  # scancel: SIGTERM reached the training process
    assert not (workdir / "results/model.txt").exists()
    saved = _checkpoint_step(workdir)
    assert saved >= step > 0
    assert not squeue_jobs()

    rerun = run_snakemake_on_slurm(
        workdir, extra_args=toy_args("--rerun-incomplete", "results/model.txt"), timeout=400
    )
    assert rerun.returncode == 0, rerun.tail()
    assert rules_of(sacct_jobs(rerun.started)) == ["train"]
    model = (workdir / "results/model.txt").read_text()
    assert f"resumed_from={saved}" in model and "steps=60" in model, model
    history = (workdir / "ckpt/history.txt").read_text().splitlines()
    assert history[0] == f"start step=0 job={job_id}" and f"start step={saved} job=" in history[-2], history
    assert not (workdir / "ckpt/train.json").exists()


@pytest.mark.slurm
def test_time_limit_warning_signal_then_profile_retries_resume_training(slurm_cluster, tmp_path):
    """USR1 (what `--signal=USR1@120` sends before the time limit) -> checkpoint, non-zero exit,
    FAILED; the profile's `retries` resubmits within the same run and training resumes."""
    workdir = toy_workdir(tmp_path, items=["a"], train_steps=40, step_seconds=0.5)
    run = start_snakemake_on_slurm(workdir, extra_args=toy_args("results/model.txt"), timeout=400)
    job_id, step = _signal_train_when_started(workdir, run, "--signal=USR1")
    run.wait()
    assert run.returncode == 0, run.tail()
    history = (workdir / "ckpt/history.txt").read_text()
    assert f"signal SIGUSR1" in history, history
    model = (workdir / "results/model.txt").read_text()
    resumed = int(model.split("resumed_from=")[1].split()[0])
    assert resumed >= step > 0, model
    train_jobs = [j for j in sacct_jobs(run.started) if j["Comment"] == "rule_train"]
    assert [j["State"] for j in train_jobs] == ["FAILED", "COMPLETED"], train_jobs


@pytest.mark.slurm
def test_snakemake_killed_mid_run_then_rerun_completes_without_corruption(slurm_cluster, tmp_path):
    workdir = toy_workdir(tmp_path, process_sleep=6)
    run = start_snakemake_on_slurm(workdir, extra_args=toy_args(), timeout=300)
    wait_until(
        lambda: any(
            j["State"] == "RUNNING" and j["Comment"].startswith("rule_process") for j in squeue_jobs()
        ),
        120,
        what="a process job to run",
    )
    pid = run.snakemake_pid()
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    run.wait()
    assert run.returncode != 0
    # What a user does after losing the snakemake process (docs/slurm.md): its Slurm jobs live
    # on, cancel them, unlock, run again.
    orphans = squeue_jobs()
    assert orphans, "the Slurm jobs outlive the killed snakemake"
    subprocess.run(["scancel", *[j["JobID"] for j in orphans]], check=True)
    wait_until(lambda: not squeue_jobs(), 60, what="the cancelled jobs to leave the queue")
    unlock = run_snakemake_on_slurm(workdir, extra_args=toy_args("--unlock"), timeout=120)
    assert unlock.returncode == 0, unlock.tail()

    rerun = run_snakemake_on_slurm(workdir, extra_args=toy_args(), timeout=400)
    assert rerun.returncode == 0, rerun.tail()
    ran = rules_of(sacct_jobs(rerun.started))
    assert len(ran) == len(set(ran)), ran  # nothing submitted twice
    processed = {}
    for item in "abc":
        lines = (workdir / f"results/processed/{item}.txt").read_text().splitlines()
        assert len(lines) == 1 and lines[0].startswith(f"ITEM {item.upper()} job="), lines
        processed[item] = lines[0]
    assert (workdir / "results/combined.txt").read_text().splitlines() == [processed[i] for i in "abc"]
    assert "lines=3" in (workdir / "results/model.txt").read_text()
    nothing = subprocess.run(
        ["timeout", "-s", "KILL", "120", SNAKEMAKE, "-n", "--cores", "1", "--rerun-incomplete", *toy_args()],
        cwd=workdir,
        capture_output=True,
        text=True,
    )
    assert nothing.returncode == 0 and "Nothing to be done" in nothing.stdout + nothing.stderr, nothing.stdout


SMALL_CONFIGS = (
    "config/small.yaml",
    "config/test.yaml",
    "config/ci.yaml",
    "tests/data/small.yaml",
    "tests/small_config.yaml",
)


@pytest.mark.slurm
@pytest.mark.slow
def test_demo_dag_on_slurm(slurm_cluster, tmp_path):
    """The real DAG through `snakemake --profile profiles/slurm` (small config if there is one)."""
    if not (REPO / "Snakefile").exists():
        pytest.skip("no Snakefile in the repository yet")
    from conftest import copy_workflow

    workdir = copy_workflow(tmp_path / "demo")
    extra = []
    small = next((REPO / c for c in SMALL_CONFIGS if (REPO / c).exists()), None)
    if small is not None:
        extra += ["--configfile", str(small)]
    run = run_snakemake_on_slurm(
        workdir,
        snakefile=workdir / "Snakefile",
        extra_args=extra,
        timeout=int(os.environ.get("LYMANNET_SLURM_DEMO_TIMEOUT", "2400")),
    )
    assert run.returncode == 0, run.tail(12000)
    jobs = sacct_jobs(run.started)
    assert jobs and {j["State"] for j in jobs} == {"COMPLETED"}, jobs
    assert any(j["Comment"].startswith("rule_train") for j in jobs), jobs
    assert (workdir / "results" / "summary.csv").exists()
    # Every training job got the (fake) GPU from Slurm and fell back to the CPU.
    train_logs = list((workdir / "logs" / "train").glob("*/*.log"))
    assert train_logs
    for log_file in train_logs:
        text = log_file.read_text()
        assert "CUDA_VISIBLE_DEVICES=0; computing on cpu" in text, (log_file, text[-2000:])
    # The two tune workers ran as separate Slurm jobs.
    assert sum(j["Comment"].startswith("rule_tune_worker") for j in jobs) >= 2, jobs
