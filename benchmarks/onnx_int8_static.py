"""Static int8 (QDQ: activation scales calibrated on real speech) against the exporter's dynamic
int8 and fp32, ONNX on onnxruntime, 1 thread, side by side (issue 15, item 3).

    OMP_NUM_THREADS=1 python benchmarks/onnx_int8_static.py \
        --json benchmarks/results/onnx_int8_static.json

Models: the built-in one (trained: its errors mean something) and a random-weight conformer-s
(stateless predictor: speed at phone size). Calibration: every graph input the fp32 export sees on
`--calibration-utterances` Asterisk prompts of the training split (streaming steps with their
carried state, chunk by chunk); evaluation: `--utterances` held-out prompts. Static recipes
quantize the same weight MatMuls as the dynamic one (per output channel) and fix each activation
scale from calibration (onnxruntime's MinMax), so no scale is computed at run time. Per recipe:
encoder relative error and greedy-token agreement against fp32 ONNX, and the encoder's best-of-10
seconds over the evaluation audio per mode (recipes taking turns: benchmarks/onnx_int8_accuracy.py).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
from onnx_int8_accuracy import _SessionRunner, _decode_all, _encoder_seconds, _metrics  # this folder's

STATIC_RECIPES = {"static_u8s8": "QInt8", "static_u8u8": "QUInt8"}  # weight type; activations uint8


class _RecordingRunner(_SessionRunner):
    """Runs the fp32 graphs and keeps every feed, per graph: the calibration data."""

    def __init__(self, folder: Path):
        super().__init__(folder)
        self.feeds: dict[str, list[dict]] = {}

    def run(self, graph: str, feeds: dict) -> dict:
        self.feeds.setdefault(graph, []).append(dict(feeds))
        return super().run(graph, feeds)


def _quantize_static(model_path: Path, out: Path, feeds: list[dict], weight_type: str) -> None:
    import onnx
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    from dualasr.export.onnx_writer import weight_matmuls

    quantized = [n.name for n in weight_matmuls(onnx.load(str(model_path)))]  # what the dynamic recipe quantizes

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.it = iter(feeds)

        def get_next(self):
            return next(self.it, None)

    quantize_static(model_path, out, Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                    activation_type=QuantType.QUInt8, weight_type=QuantType[weight_type],
                    op_types_to_quantize=["MatMul", "Gemm"], nodes_to_quantize=quantized)


def _measure(checkpoint: Path, work: Path, calib_feats: list, eval_feats: list) -> dict:
    import onnx

    from dualasr.export import onnx_writer
    from dualasr.export.exporter import export_checkpoint
    from dualasr.export.verify import run_streaming

    manifest = export_checkpoint(checkpoint, work / "export", ["onnx"], ["none"], [320], jobs=1)
    inline = work / "recipes" / "fp32"
    inline.mkdir(parents=True)
    for graph, rel in manifest["artifacts"]["onnx"]["fp32"]["graphs"].items():
        onnx.save(onnx.load(str(work / "export" / rel)), str(inline / f"{graph}.onnx"))
    recorder = _RecordingRunner(inline)
    for x in calib_feats:
        recorder.run("encoder_full", {"features": x})
        run_streaming(recorder, manifest, manifest["streaming"][0], x)
    for recipe in [onnx_writer.INT8_RECIPE, *STATIC_RECIPES]:
        folder = work / "recipes" / recipe
        folder.mkdir()
        for path in sorted(inline.glob("*.onnx")):
            if recipe in STATIC_RECIPES and path.stem in recorder.feeds:
                _quantize_static(path, folder / path.name, recorder.feeds[path.stem], STATIC_RECIPES[recipe])
            else:  # predictor and joiner: the exporter's recipe, so only the encoder differs
                onnx.save(onnx_writer.quantize_int8(onnx.load(str(path))), str(folder / path.name))
    runners = {p.name: _SessionRunner(p) for p in sorted((work / "recipes").iterdir())}
    refs = _decode_all(runners["fp32"], manifest, eval_feats)
    rows = {name: _metrics(_decode_all(r, manifest, eval_feats), refs) for name, r in runners.items()}
    for name, seconds in _encoder_seconds(runners, manifest, eval_feats).items():
        rows[name].update(seconds)
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--utterances", type=int, default=12)
    p.add_argument("--calibration-utterances", type=int, default=16)
    p.add_argument("--json", default="benchmarks/results/onnx_int8_static.json")
    args = p.parse_args(argv)

    import torch

    from dualasr.audio import load_audio
    from dualasr.checkpoint import random_checkpoint
    from dualasr.config import load_config
    from dualasr.corpus import read_asterisk_prompts, split_asterisk
    from dualasr.export import onnx_writer
    from dualasr.export.exporter import DEFAULT_CHECKPOINT
    from dualasr.features import FbankConfig, compute_fbank
    from dualasr.fileio import atomic_write

    torch.set_num_threads(1)
    train, test = split_asterisk(read_asterisk_prompts())
    calib, held_out = train[:args.calibration_utterances], test[:args.utterances]

    def features(utts):
        return [compute_fbank(torch.from_numpy(load_audio(u.audio)), FbankConfig())[None].numpy() for u in utts]

    calib_feats, eval_feats = features(calib), features(held_out)
    results = {}
    work = Path(tempfile.mkdtemp(prefix="int8-static-"))
    try:
        random_cs = random_checkpoint(load_config("conformer-s", ['model.predictor="stateless"']), work / "cs.pt")
        for label, checkpoint in (("built-in", DEFAULT_CHECKPOINT), ("conformer-s (random)", random_cs)):
            results[label] = _measure(checkpoint, work / label.split()[0], calib_feats, eval_feats)
            for recipe, row in results[label].items():
                print(f"{label:22s} {recipe:12s} " + "  ".join(f"{k} {v}" for k, v in row.items()), flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    result = {
        "command": "python " + " ".join([sys.argv[0], *(argv if argv is not None else sys.argv[1:])]),
        "calibration_audio": [u.id for u in calib],
        "evaluation_audio": [u.id for u in held_out],
        "dynamic_recipe": {onnx_writer.INT8_RECIPE: onnx_writer.INT8_RECIPES[onnx_writer.INT8_RECIPE]},
        "static_recipes": {r: {"activations": "QUInt8 per tensor, MinMax calibration", "weights": f"{w} per channel"}
                           for r, w in STATIC_RECIPES.items()},
        "reference": "fp32 ONNX of the same model",
        "results": results,
    }
    atomic_write(Path(args.json), (json.dumps(result, indent=1) + "\n").encode())
    return 0


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    sys.exit(main())
