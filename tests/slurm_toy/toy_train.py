"""Fake training step loop for the Slurm tests: checkpoint on SIGTERM/SIGUSR1, resume on rerun.

The checkpoint (JSON: the next step) and a history of attempts live outside the rule's outputs,
so a cancelled/preempted job leaves them for the retry; the output is written only at the end,
atomically (tmp + rename).
"""

import argparse
import json
import os
import signal
import sys
import time


def write_atomic(path, text):
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--input", required=True)
    ap.add_argument("--output", required=True)
    ap.add_argument("--checkpoint", required=True)
    ap.add_argument("--history", required=True)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--step-seconds", type=float, default=0.2)
    args = ap.parse_args()

    start = 0
    if os.path.exists(args.checkpoint):
        with open(args.checkpoint) as fh:
            start = json.load(fh)["next_step"]
    os.makedirs(os.path.dirname(args.history) or ".", exist_ok=True)
    job = os.environ.get("SLURM_JOB_ID", "none")
    with open(args.history, "a") as fh:
        fh.write(f"start step={start} job={job}\n")
    print(f"starting at step {start} of {args.steps} (job {job})", flush=True)

    state = {"step": start}

    def on_signal(signum, _frame):
        write_atomic(args.checkpoint, json.dumps({"next_step": state["step"]}))
        with open(args.history, "a") as fh:
            fh.write(f"signal {signal.Signals(signum).name} step={state['step']} job={job}\n")
        print(f"got {signal.Signals(signum).name}: checkpointed at step {state['step']}", flush=True)
        sys.exit(128 + signum)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGUSR1, on_signal)

    while state["step"] < args.steps:
        time.sleep(args.step_seconds)
        state["step"] += 1
        write_atomic(args.checkpoint, json.dumps({"next_step": state["step"]}))

    with open(args.input) as fh:
        n_lines = len(fh.read().splitlines())
    write_atomic(args.output, f"model trained steps={args.steps} resumed_from={start} lines={n_lines}\n")
    os.remove(args.checkpoint)
    with open(args.history, "a") as fh:
        fh.write(f"done job={job}\n")


if __name__ == "__main__":
    main()
