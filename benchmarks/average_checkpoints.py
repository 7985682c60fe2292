"""Average the model weights of several checkpoints of one run (as icefall's --avg): the result is
the first checkpoint with every floating-point weight replaced by the mean over all of them.

    python benchmarks/average_checkpoints.py --out runs/default/avg-last4.pt \
        runs/default/snap-5200.pt runs/default/snap-5400.pt runs/default/snap-5600.pt runs/default/snap-5800.pt

Its training_state keeps only the last step and the steps averaged, so it is for evaluation and
export (or `train.init_from`), not `--resume`. `--float16` stores the weights in float16: the
committed resume point (`benchmarks/resume/whisper-tiny.pt`) is made that way.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from dualasr.checkpoint import read_checkpoint
from dualasr.fileio import atomic_write


def average(paths: list[Path], dtype: torch.dtype | None = None) -> dict:
    """The mean checkpoint; dtype: the floating-point weights' type (default: the first one's)."""
    payloads = [read_checkpoint(p) for p in paths]
    out = payloads[0]
    names = set(out["model"])
    for p, payload in zip(paths, payloads):
        if set(payload["model"]) != names:
            raise SystemExit(f"error: {p} holds other weights than {paths[0]}: not checkpoints of one model")
    for name, value in out["model"].items():
        if value.is_floating_point():
            total = sum(payload["model"][name].double() for payload in payloads)
            out["model"][name] = (total / len(payloads)).to(dtype or value.dtype)
    steps = [payload.get("training_state", {}).get("step") for payload in payloads]
    out["training_state"] = {"step": max(s for s in steps if s is not None), "averaged_steps": steps}
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("checkpoints", nargs="+", type=Path)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--float16", action="store_true", help="store the mean weights in float16 (a resume point)")
    args = p.parse_args()
    result = average(args.checkpoints, torch.float16 if args.float16 else None)
    atomic_write(args.out, lambda f: torch.save(result, f))
    print(f"{args.out}: mean of steps {result['training_state']['averaged_steps']}")


if __name__ == "__main__":
    main()
