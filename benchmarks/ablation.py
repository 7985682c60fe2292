"""The paper's Table-4 ablation at a size this machine can train.

Trains the same small Dual-mode Conformer under each variant with the same budget and seeds, then
scores every checkpoint on the synthesized test set and on the held-out real-speech test set:
streaming WER, full-context WER, and the streaming emission latency (Latency@50/@90: the last
token's frame end minus the manifest's end of speech).

    # what ran here (2-core CPU): every variant with seed 0, the key rows also with seed 1
    python benchmarks/ablation.py --steps 2000 --seeds 0 --key-seeds 1 --contextnet --parallel 2
    python benchmarks/ablation.py --steps 20000 --seeds 0,1,2 --contextnet --parallel 1   # on a GPU

The budget is optimizer steps, as in the paper, not wall-clock time: a joint step runs both modes
and costs about twice a single-mode step, and a step budget does not depend on what else the
machine was doing. Each run gets one torch thread.

Results: benchmarks/results/ablation.json and ablation.md.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import re
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
# The rows the paper's claims compare (standalone vs dual-mode, random vs joint, distillation).
KEY_VARIANTS = ["streaming-only", "dual, random sampling", "dual, joint", "dual, joint + distill +0"]


def run_name(variant: str, seed: int) -> str:
    """A folder name per run; shift signs are spelled out so -1 and +1 never share a folder."""
    signed = re.sub(r"([+-])(\d)", lambda m: ("p" if m[1] == "+" else "m") + m[2], variant)
    slug = "".join(c if c.isalnum() else "-" for c in signed).strip("-")
    while "--" in slug:
        slug = slug.replace("--", "-")
    return f"{slug}-s{seed}"


def train_command(variant: str, seed: int, args: argparse.Namespace, out: Path) -> list[str]:
    config = "tiny-contextnet" if variant == CONTEXTNET else "tiny"
    sets = VARIANTS.get(variant, ["train.mode=joint", "train.distill_weight=0.5", "train.distill_shift=0"])
    sets = sets + [f"train.seed={seed}", f"train.max_steps={args.steps}", "train.max_minutes=0", f"data.train={args.train}",
                   f"data.valid={args.valid}", "train.valid_every=100000", "train.checkpoint_every=200"]
    # --resume: a run interrupted mid-way continues from its last checkpoint (bit-exactly).
    cmd = [sys.executable, "-m", "dualasr.cli", "train", "--config", config, "--out", str(out), "--no-progress",
           "--resume"]
    for s in sets:
        cmd += ["--set", s]
    return cmd


def score(checkpoint: Path, manifests: dict[str, str]) -> dict:
    """Greedy-decode each test set in both modes -> WER per mode, streaming Latency@50/@90."""
    import torch

    from dualasr.checkpoint import load_model
    from dualasr.batching import FeatureDataset, collate
    from dualasr.data import read_manifest
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


def finished(out: Path, steps: int) -> bool:
    """Whether the run in `out` has trained its whole step budget."""
    from dualasr.checkpoint import read_checkpoint

    ckpt = out / "checkpoint-latest.pt"
    return ckpt.is_file() and read_checkpoint(ckpt)["training_state"].get("step", 0) >= steps


def plan_jobs(variants: list[str], seeds: list[int], key_seeds: list[int]) -> list[tuple[str, int]]:
    """(variant, seed) runs: every variant with `seeds`, the key rows also with `key_seeds`."""
    jobs = [(v, s) for v in variants for s in seeds]
    return jobs + [(v, s) for s in key_seeds for v in KEY_VARIANTS if v in variants and (v, s) not in jobs]


def cached_score(checkpoint: Path, manifests: dict[str, str]) -> dict:
    """`score`, kept next to the checkpoint so a rerun of the grid only scores new runs."""
    cache = checkpoint.parent / "score.json"
    if cache.is_file() and cache.stat().st_mtime > checkpoint.stat().st_mtime:
        return json.loads(cache.read_text())
    result = score(checkpoint, manifests)
    cache.write_text(json.dumps(result))
    return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=2000, help="training budget per run (optimizer steps)")
    p.add_argument("--seeds", default="0", help="seeds for every variant")
    p.add_argument("--key-seeds", default="", help="extra seeds for the key rows only: " + ", ".join(KEY_VARIANTS))
    p.add_argument("--variants", default="all", help="comma list of variant names, or 'all'")
    p.add_argument("--contextnet", action="store_true", help="also a ContextNet run (joint + distillation, shift 0)")
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
    key_seeds = [int(s) for s in args.key_seeds.split(",") if s.strip()]
    jobs = plan_jobs(variants, seeds, key_seeds)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    running: list[tuple[subprocess.Popen, str, int]] = []
    commands = {run_name(v, s): " ".join(["dualasr"] + train_command(v, s, args, Path(args.runs) / run_name(v, s))[3:])
                for v, s in jobs}
    for v, s in jobs:
        out = Path(args.runs) / run_name(v, s)
        if finished(out, args.steps):
            continue  # done earlier: the grid resumes
        while len(running) >= args.parallel:
            running = [(pr, a, b) for pr, a, b in running if pr.poll() is None]
            time.sleep(2)
        cmd = train_command(v, s, args, out)
        print("start:", v, "seed", s, flush=True)
        out.mkdir(parents=True, exist_ok=True)
        log = open(out / "train.log", "a")  # a resumed run appends
        running.append((subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT), v, s))
    for pr, v, s in running:
        if pr.wait() != 0:
            print(f"training {v} seed {s} failed; see its train.log", file=sys.stderr)

    sets = {"tts": args.tts_test, "real": args.real_test}
    ckpts = [Path(args.runs) / run_name(v, s) / "checkpoint-latest.pt" for v, s in jobs]
    with multiprocessing.get_context("spawn").Pool(args.parallel) as pool:
        scores = pool.starmap(cached_score, [(c, sets) for c in ckpts if c.is_file()])
    rows = []
    for (v, s), sc in zip([j for j, c in zip(jobs, ckpts) if c.is_file()], scores):
        rows.append({"variant": v, "seed": s, **sc})
        print(json.dumps(rows[-1]), flush=True)
    results = Path(args.results)
    results.mkdir(parents=True, exist_ok=True)
    (results / "ablation.json").write_text(json.dumps(
        {"steps_per_run": args.steps, "seeds": seeds, "key_seeds": key_seeds, "train": args.train,
         "rows": rows, "commands": commands}, indent=2))
    (results / "ablation.md").write_text(to_markdown(rows, args.steps))
    print(to_markdown(rows, args.steps))
    return 0


def to_markdown(rows: list[dict], steps: int) -> str:
    """One line per variant: the mean over its seeds, and the range when there are several."""
    metrics = ["tts/wer_streaming", "tts/wer_full", "real/wer_streaming", "real/wer_full",
               "tts/latency50_ms", "tts/latency90_ms", "real/latency50_ms", "real/latency90_ms"]
    head = ("| variant | seeds | params | TTS WER stream | TTS WER full | real WER stream | real WER full | "
            "TTS Lat@50 / @90 ms | real Lat@50 / @90 ms |\n|---|---|---|---|---|---|---|---|---|\n")
    by_variant: dict[str, list[dict]] = {}
    for r in rows:
        by_variant.setdefault(r["variant"], []).append(r)
    lines = []
    for variant, rs in by_variant.items():
        def f(k: str) -> str:
            vals = [r[k] for r in rs if k in r and r[k] == r[k]]
            if not vals:
                return "–"
            mean = sum(vals) / len(vals)
            return f"{mean:.1f}" if len(vals) == 1 else f"{mean:.1f} ({min(vals):.1f}–{max(vals):.1f})"
        cells = {k: f(k) for k in metrics}
        lines.append(f"| {variant} | {len(rs)} | {rs[0]['params'] / 1e6:.2f}M | {cells['tts/wer_streaming']} | "
                     f"{cells['tts/wer_full']} | {cells['real/wer_streaming']} | {cells['real/wer_full']} | "
                     f"{cells['tts/latency50_ms']} / {cells['tts/latency90_ms']} | "
                     f"{cells['real/latency50_ms']} / {cells['real/latency90_ms']} |")
    return (f"Each run: {steps} training steps on CPU (1 thread), greedy decoding. With several "
            f"seeds: mean (min–max).\n\n" + head + "\n".join(lines) + "\n")


if __name__ == "__main__":
    sys.exit(main())
