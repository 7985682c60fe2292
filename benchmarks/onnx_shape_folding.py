"""What `onnx_writer.fold_static_shapes` buys a streaming step (issue 15): each model's streaming
step graphs exported as the TorchScript exporter writes them and folded, fp32 and int8 (the
exporter's recipe), timed side by side in one process on onnxruntime with 1 thread.

    python benchmarks/onnx_shape_folding.py --json benchmarks/results/onnx_shape_folding.json

Models: the built-in one and a random-weight conformer-s (stateless predictor). Per graph: node
count, the max abs difference between the two graphs' outputs (they must agree), and the best
per-call milliseconds of `--repeats` rounds of 20 calls, the two graphs alternating each round so
load that comes and goes hits both alike.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def _session(model):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.log_severity_level = 3
    return ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])


def _compare(models: dict, feeds: list[np.ndarray], repeats: int) -> dict:
    sessions = {k: _session(m) for k, m in models.items()}
    named = {k: dict(zip([i.name for i in s.get_inputs()], feeds)) for k, s in sessions.items()}
    a, b = (s.run(None, named[k]) for k, s in sessions.items())
    best = dict.fromkeys(sessions, float("inf"))
    for _ in range(repeats):
        for k, s in sessions.items():
            t0 = time.perf_counter()
            for _ in range(20):
                s.run(None, named[k])
            best[k] = min(best[k], (time.perf_counter() - t0) / 20)
    return {
        "nodes": {k: len(m.graph.node) for k, m in models.items()},
        "max_abs_diff": float(max(np.abs(x - y).max() for x, y in zip(a, b) if x.dtype == np.float32)),
        "ms_per_call": {k: round(v * 1e3, 3) for k, v in best.items()},
        "speedup": round(best["as_exported"] / best["folded"], 3),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--chunk-ms", default="320,160")
    p.add_argument("--repeats", type=int, default=15)
    p.add_argument("--json", default="benchmarks/results/onnx_shape_folding.json")
    args = p.parse_args(argv)

    import torch

    from dualasr.checkpoint import load_model, random_checkpoint
    from dualasr.config import load_config
    from dualasr.export import onnx_writer
    from dualasr.export.exporter import DEFAULT_CHECKPOINT, example_inputs_for, graph_io
    from dualasr.export.wrappers import graphs_for
    from dualasr.fileio import atomic_write

    torch.set_num_threads(1)
    chunks = [int(c) for c in args.chunk_ms.split(",")]
    results: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        random_cs = random_checkpoint(load_config("conformer-s", ['model.predictor="stateless"']),
                                      Path(tmp) / "conformer-s.pt")
        for label, checkpoint in (("built-in", DEFAULT_CHECKPOINT), ("conformer-s (random)", random_cs)):
            model = load_model(checkpoint)[0]
            graphs = graphs_for(model, chunks)
            examples = example_inputs_for(graphs, model)
            specs = graph_io(graphs, examples)
            rows = results[label] = {"parameters": sum(p.numel() for p in model.parameters())}
            for ms in chunks:
                name = f"encoder_streaming_{ms}ms"
                fp32 = {"as_exported": onnx_writer.export_graph(graphs[name], examples[name], specs[name], fold_shapes=False),
                        "folded": onnx_writer.export_graph(graphs[name], examples[name], specs[name])}
                feeds = [t.numpy() for t in examples[name]]
                for precision, models in (("fp32", fp32),
                                          ("int8", {k: onnx_writer.quantize_int8(m) for k, m in fp32.items()})):
                    rows[f"{name} {precision}"] = row = _compare(models, feeds, args.repeats)
                    print(f"{label:22s} {name} {precision}: {row}", flush=True)

    result = {
        "command": "python " + " ".join([sys.argv[0], *(argv if argv is not None else sys.argv[1:])]),
        "onnxruntime_threads": 1,
        "int8_recipe": onnx_writer.INT8_RECIPE,
        "results": results,
    }
    atomic_write(Path(args.json), (json.dumps(result, indent=1) + "\n").encode())
    return 0


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    sys.exit(main())
