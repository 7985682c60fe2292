"""Per-layer int8 sensitivity (issue 15, item 3): which weight MatMul, quantized alone, moves the
encoder most, and what keeping the worst ones float buys.

    OMP_NUM_THREADS=1 python benchmarks/int8_sensitivity.py --utterances 8 \
        --json benchmarks/results/int8_sensitivity.json

For the built-in model's exported fp32 `encoder_full.onnx` (or `--export DIR`'s), each weight
MatMul/Gemm is quantized on its own with the exporter's recipe (`onnx_writer.INT8_RECIPE`, via
`onnx_writer.quantize_int8(..., only=[node])`), run with onnxruntime on the first `--utterances`
held-out real Asterisk prompts, and scored by the relative error ||y - y_fp32|| / ||y_fp32|| of the
encoder output over all of them. Then the whole graph quantized, and quantized with the k most
sensitive MatMuls kept float (k = 1, 2, 4), so the report says what a per-layer exception costs
and buys. `quantize_int8(model, keep_float=[...])` is the exporter's hook for such exceptions.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--export", help="an export folder with onnx/fp32 (default: the shipped built-in export)")
    p.add_argument("--utterances", type=int, default=8)
    p.add_argument("--json", default="benchmarks/results/int8_sensitivity.json")
    args = p.parse_args()

    import onnx
    import onnxruntime as ort
    import torch

    from dualasr.audio import load_audio
    from dualasr.demo import real_test_set
    from dualasr.export import onnx_writer
    from dualasr.export.manifest import artifact_path, load_manifest
    from dualasr.export.verify import relative_error
    from dualasr.features import FbankConfig, compute_fbank
    from dualasr.fileio import atomic_write
    from dualasr.runtime.cli import default_export_dir

    export = Path(args.export) if args.export else default_export_dir()
    manifest = load_manifest(export)
    fp32 = onnx.load(str(artifact_path(manifest, export, manifest["artifacts"]["onnx"]["fp32"]["graphs"]["encoder_full"])))
    utts = real_test_set(args.utterances)
    feats = [compute_fbank(torch.from_numpy(load_audio(u.audio)), FbankConfig())[None].numpy() for u in utts]
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.log_severity_level = 3

    def outputs(model: onnx.ModelProto) -> list[np.ndarray]:
        sess = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
        return [sess.run(["encoder_out"], {"features": x})[0][0] for x in feats]

    reference = outputs(fp32)
    matmuls = [(n.name, n.input[1]) for n in onnx_writer.weight_matmuls(fp32)]
    alone = []
    for node, weight in matmuls:
        err = relative_error(outputs(onnx_writer.quantize_int8(fp32, only=[node])), reference)
        alone.append({"node": node, "weight": weight, "relative_error": round(err, 5)})
        print(f"{err:.4f}  {node}  ({weight})", flush=True)
    alone.sort(key=lambda r: -r["relative_error"])
    whole = {"all quantized": relative_error(outputs(onnx_writer.quantize_int8(fp32)), reference)}
    for k in (1, 2, 4):
        keep = [r["node"] for r in alone[:k]]
        whole[f"{k} most sensitive kept float"] = relative_error(
            outputs(onnx_writer.quantize_int8(fp32, keep_float=keep)), reference)
    result = {
        "command": "python " + " ".join(sys.argv),
        "export": str(export),
        "graph": "encoder_full",
        "recipe": onnx_writer.INT8_RECIPE,
        "audio": [u.id for u in utts],
        "weight_matmuls": len(matmuls),
        "one_at_a_time": alone,
        "whole_graph": {k: round(v, 5) for k, v in whole.items()},
    }
    atomic_write(Path(args.json), (json.dumps(result, indent=1) + "\n").encode())
    print(json.dumps(result["whole_graph"], indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
