"""ExecuTorch export (export/executorch_writer.py): XNNPACK programs + one shared weights file, run
with the ExecuTorch Python runtime and compared with PyTorch.

Lowering is slow on a small CPU (minutes per precision for a 4-layer model), so these tests read
exports made once per session (tests/conftest.py): the built-in model's fp32 export with two chunk
sizes, shared with the runtime and robustness tests, and its every-format CLI export (int8),
which tests/test_export_cli.py also verifies end to end.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

import executorch  # noqa: F401  (a test dependency: missing means a broken install)

from dualasr.checkpoint import load_model  # noqa: E402
from dualasr.export import executorch_writer as etw  # noqa: E402
from dualasr.export.wrappers import graphs_for  # noqa: E402

CHUNK_MS = 320
STEP = f"encoder_streaming_{CHUNK_MS}ms"
FP32_TOL = 1e-4


def example_inputs(graphs: dict, cfg) -> dict[str, tuple]:
    ex = {"encoder_full": (torch.zeros(1, 64, cfg.num_mel_bins),)}
    for name, g in graphs.items():
        if name.startswith("encoder_streaming_") or name == "predictor":
            ex[name] = g.example_inputs()
    ex["joiner"] = (torch.zeros(1, cfg.d_model), torch.zeros(1, cfg.predictor_dim))
    return ex


def export(ckpt: Path, out: Path, precision: str, names: list[str] | None = None) -> SimpleNamespace:
    model, config, _ = load_model(ckpt)
    graphs = graphs_for(model, [CHUNK_MS])
    if names:
        graphs = {k: v for k, v in graphs.items() if k in names}
    ex = example_inputs(graphs, config.model)
    entry = etw.write(graphs, ex, out, precision, None)
    return SimpleNamespace(model=model, cfg=config.model, graphs=graphs, entry=entry, dir=out)


def from_export(ckpt: Path, export_dir: Path, precision: str) -> SimpleNamespace:
    """`export`'s view of an export that export_checkpoint (or the CLI) wrote."""
    model, config, _ = load_model(ckpt)
    manifest = json.loads((export_dir / "manifest.json").read_text())
    graphs = graphs_for(model, [e["chunk_ms"] for e in manifest["streaming"]])
    # The writer's entry, with the weight-sharing stats the exporter files under weight_sharing.
    entry = {**manifest["artifacts"]["executorch"][precision],
             "weight_sharing": manifest["weight_sharing"]["by_artifact"][f"executorch/{precision}"]}
    return SimpleNamespace(model=model, cfg=config.model, graphs=graphs, dir=export_dir, entry=entry)


@pytest.fixture(scope="module")
def fp32(builtin_et_export) -> SimpleNamespace:
    """The built-in model's shared ExecuTorch fp32 export (conftest)."""
    from dualasr.export.exporter import DEFAULT_CHECKPOINT

    return from_export(DEFAULT_CHECKPOINT, builtin_et_export, "fp32")


@pytest.fixture(scope="module")
def int8(builtin_every_format) -> SimpleNamespace:
    """The built-in model's int8 ExecuTorch export, from the every-format CLI export (conftest)."""
    from dualasr.export.exporter import DEFAULT_CHECKPOINT

    r, _, out = builtin_every_format
    assert r.returncode == 0, r.stderr[-3000:]
    return from_export(DEFAULT_CHECKPOINT, out, "int8")


def paths(e: SimpleNamespace, graph: str) -> tuple[Path, Path]:
    return e.dir / e.entry["graphs"][graph], e.dir / e.entry["weights"]


def run_streaming(e: SimpleNamespace, feats: torch.Tensor) -> tuple[np.ndarray, list[np.ndarray]]:
    """Chunk by chunk through the step program (last chunk zero-padded); -> (out [1, T//4, D], processed_lens per chunk)."""
    step = e.graphs[STEP]
    method = etw.load_program(*paths(e, STEP)).load_method("forward")
    state = [s.numpy() for s in step.example_inputs()[1:]]
    T, C = feats.shape[1], step.chunk_frames
    padded = torch.nn.functional.pad(feats, (0, 0, 0, -T % C))
    outs, counters = [], []
    for start in range(0, padded.shape[1], C):
        res = etw.execute(method, [padded[:, start:start + C].numpy(), *state])
        outs.append(res[0])
        state = res[1:]
        counters.append(state[-1])
    return np.concatenate(outs, axis=1)[:, : T // e.cfg.subsampling], counters


def torch_encoder(e: SimpleNamespace, feats: torch.Tensor, mode: str) -> np.ndarray:
    with torch.no_grad():
        return e.model.encoder(feats, None, mode)[0].numpy()


# ----------------------------------------------------------------------------- fp32


def test_streaming_step_matches_torch_streaming(fp32):
    torch.manual_seed(1)
    feats = torch.randn(1, 150, fp32.cfg.num_mel_bins)  # 4 full chunks + a padded one
    got, counters = run_streaming(fp32, feats)
    ref = torch_encoder(fp32, feats, "streaming")
    assert got.shape == ref.shape
    assert np.abs(got - ref).max() <= FP32_TOL
    step_frames = fp32.graphs[STEP].chunk_frames // fp32.cfg.subsampling
    assert all(c.dtype == np.int64 for c in counters), [c.dtype for c in counters]
    assert [int(c[0]) for c in counters] == [step_frames * (i + 1) for i in range(len(counters))]


@pytest.mark.parametrize("frames", [64, 203])
def test_full_graph_matches_torch_full(fp32, frames):
    torch.manual_seed(frames)
    feats = torch.randn(1, frames, fp32.cfg.num_mel_bins)
    (got,) = etw.run_executorch_graph(*paths(fp32, "encoder_full"), [feats])
    ref = torch_encoder(fp32, feats, "full")
    assert got.shape == ref.shape == (1, frames // 4, fp32.cfg.d_model)
    assert np.abs(got - ref).max() <= FP32_TOL


def test_predictor_and_joiner_match_torch(fp32):
    pred, join = fp32.graphs["predictor"], fp32.graphs["joiner"]
    ctx = torch.tensor([[5, 7]], dtype=torch.int64)
    (p_out,) = etw.run_executorch_graph(*paths(fp32, "predictor"), [ctx])
    enc = torch.randn(1, fp32.cfg.d_model)
    (logits,) = etw.run_executorch_graph(*paths(fp32, "joiner"), [enc, torch.from_numpy(p_out)])
    with torch.no_grad():
        ref_p = pred(ctx)[0].numpy()
        ref_l = join(enc, torch.from_numpy(ref_p)).numpy()
    assert np.abs(p_out - ref_p).max() <= FP32_TOL
    assert np.abs(logits - ref_l).max() <= FP32_TOL


def test_one_shared_weights_file(fp32):
    out_dir = fp32.dir / "executorch" / "fp32"
    assert sorted(p.name for p in out_dir.glob("*.ptd")) == ["weights.ptd"]
    assert fp32.entry["weights"] == "executorch/fp32/weights.ptd"
    assert set(fp32.entry["graphs"]) == set(fp32.graphs)
    ptd = (fp32.dir / fp32.entry["weights"]).stat().st_size
    # One copy of the weights: about the fp32 size of the model's parameters, not one per graph
    # (plus the constants the writer's copy adds: the stem's streaming kernels and each step's
    # position biases, about 0.2 MB per step graph for this model).
    param_bytes = sum(p.numel() * 4 for p in fp32.model.parameters())
    sharing = fp32.entry["weight_sharing"]
    assert sharing["shared_bytes"] == ptd
    assert ptd < 0.6 * sharing["separate_bytes"]
    assert ptd < 1.2 * param_bytes
    # The programs hold graphs, not weights.
    for rel in fp32.entry["graphs"].values():
        assert (fp32.dir / rel).stat().st_size < 0.1 * ptd


def test_load_without_weights_is_refused(fp32):
    pte, _ = paths(fp32, "joiner")
    with pytest.raises(ValueError, match="needs its weights"):
        etw.load_program(pte, None)


def test_merge_ptd_dedups_and_rejects_conflicts():
    from executorch.exir._serialize.data_serializer import DataEntry, DataPayload
    from executorch.extension.flat_tensor.serialize.serialize import FlatTensorSerializer

    def payload(items: dict[str, bytes]) -> bytes:
        bufs = list(items.values())
        named = {k: DataEntry(buffer_index=i, alignment=16, tensor_layout=None) for i, k in enumerate(items)}
        return bytes(FlatTensorSerializer().serialize(DataPayload(buffers=bufs, named_data=named)))

    a, b = b"\x01" * 4096, b"\x02" * 4096
    merged, n = etw.merge_ptd([payload({"a": a, "b": b}), payload({"a": a})])
    assert n == 2 and etw.ptd_keys(merged) == {"a": 4096, "b": 4096}
    assert len(merged) < len(a) * 3  # "a" stored once
    with pytest.raises(ValueError, match="Duplicate key"):
        etw.merge_ptd([payload({"a": a}), payload({"a": b})])


def test_lstm_predictor(random_lstm_checkpoint, tmp_path):
    e = export(random_lstm_checkpoint, tmp_path, "fp32", names=["predictor", "joiner"])
    pred = e.graphs["predictor"]
    ctx, h, c = pred.example_inputs()
    method = etw.load_program(*paths(e, "predictor")).load_method("forward")
    for token in (0, 3, 9):
        ctx = torch.tensor([[token]], dtype=torch.int64)
        got = etw.execute(method, [ctx, h, c])
        with torch.no_grad():
            ref = [t.numpy() for t in pred(ctx, h, c)]
        assert max(np.abs(g - r).max() for g, r in zip(got, ref)) <= FP32_TOL
        h, c = torch.from_numpy(got[1]), torch.from_numpy(got[2])


# ----------------------------------------------------------------------------- int8


@pytest.mark.slow
def test_int8_runs_and_agrees_with_fp32(int8, record_property):
    """On a real held-out prompt, within the relative error `dualasr verify` allows int8."""
    from dualasr.audio import load_audio
    from dualasr.demo import real_test_set
    from dualasr.export.verify import INT8_MAX_RELATIVE_ERROR, relative_error
    from dualasr.features import compute_fbank

    feats = compute_fbank(torch.from_numpy(load_audio(real_test_set(1)[0].audio)))[None]
    got, counters = run_streaming(int8, feats)
    rel_stream = relative_error([got], [torch_encoder(int8, feats, "streaming")])
    (full,) = etw.run_executorch_graph(*paths(int8, "encoder_full"), [feats])
    rel_full = relative_error([full], [torch_encoder(int8, feats, "full")])
    record_property("int8_relative_error_streaming", rel_stream)
    record_property("int8_relative_error_full", rel_full)
    print(f"int8 vs fp32 PyTorch relative error: streaming {rel_stream:.4f}, full {rel_full:.4f}")
    assert rel_stream <= INT8_MAX_RELATIVE_ERROR and rel_full <= INT8_MAX_RELATIVE_ERROR
    # Integer state is untouched by quantization.
    assert all(c.dtype == np.int64 for c in counters)
    assert [int(c[0]) for c in counters] == [8 * (i + 1) for i in range(len(counters))]


@pytest.mark.slow
def test_int8_weights_are_smaller_and_shared(int8):
    out_dir = int8.dir / "executorch" / "int8"
    assert sorted(p.name for p in out_dir.glob("*.ptd")) == ["weights.ptd"]
    ptd = (int8.dir / int8.entry["weights"]).stat().st_size
    param_bytes = sum(p.numel() * 4 for p in int8.model.parameters())
    assert ptd < 0.45 * param_bytes  # int8 linears; depthwise convs, norms, embeddings stay fp32
    assert int8.entry["quantization"]["method"] == "pt2e_dynamic"
    for rel in int8.entry["graphs"].values():
        assert (int8.dir / rel).stat().st_size < 0.2 * ptd


# ----------------------------------------------------------------------------- LayerNorm on digital silence


def test_stable_layer_norm_equals_layer_norm_and_shares_parameters(random_checkpoint):
    import torch

    from dualasr.checkpoint import load_model
    from dualasr.export.wrappers import StableLayerNorm, use_stable_layer_norms

    ln = torch.nn.LayerNorm(80)
    with torch.no_grad():
        ln.weight.normal_()
        ln.bias.normal_()
    stable = StableLayerNorm(ln)
    assert stable.weight is ln.weight and stable.bias is ln.bias
    x = torch.randn(2, 7, 80) * 3 - 8
    with torch.no_grad():
        torch.testing.assert_close(stable(x), ln(x), atol=2e-5, rtol=1e-5)
        const = torch.full((1, 4, 80), -15.942385)  # the fbank log floor: digital silence
        torch.testing.assert_close(stable(const), ln(const), atol=1e-4, rtol=0)
    model, _, _ = load_model(random_checkpoint)
    before = dict(model.named_parameters())
    n_norms = sum(isinstance(m, torch.nn.LayerNorm) for m in model.modules())
    assert use_stable_layer_norms(model) == n_norms > 0
    assert not any(isinstance(m, torch.nn.LayerNorm) for m in model.modules())
    after = dict(model.named_parameters())
    assert after.keys() == before.keys() and all(after[k] is before[k] for k in before)


def _norm_stack() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.LayerNorm(80), torch.nn.Linear(80, 32), torch.nn.LayerNorm(32),
                               torch.nn.Linear(32, 8)).eval()


@pytest.mark.parametrize("name", ["stack", "encoder_full"])  # encoder_full: a symbolic time axis
def test_norms_do_not_split_the_delegate(tmp_path, monkeypatch, name):
    """Each LayerNorm used to leave two portable means between XNNPACK subgraphs."""
    monkeypatch.setenv("DUALASR_LOWERING_CACHE", "off")
    entry = etw.write({name: _norm_stack()}, {name: (torch.randn(1, 32, 80),)}, tmp_path, "fp32", None)
    assert entry["delegate_partitions"] == {name: 1}
    assert entry["lowered_from_cache"] == [] and entry["self_check_max_abs_diff"][name] < 1e-4


class _ConvSteps(torch.nn.Module):
    """Two streaming conv steps (the Whisper stem's shapes, scaled down) with an op between."""

    def __init__(self):
        super().__init__()
        from dualasr.layers import DualModeConv1d

        torch.manual_seed(0)
        self.conv1, self.conv2 = DualModeConv1d(16, 24, 3), DualModeConv1d(24, 24, 3, stride=2)

    def forward(self, x, cache1, cache2):
        y, cache1 = self.conv1.forward_chunk(x, cache1)
        y, cache2 = self.conv2.forward_chunk(torch.relu(y), cache2)
        return y, cache1, cache2


def test_streaming_convs_are_delegated(tmp_path, monkeypatch):
    """A streaming conv reads only its kernel's left taps; computed in the graph, that slice made
    the weight non-constant and the conv a portable (reference) op between XNNPACK subgraphs,
    which made the Whisper stem's 320 ms step 8x slower."""
    monkeypatch.setenv("DUALASR_LOWERING_CACHE", "off")
    module = _ConvSteps().eval()
    example = (torch.randn(1, 16, 8), torch.randn(1, 16, 1), torch.randn(1, 24, 1))
    entry = etw.write({"steps": module}, {"steps": example}, tmp_path, "fp32", None)
    assert entry["delegate_partitions"] == {"steps": 1}
    assert entry["self_check_max_abs_diff"]["steps"] < 1e-5
    assert module.conv1.streaming_weight is None  # the writer froze the kernels of its own copy


def test_conformer_step_is_one_delegate(tmp_path, monkeypatch):
    """A conformer's streaming step is one XNNPACK subgraph: the fused q/k/v split, the position
    bias lookup and the per-layer mask each used to end a delegate in every layer (33 subgraphs
    for the 16-layer conformer-s), with portable ops between them."""
    from dualasr.config import load_config
    from dualasr.export.wrappers import StreamingEncoderStep
    from dualasr.model import Transducer

    monkeypatch.setenv("DUALASR_LOWERING_CACHE", "off")
    torch.manual_seed(0)
    model = Transducer(load_config("tiny", ["model.num_layers=2"]).model).eval()
    step = StreamingEncoderStep(model, 320)
    example = step.example_inputs()
    entry = etw.write({"step": step}, {"step": example}, tmp_path, "fp32", None)
    assert entry["delegate_partitions"] == {"step": 1}
    assert entry["self_check_max_abs_diff"]["step"] < 1e-4
    attention = model.encoder.layers[0].attn
    assert not hasattr(attention, "chunk_bias_8")  # the writer's copy only


def test_lowering_cache_reuses_programs_and_survives_a_broken_entry(tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    monkeypatch.setenv("DUALASR_LOWERING_CACHE", str(cache))
    graphs, example = {"stack": _norm_stack()}, {"stack": (torch.randn(1, 32, 80),)}
    first = etw.write(graphs, example, tmp_path / "a", "int8", None)
    (key,) = [p.name for p in cache.iterdir()]
    again = etw.write(graphs, example, tmp_path / "b", "int8", None)
    assert (first["lowered_from_cache"], again["lowered_from_cache"]) == ([], ["stack"])
    for rel in (again["graphs"]["stack"], again["weights"]):
        assert (tmp_path / "a" / rel).read_bytes() == (tmp_path / "b" / rel).read_bytes(), rel
    # Other weights are another program, not a hit.
    with torch.no_grad():
        graphs["stack"][1].weight.add_(0.01)
    assert etw.write(graphs, example, tmp_path / "c", "int8", None)["lowered_from_cache"] == []
    # A truncated entry is a miss, lowered again and written over.
    (cache / key / "info.json").write_text("{")
    assert etw.write({"stack": _norm_stack()}, example, tmp_path / "d", "int8", None)["lowered_from_cache"] == []
    assert etw.write({"stack": _norm_stack()}, example, tmp_path / "e", "int8", None)["lowered_from_cache"] == ["stack"]
    # So is an entry missing its program (a disk cleaner's work): not a miss forever.
    (cache / key / "program.pte").unlink()
    assert etw.write({"stack": _norm_stack()}, example, tmp_path / "f", "int8", None)["lowered_from_cache"] == []
    assert etw.write({"stack": _norm_stack()}, example, tmp_path / "g", "int8", None)["lowered_from_cache"] == ["stack"]
    # Bounded: a cache over its size keeps only the most recently used entries.
    etw.LoweringCache(cache, max_bytes=1).put("x" * 64, etw.Lowered(b"pte", None, 0, 1))
    assert [p.name for p in cache.iterdir() if not p.name.startswith(".")] == ["x" * 64]


def test_executorch_layer_norm_on_constant_frames(tmp_path):
    """Upstream's layer_norm kernel is NaN on constant frames; the writer's export is not."""
    import torch

    from dualasr.export import executorch_writer as etw

    torch.manual_seed(0)
    norm = torch.nn.Sequential(torch.nn.LayerNorm(80), torch.nn.Linear(80, 8)).eval()
    const = torch.full((1, 32, 80), -15.942385)
    entry = etw.write({"norm": norm}, {"norm": (torch.randn(1, 32, 80),)}, tmp_path, "fp32", None)
    (got,) = etw.run_executorch_graph(tmp_path / entry["graphs"]["norm"], tmp_path / entry["weights"], [const])
    with torch.no_grad():
        want = norm(const).numpy()
    # The export's mean (a product with 1/80) is within an ulp of the frame's value, and the norm
    # scales that residue by 1/sqrt(eps), so a silent frame comes out 3e-4 from PyTorch's exact 0.
    assert np.isfinite(got).all() and np.abs(got - want).max() < 1e-3
    assert isinstance(norm[0], torch.nn.LayerNorm)  # the caller's module is untouched
    # The plain lowering (what the writer did before) shows the upstream problem.
    prog = etw.lower_graph(norm, (torch.randn(1, 32, 80),), None, "fp32")
    (tmp_path / "plain").mkdir()
    prog.write_tensor_data_to_file(str(tmp_path / "plain"))
    (tmp_path / "plain.pte").write_bytes(prog.buffer)
    (plain,) = etw.run_executorch_graph(tmp_path / "plain.pte", tmp_path / "plain" / "weights.ptd", [const])
    print(f"plain ExecuTorch layer_norm on constant frames: NaN={bool(np.isnan(plain).any())}")
