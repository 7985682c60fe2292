"""The worker protocol: every cell, the FLOP count and the matmul microbenchmark run in a fresh
subprocess, `python -m dualasr.bench worker {cell|peak|flops} SPEC.json OUT.json`, so a cell's peak
RSS, import and load time belong to it alone, thread pools (ExecuTorch's is process-wide) start
clean, and a crashing backend costs one cell. The parent writes the spec, the worker the result.
"""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
from pathlib import Path

from .schema import write_json

__all__ = ["THREAD_ENV", "run_worker", "worker_main"]

THREAD_ENV = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "VECLIB_MAXIMUM_THREADS",
              "NUMEXPR_NUM_THREADS")

_worker_ids = itertools.count()


def run_worker(kind: str, spec: dict, threads: int | None, timeout_s: float, workdir: Path) -> dict:
    """Run one worker subprocess; -> its JSON, or {"status": "error", "reason": ...}."""
    tag = f"{kind}-{next(_worker_ids)}"
    spec_path, out_path, log_path = workdir / f"{tag}.spec.json", workdir / f"{tag}.out.json", workdir / f"{tag}.log"
    spec_path.write_text(json.dumps(spec, default=str), encoding="utf-8")
    env = dict(os.environ)
    if threads:
        env.update({k: str(threads) for k in THREAD_ENV})
    env.setdefault("HF_HUB_OFFLINE", "1")
    env["TMPDIR"] = str(workdir)  # the worker's temp files go where the bench removes them, even on SIGTERM
    env["PYTHONWARNINGS"] = "ignore"
    cmd = [sys.executable, "-m", "dualasr.bench", "worker", kind, str(spec_path), str(out_path)]
    with open(log_path, "w", encoding="utf-8") as log:
        try:
            proc = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, timeout=timeout_s)
            rc = proc.returncode
        except subprocess.TimeoutExpired:
            rc = None
    if rc == 0 and out_path.is_file():
        return json.loads(out_path.read_text(encoding="utf-8"))
    tail = log_path.read_text(encoding="utf-8", errors="replace").strip().splitlines()[-12:]
    why = f"timed out after {timeout_s:.0f} s" if rc is None else f"worker exited with status {rc}"
    return {"status": "error", "reason": why + (": " + " | ".join(tail) if tail else "")}


def worker_main(argv: list[str]) -> int:
    """python -m dualasr.bench worker {cell|peak|flops} SPEC.json OUT.json"""
    if len(argv) != 4 or argv[0] != "worker" or argv[1] not in ("cell", "peak", "flops"):
        print("usage: python -m dualasr.bench worker {cell|peak|flops} SPEC.json OUT.json (internal)", file=sys.stderr)
        return 2
    spec = json.loads(Path(argv[2]).read_text(encoding="utf-8"))
    if argv[1] == "cell":
        from .cell import run_cell as work
    elif argv[1] == "peak":
        from .peak import peak_worker as work
    else:
        from .flops import flops_worker as work
    write_json(Path(argv[3]), work(spec))
    return 0
