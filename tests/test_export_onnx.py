"""ONNX export: graphs check and run, one shared weights file per precision, streaming/full
equivalence with PyTorch, int8 size, `verify`, and the exporter's plug-in/atomicity contract."""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch

import onnx
import onnxruntime as ort

from dualasr.checkpoint import load_model  # noqa: E402
from dualasr.export import cli as export_cli  # noqa: E402
from dualasr.export import exporter  # noqa: E402
from dualasr.export.exporter import ExportError, export_checkpoint  # noqa: E402
from dualasr.export.manifest import load_manifest  # noqa: E402
from dualasr.export.verify import format_report, verify_export  # noqa: E402
from dualasr.export.verify import main as verify_main  # noqa: E402

TOL = 1e-4
CHUNKS = [160, 320]


@pytest.fixture(scope="module")
def onnx_export(random_checkpoint: Path, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("export") / "tiny"
    export_checkpoint(random_checkpoint, out, ["onnx"], ["none", "int8"], CHUNKS)
    return out


@pytest.fixture(scope="module")
def model(random_checkpoint: Path):
    return load_model(random_checkpoint)[0]


def _session(path: Path):
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.log_severity_level = 3
    return ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])


def _graph_paths(export: Path, precision: str) -> dict[str, Path]:
    m = json.loads((export / "manifest.json").read_text())
    return {g: export / rel for g, rel in m["artifacts"]["onnx"][precision]["graphs"].items()}


# ----------------------------------------------------------------------------- structure


def test_manifest_contents(onnx_export: Path, model):
    m = load_manifest(onnx_export)
    assert set(m["graphs"]) == {"encoder_full", "encoder_streaming_160ms", "encoder_streaming_320ms", "predictor", "joiner"}
    assert set(m["artifacts"]["onnx"]) == {"fp32", "int8"}
    assert m["errors"] == {}
    names = lambda g, k: [t["name"] for t in m["graphs"][g][k]]  # noqa: E731
    assert names("encoder_full", "inputs") == ["features"]
    assert m["graphs"]["encoder_full"]["inputs"][0]["shape"] == [1, "T", 80]
    assert names("encoder_streaming_320ms", "inputs") == [
        "features", "cached_key", "cached_value", "cached_conv", "processed_lens"]
    assert names("encoder_streaming_320ms", "outputs") == [
        "encoder_out", "new_cached_key", "new_cached_value", "new_cached_conv", "new_processed_lens"]
    assert names("predictor", "inputs") == ["context"] and names("joiner", "outputs") == ["logits"]
    s320 = next(s for s in m["streaming"] if s["chunk_ms"] == 320)
    assert (s320["chunk_frames"], s320["encoder_frames"], s320["graph"]) == (32, 8, "encoder_streaming_320ms")
    assert [s["batch_dim"] for s in s320["states"]] == [1, 1, 2, 0]
    assert m["predictor"] == {"type": "stateless", "context_size": 2, "initial_context": [-1, 0], "states": []}
    assert m["vocab_size"] == model.cfg.vocab_size and m["encoder_dim"] == model.cfg.d_model
    for f in ("checkpoint.pt", "tokenizer.model", "tokens.txt"):
        assert f in m["files"]
    assert (onnx_export / "tokens.txt").read_text().splitlines()[0] == "<blk> 0"
    ws = m["weight_sharing"]
    assert ws["shared_bytes"] == m["files"]["onnx/fp32/weights.bin"]["size"]
    assert ws["shared_bytes"] < 0.6 * ws["separate_bytes"]
    assert m["export_seconds"]["onnx"] > 0 and m["sizes"]["onnx"]["int8"]["weights_bytes"] > 0
    assert m["tools"]["onnxruntime"] == ort.__version__


@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_onnx_checker_passes(onnx_export: Path, precision: str):
    for path in _graph_paths(onnx_export, precision).values():
        onnx.checker.check_model(str(path), full_check=True)  # resolves weights.bin beside the model


@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_one_shared_weights_file(onnx_export: Path, precision: str):
    folder = onnx_export / "onnx" / precision
    blob = (folder / "weights.bin").read_bytes()
    ranges: dict[tuple[int, int], set[str]] = {}
    for name, path in _graph_paths(onnx_export, precision).items():
        m = onnx.load(str(path), load_external_data=False)
        consts = [n for n in m.graph.node if n.op_type == "Constant"]
        for n in consts:
            for a in n.attribute:
                if a.name == "value":
                    assert onnx.numpy_helper.to_array(a.t).nbytes < 1024, f"{name}: large Constant {n.output[0]} inline"
        for t in m.graph.initializer:
            if t.data_location == onnx.TensorProto.EXTERNAL:
                info = {e.key: e.value for e in t.external_data}
                assert info["location"] == "weights.bin"
                key = (int(info["offset"]), int(info["length"]))
                assert key[0] % 64 == 0
                ranges.setdefault(key, set()).add(name)
            else:
                assert len(t.raw_data) < 1024 and onnx.numpy_helper.to_array(t).nbytes < 1024, f"{name}: {t.name} inline"
    # Distinct ranges hold distinct bytes (each tensor stored once) and tile the file up to padding.
    spans = sorted(ranges)
    assert all(a[0] + a[1] <= b[0] for a, b in zip(spans, spans[1:])), "overlapping tensors"
    digests = [hashlib.sha256(blob[o:o + n]).hexdigest() for o, n in spans]
    assert len(set(digests)) == len(digests), "the same tensor is stored twice"
    unique = sum(n for _, n in spans)
    assert spans[-1][0] + spans[-1][1] == len(blob)
    assert len(blob) - unique < 4096 * len(spans)  # only alignment padding besides the tensors
    # The encoder weights are referenced by the full graph and every streaming graph.
    shared = [r for r, users in ranges.items() if {"encoder_full", *[f"encoder_streaming_{c}ms" for c in CHUNKS]} <= users]
    assert sum(n for _, n in shared) > 0.8 * unique


def test_int8_weights_at_most_35_percent(onnx_export: Path):
    fp32 = (onnx_export / "onnx" / "fp32" / "weights.bin").stat().st_size
    int8 = (onnx_export / "onnx" / "int8" / "weights.bin").stat().st_size
    assert int8 <= 0.35 * fp32, (int8, fp32)


# ----------------------------------------------------------------------------- numerics


@pytest.mark.parametrize("chunk_ms", CHUNKS)
def test_streaming_step_matches_torch(onnx_export: Path, model, chunk_ms: int):
    sess = _session(_graph_paths(onnx_export, "fp32")[f"encoder_streaming_{chunk_ms}ms"])
    c = chunk_ms // 10
    batch, T = 2, 7 * c + 5  # batch 2 exercises the dynamic batch axis; the last chunk is partial
    feats = torch.randn(batch, T, 80, generator=torch.Generator().manual_seed(chunk_ms)) * 2 - 6
    with torch.no_grad():
        ref, _ = model.encoder(feats, None, "streaming")
    state = [s.numpy() for s in model.encoder.init_state(batch)]
    names = [i.name for i in sess.get_inputs()]
    outs = []
    x = torch.cat([feats, torch.zeros(batch, -T % c, 80)], dim=1).numpy()
    for start in range(0, x.shape[1], c):
        res = sess.run(None, dict(zip(names, [x[:, start:start + c], *state])))
        outs.append(res[0])
        state = res[1:]
    got = np.concatenate(outs, axis=1)[:, : T // 4]
    assert np.abs(got - ref.numpy()).max() <= TOL
    assert state[-1].tolist() == [x.shape[1] // 4] * batch  # processed_lens counts encoder frames


def test_streaming_steps_carry_no_shape_arithmetic(onnx_export: Path):
    """onnx_writer.fold_static_shapes: a step's fixed sizes are constants, not Shape nodes run on
    every chunk (the batch axis stays free: the batch-2 test above runs the same graphs)."""
    for precision in ("fp32", "int8"):
        for chunk_ms in CHUNKS:
            path = _graph_paths(onnx_export, precision)[f"encoder_streaming_{chunk_ms}ms"]
            ops = [n.op_type for n in onnx.load(str(path), load_external_data=False).graph.node]
            assert "Shape" not in ops, (precision, chunk_ms)


def test_streaming_steps_have_no_grouped_conv(onnx_export: Path):
    """The depthwise convs of a step, and the stateless predictor's conv over its context, are
    window products (layers.depthwise_conv_windows): onnxruntime's grouped Conv costs more than the
    arithmetic on a few frames. The full graph keeps them."""
    def grouped_convs(graph: str) -> int:
        path = _graph_paths(onnx_export, "fp32")[graph]
        nodes = onnx.load(str(path), load_external_data=False).graph.node
        return sum(1 for n in nodes if n.op_type == "Conv" and any(a.name == "group" and a.i > 1 for a in n.attribute))

    assert grouped_convs("encoder_full") > 0
    assert grouped_convs("encoder_streaming_320ms") == 0
    assert grouped_convs("predictor") == 0


@pytest.mark.parametrize("frames", [57, 413])
def test_full_graph_matches_torch(onnx_export: Path, model, frames: int):
    sess = _session(_graph_paths(onnx_export, "fp32")["encoder_full"])
    feats = torch.randn(1, frames, 80, generator=torch.Generator().manual_seed(frames)) * 2 - 6
    with torch.no_grad():
        ref, _ = model.encoder(feats, None, "full")
    got = sess.run(None, {"features": feats.numpy()})[0]
    assert got.shape == tuple(ref.shape) == (1, frames // 4, model.cfg.d_model)
    assert np.abs(got - ref.numpy()).max() <= TOL


def test_verify_passes(onnx_export: Path):
    report = verify_export(onnx_export)
    assert report["ok"], format_report(report)
    checks = {(c["precision"], c["check"]): c for c in report["checks"]}
    assert checks[("fp32", "streaming 160 ms vs torch")]["value"] <= TOL
    assert checks[("fp32", "full vs torch")]["value"] <= TOL
    assert checks[("fp32", "full greedy tokens vs torch fp32")]["value"] == 1.0
    assert checks[("int8", "full greedy tokens vs torch fp32")]["value"] >= 0.8


def test_verify_refuses_tampered_export(onnx_export: Path, tmp_path: Path, capsys):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(onnx_export, copy)
    weights = copy / "onnx" / "int8" / "weights.bin"
    weights.write_bytes(weights.read_bytes()[:-100])
    rc = verify_main(argparse.Namespace(export_dir=str(copy), audio=None, json=None))
    assert rc == 1
    assert "onnx/int8/weights.bin is" in capsys.readouterr().err


def test_lstm_predictor_export(random_lstm_checkpoint: Path, tmp_path: Path):
    out = tmp_path / "lstm"
    m = export_checkpoint(random_lstm_checkpoint, out, ["onnx"], ["none"], [320])
    assert [s["name"] for s in m["predictor"]["states"]] == ["h", "c"]
    assert [t["name"] for t in m["graphs"]["predictor"]["outputs"]] == ["predictor_out", "new_h", "new_c"]
    model = load_model(random_lstm_checkpoint)[0]
    sess = _session(out / m["artifacts"]["onnx"]["fp32"]["graphs"]["predictor"])
    g = torch.Generator().manual_seed(3)
    ctx = torch.randint(0, model.cfg.vocab_size, (3, 1), generator=g)
    h, c = (torch.randn(model.cfg.predictor_layers, 3, model.cfg.predictor_dim, generator=g) for _ in range(2))
    with torch.no_grad():
        ref, (rh, rc) = model.predictor.step(ctx, [h, c])
    got = sess.run(None, {"context": ctx.numpy(), "h": h.numpy(), "c": c.numpy()})
    for a, b in zip(got, (ref, rh, rc)):
        assert np.abs(a - b.numpy()).max() <= TOL
    report = verify_export(out)
    assert report["ok"], format_report(report)


# ----------------------------------------------------------------------------- exporter contract


def _stub_writer(monkeypatch, name: str, write) -> None:
    mod = types.ModuleType(f"dualasr.export.{name}")
    mod.write = write
    monkeypatch.setitem(sys.modules, mod.__name__, mod)


def _good_write(graphs, example_inputs, export_dir, precision, calibration, model=None):
    folder = Path(export_dir) / "good" / precision
    folder.mkdir(parents=True)
    (folder / "all.bin").write_bytes(b"weights")
    return {"graphs": {g: f"good/{precision}/all.bin" for g in graphs}, "weights": f"good/{precision}/all.bin"}


def _bad_write(graphs, example_inputs, export_dir, precision, calibration, model=None):
    folder = Path(export_dir) / "bad" / precision
    folder.mkdir(parents=True)
    (folder / "half.bin").write_bytes(b"half")
    raise RuntimeError("converter crashed")


@pytest.fixture()
def stub_formats(monkeypatch):
    _stub_writer(monkeypatch, "good_writer", _good_write)
    _stub_writer(monkeypatch, "bad_writer", _bad_write)
    monkeypatch.setitem(exporter.FORMATS, "good", ("good_writer", {"none": "fp32", "int8": "int8"}))
    monkeypatch.setitem(exporter.FORMATS, "bad", ("bad_writer", {"none": "fp32", "int8": "int8"}))
    monkeypatch.setitem(exporter.FORMATS, "absent", ("absent_writer_module", {"none": "fp32", "int8": "int8"}))


def test_failing_or_missing_writer_does_not_stop_others(stub_formats, random_checkpoint: Path, tmp_path: Path, capsys):
    out = tmp_path / "out"
    args = argparse.Namespace(checkpoint=str(random_checkpoint), out=str(out), formats="good,bad,absent",
                              quantize="none", chunk_ms="320", calibration=None)
    assert export_cli.main(args) == 1
    captured = capsys.readouterr()
    assert "bad/fp32: RuntimeError: converter crashed" in captured.err
    assert "absent_writer_module" in captured.err and "does not exist" in captured.err
    assert "good    fp32" in captured.out
    m = load_manifest(out)
    assert set(m["artifacts"]) == {"good"} and set(m["errors"]) == {"bad/fp32", "absent/fp32"}
    assert not (out / "bad").exists()  # the failed writer's partial files are removed
    assert "checkpoint.pt" in m["files"]


def test_failed_export_leaves_previous_export_untouched(stub_formats, random_checkpoint: Path, tmp_path: Path):
    out = tmp_path / "out"
    export_checkpoint(random_checkpoint, out, ["good"], ["none"], [320])
    before = (out / "manifest.json").read_bytes()
    with pytest.raises(ExportError, match="nothing was exported"):
        export_checkpoint(random_checkpoint, out, ["bad", "absent"], ["int8"], [320], replace=True)
    assert (out / "manifest.json").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # no temp folders left behind
    # A successful re-export replaces it in one rename.
    export_checkpoint(random_checkpoint, out, ["good"], ["none", "int8"], [160])
    assert set(load_manifest(out)["artifacts"]["good"]) == {"fp32", "int8"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_bad_requests_are_refused(stub_formats, random_checkpoint: Path, tmp_path: Path):
    with pytest.raises(ExportError, match="unknown format"):
        export_checkpoint(random_checkpoint, tmp_path / "o", ["tflite"], ["none"], [320])
    with pytest.raises(ExportError, match="unknown quantization"):
        export_checkpoint(random_checkpoint, tmp_path / "o", ["good"], ["int4"], [320])
    with pytest.raises(ExportError, match="--chunk-ms.*multiple of 40 ms"):
        export_checkpoint(random_checkpoint, tmp_path / "o", ["good"], ["none"], [100])
    with pytest.raises(ExportError, match="does not exist"):
        export_checkpoint(tmp_path / "nope.pt", tmp_path / "o", ["good"], ["none"], [320])
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "thesis.tex").write_text("x")
    with pytest.raises(ExportError, match="not a dualasr export"):
        export_checkpoint(random_checkpoint, precious, ["good"], ["none"], [320])
    assert (precious / "thesis.tex").exists()


def test_parallel_writers_write_what_serial_writers_write(random_checkpoint: Path, tmp_path: Path):
    """jobs=2 runs the ONNX and sherpa-onnx writers in two worker processes: same files, same
    manifest order, as one after another in this process."""
    formats, quant = ["onnx", "sherpa-onnx"], ["none", "int8"]
    serial = export_checkpoint(random_checkpoint, tmp_path / "serial", formats, quant, [320], jobs=1)
    parallel = export_checkpoint(random_checkpoint, tmp_path / "parallel", formats, quant, [320], jobs=2)
    assert serial["errors"] == parallel["errors"] == {}
    assert [(f, list(p)) for f, p in parallel["artifacts"].items()] == [(f, list(p)) for f, p in serial["artifacts"].items()]
    graphs = [rel for rel in serial["files"] if rel.endswith((".onnx", ".bin"))]
    assert len(graphs) >= 14
    for rel in graphs:
        assert parallel["files"][rel]["sha256"] == serial["files"][rel]["sha256"], rel


def test_missing_builtin_model_is_a_clear_error(stub_formats, tmp_path: Path, monkeypatch):
    monkeypatch.setattr(exporter, "DEFAULT_CHECKPOINT", tmp_path / "assets" / "default" / "model.pt")
    with pytest.raises(ExportError, match="built-in model .* is not installed; pass a checkpoint"):
        export_checkpoint(None, tmp_path / "o", ["good"], ["none"], [320])


def test_verify_validates_coreml_spec_without_predict(onnx_export: Path, random_checkpoint: Path, tmp_path: Path):
    """verify's Core ML path: off macOS it checks the package's functions and I/O names only, and
    says so. A one-function package (the joiner) stands in for the Core ML writer's output."""
    import shutil

    import coremltools as ct
    from dualasr.export.exporter import graph_io
    from dualasr.export.manifest import write_manifest
    from dualasr.export.wrappers import JoinerStep

    model = load_model(random_checkpoint)[0]
    joiner = JoinerStep(model).eval()
    ex = (torch.randn(1, model.cfg.d_model), torch.randn(1, model.cfg.predictor_dim))
    spec = graph_io({"joiner": joiner}, {"joiner": ex})["joiner"]
    ml = ct.convert(torch.export.export(joiner, ex).run_decompositions({}),
                    inputs=[ct.TensorType(name=t["name"], shape=x.shape) for t, x in zip(spec["inputs"], ex)],
                    outputs=[ct.TensorType(name="logits")], minimum_deployment_target=ct.target.iOS17)
    export = tmp_path / "coreml_only"  # the ONNX artifacts left out: only the Core ML path runs
    export.mkdir()
    for f in ("checkpoint.pt", "tokenizer.model", "tokens.txt"):
        shutil.copy(onnx_export / f, export / f)
    ml.save(str(export / "coreml" / "fp16" / "model.mlpackage"))
    m = json.loads((onnx_export / "manifest.json").read_text())
    m["artifacts"] = {"coreml": {"fp16": {"package": "coreml/fp16/model.mlpackage", "functions": ["joiner"]}}}
    write_manifest(export, m)
    report = verify_export(export)
    assert report["ok"], format_report(report)
    assert any("predict was NOT run" in n for n in report["notes"])

    m["artifacts"]["coreml"]["fp16"]["functions"] = ["joiner", "encoder_full"]
    write_manifest(export, m)
    report = verify_export(export)
    bad = [c for c in report["checks"] if not c["ok"]]
    assert [c["runtime"] for c in bad] == ["coreml"] and "encoder_full missing" in bad[0]["detail"]


def test_int8_keeps_chosen_matmuls_float(onnx_export: Path):
    """quantize_int8's per-node hooks (benchmarks/int8_sensitivity.py uses them): `only` quantizes
    just the named MatMuls, `keep_float` leaves them float and quantizes the rest."""
    import onnx

    from dualasr.export.onnx_writer import quantize_int8

    fp32 = onnx.load(str(onnx_export / "onnx" / "fp32" / "encoder_full.onnx"))
    inits = {t.name for t in fp32.graph.initializer}
    weighted = [n.name for n in fp32.graph.node if n.op_type in ("MatMul", "Gemm") and n.input[1] in inits]

    def quantized(m) -> int:
        return sum(n.op_type in ("MatMulInteger", "DynamicQuantizeMatMul") for n in m.graph.node)

    assert len(weighted) > 4 and quantized(quantize_int8(fp32)) == len(weighted)
    assert quantized(quantize_int8(fp32, only=weighted[:1])) == 1
    assert quantized(quantize_int8(fp32, keep_float=weighted[:2])) == len(weighted) - 2
