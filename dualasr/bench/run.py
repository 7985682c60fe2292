"""`dualasr bench`'s parent process: plan the matrix, run each cell, the FLOP count and the matmul
microbenchmark in its own worker, and add the derived figures. It never imports torch."""

from __future__ import annotations

import os
import platform
import tempfile
import time
from dataclasses import asdict
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

from .cells import (FEED_MS, MODES, OUR_BACKENDS, PEERS, PRECISIONS, all_threads, cell_header, missing_modules,
                    plan_cells, select_utterances)
from .fmt import num
from .ratios import add_compute, headline, targets
from .schema import SCHEMA_VERSION, clean
from .worker import run_worker

__all__ = ["machine_info", "run_bench"]


# CPU features the int8 kernels pick their code paths by (x86: AVX2 alone saturates u8 x s8 products,
# VNNI does not; ARM: dot product and int8 matmul instructions): the same export's int8 speed and
# accuracy differ between machines that have them and machines that do not.
INT8_CPU_FEATURES = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8", "asimddp", "i8mm")


def machine_info() -> dict:
    import importlib.metadata

    cpu = None
    features: list[str] | None = None
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key = line.split(":", 1)[0].strip().lower()
            if cpu is None and key in ("model name", "hardware", "cpu model"):
                cpu = line.split(":", 1)[1].strip()
            elif features is None and key in ("flags", "features"):  # x86 / ARM
                present = set(line.split(":", 1)[1].split())
                features = [f for f in INT8_CPU_FEATURES if f in present]
    except OSError:
        pass
    packages = {}
    for pkg in ("numpy", "onnxruntime", "executorch", "torch", "sherpa-onnx", "kaldi-native-fbank", "pocketsphinx",
                "faster-whisper", "ctranslate2"):
        try:
            packages[pkg] = importlib.metadata.version(pkg)
        except importlib.metadata.PackageNotFoundError:
            packages[pkg] = None
    try:
        load = [round(x, 2) for x in os.getloadavg()]  # other work on the machine skews the timings
    except OSError:
        load = None
    return {"platform": platform.platform(), "arch": platform.machine(), "cpu_model": cpu or platform.processor() or None,
            "int8_cpu_features": features, "cpu_count": all_threads(), "load_avg_at_start": load,
            "python": platform.python_version(), "packages": packages}


def run_bench(
    export_dir: str | os.PathLike,
    data: str | os.PathLike,
    backends: list[str] = list(OUR_BACKENDS),
    peers: list[str] = list(PEERS),
    threads: list[int] | None = None,
    precisions: list[str] = list(PRECISIONS),
    modes: list[str] = list(MODES),
    chunk_ms: list[int] | None = None,
    max_utts: int | None = None,
    feed_ms: float = FEED_MS,
    repeat: int = 1,
    rounds: int = 1,
    cell_timeout_s: float = 1800.0,
    compute_figures: bool = True,
    decoding: dict | None = None,
    log: Callable[[str], None] | None = None,
) -> dict:
    """Run the whole matrix and return the results dict (schema_version 1; see benchmarks/README.md).

    repeat: timed passes per cell and round (the fastest counts); rounds: turns over all cells,
    each in a fresh subprocess, the fastest round counting.
    decoding: our cells' search, Recognizer keyword arguments (decoding, beam, lm, lm_weight,
    lm_token_bonus, lm_oov_penalty; dualasr.runtime.cli.decoding_options); default greedy. sherpa-onnx and the
    peers keep their own greedy search.
    """
    from dualasr import __version__
    from dualasr.data import read_manifest
    from dualasr.runtime.recognizer import load_export_manifest

    say = log or (lambda _m: None)
    export_dir = Path(export_dir)
    manifest = load_export_manifest(export_dir, verify_checksums=True)
    utts = select_utterances(read_manifest(data), max_utts)
    if not utts:
        raise ValueError(f"{data} lists no utterances")
    threads = threads or [1, all_threads()]
    items = [{"id": u.id, "audio": str(Path(u.audio).resolve()), "text": u.text, "speech_end": u.speech_end} for u in utts]
    from dualasr.audio import load_audio  # torch-free

    for u in utts:  # refuse unusable audio (AudioError names the file) before any cell starts: else every cell fails on it
        load_audio(u.audio, 16000)
    decoding = dict(decoding or {"decoding": "greedy"})
    if decoding.get("lm"):  # so is an LM file of another tokenizer, or none at all (the Recognizer's check)
        from dualasr.lm import tokenizer_of
        from dualasr.runtime.lm import TokenNgramLM

        tokenizer = tokenizer_of(export_dir)
        TokenNgramLM.load(decoding["lm"], tokenizer.sha256, tokenizer.vocab_size)
    planned = plan_cells(manifest, backends, peers, threads, precisions, modes, chunk_ms)
    results: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "tool": "dualasr bench",
        "dualasr_version": __version__,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": machine_info(),
        "export": {
            "dir": str(export_dir), "created": manifest.get("created"),
            "source_checkpoint_sha256": (manifest.get("source_checkpoint") or {}).get("sha256"),
            "chunk_ms": [int(e["chunk_ms"]) for e in manifest.get("streaming", [])],
            "formats": {f: sorted(v) for f, v in manifest.get("artifacts", {}).items()},
            "model": manifest.get("model"),
            "random_init": bool(manifest.get("random_init", False)),
        },
        "data": {"manifest": str(data), "utterances": len(items), "selection": "evenly spaced" if max_utts else "all",
                 "ids": [u["id"] for u in items]},
        "settings": {"backends": backends, "peers": peers, "threads": threads, "precisions": precisions,
                     "modes": modes, "feed_ms": feed_ms, "repeat": repeat, "rounds": rounds, "warmup_utterances": 1,
                     "decoding": decoding, "max_utts": max_utts, "cell_isolation": "one subprocess per cell and round"},
        "peak": {}, "flops": {"status": "skipped", "reason": "--no-compute"}, "cells": [],
    }
    with tempfile.TemporaryDirectory(prefix="dualasr-bench-") as tmp:
        work = Path(tmp)
        if compute_figures:
            if missing_modules(("torch",)) or not manifest.get("checkpoint"):
                results["flops"] = {"status": "skipped", "reason": "FLOP counting needs torch and the export's checkpoint"}
            else:
                say("counting FLOPs (torch FlopCounterMode) ...")
                results["flops"] = run_worker("flops", {"export_dir": str(export_dir), "utterances": items}, 1,
                                               cell_timeout_s, work)
            small = results["flops"].get("small_shape")
            for n in threads:
                say(f"matmul microbenchmark, {n} thread(s) ...")
                results["peak"][str(n)] = run_worker("peak", {"threads": n, "small_shape": small}, n, cell_timeout_s, work)
        # With rounds > 1 the cells take turns: every cell runs once per round (a fresh subprocess,
        # `repeat` warm passes) and keeps its fastest round, so load that comes and goes during a
        # long run hits every cell alike and the ratios between cells stay side by side.
        outs: dict[int, dict] = {}
        for round_ in range(1, rounds + 1):
            tag = f" (round {round_}/{rounds})" if rounds > 1 else ""
            for i, (cell, reason) in enumerate(planned, 1):
                if reason:
                    if round_ == 1:
                        outs[i] = {**cell_header(cell), "status": "skipped", "reason": reason}
                        say(f"[{i}/{len(planned)}] {cell.id}: skipped ({reason})")
                    continue
                if outs.get(i, {}).get("status") == "error":  # an error is the cell's result: no more rounds
                    continue
                t0 = time.perf_counter()
                spec = {"cell": asdict(cell), "export_dir": str(export_dir), "utterances": items,
                        "feed_ms": feed_ms, "repeat": repeat, "decoding": decoding}
                out = run_worker("cell", spec, cell.threads, cell_timeout_s, work)
                if out.get("status") != "ok":
                    outs[i] = {**cell_header(cell), "status": "error", "reason": out.get("reason")}
                    say(f"[{i}/{len(planned)}]{tag} {cell.id}: ERROR {outs[i]['reason']}")
                    continue
                m = out["metrics"]
                if i not in outs or m["compute_s"] < outs[i]["metrics"]["compute_s"]:
                    outs[i] = out
                say(f"[{i}/{len(planned)}]{tag} {cell.id}: WER {num(m.get('wer_pct'), 1)}% RTF {num(m.get('rtf'), 4)} "
                    f"({time.perf_counter() - t0:.0f} s)")
        results["cells"] = [outs[i] for i in range(1, len(planned) + 1)]
    add_compute(results)
    results["headline"] = headline(results)
    results["targets"] = targets(results)
    return clean(results)
