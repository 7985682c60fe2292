"""How far each ONNX int8 recipe moves the encoder and the greedy tokens from PyTorch fp32, on
real speech, on this CPU and (optionally) on an emulated CPU without VNNI.

    OMP_NUM_THREADS=1 python benchmarks/onnx_int8_accuracy.py --emulate Haswell \
        --json benchmarks/results/onnx_int8_accuracy.json

Why emulate: onnxruntime's x86 int8 GEMM multiplies u8 activations by s8 weights with
VPMADDUBSW on AVX2/AVX-512 CPUs without VNNI, which adds two products in a saturating int16;
with VNNI (VPDPBUSD) or on ARM the sums are 32-bit. A VNNI machine therefore never shows the
non-VNNI error. `--emulate CPU` reruns the onnxruntime part (torch-free) under
`qemu-x86_64 -cpu CPU` (Debian package qemu-user), whose CPUID makes onnxruntime pick the
AVX2 kernels; PyTorch references are computed natively once.

Per recipe and CPU: relative error ||y_int8 - y_fp32|| / ||y_fp32|| of the encoder output
(full context and streaming, all utterances together), greedy-token agreement (1 - token edit
distance / reference tokens) with PyTorch fp32 greedy search, and, natively, the encoder's best
of 10 wall times over all utterances (one onnxruntime thread, recipes taking turns). Recipes are
`dualasr.export.onnx_writer.INT8_RECIPES`; the exporter uses `onnx_writer.INT8_RECIPE`.
With `--executorch`, the ExecuTorch int8 export (XNNPACK) is measured the same way (natively).
Audio: the first `--utterances` held-out real Asterisk prompts (never trained on).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def _cpu_flags() -> list[str]:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return []
    line = next((ln for ln in text.splitlines() if ln.startswith(("flags", "Features"))), "")
    return sorted({f for f in line.split(":", 1)[-1].split() if f in ("avx2", "avx512f", "avx512_vnni",
                                                                       "avx_vnni", "asimddp", "i8mm")})


class _SessionRunner:
    """The runtime's backend protocol (run(graph, feeds) -> {name: array}) over plain .onnx files."""

    name = "onnxruntime"
    supports_batch = True

    def __init__(self, folder: Path):
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 1
        opts.log_severity_level = 3
        self.sessions = {p.stem: ort.InferenceSession(str(p), opts, providers=["CPUExecutionProvider"])
                         for p in sorted(folder.glob("*.onnx"))}

    def run(self, graph: str, feeds: dict) -> dict:
        sess = self.sessions[graph]
        names = [o.name for o in sess.get_outputs()]
        return dict(zip(names, sess.run(names, feeds)))


def _decode_all(runner, manifest: dict, feats: list[np.ndarray]) -> dict:
    """Full and streaming encoder outputs + greedy tokens for every utterance (torch-free)."""
    from dualasr.export.verify import greedy_decode, run_streaming

    entry = manifest["streaming"][0]
    out: dict = {"full": [], "streaming": [], "full_tokens": [], "streaming_tokens": []}
    for x in feats:
        full = runner.run("encoder_full", {"features": x})["encoder_out"][0]
        stream, _ = run_streaming(runner, manifest, entry, x)
        for mode, enc in (("full", full), ("streaming", stream)):
            out[mode].append(enc)
            out[f"{mode}_tokens"].append(greedy_decode(runner, manifest, enc))
    return out


def _encoder_seconds(runners: dict, manifest: dict, feats: list[np.ndarray], repeats: int = 10) -> dict:
    """Best-of-`repeats` wall time of each recipe's encoder alone over every utterance, per mode.
    Recipes take turns within each repeat, so load that comes and goes on a shared machine hits
    them alike."""
    from dualasr.export.verify import run_streaming

    entry = manifest["streaming"][0]
    best = {r: {"full_encoder_s": float("inf"), "streaming_encoder_s": float("inf")} for r in runners}
    for _ in range(repeats):
        for recipe, runner in runners.items():
            t0 = time.perf_counter()
            for x in feats:
                runner.run("encoder_full", {"features": x})
            t1 = time.perf_counter()
            for x in feats:
                run_streaming(runner, manifest, entry, x)
            t2 = time.perf_counter()
            b = best[recipe]
            b["full_encoder_s"] = min(b["full_encoder_s"], t1 - t0)
            b["streaming_encoder_s"] = min(b["streaming_encoder_s"], t2 - t1)
    return {r: {k: round(v, 4) for k, v in b.items()} for r, b in best.items()}


def worker(work: Path, out_name: str, timed: bool) -> None:
    """Run every recipe folder under work/recipes on work/features.npz; save work/<out_name>."""
    manifest = json.loads((work / "manifest.json").read_text())
    data = np.load(work / "features.npz")
    feats = [data[k] for k in data.files]
    results, runners = {}, {}
    for folder in sorted((work / "recipes").iterdir()):
        runners[folder.name] = runner = _SessionRunner(folder)
        r = _decode_all(runner, manifest, feats)
        results[folder.name] = {"full_tokens": r["full_tokens"], "streaming_tokens": r["streaming_tokens"]}
        np.savez(work / f"{out_name}-{folder.name}.npz", *r["full"], *r["streaming"])
    if timed:
        for recipe, seconds in _encoder_seconds(runners, manifest, feats).items():
            results[recipe]["seconds"] = seconds
    (work / f"{out_name}.json").write_text(json.dumps(results))


def _metrics(decoded: dict, refs: dict) -> dict:
    from dualasr.export.verify import relative_error, token_agreement

    row = {}
    for mode in ("full", "streaming"):
        row[f"{mode}_relative_error"] = round(relative_error(decoded[mode], refs[mode]), 5)
        row[f"{mode}_token_agreement"] = round(token_agreement(decoded[f"{mode}_tokens"], refs[f"{mode}_tokens"]), 4)
    return row


def _load_outputs(work: Path, name: str, recipe: str, n: int, decoded: dict) -> dict:
    data = np.load(work / f"{name}-{recipe}.npz")
    arrays = [data[f"arr_{i}"] for i in range(2 * n)]
    return {"full": arrays[:n], "streaming": arrays[n:], **decoded[recipe]}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--worker", help=argparse.SUPPRESS)
    p.add_argument("--out-name", default="native", help=argparse.SUPPRESS)
    p.add_argument("--checkpoint", help="default: the built-in model")
    p.add_argument("--config", help="instead: a preset with random weights (speed at that size; errors mean little)")
    p.add_argument("--set", action="append", default=[], help="config override for --config (repeatable)")
    p.add_argument("--utterances", type=int, default=12)
    p.add_argument("--emulate", default="", help="comma list of qemu CPU models to rerun onnxruntime on (e.g. Haswell)")
    p.add_argument("--recipes", default="", help="comma list (default: every INT8_RECIPES entry)")
    p.add_argument("--executorch", action="store_true", help="also measure the ExecuTorch int8 export")
    p.add_argument("--json", default="benchmarks/results/onnx_int8_accuracy.json")
    args = p.parse_args(argv)
    if args.worker:
        worker(Path(args.worker), args.out_name, timed=args.out_name == "native")
        return 0

    import onnx
    import torch

    from dualasr.checkpoint import load_model
    from dualasr.decoding import greedy_search
    from dualasr.demo import real_test_set
    from dualasr.export import onnx_writer
    from dualasr.export.exporter import DEFAULT_CHECKPOINT, default_jobs, export_checkpoint
    from dualasr.features import FbankConfig, compute_fbank
    from dualasr.audio import load_audio

    torch.set_num_threads(1)
    work = Path(tempfile.mkdtemp(prefix="int8-accuracy-"))
    if args.config:
        from dualasr.checkpoint import random_checkpoint
        from dualasr.config import load_config

        checkpoint = random_checkpoint(load_config(args.config, args.set), work / f"random-{args.config}.pt")
    else:
        checkpoint = Path(args.checkpoint) if args.checkpoint else DEFAULT_CHECKPOINT
    model = load_model(checkpoint)[0]
    utts = real_test_set(args.utterances)
    feats = [compute_fbank(torch.from_numpy(load_audio(u.audio)), FbankConfig())[None] for u in utts]
    refs: dict = {"full": [], "streaming": [], "full_tokens": [], "streaming_tokens": []}
    with torch.no_grad():
        for x in feats:
            for mode in ("full", "streaming"):
                enc, _ = model.encoder(x, None, mode)
                refs[mode].append(enc[0].numpy())
                refs[f"{mode}_tokens"].append(greedy_search(model, enc, torch.tensor([enc.shape[1]]))[0].tokens)
    recipes = [r for r in args.recipes.split(",") if r] or list(onnx_writer.INT8_RECIPES)

    table: dict = {}
    try:
        formats = ["onnx", "executorch"] if args.executorch else ["onnx"]
        precisions = ["none", "int8"] if args.executorch else ["none"]
        manifest = export_checkpoint(checkpoint, work / "export", formats, precisions, [320], jobs=default_jobs())
        shutil.copy(work / "export" / "manifest.json", work / "manifest.json")
        np.savez(work / "features.npz", *[x.numpy() for x in feats])
        for recipe in ["fp32", *recipes]:
            folder = work / "recipes" / recipe
            folder.mkdir(parents=True)
            for graph, rel in manifest["artifacts"]["onnx"]["fp32"]["graphs"].items():
                m = onnx.load(str(work / "export" / rel))  # external weights loaded inline
                if recipe != "fp32":
                    m = onnx_writer.quantize_int8(m, recipe)
                onnx.save(m, str(folder / f"{graph}.onnx"))
        cpus = [("native", None), *[(c, c) for c in args.emulate.split(",") if c]]
        for name, qemu_cpu in cpus:
            cmd = [sys.executable, __file__, "--worker", str(work), "--out-name", name]
            if qemu_cpu:
                cmd = ["qemu-x86_64", "-cpu", qemu_cpu, *cmd]
            subprocess.run(cmd, check=True, stderr=subprocess.DEVNULL if qemu_cpu else None)
            tokens = json.loads((work / f"{name}.json").read_text())
            label = name if qemu_cpu else f"native ({', '.join(_cpu_flags()) or platform.machine()})"
            table[label] = {r: {**_metrics(_load_outputs(work, name, r, len(feats), tokens), refs),
                                **tokens[r].get("seconds", {})} for r in ["fp32", *recipes]}
        if args.executorch:
            from dualasr.runtime.backends import create_backend

            runner = create_backend("executorch", work / "export", manifest, "int8")
            label = next(k for k in table if k.startswith("native"))
            table[label]["executorch int8 (XNNPACK)"] = _metrics(
                _decode_all(runner, manifest, [x.numpy() for x in feats]), refs)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    result = {
        "command": "python " + " ".join([sys.argv[0], *(argv if argv is not None else sys.argv[1:])]),
        "checkpoint": f"random {args.config} {args.set}" if args.config else str(checkpoint),
        "audio": [u.id for u in utts],
        "audio_seconds": round(sum(x.shape[1] for x in feats) / 100, 1),
        "exporter_recipe": onnx_writer.INT8_RECIPE,
        "recipes": {r: onnx_writer.INT8_RECIPES[r] for r in recipes},
        "results": table,
    }
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n")
    for cpu, rows in table.items():
        print(cpu)
        for r, m in rows.items():
            print(f"  {r:32s} " + "  ".join(f"{k} {v}" for k, v in m.items()))
    return 0


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    sys.exit(main())
