"""The paper's Table-4 ablation at a size this machine can train.

Trains the same small Dual-mode Conformer under each variant with the same budget (wall-clock
minutes, 1 thread each) and seeds, then scores every checkpoint on the synthesized test set and
on the held-out real-speech test set: streaming WER, full-context WER, and the streaming
emission latency (Latency@50/@90, last token's frame end minus the manifest's end of speech).

    python benchmarks/ablation.py --minutes 8 --seeds 0 --parallel 2      # what ran here (CPU)
    python benchmarks/ablation.py --minutes 60 --seeds 0,1 --parallel 1   # on a GPU machine

Results: benchmarks/results/ablation.json and ablation.md.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

VARIANTS: dict[str, list[str]] = {
    "streaming-only": ["train.mode=streaming"],
    "full-only": ["train.mode=full"],
    "dual, random sampling": ["train.mode=random"],
    "dual, joint": ["train.mode=joint"],
    **{f"dual, joint + distill {s:+d}": ["train.mode=joint", "train.distill_weight=0.5", f"train.distill_shift={s}"]
       for s in (-2, -1, 0, 1, 2)},
}
CONTEXTNET = "contextnet, joint + distill 0"


def run_name(variant: str, seed: int) -> str:
    slug = "".join(c if c.isalnum() else "-" for c in variant).strip("-")
    while "--" in slug:
        slug = slug.replace("--", "-")
    return f"{slug}-s{seed}"


def train_command(variant: str, seed: int, args: argparse.Namespace, out: Path) -> list[str]:
    config = "tiny-contextnet" if variant == CONTEXTNET else "tiny"
    sets = VARIANTS.get(variant, ["train.mode=joint", "train.distill_weight=0.5", "train.distill_shift=0"])
    sets = sets + [f"train.seed={seed}", f"train.max_minutes={args.minutes}", f"data.train={args.train}",
                   f"data.valid={args.valid}", "train.valid_every=100000", "train.checkpoint_every=200"]
    cmd = [sys.executable, "-m", "dualasr.cli", "train", "--config", config, "--out", str(out), "--no-progress"]
    for s in sets:
        cmd += ["--set", s]
    return cmd


def score(checkpoint: Path, manifests: dict[str, str]) -> dict:
    """Greedy-decode each test set in both modes -> WER per mode, streaming Latency@50/@90."""
    import torch

    from dualasr.checkpoint import load_model
    from dualasr.data import FeatureDataset, collate, read_manifest
    from dualasr.decoding import greedy_search
    from dualasr.metrics import emission_latency, latency_percentiles, wer
    from dualasr.model import count_parameters
    from dualasr.tokenizer import Tokenizer, normalize_text

    torch.set_num_threads(1)
    model, cfg, tok_bytes = load_model(checkpoint)
    tok_path = checkpoint.parent / "tokenizer.model"
    tokenizer = Tokenizer(tok_path)
    frame_s = cfg.model.subsampling * 0.01
    out: dict = {"params": count_parameters(model) - (count_parameters(model.ctc_head) if model.ctc_head else 0)}
    for set_name, manifest in manifests.items():
        utts = read_manifest(manifest)
        ds = FeatureDataset(utts, tokenizer)
        refs = [normalize_text(u.text) for u in utts]
        for mode in ("streaming", "full"):
            hyps, lats = [], []
            with torch.no_grad():
                for start in range(0, len(ds), 16):
                    idx = list(range(start, min(start + 16, len(ds))))
                    b = collate([ds[i] for i in idx])
                    enc, enc_lens = model.encode(b["feats"], b["feat_lens"], mode)
                    for i, h in zip(idx, greedy_search(model, enc, enc_lens)):
                        hyps.append(tokenizer.decode(h.tokens))
                        end = utts[i].speech_end
                        if end is not None:
                            lats.append(emission_latency([(f + 1) * frame_s for f in h.frames], end))
            out[f"{set_name}/wer_{mode}"] = 100.0 * wer(refs, hyps)
            if mode == "streaming":
                p = latency_percentiles(lats)
                out[f"{set_name}/latency50_ms"] = 1000 * p["p50"]
                out[f"{set_name}/latency90_ms"] = 1000 * p["p90"]
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--minutes", type=float, default=8.0, help="training budget per run")
    p.add_argument("--seeds", default="0")
    p.add_argument("--variants", default="all", help="comma list of variant names, or 'all'")
    p.add_argument("--contextnet", action="store_true", help="also the ContextNet run of the best variant")
    p.add_argument("--parallel", type=int, default=2)
    p.add_argument("--train", default="data/full/train.jsonl,data/full/real_train.jsonl")
    p.add_argument("--valid", default="data/full/valid.jsonl")
    p.add_argument("--tts-test", default="data/full/test.jsonl")
    p.add_argument("--real-test", default="data/full/real_test.jsonl")
    p.add_argument("--runs", default="runs/ablation")
    p.add_argument("--results", default=str(ROOT / "benchmarks" / "results"))
    args = p.parse_args(argv)

    variants = list(VARIANTS) if args.variants == "all" else [v.strip() for v in args.variants.split(",")]
    if args.contextnet:
        variants.append(CONTEXTNET)
    seeds = [int(s) for s in args.seeds.split(",")]
    jobs = [(v, s) for v in variants for s in seeds]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    running: list[tuple[subprocess.Popen, str, int]] = []
    commands = {}
    for v, s in jobs:
        out = Path(args.runs) / run_name(v, s)
        if (out / "checkpoint-latest.pt").is_file():
            continue  # done earlier: the grid resumes
        while len(running) >= args.parallel:
            running = [(pr, a, b) for pr, a, b in running if pr.poll() is None]
            time.sleep(2)
        cmd = train_command(v, s, args, out)
        commands[run_name(v, s)] = " ".join(cmd[1:])
        print("start:", v, "seed", s, flush=True)
        out.mkdir(parents=True, exist_ok=True)
        log = open(out / "train.log", "w")
        running.append((subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT), v, s))
    for pr, v, s in running:
        if pr.wait() != 0:
            print(f"training {v} seed {s} failed; see its train.log", file=sys.stderr)

    rows = []
    sets = {"tts": args.tts_test, "real": args.real_test}
    for v, s in jobs:
        ckpt = Path(args.runs) / run_name(v, s) / "checkpoint-latest.pt"
        if not ckpt.is_file():
            continue
        row = {"variant": v, "seed": s, **score(ckpt, sets)}
        print(json.dumps(row), flush=True)
        rows.append(row)
    results = Path(args.results)
    results.mkdir(parents=True, exist_ok=True)
    (results / "ablation.json").write_text(json.dumps(
        {"minutes_per_run": args.minutes, "seeds": seeds, "train": args.train, "rows": rows}, indent=2))
    (results / "ablation.md").write_text(to_markdown(rows, args.minutes))
    print(to_markdown(rows, args.minutes))
    return 0


def to_markdown(rows: list[dict], minutes: float) -> str:
    head = ("| variant | seed | params | TTS WER stream | TTS WER full | real WER stream | real WER full | "
            "TTS Lat@50 / @90 ms | real Lat@50 / @90 ms |\n|---|---|---|---|---|---|---|---|---|\n")
    lines = []
    for r in rows:
        def f(k: str) -> str:
            return f"{r[k]:.1f}" if k in r and r[k] == r[k] else "–"
        lines.append(f"| {r['variant']} | {r['seed']} | {r['params'] / 1e6:.2f}M | {f('tts/wer_streaming')} | "
                     f"{f('tts/wer_full')} | {f('real/wer_streaming')} | {f('real/wer_full')} | "
                     f"{f('tts/latency50_ms')} / {f('tts/latency90_ms')} | {f('real/latency50_ms')} / {f('real/latency90_ms')} |")
    return f"Each run: {minutes:g} minutes of CPU training on 1 thread, greedy decoding.\n\n" + head + "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
