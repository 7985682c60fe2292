"""Put Whisper's stem and lowest blocks back into a trained whisper-tiny checkpoint.

The committed resume point fine-tuned the whole body; the frozen-body probe found that Whisper's own
lower blocks, kept frozen, carry further to unseen speakers (benchmarks/results/frozen_body_probe_*).
Starting that recipe over from Whisper costs a head warm-up and hours of joint training; this
writes a starting point that keeps everything the resume point learned above `--blocks` (upper
blocks, output stacking, predictor, joiner, CTC head, and the lower blocks' streaming norms, which
have no pretrained counterpart) and takes the stem (input projection refitted on `--data`) and the
lowest `--blocks` blocks from Whisper tiny.en. Train on from it with `train.frozen_blocks` equal to
`--blocks` so those stay Whisper's.

    python benchmarks/restore_lower_blocks.py benchmarks/resume/whisper-tiny.pt runs/restored/init.pt \
        --blocks 2 --data data/mv/train.jsonl,data/mv/real_train.jsonl
"""

from __future__ import annotations

import argparse
import random
from pathlib import Path

import torch

from dualasr.batching import FeatureDataset
from dualasr.checkpoint import load_model, read_checkpoint, save_checkpoint
from dualasr.data import read_manifest
from dualasr.head_warmup import restart_from_pretrained
from dualasr.model import Transducer
from dualasr.tokenizer import Tokenizer
from dualasr.train import in_lower_body


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("checkpoint", help="a trained whisper-tiny checkpoint")
    ap.add_argument("out", help="checkpoint to write (must not exist)")
    ap.add_argument("--blocks", type=int, default=2, help="lowest transformer blocks taken from Whisper")
    ap.add_argument("--data", required=True, help="comma-separated manifests to refit the input projection on")
    ap.add_argument("--fit-utts", type=int, default=100)
    args = ap.parse_args(argv)

    out = Path(args.out)
    if out.exists():
        raise SystemExit(f"{out} exists; choose a new path")
    out.parent.mkdir(parents=True, exist_ok=True)
    trained, config, tok_bytes = load_model(args.checkpoint)
    if not 0 < args.blocks <= config.model.num_layers or config.model.encoder != "transformer":
        raise SystemExit(f"--blocks must be 1..{config.model.num_layers} of a transformer encoder")
    tok_path = out.with_suffix(".tokenizer.model")
    tok_path.write_bytes(tok_bytes)
    try:
        utts = [u for p in args.data.split(",") if p.strip() for u in read_manifest(p.strip())]
        random.Random(0).shuffle(utts)
        whisper = Transducer(config.model)
        whisper.load_state_dict(trained.state_dict())  # the input statistics the projection is fitted under
        residual = restart_from_pretrained(whisper, FeatureDataset(utts[: args.fit_utts * 10], Tokenizer(tok_path)),
                                           max_utts=args.fit_utts)
        # What train.frozen_blocks keeps: the stem and the lowest blocks, streaming norms excepted.
        state, pretrained = trained.state_dict(), whisper.state_dict()
        names = [k for k in state if in_lower_body(k, args.blocks)]
        state.update({k: pretrained[k] for k in names})
        trained.load_state_dict(state)
        training_state = dict(read_checkpoint(args.checkpoint).get("training_state", {}))
        training_state["restored_from_whisper"] = {"blocks": args.blocks, "tensors": len(names),
                                                   "input_projection_residual": round(residual, 4)}
        save_checkpoint(out, trained, config, tok_path, training_state)
    finally:
        tok_path.unlink()
    print(f"{out}: {len(names)} tensors from Whisper (stem + {args.blocks} blocks), input projection residual "
          f"{residual:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
