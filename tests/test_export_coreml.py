"""Core ML export (export/coreml_writer.py): one multifunction .mlpackage per precision.

Core ML prediction needs macOS; on other systems these tests check everything the files allow
(spec, functions, I/O names/shapes/dtypes, the weights inside vs PyTorch, deduplication, int8 size)
and skip the prediction test with that reason. They use a 1-layer tiny model; the 4-layer
built-in model's Core ML export is checked by tests/test_export_cli.py (every format through the CLI).
"""

from __future__ import annotations

import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

import coremltools  # noqa: F401  (a test dependency: missing means a broken install)

from dualasr.checkpoint import load_model  # noqa: E402
from dualasr.export import coreml_writer as cmw  # noqa: E402
from dualasr.export.wrappers import graphs_for  # noqa: E402

CHUNK_MS = 320
STEP = f"encoder_streaming_{CHUNK_MS}ms"
GRAPHS = ["encoder_full", STEP, "predictor", "joiner"]
ON_MACOS = sys.platform == "darwin"


def example_inputs(graphs: dict, cfg) -> dict[str, tuple]:
    torch.manual_seed(0)
    ex = {"encoder_full": (torch.randn(1, 64, cfg.num_mel_bins),)}
    for name, g in graphs.items():
        if name.startswith("encoder_streaming_") or name == "predictor":
            ex[name] = g.example_inputs()
    ex["joiner"] = (torch.randn(1, cfg.d_model), torch.randn(1, cfg.predictor_dim))
    return ex


def export(ckpt: Path, out: Path, precisions: list[str], names: list[str] | None = None) -> SimpleNamespace:
    model, config, _ = load_model(ckpt)
    graphs = graphs_for(model, [CHUNK_MS])
    if names:
        graphs = {k: v for k, v in graphs.items() if k in names}
    ex = example_inputs(graphs, config.model)
    entries = {p: cmw.write(graphs, ex, out, p, None) for p in precisions}
    return SimpleNamespace(model=model, cfg=config.model, graphs=graphs, ex=ex, entries=entries, dir=out)


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> SimpleNamespace:
    from conftest import make_checkpoint

    ckpt = make_checkpoint(tmp_path_factory.mktemp("ckpt1") / "random-1layer.pt", "tiny", num_layers=1)
    return export(ckpt, tmp_path_factory.mktemp("coreml"), ["fp16", "int8"])


def package(e: SimpleNamespace, precision: str) -> Path:
    return e.dir / e.entries[precision]["package"]


def manifest_graphs(e: SimpleNamespace) -> dict:
    """The manifest's graph I/O specs, written out by hand (independent of the writer's helper)."""
    c = e.cfg
    step = e.graphs[STEP]
    states = [s.to_dict() for s in step.state_specs()]
    return {
        "encoder_full": {
            "inputs": [{"name": "features", "shape": [1, "T", c.num_mel_bins], "dtype": "float32"}],
            "outputs": [{"name": "encoder_out", "shape": [1, "T_out", c.d_model], "dtype": "float32"}],
        },
        STEP: {
            "inputs": [{"name": "features", "shape": [1, step.chunk_frames, c.num_mel_bins], "dtype": "float32"}, *states],
            "outputs": [{"name": "encoder_out", "shape": [1, step.chunk_frames // 4, c.d_model], "dtype": "float32"},
                        *({**s, "name": f"new_{s['name']}"} for s in states)],
        },
        "predictor": {
            "inputs": [{"name": "context", "shape": [1, c.context_size], "dtype": "int64"}],
            "outputs": [{"name": "predictor_out", "shape": [1, c.predictor_dim], "dtype": "float32"}],
        },
        "joiner": {
            "inputs": [{"name": "encoder_out", "shape": [1, c.d_model], "dtype": "float32"},
                       {"name": "predictor_out", "shape": [1, c.predictor_dim], "dtype": "float32"}],
            "outputs": [{"name": "logits", "shape": [1, c.vocab_size], "dtype": "float32"}],
        },
    }


@pytest.mark.parametrize("precision", ["fp16", "int8"])
def test_package_has_all_functions(exported, precision):
    entry = exported.entries[precision]
    assert entry["package"] == f"coreml/{precision}/model.mlpackage"
    assert entry["functions"] == GRAPHS
    assert entry["deployment_target"] == "iOS18" and entry["compute_precision"] == "float16"
    assert cmw.package_functions(package(exported, precision)) == GRAPHS
    # Nothing but the package (no temp folders left behind by the atomic save).
    assert [p.name for p in (exported.dir / "coreml" / precision).iterdir()] == ["model.mlpackage"]


@pytest.mark.parametrize("precision", ["fp16", "int8"])
def test_io_matches_manifest(exported, precision):
    graphs = manifest_graphs(exported)
    report = cmw.validate_coreml_package(package(exported, precision), {"graphs": graphs})
    assert report["ok"], report["problems"]
    assert report["predict_validated"] is False and "macOS" in report["reason"]
    full_in = report["io"]["encoder_full"]["inputs"][0]
    assert full_in["ranges"][1] == [12, 3000]  # flexible T
    step_in = {t["name"]: t for t in report["io"][STEP]["inputs"]}
    assert step_in["processed_lens"]["dtype"] == "int32"  # Core ML has no int64
    assert exported.entries[precision]["io_dtype_casts"] == {
        "processed_lens": "int32", "new_processed_lens": "int32", "context": "int32"}


def test_validation_reports_mismatches(exported):
    graphs = manifest_graphs(exported)
    graphs["joiner"]["inputs"][0]["name"] = "enc"
    graphs["predictor"]["outputs"][0]["shape"] = [1, 7]
    report = cmw.validate_coreml_package(package(exported, "fp16"), {"graphs": graphs, "functions": [*GRAPHS, "nope"]})
    assert not report["ok"]
    text = "\n".join(report["problems"])
    assert "joiner: inputs" in text and "predictor.predictor_out: axis 1" in text and "'nope' missing" in text


def exported_params(model) -> dict:
    """Every parameter a graph uses: all but the training-only CTC head."""
    return {k: v for k, v in model.named_parameters() if not k.startswith("ctc_head.")}


def test_fp16_weights_match_torch(exported):
    params = exported_params(exported.model)
    res = cmw.compare_weights(package(exported, "fp16"), params)
    assert res["unmatched"] == [] and res["total"] == len(params)
    scale = max(float(p.detach().abs().max()) for p in params.values())
    assert res["max_abs_diff"] <= 1e-3 * scale  # fp16 rounding
    assert exported.entries["fp16"]["weights_check"]["unmatched"] == []


def test_int8_weights_match_torch_within_quantization(exported):
    params = exported_params(exported.model)
    res = cmw.compare_weights(package(exported, "int8"), params, qtol=1.0 / 127)
    assert res["unmatched"] == []


def test_weights_deduplicated_across_functions(exported):
    for precision in ("fp16", "int8"):
        sharing = exported.entries[precision]["weight_sharing"]
        shared = (package(exported, precision) / "Data/com.apple.CoreML/weights/weight.bin").stat().st_size
        assert sharing["shared_bytes"] == shared
        assert shared < 0.6 * sharing["separate_bytes"]
    # fp16: about one fp16 copy of the parameters.
    fp16_bytes = sum(p.numel() * 2 for p in exported.model.parameters())
    assert exported.entries["fp16"]["weight_sharing"]["shared_bytes"] < 1.15 * fp16_bytes


def test_int8_smaller_than_fp16(exported):
    fp16 = exported.entries["fp16"]["weight_sharing"]["shared_bytes"]
    int8 = exported.entries["int8"]["weight_sharing"]["shared_bytes"]
    assert int8 < 0.65 * fp16
    assert exported.entries["int8"]["compression"]["dtype"] == "int8"


def test_predict_not_claimed_off_macos(exported):
    for entry in exported.entries.values():
        assert entry["predict_validated"] is ON_MACOS
        if not ON_MACOS:
            assert "needs macOS" in entry["reason"]


@pytest.mark.skipif(not ON_MACOS, reason="Core ML predict needs macOS (the Core ML framework); "
                    "on this OS only the package files are validated")
def test_predict_matches_torch(exported):
    diffs = exported.entries["fp16"]["predict_max_abs_diff"]
    assert set(diffs) == set(GRAPHS)
    assert max(diffs.values()) < 0.05  # fp16 compute


def test_lstm_predictor_converts(random_lstm_checkpoint, tmp_path):
    e = export(random_lstm_checkpoint, tmp_path, ["fp16"], names=["predictor", "joiner"])
    report = cmw.validate_coreml_package(package(e, "fp16"), {"graphs": cmw.expected_graph_specs(e.graphs, e.ex)})
    assert report["ok"], report["problems"]
    assert [t["name"] for t in report["io"]["predictor"]["inputs"]] == ["context", "h", "c"]
    assert [t["name"] for t in report["io"]["predictor"]["outputs"]] == ["predictor_out", "new_h", "new_c"]
    assert e.entries["fp16"]["weights_check"]["unmatched"] == []
