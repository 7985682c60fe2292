"""What encoder_full's dynamic time axis costs the ExecuTorch export: the same graph lowered with
its time axis dynamic (as exported) and static (fixed at the example's length), side by side.

    OMP_NUM_THREADS=1 python benchmarks/executorch_lowering_shapes.py \
        --json benchmarks/results/executorch_lowering_shapes.json

The graph is the built-in model's encoder_full as the ExecuTorch writer prepares it
(`executorch_writer.prepared_graphs`), exported with `export_program` and lowered with
`lower_program`, once per precision and shape, in this one process after a warm-up lowering of
the predictor (ExecuTorch traces its pattern graphs on first use). Lowering traces the graph again
and again (edge decomposition, then every XNNPACK pass on every partition); the record also holds
what one such trace costs: each op of the exported program run once on its fake-tensor inputs
(symbolic shapes where the axis is dynamic), milliseconds per op type. A static program only runs
inputs of that one length, so it is a measurement, not an export option.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from pathlib import Path


def fake_trace_ms(ep, rounds: int = 3) -> dict[str, float]:
    """Milliseconds per op type of running every op of `ep` on its recorded fake-tensor inputs
    (the meta values torch.export stored), the best of `rounds`; "total" is the whole graph."""
    from torch._guards import detect_fake_mode
    from torch.fx.node import map_arg

    nodes = [n for n in ep.graph.nodes if n.op == "call_function"]
    mode = detect_fake_mode([n.meta["val"] for n in ep.graph.nodes if "val" in n.meta])
    best: dict[str, float] = {}
    for _ in range(rounds):
        spent: Counter = Counter()
        with mode:
            for n in nodes:
                args = map_arg(n.args, lambda a: a.meta["val"])
                kwargs = map_arg(n.kwargs, lambda a: a.meta["val"])
                t0 = time.perf_counter()
                n.target(*args, **kwargs)
                spent[str(n.target)] += time.perf_counter() - t0
        spent["total"] = sum(spent.values())
        best = {k: min(v, best.get(k, float("inf"))) for k, v in spent.items()}
    return {k: round(v * 1000, 2) for k, v in sorted(best.items(), key=lambda kv: -kv[1])}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--precisions", default="fp32,int8")
    p.add_argument("--json", type=Path)
    args = p.parse_args(argv)

    from importlib.metadata import version

    import torch

    from dualasr.checkpoint import load_model
    from dualasr.export.executorch_writer import Lowered, dynamic_shapes_for, export_program, lower_program, prepared_graphs
    from dualasr.export.exporter import DEFAULT_CHECKPOINT, example_inputs_for, graphs_for
    from dualasr.fileio import atomic_write

    torch.set_num_threads(1)
    model = load_model(DEFAULT_CHECKPOINT)[0]
    graphs = graphs_for(model, [320])
    examples = example_inputs_for(graphs, model)
    graphs = prepared_graphs(graphs, examples)
    lower_program(export_program(graphs["predictor"], tuple(examples["predictor"]), None, "fp32"))  # warm-up

    name = "encoder_full"
    results = {}
    for precision in args.precisions.split(","):
        for shape, dynamic in (("dynamic", dynamic_shapes_for(name)), ("static", None)):
            t0 = time.perf_counter()
            ep = export_program(graphs[name], tuple(examples[name]), dynamic, precision)
            t1 = time.perf_counter()
            trace = fake_trace_ms(ep)
            t2 = time.perf_counter()
            lowered = Lowered.of(lower_program(ep))
            t3 = time.perf_counter()
            results[f"{precision}/{shape}"] = {
                "export_seconds": round(t1 - t0, 2), "lower_seconds": round(t3 - t2, 2),
                "graph_nodes": sum(1 for n in ep.graph.nodes if n.op == "call_function"),
                "delegate_partitions": lowered.delegate_partitions,
                "one_fake_trace_ms": trace,
            }
            print(precision, shape, {k: v for k, v in results[f"{precision}/{shape}"].items() if k != "one_fake_trace_ms"},
                  "fake trace", trace["total"], "ms", flush=True)
        dyn, static = results[f"{precision}/dynamic"], results[f"{precision}/static"]
        results[f"{precision}/dynamic_over_static_lowering"] = round(dyn["lower_seconds"] / static["lower_seconds"], 2)
    out = {
        "command": "python benchmarks/executorch_lowering_shapes.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "graph": name, "example_frames": int(examples[name][0].shape[1]),
        "torch": torch.__version__, "executorch": version("executorch"), "threads": 1, "results": results,
    }
    if args.json:
        atomic_write(args.json, json.dumps(out, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
