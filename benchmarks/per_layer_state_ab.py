"""Would per-layer state inputs make the ONNX streaming step faster? A side-by-side answer.

    python benchmarks/per_layer_state_ab.py EXPORT --json benchmarks/results/per_layer_state_ab.json

Our step graphs take each cache stacked over the layers ([L, ...]) and return it stacked: the
exporter writes a Gather per layer to take a layer's slice and Unsqueeze + Concat to stack the new
ones (onnxruntime fuses the Gathers into a Split + Squeeze). This rewrites a copy of each ONNX step
graph of EXPORT so every layer's cache is its own input and output (`cached_key_0`, ...; the
stacking and slicing nodes removed), then times both, 1 thread, alternating rounds, fed their own
states back, and checks that the encoder outputs agree. A prototype to decide whether changing the
state contract pays, not an export option.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import onnx
from onnx import helper, numpy_helper

from dualasr.fileio import atomic_write
from step_graph_ab import onnx_session, runtime_versions


def per_layer_states(src: Path, dst: Path, states: list[str]) -> int:
    """Write src's graph with each stacked state in `states` split into per-layer inputs/outputs."""
    model = onnx.load(str(src))
    g = model.graph
    constants = {n.output[0]: numpy_helper.to_array(n.attribute[0].t) for n in g.node if n.op_type == "Constant"}
    producer = {o: n for n in g.node for o in n.output}
    readers = defaultdict(list)
    for n in g.node:
        for i in n.input:
            readers[i].append(n)
    inputs = {i.name: i for i in g.input}
    dropped, renamed, new_inputs, new_outputs = set(), {}, [], []
    for s in states:
        layer_shape = [d.dim_value or d.dim_param for d in inputs[s].type.tensor_type.shape.dim][1:]
        elem = inputs[s].type.tensor_type.elem_type
        for n in readers[s]:  # Gather(state, layer index)
            if n.op_type != "Gather" or n.input[1] not in constants:
                raise ValueError(f"{src.name}: {s} is read by {n.op_type}, not a Gather of one layer")
            name = f"{s}_{int(constants[n.input[1]])}"
            renamed[n.output[0]] = name
            dropped.add(id(n))
            new_inputs.append(helper.make_tensor_value_info(name, elem, layer_shape))
        stack = producer["new_" + s]  # Concat(Unsqueeze(layer 0), ...)
        if stack.op_type != "Concat":
            raise ValueError(f"{src.name}: new_{s} comes from {stack.op_type}, not a Concat of the layers")
        for j, part in enumerate(stack.input):
            unsqueeze = producer[part]
            unsqueeze.op_type, unsqueeze.output[0] = "Identity", f"new_{s}_{j}"
            del unsqueeze.input[1:]
            new_outputs.append(helper.make_tensor_value_info(f"new_{s}_{j}", elem, layer_shape))
        dropped.add(id(stack))
    nodes = [n for n in g.node if id(n) not in dropped]
    for n in nodes:
        n.input[:] = [renamed.get(i, i) for i in n.input]
    del g.node[:]
    g.node.extend(nodes)
    kept_in = [i for i in g.input if i.name not in states]
    del g.input[:]
    g.input.extend(kept_in + new_inputs)
    kept_out = [o for o in g.output if o.name.removeprefix("new_") not in states]
    del g.output[:]
    g.output.extend(kept_out + new_outputs)
    onnx.save(model, str(dst), save_as_external_data=True, location=dst.name + ".data")
    return len(g.node)


class _Stepper:
    """Runs a step graph on a list of feature chunks, feeding its own states back."""

    def __init__(self, path: Path):
        self.session = onnx_session(path)
        self.outputs = [o.name for o in self.session.get_outputs()]
        self.initial = {i.name: np.zeros([1 if isinstance(d, str) else d for d in i.shape],
                                         np.int64 if "int64" in i.type else np.float32)
                        for i in self.session.get_inputs() if i.name != "features"}
        self.state = dict(self.initial)

    def step(self, features: np.ndarray) -> np.ndarray:
        out = dict(zip(self.outputs, self.session.run(None, {"features": features, **self.state})))
        self.state = {k: out["new_" + k] for k in self.state}
        return out["encoder_out"]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("export", type=Path)
    p.add_argument("--repeats", type=int, default=8)
    p.add_argument("--calls", type=int, default=100)
    p.add_argument("--json", type=Path, required=True)
    args = p.parse_args(argv)
    m = json.loads((args.export / "manifest.json").read_text())
    rng = np.random.default_rng(0)
    results = {}
    with tempfile.TemporaryDirectory(prefix="per-layer-") as tmp:
        for spec in m["streaming"]:
            stacked = [s["name"] for s in spec["states"] if len(s["shape"]) > 1 and s["name"] != "processed_lens"]
            shape = m["graphs"][spec["graph"]]["inputs"][0]["shape"]
            chunks = [rng.standard_normal(shape).astype(np.float32) for _ in range(8)]
            for precision, artifact in m["artifacts"]["onnx"].items():
                src = args.export / artifact["graphs"][spec["graph"]]
                dst = Path(tmp) / f"{precision}-{src.name}"
                nodes = per_layer_states(src, dst, stacked)
                a, b = _Stepper(src), _Stepper(dst)
                diff = max(float(np.abs(a.step(x) - b.step(x)).max()) for x in chunks)
                best = [float("inf"), float("inf")]
                for _ in range(args.repeats):
                    for k, stepper in enumerate((a, b)):
                        for x in chunks[:2]:
                            stepper.step(x)
                        t0 = time.perf_counter()
                        for i in range(args.calls):
                            stepper.step(chunks[i % len(chunks)])
                        best[k] = min(best[k], (time.perf_counter() - t0) / args.calls * 1000)
                key = f"{spec['graph']}/{precision}"
                results[key] = {"stacked_ms": round(best[0], 3), "per_layer_ms": round(best[1], 3),
                                "stacked_over_per_layer": round(best[0] / best[1], 3), "per_layer_nodes": nodes,
                                "encoder_out_max_abs_diff": diff}
                print(key, results[key], flush=True)
    record = {"command": " ".join(["python", "benchmarks/per_layer_state_ab.py", *(argv or sys.argv[1:])]),
              "export": str(args.export), **runtime_versions(["onnx"]), "threads": 1,
              "calls_per_round": args.calls, "repeats": args.repeats, "results": results}
    atomic_write(args.json, json.dumps(record, indent=1) + "\n")
    print(f"results: {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
