"""Where `dualasr export` spends its time: one export under cProfile, broken down by stage.

    OMP_NUM_THREADS=1 python benchmarks/profile_export.py --label before \
        --formats onnx,executorch,coreml,sherpa-onnx --quantize none,int8 \
        --json benchmarks/results/export_profile.json

Records, under `--label` in the JSON file (other labels already there are kept, so a "before"
and an "after" run sit side by side): wall seconds per format/precision (the manifest's
export_seconds_by_precision), the whole export's wall and CPU time (CPU: this process and its
writer processes; on a shared machine CPU seconds compare better than wall), the cumulative seconds of the
stages below (a function counted once per stage, at its outermost call), and the top functions
by cumulative time. cProfile slows Python-heavy code (tracing, lowering passes) by roughly
1.2-1.5x; compare labels with each other, not with an unprofiled run. `--checkpoint` or
`--config` (a preset with random weights, e.g. conformer-s) choose the model; the default is
the built-in one.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import platform
import pstats
import resource
import sys
import tempfile
import time
from pathlib import Path

# (stage label, substring of the profiled function's file path, function name)
STAGES = [
    ("torch.export.export", "torch/export/__init__.py", "export"),
    ("torch.onnx.export", "torch/onnx/__init__.py", "export"),
    ("onnxruntime quantize_dynamic", "onnxruntime/quantization/quantize.py", "quantize_dynamic"),
    ("PT2E prepare_pt2e", "quantize_pt2e.py", "prepare_pt2e"),
    ("PT2E convert_pt2e", "quantize_pt2e.py", "convert_pt2e"),
    ("executorch to_edge_transform_and_lower", "executorch/exir/program/_program.py", "to_edge_transform_and_lower"),
    ("executorch to_executorch", "executorch/exir/program/_program.py", "to_executorch"),
    ("executorch write_to_file / ptd", "executorch/exir/program/_program.py", "write_to_file"),
    ("executorch runtime load_program", "executorch/runtime/__init__.py", "load_program"),
    ("coremltools ct.convert", "coremltools/converters/_converters_entry.py", "convert"),
    ("coremltools linear_quantize_weights", "coremltools/optimize/coreml/_post_training_quantization.py",
     "linear_quantize_weights"),
    ("coremltools MLModel.save", "coremltools/models/model.py", "save"),
    ("coremltools save_multifunction", "coremltools/models/utils.py", "save_multifunction"),
    ("dualasr writer self-checks (onnx, sherpa-onnx check_against_torch)", "export/onnx_writer.py", "check_against_torch"),
    ("dualasr writer self-checks (executorch _self_check)", "export/executorch_writer.py", "_self_check"),
    ("dualasr coreml compare_weights", "export/coreml_writer.py", "compare_weights"),
    ("dualasr coreml validate_coreml_package", "export/coreml_writer.py", "validate_coreml_package"),
    ("dualasr graph_io / expected specs", "export/exporter.py", "graph_io"),
    ("copy.deepcopy", "copy.py", "deepcopy"),
]


def _checkpoint(args, tmp: Path) -> Path | None:
    if args.checkpoint:
        return Path(args.checkpoint)
    if not args.config:
        return None  # the built-in model
    from dualasr.checkpoint import random_checkpoint
    from dualasr.config import load_config

    return random_checkpoint(load_config(args.config, args.set), tmp / f"random-{args.config}.pt")


def _cpu_seconds() -> float:
    """User + system CPU of this process and of its finished children (the writer processes)."""
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def _stage_seconds(stats: pstats.Stats) -> dict[str, float]:
    out: dict[str, float] = {}
    for label, file_part, func in STAGES:
        total = 0.0
        for (file, _line, name), (_cc, _nc, _tt, ct, _callers) in stats.stats.items():
            if name == func and file_part in file.replace(os.sep, "/"):
                total += ct
        if total > 0:
            out[label] = round(total, 2)
    return out


def _top(stats: pstats.Stats, n: int = 25) -> list[dict]:
    rows = sorted(stats.stats.items(), key=lambda kv: kv[1][3], reverse=True)[:n]
    return [{"function": f"{Path(f).name}:{line}:{name}", "cumulative_s": round(v[3], 2), "calls": v[1]}
            for (f, line, name), v in rows]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--label", required=True, help="key of this run in the JSON file (e.g. before, after)")
    p.add_argument("--json", default="benchmarks/results/export_profile.json")
    p.add_argument("--formats", default="onnx,executorch,coreml,sherpa-onnx")
    p.add_argument("--quantize", default="none,int8")
    p.add_argument("--chunk-ms", default="320")
    p.add_argument("--checkpoint", help="checkpoint to export (default: the built-in model)")
    p.add_argument("--config", help="instead of a checkpoint: a preset with random weights (e.g. conformer-s)")
    p.add_argument("--set", action="append", default=[], help="config override for --config (repeatable)")
    p.add_argument("--no-profile", action="store_true", help="time only (no cProfile overhead)")
    p.add_argument("--jobs", type=int, default=1, help="export_checkpoint's writer processes (cProfile sees only this one)")
    p.add_argument("--keep", type=Path, help="export into this new folder and keep it (e.g. for step_graph_ab.py)")
    args = p.parse_args(argv)

    import torch

    from dualasr.export.exporter import DEFAULT_CHECKPOINT, export_checkpoint

    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        checkpoint = _checkpoint(args, tmp)
        profiler = cProfile.Profile()
        cpu0 = _cpu_seconds()
        t0 = time.perf_counter()
        if not args.no_profile:
            profiler.enable()
        manifest = export_checkpoint(checkpoint, args.keep or tmp / "export", args.formats.split(","), args.quantize.split(","),
                                     [int(c) for c in args.chunk_ms.split(",")],
                                     **({"jobs": args.jobs} if args.jobs != 1 else {}))  # older exporters: no jobs
        if not args.no_profile:
            profiler.disable()
        wall = time.perf_counter() - t0
        cpu = _cpu_seconds() - cpu0
        source = checkpoint or DEFAULT_CHECKPOINT
        parameters = sum(v.numel() for v in torch.load(source, weights_only=True)["model"].values())
    result = {
        "command": "python " + " ".join([sys.argv[0], *(argv or sys.argv[1:])]),
        "checkpoint": args.checkpoint or (f"random {args.config} {args.set}" if args.config else "built-in"),
        "parameters": parameters,
        "machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                    "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS"),
                    "load_average_at_end": os.getloadavg()},
        "profiled": not args.no_profile,
        "jobs": args.jobs,
        "wall_seconds": round(wall, 1),
        "cpu_seconds": round(cpu, 1),
        "seconds_by_artifact": manifest["export_seconds_by_precision"],
        "errors": manifest["errors"],
        # ExecuTorch's lowering cache (executorch_writer.LoweringCache): where, and what it served.
        "lowering_cache": os.environ.get("DUALASR_LOWERING_CACHE", "default (user cache)"),
        "lowered_from_cache": {f"executorch/{precision}": entry.get("lowered_from_cache", [])
                               for precision, entry in manifest["artifacts"].get("executorch", {}).items()},
        "delegate_partitions": {f"executorch/{precision}": entry.get("delegate_partitions")
                                for precision, entry in manifest["artifacts"].get("executorch", {}).items()},
        "lower_seconds": {f"executorch/{precision}": entry.get("lower_seconds")
                          for precision, entry in manifest["artifacts"].get("executorch", {}).items()},
    }
    if not args.no_profile:
        stats = pstats.Stats(profiler)
        result["stage_seconds"] = _stage_seconds(stats)
        result["top_cumulative"] = _top(stats)
    out = Path(args.json)
    table = json.loads(out.read_text()) if out.is_file() else {}
    table[args.label] = result
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(table, indent=1) + "\n")
    print(json.dumps({k: result[k] for k in ("wall_seconds", "cpu_seconds", "seconds_by_artifact", "errors")}, indent=1))
    print(json.dumps(result.get("stage_seconds", {}), indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
