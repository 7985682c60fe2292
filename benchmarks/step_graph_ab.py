"""Two ONNX exports' streaming step graphs timed side by side (an A/B of a model-code change that
alters the step graph, e.g. its cache layout), onnxruntime, 1 thread, torch-free.

    python benchmarks/step_graph_ab.py A_EXPORT B_EXPORT --label-a before --label-b after \
        --json benchmarks/results/<name>.json

For every chunk size and precision both exports have: the best per-call milliseconds of
`--repeats` rounds of 20 calls, A and B alternating each round so load that comes and goes hits
both alike, and the max abs difference of their encoder outputs on the same features from the
initial state (exports of the same weights must agree whatever their cache layout).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np


def _session(path: Path):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.log_severity_level = 3
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def _feeds(session, spec: dict, features: np.ndarray) -> dict[str, np.ndarray]:
    """features and the manifest's initial states (zeros), batch 1."""
    feeds = {session.get_inputs()[0].name: features}
    for s in spec["states"]:
        feeds[s["name"]] = np.zeros(s["shape"], dtype=s["dtype"])
    return feeds


def _step_graphs(export: Path) -> dict[tuple[int, str], tuple[Path, dict]]:
    """(chunk_ms, precision) -> (step graph file, its manifest streaming entry)."""
    m = json.loads((export / "manifest.json").read_text())
    found = {}
    for precision, artifact in m["artifacts"].get("onnx", {}).items():
        for spec in m["streaming"]:
            found[(spec["chunk_ms"], precision)] = (export / artifact["graphs"][spec["graph"]], spec)
    return found


def compare(a: Path, b: Path, repeats: int) -> dict:
    graphs_a, graphs_b = _step_graphs(a), _step_graphs(b)
    results = {}
    for key in sorted(set(graphs_a) & set(graphs_b)):
        sessions, feeds = [], []
        features = None
        for path, spec in (graphs_a[key], graphs_b[key]):
            s = _session(path)
            if features is None:
                shape = s.get_inputs()[0].shape
                features = np.random.default_rng(0).standard_normal([1, *shape[1:]]).astype(np.float32)
            sessions.append(s)
            feeds.append(_feeds(s, spec, features))
        outs = [s.run(None, f)[0] for s, f in zip(sessions, feeds)]
        best = [float("inf"), float("inf")]
        for _ in range(repeats):
            for i, (s, f) in enumerate(zip(sessions, feeds)):
                t0 = time.perf_counter()
                for _ in range(20):
                    s.run(None, f)
                best[i] = min(best[i], (time.perf_counter() - t0) / 20 * 1000)
        results[f"{key[0]}ms/{key[1]}"] = {
            "a_ms": round(best[0], 3), "b_ms": round(best[1], 3), "a_over_b": round(best[0] / best[1], 3),
            "encoder_out_max_abs_diff": float(np.abs(outs[0] - outs[1]).max()),
        }
        print(key, results[f"{key[0]}ms/{key[1]}"], flush=True)
    return results


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("a", type=Path)
    p.add_argument("b", type=Path)
    p.add_argument("--label-a", default="a")
    p.add_argument("--label-b", default="b")
    p.add_argument("--repeats", type=int, default=30)
    p.add_argument("--json", type=Path)
    args = p.parse_args(argv)
    import onnxruntime

    out = {
        "command": "python benchmarks/step_graph_ab.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "a": {"export": str(args.a), "label": args.label_a},
        "b": {"export": str(args.b), "label": args.label_b},
        "onnxruntime": onnxruntime.__version__, "threads": 1, "calls_per_round": 20, "repeats": args.repeats,
        "results": compare(args.a, args.b, args.repeats),
    }
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(out, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
