"""Two exports' streaming graphs timed side by side (an A/B of a model-code change that alters the
graphs, e.g. their cache layout or how attention is written), 1 thread.

    python benchmarks/step_graph_ab.py A_EXPORT B_EXPORT --label-a before --label-b after \
        [--backends onnx,executorch] [--full-seconds 10] --json benchmarks/results/<name>.json

For every backend, graph and precision both exports have (the streaming step graph of each chunk
size, the predictor on a two-token context; with --full-seconds, encoder_full on that many seconds
of features): the best per-call milliseconds of `--repeats` rounds of `--calls` calls, A and B
alternating each round so load that comes and goes hits both alike, and the max abs difference of
their first outputs (encoder_out, predictor_out) on the same inputs from the initial state
(exports of the same weights must agree however the graphs are written). onnxruntime runs
torch-free; ExecuTorch runs with its Python runtime (XNNPACK).
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


def runtime_versions(backends: list[str]) -> dict[str, str]:
    """The versions of the runtimes a record's timings come from."""
    from importlib.metadata import version

    return {name: version(name) for name, backend in (("onnxruntime", "onnx"), ("executorch", "executorch"))
            if backend in backends}


def zero_states(spec: dict, streams: int = 1) -> list[np.ndarray]:
    """A streaming graph's initial (zero) states for `streams` streams; spec: a manifest
    "streaming" entry, whose state shapes are batch 1."""
    out = []
    for s in spec["states"]:
        shape = list(s["shape"])
        shape[s["batch_dim"]] = streams
        out.append(np.zeros(shape, dtype=s["dtype"]))
    return out


def onnx_session(path: Path | bytes):
    """An onnxruntime CPU session on 1 thread, quiet (path: a file, or a serialized model)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.log_severity_level = 3
    return ort.InferenceSession(path if isinstance(path, bytes) else str(path), opts, providers=["CPUExecutionProvider"])


def onnx_runner(path: Path | bytes) -> Callable[[list[np.ndarray]], np.ndarray]:
    """inputs in the graph's order -> its first output."""
    session = onnx_session(path)
    names = [i.name for i in session.get_inputs()]
    return lambda inputs: session.run(None, dict(zip(names, inputs)))[0]


def executorch_runner(pte: Path, ptd: Path) -> Callable[[list[np.ndarray]], np.ndarray]:
    """inputs in the graph's order -> its first output (ExecuTorch's Python runtime, 1 thread)."""
    import torch

    from dualasr.export.executorch_writer import METHOD, execute, load_program

    torch.set_num_threads(1)
    method = load_program(pte, ptd).load_method(METHOD)
    return lambda inputs: execute(method, inputs)[0]


def _graphs(export: Path, backends: list[str], full_frames: int | None) -> dict[str, tuple[Callable, list[np.ndarray]]]:
    """{backend/graph/precision: (runner, inputs in the manifest's order, batch 1)}."""
    m = json.loads((export / "manifest.json").read_text())
    rng = np.random.default_rng(0)
    inputs: dict[str, list[np.ndarray]] = {}
    for spec in m["streaming"]:
        features = m["graphs"][spec["graph"]]["inputs"][0]
        inputs[spec["graph"]] = [rng.standard_normal(features["shape"]).astype(np.float32), *zero_states(spec)]
    predictor = m["predictor"]  # a context of real tokens: 1, 2, ...
    context = np.asarray([list(range(1, predictor["context_size"] + 1))], dtype=np.int64)
    inputs["predictor"] = [context] + [np.zeros(s["shape"], dtype=s["dtype"]) for s in predictor.get("states", [])]
    if full_frames:
        dim = m["graphs"]["encoder_full"]["inputs"][0]["shape"][-1]  # [1, T, feature bins]
        # Own generator: the same features whatever chunk sizes either export has.
        inputs["encoder_full"] = [np.random.default_rng(1).standard_normal([1, full_frames, dim]).astype(np.float32)]
    found = {}
    for backend in backends:
        for precision, artifact in m["artifacts"].get(backend, {}).items():
            for graph, x in inputs.items():
                path = export / artifact["graphs"][graph]
                run = (onnx_runner(path) if backend == "onnx"
                       else executorch_runner(path, export / artifact["weights"]))
                found[f"{backend}/{graph}/{precision}"] = (run, x)
    return found


def compare(a: Path, b: Path, backends: list[str], full_frames: int | None, repeats: int, calls: int) -> dict:
    graphs_a, graphs_b = _graphs(a, backends, full_frames), _graphs(b, backends, full_frames)
    results = {}
    for key in sorted(set(graphs_a) & set(graphs_b)):
        pair = (graphs_a[key], graphs_b[key])
        outs = [run(x) for run, x in pair]
        best = [float("inf"), float("inf")]
        for _ in range(repeats):
            for i, (run, x) in enumerate(pair):
                t0 = time.perf_counter()
                for _ in range(calls):
                    run(x)
                best[i] = min(best[i], (time.perf_counter() - t0) / calls * 1000)
        results[key] = {
            "a_ms": round(best[0], 3), "b_ms": round(best[1], 3), "a_over_b": round(best[0] / best[1], 3),
            "output_max_abs_diff": float(np.abs(outs[0] - outs[1]).max()),
        }
        print(key, results[key], flush=True)
    return results


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("a", type=Path)
    p.add_argument("b", type=Path)
    p.add_argument("--label-a", default="a")
    p.add_argument("--label-b", default="b")
    p.add_argument("--backends", default="onnx", help="comma-separated: onnx, executorch")
    p.add_argument("--full-seconds", type=float, default=0.0,
                   help="also time encoder_full on this many seconds of features (10 ms frames)")
    p.add_argument("--repeats", type=int, default=30)
    p.add_argument("--calls", type=int, default=20, help="calls per round")
    p.add_argument("--json", type=Path)
    args = p.parse_args(argv)
    backends = args.backends.split(",")
    full_frames = round(args.full_seconds * 100) or None
    out = {
        "command": "python benchmarks/step_graph_ab.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "a": {"export": str(args.a), "label": args.label_a},
        "b": {"export": str(args.b), "label": args.label_b},
        **runtime_versions(["onnx", *backends]), "threads": 1, "calls_per_round": args.calls,
        "repeats": args.repeats, "full_frames": full_frames,
        "results": compare(args.a, args.b, backends, full_frames, args.repeats, args.calls),
    }
    if args.json:
        atomic_write(args.json, json.dumps(out, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
