"""Concurrent streams (issue 15, item 4): N streams decoded together by `Recognizer.decode_streams`
(one step-graph call per chunk serves all of them, on onnxruntime's batch axis) against the same N
utterances decoded one stream at a time, side by side in one process, 1 thread.

    python benchmarks/multi_stream.py --streams 1,4,16 --json benchmarks/results/multi_stream.json

Exports: the built-in model's shipped ONNX export (`tiny`) and the random-weight `conformer-s`
(stateless predictor, 1024 pieces) that benchmarks/harness_overhead.py builds once. Audio: the
held-out Asterisk prompts (benchmarks/data/asterisk_real_test.jsonl), the first N longest, fed in
100 ms pieces round robin as a server would receive them. Per cell: wall seconds and encoder-graph
seconds both ways, and whether every stream's tokens are the same batched as alone (they must be).
Batched and alone alternate per round (--rounds, the best round kept) so both see the same load.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from harness_overhead import CACHE, DATA, SHIPPED, random_conformer_s  # this folder's

from dualasr.audio import load_audio
from dualasr.data import load_utterances
from dualasr.fileio import atomic_write
from dualasr.runtime.recognizer import Recognizer

FEED_S = 0.1
RATE = 16000


def decode(rec: Recognizer, audios: list, together: bool) -> tuple[float, float, list[list[int]]]:
    """Decode `audios` as concurrent streams (together) or one after another.
    Returns (wall seconds, encoder-graph seconds, each stream's token ids)."""
    rec.timers.reset()
    piece = int(FEED_S * RATE)
    t0 = time.perf_counter()
    groups = [list(range(len(audios)))] if together else [[i] for i in range(len(audios))]
    tokens: list[list[int]] = [[] for _ in audios]
    for group in groups:
        streams = {i: rec.create_stream(f"s{i}") for i in group}
        for start in range(0, max(len(audios[i]) for i in group), piece):
            for i, s in streams.items():
                if start < len(audios[i]):
                    s.accept_waveform(RATE, audios[i][start:start + piece])
                    if start + piece >= len(audios[i]):
                        s.input_finished()
            rec.decode_streams(list(streams.values()))
        for i, s in streams.items():
            tokens[i] = s.token_ids
    wall = time.perf_counter() - t0
    snap = rec.timers.snapshot()["seconds"]
    encoder = sum(v for k, v in snap.items() if k.startswith("encoder_"))
    return wall, encoder, tokens


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--streams", default="1,4,16")
    p.add_argument("--precisions", default="fp32,int8")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--json", required=True)
    args = p.parse_args()
    counts = [int(n) for n in args.streams.split(",")]
    audios_all = sorted((load_audio(u.audio) for u in load_utterances(DATA)), key=len, reverse=True)
    exports = {"tiny": SHIPPED, "conformer-s (random)": random_conformer_s(CACHE / "conformer-s")}
    cells = []
    for name, export in exports.items():
        for precision in args.precisions.split(","):
            rec = Recognizer(export, precision=precision, threads=1)
            for n in counts:
                audios = audios_all[:n]
                best = {}
                for _ in range(args.rounds):
                    for together in (True, False):
                        wall, enc, tokens = decode(rec, audios, together)
                        key = "batched" if together else "alone"
                        if key not in best or wall < best[key]["wall_s"]:
                            best[key] = {"wall_s": round(wall, 4), "encoder_s": round(enc, 4), "tokens": tokens}
                audio_s = sum(len(a) for a in audios) / RATE
                cell = {
                    "export": name, "precision": precision, "streams": n, "audio_s": round(audio_s, 2),
                    "same_tokens": best["batched"]["tokens"] == best["alone"]["tokens"],
                    **{f"{k}_{m}": v[m] for k, v in best.items() for m in ("wall_s", "encoder_s")},
                }
                cell["wall_speedup"] = round(cell["alone_wall_s"] / cell["batched_wall_s"], 2)
                cell["encoder_speedup"] = round(cell["alone_encoder_s"] / max(cell["batched_encoder_s"], 1e-9), 2)
                cell["batched_rtf"] = round(cell["batched_wall_s"] / audio_s, 4)
                print(json.dumps(cell), flush=True)
                cells.append(cell)
    record = {"command": "python benchmarks/multi_stream.py " + " ".join(sys.argv[1:]),
              "threads": 1, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS"), "cells": cells}
    atomic_write(Path(args.json), (json.dumps(record, indent=1) + "\n").encode())


if __name__ == "__main__":
    main()
