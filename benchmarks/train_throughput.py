"""Training throughput of the built-in recipe on this machine's cores, one process using them all
against one DDP process per core (torchrun, gloo), run one after the other on the same data and
weights: does a 2-core CPU train faster as one process or as two?

    python benchmarks/train_throughput.py --minutes 4 --json benchmarks/results/train_throughput.json

Each run is step 3 of benchmarks/train_default.sh (its data; its corpus is built first if missing)
for --minutes from the committed resume point, with the regularization and schedule position of
steps 0-5800, where this was first measured. Throughput is training audio per wall
second: each rank logs its own batches' audio, so the total is rank 0's figure times the ranks
(their batches are length-sorted neighbours of the same size budget). The first logged window
(start-up, first batches) is left out.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from dualasr.config import load_config
from dualasr.fileio import atomic_write

# Step 3 as steps 0-5800 ran it: the preset's dropout and SpecAugment (train_default.sh's INIT path
# turns them off) at that schedule position, no validation.
_PRESET = load_config("whisper-tiny")
CONDITIONS = ["--set", "data.valid=", "--set", "train.log_every=10",
              "--set", f"model.dropout={json.dumps(_PRESET.model.dropout)}",
              "--set", f"train.spec_augment={json.dumps(_PRESET.train.spec_augment)}"]


def run(label: str, processes: int, threads: int, minutes: float, out: Path) -> dict:
    env = {**os.environ, "OUT": str(out), "INIT": "benchmarks/resume/whisper-tiny.pt", "INIT_STEP": "5800",
           "PROCS": str(processes), "THREADS": str(threads), "MINUTES": str(minutes)}
    start = time.time()
    r = subprocess.run(["bash", "benchmarks/train_default.sh", *CONDITIONS], capture_output=True, text=True, env=env)
    if r.returncode != 0:
        raise SystemExit(f"{label} failed:\n{r.stdout[-2000:]}\n{r.stderr[-2000:]}")
    rows = [json.loads(line) for line in (out / "joint" / "metrics.jsonl").read_text().splitlines() if line.strip()]
    logged = [row for row in rows if "audio_s_per_s" in row][1:]
    if not logged:
        raise SystemExit(f"{label}: fewer than two logged windows in {minutes} min; give it more --minutes")
    rank0 = statistics.median(row["audio_s_per_s"] for row in logged)
    last = logged[-1]
    return {"processes": processes, "threads_per_process": threads, "wall_s": round(time.time() - start, 1),
            "steps": last["step"], "logged_windows": len(logged),
            "rank0_audio_s_per_s": round(rank0, 2), "audio_s_per_s": round(rank0 * processes, 2),
            "steps_per_min": round(last["step"] / minutes, 1)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--minutes", type=float, default=4.0)
    p.add_argument("--json", type=Path, required=True)
    args = p.parse_args()
    cores = os.cpu_count() or 1
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for label, procs, threads in ((f"1 process x {cores} threads", 1, cores),
                                      (f"{cores} processes x 1 thread", cores, 1)):
            results[label] = run(label, procs, threads, args.minutes, Path(tmp) / f"p{procs}")
            print(label, results[label], flush=True)
    one, many = results.values()
    report = {"command": " ".join(["python", *sys.argv]), "cores": cores, "minutes_each": args.minutes,
              "results": results, "ddp_over_one_process": round(many["audio_s_per_s"] / one["audio_s_per_s"], 2)}
    atomic_write(args.json, json.dumps(report, indent=1) + "\n")
    print(f"{args.json}: {cores} DDP processes train {report['ddp_over_one_process']}x the audio per second")


if __name__ == "__main__":
    main()
