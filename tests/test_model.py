"""Dual-mode layers against their definitions, causality, chunked == whole streaming, overhead."""

import pytest
import torch

from dualasr.config import PRESETS, ModelConfig, load_config
from dualasr.export.wrappers import use_unfolded_depthwise_convs
from dualasr.layers import (
    DualModeConv1d,
    DualModeDepthwiseConv,
    DualModeSelfAttention,
    DualNorm,
    chunk_attention_mask,
    dual_mode_mean,
)
from dualasr.model import StatelessPredictor, Transducer, count_parameters, dual_mode_overhead


def test_conv_streaming_is_masked_symmetric_kernel():
    torch.manual_seed(0)
    conv = DualModeDepthwiseConv(3, 5)
    x = torch.randn(2, 3, 20)
    w = conv.weight.detach()
    full = conv(x, "full")
    stream = conv(x, "streaming")
    # Definition: y[t] = sum_i w[i] x[t + i - 2]; streaming keeps taps i <= 2 (left (k+1)/2 taps).
    xp = torch.nn.functional.pad(x, (2, 2))
    ref_full = sum(w[:, 0, i].view(1, 3, 1) * xp[:, :, i : i + 20] for i in range(5)) + conv.bias.view(1, 3, 1)
    ref_stream = sum(w[:, 0, i].view(1, 3, 1) * xp[:, :, i : i + 20] for i in range(3)) + conv.bias.view(1, 3, 1)
    torch.testing.assert_close(full, ref_full)
    torch.testing.assert_close(stream, ref_stream)
    assert conv.causal_mask.tolist() == [1, 1, 1, 0, 0]


@pytest.mark.parametrize("unfolded", [False, True], ids=["conv", "window-products"])
def test_conv_chunks_equal_whole(unfolded):
    torch.manual_seed(0)
    conv = DualModeDepthwiseConv(4, 7)
    if unfolded:
        assert use_unfolded_depthwise_convs(conv) == 1
    x = torch.randn(2, 4, 30)
    cache = torch.zeros(2, 4, 3)
    outs = []
    for i, n in zip((0, 5, 6, 14, 17), (5, 1, 8, 3, 13)):  # chunks of several sizes, 1 frame included
        y, cache = conv.forward_chunk(x[:, :, i : i + n], cache)
        outs.append(y)
    torch.testing.assert_close(torch.cat(outs, 2), conv(x, "streaming"))


def test_only_depthwise_convs_are_unfolded():
    """The Whisper stem's strided dense convs keep F.conv1d (window products are depthwise only)."""
    stem = torch.nn.ModuleList([DualModeConv1d(8, 16, 3, stride=2), DualModeDepthwiseConv(16, 5)])
    assert use_unfolded_depthwise_convs(stem) == 1
    assert [getattr(c, "unfolded_chunks", False) for c in stem] == [False, True]


def test_stateless_predictor_step_as_window_products():
    """The ONNX predictor's conv over the last tokens, as tap products, computes the same step."""
    torch.manual_seed(0)
    predictor = StatelessPredictor(vocab_size=11, dim=6, context_size=3)
    context = torch.tensor([[-1, -1, 0], [4, 7, 2], [0, 10, 3]])  # the start context included
    want, _ = predictor.step(context, [])
    assert use_unfolded_depthwise_convs(predictor) == 1
    got, _ = predictor.step(context, [])
    torch.testing.assert_close(got, want)


def test_pooling_global_vs_cumulative_mean():
    x = torch.arange(12, dtype=torch.float32).view(1, 4, 3)
    lengths = torch.tensor([3])
    full = dual_mode_mean(x, lengths, "full")
    torch.testing.assert_close(full, x[:, :3].mean(1, keepdim=True))
    stream = dual_mode_mean(x, lengths, "streaming")
    for t in range(4):
        torch.testing.assert_close(stream[:, t], x[:, : t + 1].mean(1))


def test_attention_streaming_sees_left_window_only():
    torch.manual_seed(0)
    attn = DualModeSelfAttention(16, 2, left_context=3, max_rel_pos=8, dropout=0.0).eval()
    x = torch.randn(1, 12, 16)
    base = attn(x, None, "streaming")
    for t in range(12):
        for j in range(12):
            x2 = x.clone()
            x2[:, j] += torch.randn(16)
            changed = (attn(x2, None, "streaming")[:, t] - base[:, t]).abs().max() > 1e-6
            assert bool(changed) == (t - 3 <= j <= t), (t, j)
    # Full mode: every frame sees every other frame.
    x2 = x.clone()
    x2[:, -1] += 1.0
    assert (attn(x2, None, "full")[:, 0] - attn(x, None, "full")[:, 0]).abs().max() > 1e-6


def test_attention_export_rewrites_keep_outputs():
    """The ExecuTorch export's attention rewrites give the original outputs: its 3-D products
    (batch 1) in every path (full and streaming forward, with and without lengths, both chunk
    caches), its constant chunk biases in the chunk paths."""
    torch.manual_seed(0)
    attn = DualModeSelfAttention(32, 4, left_context=5, max_rel_pos=8, dropout=0.0).eval()
    x, lengths = torch.randn(1, 17, 32), torch.tensor([11])
    cache, keys, values = torch.randn(1, 5, 32), torch.randn(1, 4, 5, 8), torch.randn(1, 4, 5, 8)
    mask = chunk_attention_mask(4, 5, torch.tensor([3]), torch.float32)

    def outputs():
        with torch.no_grad():
            return [attn(x, lens, mode) for mode in ("full", "streaming") for lens in (None, lengths)] + [
                *attn.forward_chunk(x[:, :4], cache, mask), *attn.forward_chunk_kv(x[:, :4], keys, values, mask)]

    batched = outputs()
    attn.batch1_products = True
    for a, b in zip(outputs(), batched, strict=True):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-6)
    # The ExecuTorch copy's other rewrite: the chunk's position bias kept as a constant (recorded
    # on one run, read from then on).
    attn.keep_chunk_bias = True
    outputs()
    attn.keep_chunk_bias = False
    assert attn.chunk_bias_4.shape == (4, 4, 9)
    with torch.no_grad():
        attn.rel_bias.weight.add_(1.0)  # a kept bias no longer reads the table
    for a, b in zip(outputs()[4:], batched[4:], strict=True):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-6)
    with pytest.raises(ValueError, match="batch 1"):
        attn(torch.randn(2, 17, 32), None, "full")


def test_norms_are_separate_per_mode():
    norm = DualNorm(8)
    with torch.no_grad():
        norm.full.weight.fill_(2.0)
    x = torch.randn(2, 5, 8)
    assert not torch.allclose(norm(x, "full"), norm(x, "streaming"))
    assert norm.full.weight.data_ptr() != norm.streaming.weight.data_ptr()


@pytest.mark.parametrize("preset", ["tiny", "tiny-lstm", "tiny-contextnet", "whisper-tiny"])
def test_streaming_encoder_is_causal_and_full_is_not(preset):
    torch.manual_seed(0)
    model = Transducer(load_config(preset).model).eval()
    x = torch.randn(1, 160, 80)
    lens = torch.tensor([160])
    cut = 80  # feature frame; encoder frames < 20 only see feature frames < 80
    x2 = x.clone()
    x2[:, cut:] = torch.randn(1, 160 - cut, 80) * 3
    with torch.no_grad():
        s1, _ = model.encoder(x, lens, "streaming")
        s2, _ = model.encoder(x2, lens, "streaming")
        f1, _ = model.encoder(x, lens, "full")
        f2, _ = model.encoder(x2, lens, "full")
    assert torch.equal(s1[:, : cut // 4], s2[:, : cut // 4])
    assert (s1[:, cut // 4 :] - s2[:, cut // 4 :]).abs().max() > 1e-3
    assert (f1[:, : cut // 4] - f2[:, : cut // 4]).abs().max() > 1e-4


@pytest.mark.parametrize("preset", ["tiny", "tiny-lstm", "tiny-contextnet", "whisper-tiny"])
@pytest.mark.parametrize("chunk", [4, 16, 36])
def test_chunked_streaming_equals_whole_utterance(preset, chunk):
    torch.manual_seed(1)
    model = Transducer(load_config(preset).model).eval()
    x = torch.randn(2, 203, 80)
    with torch.no_grad():
        whole, _ = model.encoder(x, torch.tensor([203, 203]), "streaming")
        state = model.encoder.init_state(2)
        outs = []
        for i in range(0, 203, chunk):
            piece = x[:, i : i + chunk]
            piece = torch.nn.functional.pad(piece, (0, 0, 0, chunk - piece.shape[1]))
            y, state = model.encoder.forward_chunk(piece, state)
            outs.append(y)
    chunked = torch.cat(outs, 1)[:, : whole.shape[1]]
    assert (chunked - whole).abs().max() < 1e-4
    assert state[-1].dtype == torch.int64 and int(state[-1][0]) == sum(o.shape[1] for o in outs)


def test_conformer_key_value_cache_equals_input_cache_for_random_chunkings():
    """Our step graph caches projected keys and values; sherpa-onnx's layout caches attention
    inputs. Both are exact, so they agree chunk by chunk whatever the chunking."""
    torch.manual_seed(3)
    model = Transducer(load_config("tiny").model).eval()
    x = torch.randn(2, 400, 80)
    rng = torch.Generator().manual_seed(0)
    kv, inputs = model.encoder.init_state(2), None
    attn0 = torch.zeros(model.cfg.num_layers, model.cfg.left_context, 2, model.cfg.d_model)
    inputs = [attn0, kv[2].clone(), kv[3].clone()]
    i = 0
    with torch.no_grad():
        while i < 400:
            chunk = 4 * int(torch.randint(1, 12, (1,), generator=rng))
            piece = x[:, i : i + chunk]
            if piece.shape[1] % 4:
                break
            a, kv = model.encoder.forward_chunk(piece, kv)
            b, inputs = model.encoder.forward_chunk_input_cache(piece, inputs)
            assert (a - b).abs().max() < 1e-5
            i += chunk
    assert int(kv[-1][0]) == int(inputs[-1][0]) == i // 4


# A small transformer whose absolute positions wrap every 16 stem frames and whose window is 8.
SMALL_TRANSFORMER = dict(encoder="transformer", d_model=48, num_heads=4, num_layers=2, left_context=8,
                         max_abs_pos=16, max_rel_pos=8, vocab_size=16)


@pytest.mark.parametrize("chunk", [4, 8, 28])
def test_transformer_chunks_equal_whole_across_position_wraps(chunk):
    torch.manual_seed(2)
    model = Transducer(ModelConfig(**SMALL_TRANSFORMER)).eval()
    x = torch.randn(1, 200, 80)  # 100 stem frames: the 16-entry position table wraps six times
    with torch.no_grad():
        whole, _ = model.encoder(x, None, "streaming")
        state = model.encoder.init_state(1)
        outs = []
        for i in range(0, 200 - 200 % chunk, chunk):
            y, state = model.encoder.forward_chunk(x[:, i : i + chunk], state)
            outs.append(y)
    chunked = torch.cat(outs, 1)
    assert (chunked - whole[:, : chunked.shape[1]]).abs().max() < 1e-4


def test_transformer_positions_cycle_and_offsets_shift_them():
    model = Transducer(ModelConfig(**SMALL_TRANSFORMER)).eval()
    stem = model.encoder.subsampling
    table = stem.positions
    got = stem._position(20, torch.tensor([0, 10]))
    assert torch.equal(got[0, 16:], table[:4]) and torch.equal(got[1, :6], table[10:])


@pytest.mark.parametrize("preset", ["tiny", "whisper-tiny"])
def test_batch_padding_does_not_change_full_mode_outputs(preset):
    torch.manual_seed(0)
    model = Transducer(load_config(preset).model).eval()
    a = torch.randn(1, 120, 80)
    batch = torch.cat([torch.nn.functional.pad(a, (0, 0, 0, 40)), torch.randn(1, 160, 80)])
    with torch.no_grad():
        alone, _ = model.encoder(a, torch.tensor([120]), "full")
        padded, lens = model.encoder(batch, torch.tensor([120, 160]), "full")
    assert lens.tolist() == [30, 40]
    torch.testing.assert_close(padded[:1, :30], alone, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_dual_mode_parameter_overhead_below_one_percent(preset):
    model = Transducer(load_config(preset).model)
    overhead = dual_mode_overhead(model)
    print(f"{preset}: {count_parameters(model) / 1e6:.2f}M params, dual-mode overhead {overhead * 100:.3f}%")
    assert 0 < overhead < 0.01


def test_tiny_is_ci_sized():
    assert count_parameters(Transducer(load_config("tiny").model)) <= 2_000_000


def test_predictors_step_equals_sequence():
    for predictor in ("stateless", "lstm"):
        torch.manual_seed(0)
        model = Transducer(ModelConfig(predictor=predictor, vocab_size=20, num_layers=1, d_model=32)).eval()
        targets = torch.tensor([[3, 7, 1, 9]])
        with torch.no_grad():
            seq = model.predictor(targets)  # [1, 5, P]
            ctx = torch.tensor([model.predictor.initial_context()])
            state = model.predictor.init_state(1)
            for u in range(5):
                out, state = model.predictor.step(ctx, state)
                torch.testing.assert_close(out, seq[:, u], atol=1e-5, rtol=1e-5)
                if u < 4:
                    ctx = torch.cat([ctx[:, 1:], targets[:, u : u + 1]], 1)


def test_config_errors_are_clear():
    with pytest.raises(ValueError, match="conv_kernel must be odd"):
        ModelConfig(conv_kernel=4)
    with pytest.raises(ValueError, match="neither a preset"):
        load_config("no-such-preset")
    with pytest.raises(ValueError, match="section.key=value"):
        load_config("tiny", ["max_steps=3"])
    with pytest.raises(ValueError, match="unknown train keys"):
        load_config("tiny", ["train.no_such_key=3"])
    assert load_config("tiny", ["train.max_steps=7"]).train.max_steps == 7
