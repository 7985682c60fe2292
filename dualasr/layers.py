"""Dual-mode layers (Yu et al., 2021, Sec. 3).

Each layer runs in `mode="full"` (full context) or `mode="streaming"` (causal) with shared weights,
except normalization, which keeps one parameter set per mode. Every streaming layer also has a
`forward_chunk` that takes its left context as explicit state, so a chunked run equals the
streaming forward over the whole utterance (what the exported step graph relies on).

Shapes: B batch, T frames, D channels, C frames in one chunk.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dualasr import MODES

# A large negative instead of -inf keeps masked softmax finite in fp16 (Core ML) and int8 graphs.
MASK_VALUE = -1.0e4


def check_mode(mode: str) -> None:
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")


class DualNorm(nn.Module):
    """Two normalization layers, one per mode: the only parameters that are not shared."""

    def __init__(self, dim: int, kind: str = "layer"):
        super().__init__()
        if kind not in ("layer", "batch"):
            raise ValueError(f"norm kind must be 'layer' or 'batch', got {kind!r}")
        self.kind = kind
        make = (lambda: nn.LayerNorm(dim)) if kind == "layer" else (lambda: nn.BatchNorm1d(dim))
        self.full = make()
        self.streaming = make()

    def forward(self, x: Tensor, mode: str) -> Tensor:
        """x: [B, T, D] -> [B, T, D]"""
        norm = self.streaming if mode == "streaming" else self.full
        if self.kind == "batch":
            return norm(x.transpose(1, 2)).transpose(1, 2)
        return norm(x)


class DualModeConv1d(nn.Module):
    """1-D conv with one symmetric kernel of size k (any groups and stride).

    Full context pads (k-1)/2 frames on both sides. Streaming multiplies the kernel by a mask that
    keeps the left (k+1)/2 taps, so output t only sees input frames s*t-(k-1)/2 .. s*t.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1, groups: int = 1):
        super().__init__()
        if kernel_size % 2 != 1:
            raise ValueError(f"kernel_size must be odd, got {kernel_size}")
        self.kernel_size = kernel_size
        self.stride = stride
        self.groups = groups
        self.left = (kernel_size - 1) // 2  # frames of left context (= streaming cache length)
        fan_in = kernel_size * in_channels // groups
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels // groups, kernel_size) / math.sqrt(fan_in))
        self.bias = nn.Parameter(torch.zeros(out_channels))
        mask = torch.zeros(kernel_size)
        mask[: self.left + 1] = 1.0
        self.register_buffer("causal_mask", mask, persistent=False)
        self.register_buffer("streaming_weight", None)  # set by freeze_streaming_kernel

    def freeze_streaming_kernel(self) -> None:
        """Keep the streaming kernel (the weight's left taps) as a buffer that `forward_chunk` uses,
        for exported step graphs: there a slice of the weight is computed on every call, and
        ExecuTorch's XNNPACK delegate takes only convolutions whose weight is a constant, so the
        sliced one ran as a portable (reference) convolution. Call it on an export's copy, after
        training: the buffer does not follow later changes of the weight."""
        self.streaming_weight = self.weight.detach()[:, :, : self.left + 1].clone()

    def forward(self, x: Tensor, mode: str) -> Tensor:
        """x: [B, D_in, T] -> [B, D_out, ceil(T / stride)]"""
        weight = self.weight * self.causal_mask if mode == "streaming" else self.weight
        return F.conv1d(x, weight, self.bias, stride=self.stride, padding=self.left, groups=self.groups)

    def forward_chunk(self, x: Tensor, cache: Tensor) -> tuple[Tensor, Tensor]:
        """Streaming on a chunk. x: [B, D_in, C] (C a multiple of the stride), cache: [B, D_in, (k-1)/2]
        the last input frames -> (y [B, D_out, C / stride], new cache)."""
        xx = torch.cat([cache, x], dim=2)
        return self._conv_chunk(xx), xx[:, :, xx.shape[2] - self.left :]

    def _conv_chunk(self, xx: Tensor) -> Tensor:
        """The streaming kernel over xx: [B, D_in, (k-1)/2 + C] cache then chunk -> [B, D_out, C / stride]"""
        weight = self.weight[:, :, : self.left + 1] if self.streaming_weight is None else self.streaming_weight
        return F.conv1d(xx, weight, self.bias, stride=self.stride, groups=self.groups)


class DualModeDepthwiseConv(DualModeConv1d):
    """Depthwise DualModeConv1d (the Conformer / ContextNet conv): one kernel per channel."""

    def __init__(self, channels: int, kernel_size: int):
        super().__init__(channels, channels, kernel_size, groups=channels)
        self.unfolded_chunks = False  # set by export.wrappers.use_unfolded_depthwise_convs (ONNX graphs)

    def _conv_chunk(self, xx: Tensor) -> Tensor:
        if not self.unfolded_chunks:
            return super()._conv_chunk(xx)
        kernel = self.weight[:, 0, : self.left + 1].t()  # [taps, D]
        return (depthwise_conv_windows(xx.permute(2, 0, 1), kernel) + self.bias).permute(1, 2, 0)


def depthwise_conv_windows(x: Tensor, kernel: Tensor) -> Tensor:
    """A depthwise conv (stride 1, no padding) as (window x taps) products summed over the taps,
    time-major: x [T, ..., D], kernel [taps, D] -> [T - taps + 1, ..., D], out[t] = sum_i x[t + i]
    kernel[i]. The same sums as F.conv1d; for onnxruntime, whose grouped Conv runs one small
    matrix product per channel, which costs more than the arithmetic on a few frames."""
    taps = kernel.shape[0]
    windows = torch.arange(x.shape[0] - taps + 1).view(-1, 1) + torch.arange(taps).view(1, -1)  # [T', taps]
    return (x[windows] * kernel.view(1, taps, *[1] * (x.dim() - 2), -1)).sum(dim=1)


def dual_mode_mean(x: Tensor, lengths: Tensor | None, mode: str) -> Tensor:
    """Average pooling over time, parameter-free.

    full: global mean over the valid frames, broadcast to every frame.
    streaming: cumulative mean, frame t averages frames 0..t.
    x: [B, T, D], lengths: [B] -> [B, T, D] (full: [B, 1, D])
    """
    if mode == "streaming":
        count = torch.arange(1, x.shape[1] + 1, device=x.device, dtype=x.dtype).view(1, -1, 1)
        return torch.cumsum(x, dim=1) / count
    if lengths is None:
        return x.mean(dim=1, keepdim=True)
    valid = _valid_mask(lengths, x.shape[1]).unsqueeze(-1).to(x.dtype)
    return (x * valid).sum(dim=1, keepdim=True) / lengths.clamp(min=1).view(-1, 1, 1).to(x.dtype)


def streaming_mean_chunk(x: Tensor, running_sum: Tensor, processed: Tensor) -> tuple[Tensor, Tensor]:
    """Cumulative mean for one chunk. x: [B, C, D], running_sum: [B, D], processed: [B] int64 frames
    before this chunk -> (mean [B, C, D], new running_sum [B, D])."""
    steps = torch.arange(1, x.shape[1] + 1, device=x.device).view(1, -1)
    count = (processed.view(-1, 1) + steps).to(x.dtype).unsqueeze(-1)  # integer until the divide
    csum = torch.cumsum(x, dim=1) + running_sum.unsqueeze(1)
    return csum / count, csum[:, -1]


def _valid_mask(lengths: Tensor, max_len: int) -> Tensor:
    """[B] -> [B, T] bool, True on valid frames."""
    return torch.arange(max_len, device=lengths.device).view(1, -1) < lengths.view(-1, 1)


class DualModeSelfAttention(nn.Module):
    """Multi-head self-attention: all frames in full mode; in streaming, frame t attends to
    t-left_context .. t (a bounded window keeps the on-device cache bounded).

    Position enters through a learned per-head bias on the clipped relative distance, which is
    shift-invariant, so the streaming step needs no absolute frame offset.
    """

    def __init__(self, d_model: int, num_heads: int, left_context: int, max_rel_pos: int, dropout: float):
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = d_model // num_heads
        self.left_context = left_context
        self.max_rel_pos = max_rel_pos
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.out = nn.Linear(d_model, d_model)
        self.rel_bias = nn.Embedding(2 * max_rel_pos + 1, num_heads)
        self.dropout = nn.Dropout(dropout)
        # Set by the ExecuTorch export on its copy (export.wrappers): batch-1 products
        # (use_batch1_attention) and streaming position biases kept as constants
        # (use_constant_chunk_biases).
        self.batch1_products = False
        self.keep_chunk_bias = False

    def _project(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """x: [B, T, D] -> q, k, v, each [B, T, D]. Slices of the fused projection, not its
        split: ExecuTorch's XNNPACK delegate takes static slices but not a split, which ended a
        delegate in every layer of a streaming step."""
        qkv, d = self.qkv(x), self.qkv.in_features
        return qkv[..., :d], qkv[..., d : 2 * d], qkv[..., 2 * d :]

    def _bias(self, rel: Tensor) -> Tensor:
        """rel (query pos - key pos): [Tq, Tk] int64 -> [H, Tq, Tk]"""
        idx = rel.clamp(-self.max_rel_pos, self.max_rel_pos) + self.max_rel_pos
        return self.rel_bias(idx).permute(2, 0, 1)

    def _heads(self, x: Tensor) -> Tensor:
        """[B, T, D] -> [B, H, T, D/H]"""
        return x.view(x.shape[0], -1, self.num_heads, self.head_dim).transpose(1, 2)

    def _attend(self, q: Tensor, k: Tensor, v: Tensor, bias: Tensor, allowed: Tensor | None) -> Tensor:
        """q: [B, Tq, D], k/v: [B, Tk, D], bias: broadcastable to [B, H, Tq, Tk] ([H, Tq, Tk] with
        batch1_products), allowed: broadcastable to [B, 1, Tq, Tk] or None (every key allowed)."""
        return self._attend_heads(q, self._heads(k), self._heads(v), bias, allowed)

    def _attend_heads(self, q: Tensor, keys: Tensor, values: Tensor, bias: Tensor, allowed: Tensor | None) -> Tensor:
        """q: [B, Tq, D]; keys, values: [B, H, Tk, D/H]; bias, allowed: as in `_attend` -> [B, Tq, D]"""
        B, _, D = q.shape
        products = self._weighted_values_batch1 if self.batch1_products else self._weighted_values
        y = products(self._heads(q), keys, values, bias, allowed)
        return self.out(y.transpose(1, 2).reshape(B, -1, D))

    def _weighted_values(self, queries: Tensor, keys: Tensor, values: Tensor, bias: Tensor,
                         allowed: Tensor | None) -> Tensor:
        """queries: [B, H, Tq, D/H]; keys, values: [B, H, Tk, D/H]; bias: broadcastable to
        [B, H, Tq, Tk] -> [B, H, Tq, D/H]"""
        scores = torch.matmul(queries, keys.transpose(2, 3)) / math.sqrt(self.head_dim) + bias
        if allowed is not None:
            scores = scores.masked_fill(torch.logical_not(allowed), MASK_VALUE)
        return torch.matmul(self.dropout(torch.softmax(scores, dim=-1)), values)

    def _weighted_values_batch1(self, queries: Tensor, keys: Tensor, values: Tensor, bias: Tensor,
                                allowed: Tensor | None) -> Tensor:
        """`_weighted_values` for batch 1 as 3-D products over the heads, each reshape inferring
        the time axis (-1): XNNPACK delegates such a reshape but not one to a symbolic shape, which
        is what a 4-D matmul decomposes into, so in encoder_full every product would split the
        ExecuTorch delegate. Same shapes and values as `_weighted_values`."""
        if queries.shape[0] != 1:
            raise ValueError(f"batch1_products needs batch 1, got {queries.shape[0]}")
        H, Dh = self.num_heads, self.head_dim
        scores = torch.bmm(queries.reshape(H, -1, Dh), keys.reshape(H, -1, Dh).transpose(1, 2))
        scores = scores / math.sqrt(Dh) + bias  # [H, Tq, Tk]
        if allowed is not None:
            scores = scores.masked_fill(torch.logical_not(allowed[0]), MASK_VALUE)
        y = torch.bmm(self.dropout(torch.softmax(scores, dim=-1)), values.reshape(H, -1, Dh))
        return y.view(1, H, -1, Dh)

    def forward(self, x: Tensor, lengths: Tensor | None, mode: str) -> Tensor:
        """x: [B, T, D], lengths: [B] -> [B, T, D]"""
        T = x.shape[1]
        q, k, v = self._project(x)
        pos = torch.arange(T, device=x.device)
        rel = pos.view(-1, 1) - pos.view(1, -1)
        allowed = None  # full context over one unpadded sequence: every key (no mask ops in the graph)
        if mode == "streaming":
            allowed = torch.logical_and(rel >= 0, rel <= self.left_context).view(1, 1, T, T)
        if lengths is not None:
            valid = _valid_mask(lengths, T).view(-1, 1, 1, T)
            allowed = valid if allowed is None else torch.logical_and(allowed, valid)
        return self._attend(q, k, v, self._bias(rel), allowed)

    def _chunk_bias(self, chunk: int, mask: Tensor) -> Tensor:
        """Relative-position bias of one streaming chunk whose keys are the W cached frames followed
        by the C new ones, plus the chunk's additive mask (`chunk_attention_mask`, [B, 1, C, W+C])
        -> [B, H, C, W+C]; [H, C, W+C] with batch1_products (batch 1).

        With keep_chunk_bias the position part is kept as a buffer per chunk length and read from
        it from then on: for ExecuTorch, where the bias lookup is a gather that XNNPACK does not
        delegate (see export.wrappers.use_constant_chunk_biases)."""
        name = f"chunk_bias_{chunk}"
        bias = getattr(self, name, None)
        if bias is None:
            bias = self._bias(chunk_distances(chunk, self.left_context, mask.device))
            if self.keep_chunk_bias:
                self.register_buffer(name, bias.detach().clone())
        return bias + (mask.flatten(0, 1) if self.batch1_products else mask)

    def forward_chunk(self, x: Tensor, cache: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        """Streaming on a chunk, caching the attention inputs.

        x: [B, C, D]; cache: [B, W, D] the last W attention inputs (W = left_context);
        mask: [B, 1, C, W+C] the chunk's `chunk_attention_mask`.
        Returns (y [B, C, D], new cache [B, W, D]).
        """
        C = x.shape[1]
        kv_in = torch.cat([cache, x], dim=1)
        q, k, v = self._project(kv_in)
        y = self._attend(q[:, self.left_context :], k, v, self._chunk_bias(C, mask), None)
        return y, kv_in[:, C:]

    def forward_chunk_kv(
        self, x: Tensor, key_cache: Tensor, value_cache: Tensor, mask: Tensor
    ) -> tuple[Tensor, Tensor, Tensor]:
        """Streaming on a chunk, caching the projected keys and values, so each frame is projected
        once (exact: the position bias depends only on relative distance). The caches are kept
        split into heads, as the products read them: only the C new frames are rearranged per
        step, not the W cached ones.

        x: [B, C, D]; key_cache, value_cache: [B, H, W, D/H]; mask: [B, 1, C, W+C] the chunk's
        `chunk_attention_mask`. Returns (y [B, C, D], new key cache, new value cache).
        """
        C = x.shape[1]
        q, k, v = self._project(x)
        keys = torch.cat([key_cache, self._heads(k)], dim=2)
        values = torch.cat([value_cache, self._heads(v)], dim=2)
        y = self._attend_heads(q, keys, values, self._chunk_bias(C, mask), None)
        return y, keys[:, :, C:], values[:, :, C:]


def chunk_distances(chunk: int, left_context: int, device: torch.device) -> Tensor:
    """Query minus key position in one streaming chunk whose keys are the W = left_context cached
    frames followed by the C new ones -> [C, W+C] int64."""
    W = left_context
    return torch.arange(chunk, device=device).view(-1, 1) + W - torch.arange(W + chunk, device=device).view(1, -1)


def chunk_attention_mask(chunk: int, left_context: int, processed: Tensor, dtype: torch.dtype) -> Tensor:
    """Additive attention mask of one streaming chunk whose keys are the W = left_context cached
    frames followed by the C new ones: 0 where a query may attend the key, MASK_VALUE where not.
    processed: [B] int64 frames seen before this chunk (masks the cache while it fills up)
    -> [B, 1, C, W+C]. An encoder computes it once per chunk for all its layers, so an exported
    step runs this integer arithmetic once, not in every layer (on ExecuTorch each such op
    splits the XNNPACK delegate)."""
    W = left_context
    rel = chunk_distances(chunk, W, processed.device)
    in_window = torch.logical_and(rel >= 0, rel <= W)  # [C, W+C]
    # Key j holds a real frame once j >= W - processed, i.e. once its distance from query 0,
    # W - j, is <= processed; integer compare, no float math.
    filled = rel[:1] <= processed.view(-1, 1)  # [B, W+C]
    allowed = torch.logical_and(in_window.unsqueeze(0), filled.unsqueeze(1)).unsqueeze(1)
    return torch.logical_not(allowed).to(dtype) * MASK_VALUE


class FeedForward(nn.Module):
    def __init__(self, d_model: int, mult: int, dropout: float, activation: type[nn.Module] = nn.SiLU):
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(d_model, mult * d_model), activation(), nn.Dropout(dropout),
            nn.Linear(mult * d_model, d_model), nn.Dropout(dropout),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


class GlobalCMVN(nn.Module):
    """Per-bin input normalization with training-set statistics, kept in the graph so an exported
    model takes raw kaldi fbank (what sherpa-onnx feeds). Shared by both modes; the buffers are
    set by `set_input_stats` at the start of a fresh training run."""

    def _init_cmvn(self, dim: int) -> None:
        self.register_buffer("feat_mean", torch.zeros(dim))
        self.register_buffer("feat_inv_std", torch.ones(dim))

    @torch.no_grad()
    def set_input_stats(self, mean: Tensor, std: Tensor) -> None:
        """mean, std: [F] statistics of the training features (global CMVN)."""
        self.feat_mean.copy_(mean)
        self.feat_inv_std.copy_(1.0 / std.clamp_min(1e-3))

    def normalize(self, x: Tensor) -> Tensor:
        """x: [..., F] -> [..., F]"""
        return (x - self.feat_mean) * self.feat_inv_std


class FrameStacking(GlobalCMVN):
    """Time reduction by stacking `factor` consecutive frames and projecting: output frame t only
    sees input frames factor*t .. factor*t+factor-1, so it is causal and needs no streaming cache
    when chunks are a multiple of `factor` frames.

    Input normalization lives in the graph so the exported model takes raw kaldi fbank (what
    sherpa-onnx feeds): "global" is CMVN with per-bin statistics of the training set (buffers set
    by `set_input_stats`, shared by both modes); "frame" is a per-frame dual LayerNorm."""

    def __init__(self, in_dim: int, d_model: int, factor: int, dropout: float, input_norm: str = "global"):
        super().__init__()
        if input_norm not in ("global", "frame"):
            raise ValueError(f"input_norm must be 'global' or 'frame', got {input_norm!r}")
        self.factor = factor
        self.input_norm = input_norm
        if input_norm == "frame":
            self.in_norm = DualNorm(in_dim, "layer")
        else:
            self._init_cmvn(in_dim)
        self.proj = nn.Linear(in_dim * factor, d_model)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor, lengths: Tensor | None, mode: str) -> tuple[Tensor, Tensor | None]:
        """x: [B, T, F] -> ([B, T // factor, D], lengths // factor)"""
        B, T, Fdim = x.shape
        Tout = T // self.factor
        x = x[:, : Tout * self.factor]
        if self.input_norm == "frame":
            x = self.in_norm(x, mode)
        else:
            x = self.normalize(x)
        x = x.reshape(B, Tout, self.factor * Fdim)
        out_lens = None if lengths is None else torch.div(lengths, self.factor, rounding_mode="floor")
        return self.dropout(self.proj(x)), out_lens


def sinusoid_table(length: int, dim: int, max_timescale: float = 10000.0) -> Tensor:
    """Whisper's absolute position encodings: [length, dim], sines then cosines."""
    increment = math.log(max_timescale) / (dim // 2 - 1)
    inv_timescales = torch.exp(-increment * torch.arange(dim // 2, dtype=torch.float64))
    scaled = torch.arange(length, dtype=torch.float64).view(-1, 1) * inv_timescales.view(1, -1)
    return torch.cat([torch.sin(scaled), torch.cos(scaled)], dim=1).float()
