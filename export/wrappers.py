"""The traced graphs: small modules with the mode baked in and flat tensor I/O.

One trained Transducer yields:
  encoder_full               features [1, T, F] -> encoder_out [1, T // s, D]
  encoder_streaming_<C>ms    features [B, C_f, F], *state -> encoder_out [B, C_f // s, D], *new_state
  predictor                  context [B, K] int64 (, h, c for LSTM) -> predictor_out [B, P] (, h, c)
  joiner                     encoder_out [B, D], predictor_out [B, P] -> logits [B, V]
Every graph holds references to the same parameters, so an exporter that stores tensors by content
ships each weight once.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from dualasr.layers import DualModeConv1d, DualModeDepthwiseConv, DualModeSelfAttention
from dualasr.model import StatelessPredictor, Transducer

from .manifest import FbankConfig

FRAME_SHIFT_MS = int(FbankConfig.frame_shift_ms)  # every exported model's feature hop


@dataclass
class TensorSpec:
    name: str
    shape: list[int | str]  # str = a dynamic axis name
    dtype: str
    batch_dim: int | None = None

    def to_dict(self) -> dict:
        d = {"name": self.name, "shape": list(self.shape), "dtype": self.dtype}
        if self.batch_dim is not None:
            d["batch_dim"] = self.batch_dim
        return d


class FullEncoder(nn.Module):
    def __init__(self, model: Transducer):
        super().__init__()
        self.encoder = model.encoder

    def forward(self, features: Tensor) -> Tensor:
        out, _ = self.encoder(features, None, "full")
        return out


class StreamingEncoderStep(nn.Module):
    """One chunk of the streaming mode with explicit state (see the encoder's forward_chunk)."""

    def __init__(self, model: Transducer, chunk_ms: int):
        super().__init__()
        self.encoder = model.encoder
        s = model.cfg.subsampling
        frames = chunk_ms // FRAME_SHIFT_MS
        if chunk_ms % FRAME_SHIFT_MS or frames % s or frames == 0:
            raise ValueError(
                f"chunk {chunk_ms} ms must be a positive multiple of {FRAME_SHIFT_MS * s} ms "
                f"({s} feature frames of {FRAME_SHIFT_MS} ms per encoder frame)"
            )
        self.chunk_ms = chunk_ms
        self.chunk_frames = frames
        self.state_names = list(model.encoder.state_names)

    def forward(self, features: Tensor, *state: Tensor) -> tuple[Tensor, ...]:
        out, new_state = self.encoder.forward_chunk(features, list(state))
        return (out, *new_state)

    def example_inputs(self, batch: int = 1) -> tuple[Tensor, ...]:
        feats = torch.zeros(batch, self.chunk_frames, self.encoder.cfg.num_mel_bins)
        return (feats, *self.encoder.init_state(batch))

    def state_specs(self, batch: int = 1) -> list[TensorSpec]:
        return [
            TensorSpec(name, list(t.shape), str(t.dtype).removeprefix("torch."), bdim)
            for name, t, bdim in zip(self.state_names, self.encoder.init_state(batch), self.encoder.state_batch_dims)
        ]


class InputCacheStreamingStep(nn.Module):
    """A streaming step in the layout of exports made before the key/value cache (state: the
    attention inputs of the last W frames, the conv cache, frames processed; the encoder's
    forward_chunk_input_cache): what the torch backend runs for such an export."""

    STATE_NAMES = ["cached_attn", "cached_conv", "processed_lens"]

    def __init__(self, encoder: nn.Module):
        super().__init__()
        self.encoder = encoder

    def forward(self, features: Tensor, *state: Tensor) -> tuple[Tensor, ...]:
        out, new_state = self.encoder.forward_chunk_input_cache(features, list(state))
        return (out, *new_state)


class PredictorStep(nn.Module):
    def __init__(self, model: Transducer):
        super().__init__()
        self.predictor = model.predictor
        self.is_lstm = model.cfg.predictor == "lstm"

    def forward(self, context: Tensor, *state: Tensor) -> tuple[Tensor, ...]:
        out, new_state = self.predictor.step(context, list(state))
        return (out, *new_state)

    def example_inputs(self, batch: int = 1) -> tuple[Tensor, ...]:
        ctx = torch.tensor([self.predictor.initial_context()] * batch, dtype=torch.int64)
        return (ctx, *self.predictor.init_state(batch))

    def state_names(self) -> list[str]:
        return ["h", "c"] if self.is_lstm else []


class JoinerStep(nn.Module):
    def __init__(self, model: Transducer):
        super().__init__()
        self.joiner = model.joiner

    def forward(self, encoder_out: Tensor, predictor_out: Tensor) -> Tensor:
        return self.joiner(encoder_out, predictor_out)


class StableLayerNorm(nn.Module):
    """nn.LayerNorm over the last axis as explicit two-pass ops, sharing the original's parameters
    (same Parameter objects, so their names and values in an export are unchanged).

    Why: a runtime kernel that computes the variance as E[x^2] - E[x]^2 (ExecuTorch 1.5.1's
    layer_norm) cancels catastrophically on constant frames: digital silence gives fbank frames of
    -15.94 in every bin, E[x^2] - E[x]^2 comes out slightly negative, below -eps, and the norm
    returns NaN. Centering first, var = mean((x - mean)^2), is never negative.
    x: [..., D] -> [..., D]
    """

    def __init__(self, ln: nn.LayerNorm):
        super().__init__()
        if len(ln.normalized_shape) != 1:
            raise ValueError(f"StableLayerNorm normalizes the last axis only, got normalized_shape {ln.normalized_shape}")
        self.eps = float(ln.eps)
        self.weight = ln.weight  # None without elementwise_affine
        self.bias = ln.bias
        dim = ln.normalized_shape[0]
        self.register_buffer("mean_weight", torch.full((1, dim), 1.0 / dim), persistent=False)

    def _mean_last(self, x: Tensor) -> Tensor:
        """x.mean(-1, keepdim=True) as a product with a 1/D vector: XNNPACK delegates a linear for
        any leading shape (a symbolic time axis too) but a mean only over the two innermost axes
        of a 4-D tensor, so a mean would split the delegate around every norm.
        x: [..., D] -> [..., 1]"""
        return nn.functional.linear(x, self.mean_weight)

    def forward(self, x: Tensor) -> Tensor:
        centered = x - self._mean_last(x)
        var = self._mean_last(centered * centered)
        y = centered * torch.rsqrt(var + self.eps)
        if self.weight is not None:
            y = y * self.weight
        if self.bias is not None:
            y = y + self.bias
        return y


def use_stable_layer_norms(module: nn.Module) -> int:
    """Replace every nn.LayerNorm below `module` by a StableLayerNorm, in place; returns how many.

    For export back ends whose LayerNorm kernel is not numerically robust (ExecuTorch); the trained
    model's parameters are shared, not copied, so call it on a copy if the original must stay as is.
    """
    swapped = 0
    for parent in list(module.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, nn.LayerNorm):
                setattr(parent, name, StableLayerNorm(child))
                swapped += 1
    return swapped


def use_batch1_attention(module: nn.Module) -> int:
    """Switch every DualModeSelfAttention below `module` to its batch-1 products (3-D, which
    XNNPACK delegates whole, see DualModeSelfAttention._weighted_values_batch1), in place; returns
    how many. For ExecuTorch's batch-1 graphs; call it on a copy if the original must stay as is.
    """
    attentions = [m for m in module.modules() if isinstance(m, DualModeSelfAttention)]
    for attention in attentions:
        attention.batch1_products = True
    return len(attentions)


def use_constant_streaming_kernels(module: nn.Module) -> int:
    """Give every DualModeConv1d below `module` its streaming kernel as a constant
    (DualModeConv1d.freeze_streaming_kernel), in place; returns how many. For ExecuTorch, whose
    XNNPACK delegate takes only convolutions with constant weights; call it on a copy.
    """
    convs = [m for m in module.modules() if isinstance(m, DualModeConv1d)]
    for conv in convs:
        conv.freeze_streaming_kernel()
    return len(convs)


def use_constant_chunk_biases(step: nn.Module, example: tuple[Tensor, ...]) -> int:
    """Keep, in every DualModeSelfAttention below the streaming step `step`, the relative-position
    bias of the step's chunk as a constant buffer, in place; returns how many. One run of `step` on
    `example` records them (each attention sees its own chunk length: encoders subsample
    differently); the trace that follows reads them as constants instead of a gather per layer,
    which XNNPACK does not delegate. For ExecuTorch step graphs; call it on a copy.
    """
    attentions = [m for m in step.modules() if isinstance(m, DualModeSelfAttention)]
    for attention in attentions:
        attention.keep_chunk_bias = True
    with torch.no_grad():
        step(*example)
    for attention in attentions:
        attention.keep_chunk_bias = False
    return len(attentions)


def use_unfolded_depthwise_convs(module: nn.Module) -> int:
    """Switch the depthwise convs of streaming steps below `module` to window x tap products
    (layers.depthwise_conv_windows), in place; returns how many: every DualModeDepthwiseConv's chunk
    and the StatelessPredictor's step (its conv over the last tokens). For onnxruntime graphs
    (its grouped Conv is slow on a few frames; XNNPACK's is not, so ExecuTorch keeps the conv);
    call it on a copy.
    """
    switched = 0
    for m in module.modules():
        if isinstance(m, DualModeDepthwiseConv):
            m.unfolded_chunks = True
        elif isinstance(m, StatelessPredictor):
            m.unfolded_step = True
        else:
            continue
        switched += 1
    return switched


def graphs_for(model: Transducer, chunk_ms_list: list[int]) -> dict[str, nn.Module]:
    """Name -> eval-mode graph module, in a stable order."""
    model = model.eval()
    graphs: dict[str, nn.Module] = {"encoder_full": FullEncoder(model)}
    for ms in chunk_ms_list:
        graphs[f"encoder_streaming_{ms}ms"] = StreamingEncoderStep(model, ms)
    graphs["predictor"] = PredictorStep(model)
    graphs["joiner"] = JoinerStep(model)
    return {k: g.eval() for k, g in graphs.items()}
