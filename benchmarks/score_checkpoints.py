"""Score training checkpoints on test manifests with PyTorch greedy decoding, both modes.

Used for side-by-side comparisons of recipes (e.g. starting from Whisper tiny.en against training
from scratch for the same number of steps); the shipped model's own figures come from its exported
graphs through `dualasr bench` (benchmarks/eval_default.sh).

    python benchmarks/score_checkpoints.py --data data/real/real_eval.jsonl \
        --json benchmarks/results/pretrained_vs_scratch.json \
        pretrained=runs/default/checkpoint-step1000.pt scratch=runs/scratch/checkpoint-latest.pt
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from dualasr.checkpoint import load_model, read_checkpoint
from dualasr.batching import FeatureDataset
from dualasr.data import load_utterances
from dualasr.fileio import atomic_write
from dualasr.model import count_parameters
from dualasr.tokenizer import Tokenizer
from dualasr.train import evaluate


def score(checkpoint: Path, manifests: list[Path]) -> dict:
    model, cfg, tokenizer_bytes = load_model(checkpoint)
    tokenizer_path = checkpoint.with_suffix(".tokenizer.model")
    tokenizer_path.write_bytes(tokenizer_bytes)
    try:
        tokenizer = Tokenizer(tokenizer_path)
    finally:
        tokenizer_path.unlink()
    state = read_checkpoint(checkpoint).get("training_state", {})
    out = {"checkpoint": str(checkpoint), "step": state.get("step"), "params": count_parameters(model),
           "pretrained": cfg.model.pretrained, "sets": {}}
    for manifest in manifests:
        dataset = FeatureDataset(load_utterances(manifest), tokenizer)
        out["sets"][str(manifest)] = {"utterances": len(dataset), **evaluate(model, dataset, tokenizer, torch.device("cpu"))}
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("checkpoints", nargs="+", metavar="NAME=CHECKPOINT")
    p.add_argument("--data", action="append", required=True, help="test manifest (repeatable)")
    p.add_argument("--json", required=True)
    args = p.parse_args()
    results = {}
    for item in args.checkpoints:
        name, _, path = item.partition("=")
        results[name] = score(Path(path), [Path(d) for d in args.data])
        for manifest, r in results[name]["sets"].items():
            print(f"{name} (step {results[name]['step']}) {manifest}: WER streaming {r['wer_streaming']:.1f}% "
                  f"full {r['wer_full']:.1f}%", flush=True)
    text = json.dumps({"command": "python benchmarks/score_checkpoints.py " + " ".join(
        [f"--data {d}" for d in args.data] + [f"--json {args.json}"] + args.checkpoints), "results": results}, indent=1)
    atomic_write(args.json, lambda f: f.write(text.encode()))


if __name__ == "__main__":
    main()
