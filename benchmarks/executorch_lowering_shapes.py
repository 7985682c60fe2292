"""What encoder_full's dynamic time axis costs the ExecuTorch export: the same graph lowered with
its time axis dynamic (as exported) and static (fixed at the example's length), side by side.

    OMP_NUM_THREADS=1 python benchmarks/executorch_lowering_shapes.py \
        --json benchmarks/results/executorch_lowering_shapes.json

The graph is the built-in model's encoder_full as the ExecuTorch writer prepares it
(`executorch_writer.prepared_graphs`), exported with `export_program` and lowered with
`lower_program`, once per precision and shape, in this one process after a warm-up lowering of
the predictor (ExecuTorch traces its pattern graphs on first use). A static program only runs
inputs of that one length, so it is a measurement, not an export option.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--precisions", default="fp32,int8")
    p.add_argument("--json", type=Path)
    args = p.parse_args(argv)

    from importlib.metadata import version

    import torch

    from dualasr.checkpoint import load_model
    from dualasr.export.executorch_writer import Lowered, dynamic_shapes_for, export_program, lower_program, prepared_graphs
    from dualasr.export.exporter import _resolve_checkpoint, example_inputs_for, graphs_for
    from dualasr.fileio import atomic_write

    torch.set_num_threads(1)
    model = load_model(_resolve_checkpoint(None))[0]
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
            lowered = Lowered.of(lower_program(ep))
            t2 = time.perf_counter()
            results[f"{precision}/{shape}"] = {
                "export_seconds": round(t1 - t0, 2), "lower_seconds": round(t2 - t1, 2),
                "graph_nodes": sum(1 for n in ep.graph.nodes if n.op == "call_function"),
                "delegate_partitions": lowered.delegate_partitions,
            }
            print(precision, shape, results[f"{precision}/{shape}"], flush=True)
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
