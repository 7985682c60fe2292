"""How far a whisper-tiny checkpoint's encoder body moved from Whisper tiny.en's weights: relative
change ||w - w0|| / ||w0|| per pretrained tensor (those Whisper has; new layers are left out).

    python benchmarks/weight_drift.py CHECKPOINT --json benchmarks/results/whisper_tiny_body_drift.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from dualasr.checkpoint import load_model
from dualasr.pretrained import whisper_encoder_values


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("checkpoint")
    ap.add_argument("--json", required=True)
    args = ap.parse_args()
    model, config, _ = load_model(args.checkpoint)
    trained = model.state_dict()
    drift = {}
    for name, w0 in whisper_encoder_values(model).items():
        if float(w0.norm()) == 0.0:
            continue  # the zero-initialized relative-position biases have no pretrained value
        drift[name] = float((trained[name] - w0).norm() / w0.norm())
    values = sorted(drift.values())
    record = {"command": f"python benchmarks/weight_drift.py {args.checkpoint} --json {args.json}",
              "checkpoint": args.checkpoint, "step": torch.load(args.checkpoint, weights_only=True).get(
                  "training_state", {}).get("step"),
              "tensors": len(values), "median_relative_change": values[len(values) // 2], "max_relative_change": values[-1],
              "by_tensor": dict(sorted(drift.items(), key=lambda kv: -kv[1]))}
    Path(args.json).write_text(json.dumps(record, indent=1) + "\n")
    print(f"{len(values)} pretrained tensors: median relative change {record['median_relative_change']:.3f}, "
          f"max {record['max_relative_change']:.3f} ({args.json})")


if __name__ == "__main__":
    main()
