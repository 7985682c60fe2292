"""Does a Whisper body that stays (mostly) frozen carry to speakers the model never heard?

The whisper-tiny recipe fine-tunes the whole pretrained body on TTS voices and a few real
speakers; its in-domain WER keeps falling while real_eval (unseen people) hardly moves (README,
"The next built-in model"). This probe asks whether adapting only the top of the body keeps more
of Whisper's speaker independence. It restores Whisper tiny.en's encoder (input projection
refitted), runs the stem and the lowest `--frozen` blocks once per utterance in `--mode` (full
context by default; no gradient, kept in memory), then trains the blocks above, the final norm, the
output stacking and a fresh CTC head with the CTC loss for `--minutes` or `--steps`. It scores CTC
best-path WER on held-out sets, and the same sets with the starting checkpoint's own CTC head (the
fully fine-tuned body), side by side in one JSON.

Speakers named by `--dev-speakers` are removed from the training data and scored as "dev": unseen
real speakers for choosing a recipe, so real_eval stays a report, never a selection set.

    python benchmarks/frozen_body_probe.py benchmarks/resume/whisper-tiny.pt --frozen 2 \
        --train data/mv/train.jsonl,data/mv/real_train.jsonl,data/real/real_train_extra.jsonl \
        --dev-speakers mfa/michael,warzone2100/narrator \
        --eval asterisk=data/mv/real_test.jsonl --eval real_eval=data/real/real_eval.jsonl \
        --minutes 12 --json benchmarks/results/frozen_body_probe.json
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import sys
import time
from pathlib import Path

import torch
from torch import Tensor, nn

from dualasr.batching import FeatureDataset, pad_rows
from dualasr.checkpoint import load_model
from dualasr.data import Utterance, read_manifest
from dualasr.decoding import ctc_best_path
from dualasr.head_warmup import cache_body_outputs, restart_from_pretrained
from dualasr.loss import ctc_loss
from dualasr.metrics import wer
from dualasr.model import Transducer
from dualasr.tokenizer import Tokenizer, normalize_text
from dualasr.train import _cpu_has_bf16


def upper_ctc(model: Transducer, x: Tensor, lens: Tensor, frozen: int, mode: str) -> tuple[Tensor, Tensor]:
    """The trainable rest on cached `lower` outputs x [B, T', D] with lens [B] (valid frames):
    blocks above `frozen`, final norm, stacking, CTC head -> (log-probs [B, T'', V], lengths [B])."""
    enc = model.encoder
    out_lens = torch.div(lens, enc.stack, rounding_mode="floor")
    x = enc.upper(x, out_lens, mode, frozen)
    x = x[:, : x.shape[1] // enc.stack * enc.stack]
    return model.ctc_head(enc._stack(x)), out_lens


def cache(model: Transducer, utts: list[Utterance], tokenizer: Tokenizer, frozen: int, mode: str) -> list[dict]:
    """Per utterance {"x": [T', D] fp16, "tokens", "text"}: the frozen lower part's output."""
    items = cache_body_outputs(model, FeatureDataset(utts, tokenizer, cache=False), modes=(mode,), blocks=frozen)
    return [{"x": it[mode], "tokens": it["tokens"], "text": it["text"]} for it in items]


def batch(items: list[dict]) -> tuple[Tensor, Tensor]:
    x, lens = pad_rows([it["x"].float() for it in items])
    return x, lens


@torch.no_grad()
def score(model: Transducer, items: list[dict], tokenizer: Tokenizer, frozen: int, mode: str) -> float:
    model.eval()
    hyps = []
    for k in range(0, len(items), 16):
        x, lens = batch(items[k: k + 16])
        lp, n = upper_ctc(model, x, lens, frozen, mode)
        hyps += [tokenizer.decode(ctc_best_path(o, int(m))) for o, m in zip(lp, n)]
    return round(100.0 * wer([normalize_text(it["text"]) for it in items], hyps), 2)


@torch.no_grad()
def score_checkpoint(model: Transducer, utts: list[Utterance], tokenizer: Tokenizer, mode: str) -> float:
    """The checkpoint as trained: its whole encoder and CTC head."""
    model.eval()
    items = cache(model, utts, tokenizer, len(model.encoder.layers), mode)
    return score(model, items, tokenizer, len(model.encoder.layers), mode)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("checkpoint", help="a whisper-tiny checkpoint (its config and tokenizer are used)")
    ap.add_argument("--frozen", type=int, required=True, help="blocks kept frozen (0-4); 4: only the head trains")
    ap.add_argument("--mode", choices=["full", "streaming"], default="full",
                    help="the encoder mode trained and scored (streaming: the frozen blocks' norms stay frozen too)")
    ap.add_argument("--train", required=True, help="training manifests, comma-separated")
    ap.add_argument("--dev-speakers", default="", help="speakers removed from training and scored as 'dev'")
    ap.add_argument("--eval", action="append", default=[], help="NAME=MANIFEST, scored, never trained on")
    ap.add_argument("--utts", type=int, default=6000, help="training utterances (random subset)")
    ap.add_argument("--minutes", type=float, default=12.0)
    ap.add_argument("--steps", type=int, default=0, help="stop after this many steps (0: --minutes only)")
    ap.add_argument("--lr", type=float, default=1e-3, help="new layers; the body's blocks get --body-lr-scale x")
    ap.add_argument("--body-lr-scale", type=float, default=0.3)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--max-batch-frames", type=int, default=0,
                    help="drop a batch's longest utterances until utterances x longest stays within this many "
                         "body frames (0: no cap; `--frozen 0` without one was OOM-killed at 24 GB by the "
                         "attention maps of a batch with the longest clips)")
    ap.add_argument("--score-every", type=int, default=200)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", required=True)
    args = ap.parse_args(argv)
    torch.manual_seed(args.seed)
    t_start = time.time()

    model, config, tok_bytes = load_model(args.checkpoint)
    tok_path = Path(args.json).with_suffix(".tokenizer.model")
    tok_path.write_bytes(tok_bytes)
    tokenizer = Tokenizer(tok_path)
    dev_speakers = {s for s in args.dev_speakers.split(",") if s}
    train_all = [u for p in args.train.split(",") for u in read_manifest(p)]
    dev = [u for u in train_all if u.speaker in dev_speakers]
    train = [u for u in train_all if u.speaker not in dev_speakers]
    random.Random(args.seed).shuffle(train)
    train = train[: args.utts]
    evals = {"dev": dev} | {k: read_manifest(v) for k, v in (e.split("=", 1) for e in args.eval)}

    reference = {name: score_checkpoint(model, utts, tokenizer, args.mode) for name, utts in evals.items()}
    print(f"checkpoint's own CTC head, {args.mode}: {reference}", flush=True)

    residual = restart_from_pretrained(model, FeatureDataset(train, tokenizer))
    t0 = time.time()
    train_items = cache(model, train, tokenizer, args.frozen, args.mode)
    eval_items = {name: cache(model, utts, tokenizer, args.frozen, args.mode) for name, utts in evals.items()}
    cache_s = time.time() - t0
    print(f"cached {len(train_items)} training utterances in {cache_s:.0f} s", flush=True)

    enc = model.encoder
    body = [p for layer in enc.layers[args.frozen:] for p in layer.parameters()]
    new = [p for m in (enc.norm_out, enc.reduce, model.ctc_head) for p in m.parameters()]
    for p in model.parameters():
        p.requires_grad_(False)
    for p in body + new:
        p.requires_grad_(True)
    groups = [{"params": new, "lr": args.lr}]
    if body:
        groups.append({"params": body, "lr": args.lr * args.body_lr_scale})
    opt = torch.optim.AdamW(groups, weight_decay=1e-3)
    warm = 100
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / warm))
    rng = random.Random(args.seed)
    records: list[dict] = []
    t0, step = time.time(), 0
    while True:
        step += 1
        model.train()
        items = sorted(rng.sample(train_items, min(args.batch, len(train_items))), key=lambda it: it["x"].shape[0])
        while args.max_batch_frames and len(items) > 1 and len(items) * items[-1]["x"].shape[0] > args.max_batch_frames:
            items.pop()
        x, lens = batch(items)
        tokens, token_lens = pad_rows([it["tokens"] for it in items])
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=_cpu_has_bf16()):
            lp, n = upper_ctc(model, x, lens, args.frozen, args.mode)
        loss = ctc_loss(lp, tokens, n, token_lens)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(body + new, 5.0)
        opt.step()
        sched.step()
        done = time.time() - t0 > args.minutes * 60 or step == args.steps
        if step % args.score_every == 0 or done:
            rec = {"step": step, "seconds": round(time.time() - t0, 1), "ctc_loss": round(float(loss.detach()), 2),
                   **{f"wer_{k}": score(model, v, tokenizer, args.frozen, args.mode) for k, v in eval_items.items()}}
            records.append(rec)
            print(json.dumps(rec), flush=True)
        if done:
            break
    tok_path.unlink()
    result = {
        "command": "python " + " ".join(sys.argv),
        "machine": {"cpu": platform.processor() or platform.machine(), "threads": torch.get_num_threads(),
                    "bf16_autocast": _cpu_has_bf16()},
        "checkpoint": args.checkpoint, "frozen_blocks": args.frozen, "mode": args.mode,
        "trained_parameters": sum(p.numel() for p in body + new),
        "train_utterances": len(train_items), "dev_speakers": sorted(dev_speakers),
        "eval_utterances": {k: len(v) for k, v in eval_items.items()},
        "input_projection_residual": round(residual, 4), "cache_seconds": round(cache_s, 1),
        "wall_seconds": round(time.time() - t_start, 1),
        "checkpoint_ctc_wer": reference, "records": records,
        "note": f"CTC best-path WER (percent), {args.mode}; checkpoint_ctc_wer: its own fully fine-tuned "
                "body and CTC head (it was trained on the dev speakers)",
    }
    Path(args.json).write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
