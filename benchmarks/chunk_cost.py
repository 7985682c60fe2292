"""Why a streaming step costs more per second of audio than the full-context graph: one export's
graphs timed side by side, 1 thread.

    python benchmarks/chunk_cost.py EXPORT [--backends onnx,executorch] [--full-seconds 10] \
        [--streams 4] --json benchmarks/results/<name>.json

Per backend, precision and chunk size, the best per-call milliseconds (`--repeats` rounds of
`--calls` calls, the cells alternating each round) of:

* `step`: the streaming step graph on one chunk (batch 1, zero states);
* `full_same_length`: encoder_full on the same number of feature frames as one chunk;
* `full_long_per_chunk`: encoder_full on `--full-seconds` of features, divided by the chunks
  that many seconds hold;
* `step_batched_per_stream` (ONNX only; the ExecuTorch graphs are batch 1): the step on
  `--streams` streams at once, divided by the streams;
* `step_without_weight_matmuls` (ONNX fp32): the step with every weight MatMul reduced to one
  input channel (a Slice, then a [1, N] product): what the step costs besides its weight matmuls
  (norms, attention's own products, convs, caches, activations), the part int8 cannot speed up.

The streaming/full model-time ratio is step / full_long_per_chunk. It splits into
step / full_same_length (what the step graph adds: its caches, masks, state inputs and outputs)
times full_same_length / full_long_per_chunk (what running the encoder on a few frames at a time
costs: every weight is read once per call whatever the frame count, so short calls use the
matmul units poorly). Random features: the timings do not depend on the values.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Callable

import numpy as np

from dualasr.fileio import atomic_write
from step_graph_ab import executorch_runner, onnx_runner, runtime_versions, zero_states


def without_weight_matmuls(path: Path) -> bytes:
    """The ONNX graph at `path` with each weight MatMul x @ W[K, N] replaced by x[..., :1] @ W[:1]:
    the same output shapes and every other op as before, the weight products nearly free."""
    import onnx
    from onnx import helper, numpy_helper

    from dualasr.export.onnx_writer import weight_matmuls

    model = onnx.load(str(path))
    g = model.graph
    weights = {t.name: t for t in g.initializer}
    targets = {n.name for n in weight_matmuls(model)}
    g.initializer.extend(numpy_helper.from_array(np.array([v], np.int64), name)
                         for name, v in (("first_channel", 0), ("one_channel", 1), ("last_axis", -1)))
    nodes = []
    for n in g.node:
        if n.name in targets:
            row = n.input[1] + "_first_row"
            g.initializer.append(numpy_helper.from_array(numpy_helper.to_array(weights[n.input[1]])[:1].copy(), row))
            nodes.append(helper.make_node("Slice", [n.input[0], "first_channel", "one_channel", "last_axis"],
                                          [n.name + "_first_channel"], name=n.name + "_slice"))
            n.input[0], n.input[1] = n.name + "_first_channel", row
        nodes.append(n)
    del g.node[:]
    g.node.extend(nodes)
    return model.SerializeToString()


def cells(export: Path, backends: list[str], full_frames: int, streams: int) -> dict[str, tuple[Callable, list, float]]:
    """{backend/precision/chunk/cell: (runner, inputs, divisor of the per-call time)}."""
    m = json.loads((export / "manifest.json").read_text())
    dim = m["graphs"]["encoder_full"]["inputs"][0]["shape"][-1]
    rng = np.random.default_rng(0)
    long_features = rng.standard_normal([1, full_frames, dim]).astype(np.float32)
    found = {}
    for backend in backends:
        for precision, artifact in m["artifacts"].get(backend, {}).items():
            def runner(path: Path) -> Callable:
                return onnx_runner(path) if backend == "onnx" else executorch_runner(path, export / artifact["weights"])

            full = runner(export / artifact["graphs"]["encoder_full"])
            for spec in m["streaming"]:
                frames = spec["chunk_frames"]
                features = rng.standard_normal([1, frames, dim]).astype(np.float32)
                step_path = export / artifact["graphs"][spec["graph"]]
                step, step_inputs = runner(step_path), [features, *zero_states(spec)]
                key = f"{backend}/{precision}/{spec['chunk_ms']}ms"
                found[f"{key}/step"] = (step, step_inputs, 1)
                found[f"{key}/full_same_length"] = (full, [features], 1)
                found[f"{key}/full_long_per_chunk"] = (full, [long_features], full_frames / frames)
                if backend == "onnx" and streams > 1:
                    batch = np.repeat(features, streams, axis=0)
                    found[f"{key}/step_batched_per_stream"] = (step, [batch, *zero_states(spec, streams)], streams)
                if backend == "onnx" and precision == "fp32":
                    found[f"{key}/step_without_weight_matmuls"] = (
                        onnx_runner(without_weight_matmuls(step_path)), step_inputs, 1)
    return found


def measure(found: dict, repeats: int, calls: int) -> dict[str, float]:
    """Best milliseconds per call (divided by each cell's divisor), cells alternating each round."""
    best = {k: float("inf") for k in found}
    for run, x, _ in found.values():
        run(x)  # warm-up
    for _ in range(repeats):
        for key, (run, x, divisor) in found.items():
            t0 = time.perf_counter()
            for _ in range(calls):
                run(x)
            best[key] = min(best[key], (time.perf_counter() - t0) / calls * 1000 / divisor)
    return {k: round(v, 4) for k, v in best.items()}


def ratios(ms: dict[str, float]) -> dict[str, dict[str, float]]:
    """Per backend/precision/chunk: the streaming/full model-time ratio and its two factors; for
    ONNX, the share of the fp32 step outside its weight matmuls and, per precision, how much
    faster int8 runs the step and its weight matmuls (the step less that fp32 remainder)."""
    out = {}
    for key in sorted({k.rsplit("/", 1)[0] for k in ms}):
        backend, precision, chunk = key.split("/")
        step, same, long = ms[f"{key}/step"], ms[f"{key}/full_same_length"], ms[f"{key}/full_long_per_chunk"]
        row = {"streaming_over_full": round(step / long, 3), "step_over_full_same_length": round(step / same, 3),
               "full_same_length_over_full_long": round(same / long, 3)}
        if f"{key}/step_batched_per_stream" in ms:
            row["batched_streaming_over_full"] = round(ms[f"{key}/step_batched_per_stream"] / long, 3)
        rest = ms.get(f"{backend}/fp32/{chunk}/step_without_weight_matmuls")
        if rest is not None:
            step_fp32 = ms[f"{backend}/fp32/{chunk}/step"]
            row["fp32_step_share_outside_weight_matmuls"] = round(rest / step_fp32, 3)
            if precision != "fp32":
                row["step_speedup_over_fp32"] = round(step_fp32 / step, 3)
                row["weight_matmul_speedup_over_fp32"] = round((step_fp32 - rest) / (step - rest), 3)
        out[key] = row
        print(key, row, flush=True)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("export", type=Path)
    p.add_argument("--backends", default="onnx", help="comma-separated: onnx, executorch")
    p.add_argument("--full-seconds", type=float, default=10.0, help="the long encoder_full input (10 ms frames)")
    p.add_argument("--streams", type=int, default=4, help="streams of the batched ONNX step (1: none)")
    p.add_argument("--repeats", type=int, default=10)
    p.add_argument("--calls", type=int, default=10, help="calls per round")
    p.add_argument("--json", type=Path)
    args = p.parse_args(argv)
    backends = args.backends.split(",")
    found = cells(args.export, backends, round(args.full_seconds * 100), args.streams)
    ms = measure(found, args.repeats, args.calls)
    out = {
        "command": "python benchmarks/chunk_cost.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "export": str(args.export), **runtime_versions(["onnx", *backends]), "threads": 1,
        "full_seconds": args.full_seconds, "streams": args.streams, "repeats": args.repeats, "calls": args.calls,
        "ms_per_chunk": ms, "ratios": ratios(ms),
    }
    if args.json:
        atomic_write(args.json, json.dumps(out, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
