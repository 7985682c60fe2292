"""Head warm-up on cached encoder features, for a model whose encoder body is pretrained.

A pretrained body already hears speech; what is new (the output stacking, predictor, joiner and
CTC head) starts on the all-blank plateau, and on a CPU the plateau costs hours when every step
runs the whole 8M-parameter body. Here the body runs once per utterance and mode (eval mode, no
gradient), its outputs are kept in memory (float16), and the new layers train on them for many
cheap steps with the same losses as `dualasr train` (RNN-T in both modes + CTC). The result is a
checkpoint for `dualasr train --set train.init_from=...`, which then trains everything jointly with
in-place distillation (the paper's recipe) starting off the plateau.

    python -m dualasr.head_warmup runs/default/checkpoint-latest.pt runs/default/warm.pt \
        --data data/mv/train.jsonl,data/mv/real_train.jsonl --valid data/mv/real_test.jsonl
"""

from __future__ import annotations

import argparse
import json
import random
import time
from pathlib import Path

import torch
from torch import Tensor, nn

from . import MODES
from .batching import FeatureDataset, collate, length_sorted_batches, pad_rows
from .checkpoint import load_model, save_checkpoint
from .data import read_manifest
from .decoding import ctc_best_path, greedy_search
from .loss import ctc_loss, rnnt_loss
from .metrics import wer
from .model import Transducer
from .tokenizer import Tokenizer, normalize_text


def new_parameters(model: Transducer) -> list[nn.Parameter]:
    """What the warm-up trains: everything but the pretrained encoder body."""
    heads = [model.encoder.reduce, model.predictor, model.joiner]
    if model.ctc_head is not None:
        heads.append(model.ctc_head)
    return [p for m in heads for p in m.parameters()]


@torch.no_grad()
def cache_body_outputs(model: Transducer, dataset: FeatureDataset, batch_frames: int = 12000,
                       modes: tuple[str, ...] = MODES, blocks: int | None = None) -> list[dict]:
    """Per utterance {mode: [T', D] fp16 for each of `modes`, "tokens": [U], "text"}, eval mode:
    the encoder body's output before the output stacking, or with `blocks` the output of the
    stem and the lowest `blocks` blocks (`TransformerEncoder.lower`, a frozen lower part)."""
    model.eval()
    enc = model.encoder
    batches = length_sorted_batches(dataset.frame_lengths(), batch_frames)
    cached: list[dict] = [{} for _ in range(len(dataset))]
    t0 = time.time()
    for n, idx in enumerate(batches):
        b = collate([dataset[i] for i in idx])
        for mode in modes:
            if blocks is None:
                x, out_lens = enc.body(b["feats"], b["feat_lens"], mode)
            else:
                x, out_lens = enc.lower(b["feats"], b["feat_lens"], mode, blocks=blocks)
            for j, i in enumerate(idx):
                cached[i][mode] = x[j, : int(out_lens[j]) * enc.stack].half()
        for j, i in enumerate(idx):
            cached[i]["tokens"] = b["tokens"][j, : int(b["token_lens"][j])]
            cached[i]["text"] = b["texts"][j]
        if n % 20 == 0:
            print(f"cached {sum(len(b) for b in batches[:n + 1])}/{len(dataset)} utterances ({time.time() - t0:.0f} s)",
                  flush=True)
    return [c for c in cached if c["tokens"].numel() > 0 and c[modes[0]].shape[0] >= enc.stack]


def head_losses(model: Transducer, items: list[dict], ctc_weight: float, rnnt: bool = True) -> dict[str, Tensor]:
    """The training objective's RNN-T + CTC terms on cached body outputs, both modes (rnnt False:
    CTC only, a fraction of the cost: no [B, T, U, V] lattice)."""
    tokens, token_lens = pad_rows([it["tokens"] for it in items])
    pred = model.predictor(tokens) if rnnt else None
    out: dict[str, Tensor] = {}
    for mode in MODES:
        x, lens = pad_rows([it[mode].float() for it in items])
        enc, enc_lens = model.encoder._stack(x), lens // model.encoder.stack
        if rnnt:
            out[f"rnnt_{mode}"] = rnnt_loss(model.lattice_logits(enc, pred), tokens, enc_lens, token_lens)
        if model.ctc_head is not None and ctc_weight > 0:
            out[f"ctc_{mode}"] = ctc_loss(model.ctc_head(enc), tokens, enc_lens, token_lens)
    out["loss"] = sum((v for k, v in out.items() if k.startswith("rnnt_")), torch.zeros(())) + ctc_weight * sum(
        (v for k, v in out.items() if k.startswith("ctc_")), torch.zeros(()))
    return out


@torch.no_grad()
def cached_wer(model: Transducer, items: list[dict], tokenizer: Tokenizer, ctc: bool = False) -> dict[str, float]:
    """Greedy WER (percent) of cached utterances in both modes: RNN-T ("wer_<mode>"), or the CTC
    head's best path (ctc True, "ctc_wer_<mode>")."""
    model.eval()
    refs = [normalize_text(it["text"]) for it in items]
    scores = {}
    for mode in MODES:
        x, lens = pad_rows([it[mode].float() for it in items])
        enc, enc_lens = model.encoder._stack(x), lens // model.encoder.stack
        if ctc:
            paths = [ctc_best_path(out, int(n)) for out, n in zip(model.ctc_head(enc), enc_lens)]
        else:
            paths = [h.tokens for h in greedy_search(model, enc, enc_lens)]
        scores[f"{'ctc_' if ctc else ''}wer_{mode}"] = 100.0 * wer(refs, [tokenizer.decode(t) for t in paths])
    return scores


def restart_from_pretrained(model: Transducer, dataset: FeatureDataset, max_utts: int = 100) -> float:
    """Put the pretrained body back (Whisper's weights, input projection refitted on `dataset`) and
    re-initialize the new layers: a body that trained while the heads sat on the blank plateau has
    drifted (20%+ relative weight change in 450 steps here) and learns no faster than a fresh one.
    Returns the projection's relative residual."""
    from .audio import load_audio
    from .pretrained import fit_input_projection, load_whisper_encoder

    load_whisper_encoder(model)
    picks = range(0, len(dataset), max(1, len(dataset) // max_utts))
    residual = fit_input_projection(model, [(dataset.features(i), torch.from_numpy(load_audio(dataset.utts[i].audio)))
                                            for i in picks])
    heads = [model.encoder.reduce, model.predictor, model.joiner] + ([model.ctc_head] if model.ctc_head else [])
    for m in (m for h in heads for m in h.modules()):
        if hasattr(m, "reset_parameters"):
            m.reset_parameters()
    return residual


def train_heads(model: Transducer, train: list[dict], valid: list[dict], tokenizer: Tokenizer, steps: int,
                lr: float = 3e-3, batch_utts: int = 32, ctc_weight: float = 1.0, seed: int = 0,
                rnnt: bool = True, log=print) -> list[dict]:
    """Adam on `new_parameters` for `steps` steps of `batch_utts` random cached utterances (linear
    warm-up over the first 5%, then constant); validation every 10%. rnnt False: CTC only (trains
    the output stacking and the CTC head, cheaply). Returns the log records."""
    params = new_parameters(model) if rnnt else [p for m in (model.encoder.reduce, model.ctc_head) for p in m.parameters()]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=1e-3)
    warm = max(1, steps // 20)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / warm))
    rng = random.Random(seed)
    records: list[dict] = []
    t0 = time.time()
    for step in range(1, steps + 1):
        model.train()
        out = head_losses(model, rng.sample(train, min(batch_utts, len(train))), ctc_weight, rnnt)
        opt.zero_grad(set_to_none=True)
        out["loss"].backward()
        nn.utils.clip_grad_norm_(params, 5.0)
        opt.step()
        sched.step()
        if step % 50 == 0 or step == steps:
            rec = {"phase": "rnnt+ctc" if rnnt else "ctc", "step": step, "seconds": round(time.time() - t0, 1),
                   **{k: float(v.detach()) for k, v in out.items()}}
            if valid and (step % max(1, steps // 10) == 0 or step == steps):
                rec.update(cached_wer(model, valid, tokenizer, ctc=True))
                if rnnt:
                    rec.update(cached_wer(model, valid, tokenizer))
            records.append(rec)
            log(" ".join(f"{k} {v:.2f}" if isinstance(v, float) else f"{k} {v}" for k, v in rec.items()))
    return records


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m dualasr.head_warmup", description=__doc__.split("\n\n")[0])
    ap.add_argument("checkpoint", help="a checkpoint of a model with a pretrained encoder (model.pretrained set)")
    ap.add_argument("out", help="where to write the warmed-up checkpoint")
    ap.add_argument("--data", required=True, help="training manifests, comma-separated")
    ap.add_argument("--valid", default="", help="validation manifests, comma-separated (greedy WER every 10%%)")
    ap.add_argument("--utts", type=int, default=6000, help="training utterances to cache (random subset)")
    ap.add_argument("--valid-utts", type=int, default=200)
    ap.add_argument("--ctc-steps", type=int, default=1500, help="first phase: output stacking + CTC head only")
    ap.add_argument("--steps", type=int, default=400, help="second phase: all new layers, RNN-T + CTC")
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--from-pretrained", action="store_true",
                    help="reload the pretrained body and re-initialize the new layers first (see restart_from_pretrained)")
    ap.add_argument("--log", help="JSONL file for the progress records")
    ap.add_argument("--batch", type=int, default=32, help="utterances per step")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)

    model, config, tok_bytes = load_model(args.checkpoint)
    if config.model.encoder != "transformer" or not config.model.pretrained:
        raise SystemExit(f"{args.checkpoint}: head warm-up is for a pretrained transformer encoder (whisper-tiny)")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tok_path = out.with_suffix(".tokenizer.model")
    tok_path.write_bytes(tok_bytes)
    tokenizer = Tokenizer(tok_path)

    def subset(spec: str, n: int) -> FeatureDataset:
        utts = [u for p in spec.split(",") if p.strip() for u in read_manifest(p.strip())]
        random.Random(args.seed).shuffle(utts)
        return FeatureDataset(utts[:n], tokenizer)

    train_set = subset(args.data, args.utts)
    if args.from_pretrained:
        print(f"pretrained body restored; input projection residual {restart_from_pretrained(model, train_set):.3f}")
    train = cache_body_outputs(model, train_set)
    valid = cache_body_outputs(model, subset(args.valid, args.valid_utts)) if args.valid else []
    print(f"training the new layers on {len(train)} cached utterances ({len(valid)} valid)", flush=True)
    records = []
    for steps, rnnt in ((args.ctc_steps, False), (args.steps, True)):
        if steps > 0:
            records += train_heads(model, train, valid, tokenizer, steps, args.lr, args.batch,
                                   config.train.ctc_weight, args.seed, rnnt=rnnt)
            if args.log:
                Path(args.log).write_text("".join(json.dumps(r) + "\n" for r in records))
    save_checkpoint(out, model.eval(), config, tok_path)
    tok_path.unlink()
    print(f"wrote {out}; continue with: dualasr train ... --set train.init_from={out} "
          f"--set train.freeze_pretrained_steps=0")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
