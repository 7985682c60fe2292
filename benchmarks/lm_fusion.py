"""Token n-gram LM shallow fusion in beam search: choose its weight, token bonus and OOV-word penalty
on selection sets, then score greedy, beam and beam + LM on every set, both modes, fp32 and int8.

The LM's weight, per-token bonus and OOV penalty are chosen on --select sets only (the held-out Asterisk prompts
and TTS test voices), by the WER summed over them and both modes, fp32; the --eval sets (real_eval:
speakers nothing is trained or tuned on) are scored once with the choice. The LM must have been
built with --exclude for every set scored here (`dualasr lm` drops overlapping sentences).

    dualasr export CHECKPOINT --out runs/lm/export --formats onnx --quantize none,int8
    dualasr lm runs/lm/export --out runs/lm/lm.npz --exclude data/mv/real_test.jsonl \
        --exclude data/mv/test.jsonl --exclude data/real/real_eval.jsonl
    python benchmarks/lm_fusion.py runs/lm/export --lm runs/lm/lm.npz \
        --select data/mv/real_test.jsonl --select data/mv/test.jsonl --select-every 3 \
        --eval data/real/real_eval.jsonl --json benchmarks/results/lm_fusion.json

`--weights 0.4 --bonuses 1.5 --oov-penalties 0,-2,-4,-8 --configs fused` chose the OOV penalty with the
weight and bonus fixed at the runtime's defaults (benchmarks/results/lm_oov_penalty.json).
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
from pathlib import Path

from dualasr import MODES
from dualasr.audio import load_audio
from dualasr.data import load_utterances
from dualasr.fileio import atomic_write
from dualasr.metrics import wer
from dualasr.runtime.lm import TokenNgramLM
from dualasr.runtime.recognizer import Recognizer
from dualasr.tokenizer import normalize_text


def load_set(manifest: str, every: int = 1) -> list[tuple]:
    """[(samples, reference)] of every `every`-th utterance."""
    return [(load_audio(u.audio), normalize_text(u.text)) for u in load_utterances(manifest)[::every]]


def score(export: str, data: list[tuple], mode: str, precision: str = "fp32", beam: int = 0,
          lm: TokenNgramLM | None = None, weight: float = 0.0, bonus: float = 0.0, oov_penalty: float = 0.0) -> dict:
    """WER (percent) and seconds of one configuration on one set; beam 0 means greedy."""
    options = {"decoding": "beam", "beam": beam} if beam else {"decoding": "greedy"}
    if lm is not None:
        options.update(lm=lm, lm_weight=weight, lm_token_bonus=bonus, lm_oov_penalty=oov_penalty)
    rec = Recognizer(export, precision=precision, mode=mode, **options)
    t0 = time.perf_counter()
    hyps = [normalize_text(rec.recognize(samples, 16000).text) for samples, _ in data]
    return {"wer": round(100.0 * wer([ref for _, ref in data], hyps), 2), "seconds": round(time.perf_counter() - t0, 1)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("export")
    p.add_argument("--lm", required=True)
    p.add_argument("--select", action="append", required=True, help="selection manifest (repeatable)")
    p.add_argument("--select-every", type=int, default=1, help="every N-th utterance of the selection sets")
    p.add_argument("--eval", action="append", default=[], help="manifest scored once with the choice (repeatable)")
    p.add_argument("--beam", type=int, default=8)
    p.add_argument("--weights", default="0.2,0.3,0.4,0.5")
    p.add_argument("--bonuses", default="0.5,1.0,1.5")
    p.add_argument("--oov-penalties", default="0", help="penalties per word outside the LM text's words")
    p.add_argument("--configs", default="greedy,beam,fused", help="what the results score (comma list)")
    p.add_argument("--json", required=True)
    args = p.parse_args()

    lm = TokenNgramLM.load(args.lm)
    select = {m: load_set(m, args.select_every) for m in args.select}
    grid = {}
    floats = lambda text: [float(v) for v in text.split(",")]  # noqa: E731
    for weight, bonus, penalty in itertools.product(floats(args.weights), floats(args.bonuses), floats(args.oov_penalties)):
        cells = {f"{mode} {m}": score(args.export, data, mode, beam=args.beam, lm=lm, weight=weight, bonus=bonus,
                                      oov_penalty=penalty)
                 for mode in MODES for m, data in select.items()}
        grid[f"{weight}:{bonus}:{penalty}"] = {"weight": weight, "bonus": bonus, "oov_penalty": penalty, "cells": cells,
                                               "wer_sum": round(sum(c["wer"] for c in cells.values()), 2)}
        print(f"weight {weight} bonus {bonus} OOV penalty {penalty}: "
              + ", ".join(f"{k} {c['wer']:.1f}" for k, c in cells.items()), flush=True)
    chosen = min(grid.values(), key=lambda g: g["wer_sum"])
    print(f"chosen on the selection sets: weight {chosen['weight']} bonus {chosen['bonus']} "
          f"OOV penalty {chosen['oov_penalty']}", flush=True)

    sets = {m: load_set(m) for m in args.select + args.eval}
    configs = {"greedy": {}, f"beam {args.beam}": {"beam": args.beam},
               f"beam {args.beam} + LM": {"beam": args.beam, "lm": lm, "weight": chosen["weight"], "bonus": chosen["bonus"],
                                          "oov_penalty": chosen["oov_penalty"]}}
    wanted = set(args.configs.split(","))
    configs = {name: cfg for (name, cfg), key in zip(configs.items(), ("greedy", "beam", "fused")) if key in wanted}
    results = {}
    for (name, cfg), precision, mode in itertools.product(configs.items(), ("fp32", "int8"), MODES):
        for m, data in sets.items():
            key = f"{name} | {precision} | {mode} | {m}"
            results[key] = score(args.export, data, mode, precision, **cfg)
            print(f"{key}: WER {results[key]['wer']:.1f}% ({results[key]['seconds']:.0f} s)", flush=True)
    out = {"command": "python benchmarks/lm_fusion.py " + " ".join(sys.argv[1:]),
           "export": args.export, "lm": args.lm, "lm_order": lm.order,
           "selection": {"sets": args.select, "every": args.select_every, "beam": args.beam, "grid": grid,
                         "chosen": {k: chosen[k] for k in ("weight", "bonus", "oov_penalty")}},
           "lm_words": len(lm.words),
           "note": "selection sets scored every --select-every-th utterance in the grid, all of them in results",
           "results": results}
    atomic_write(args.json, json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
