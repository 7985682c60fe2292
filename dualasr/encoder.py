"""Dual-mode encoders (transcription networks): Conformer, ContextNet and a Whisper-shaped Transformer.

All share one interface:
  forward(feats [B, T, F], lengths [B], mode) -> (out [B, T', D], out_lens [B])   T' = T // subsampling
  init_state(batch) -> list[Tensor]                                               streaming state
  forward_chunk(feats [B, C*subsampling, F], state) -> (out [B, C, D], new state)
  state_names / state_batch_dims                                                  for export/runtime

Streaming state tensors put the batch on axis 2 (axis 0 for the frame counter), the layout
sherpa-onnx's conformer contract uses, so one graph serves our runtime and sherpa-onnx.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .config import ModelConfig
from .layers import (
    DualModeConv1d,
    DualModeDepthwiseConv,
    DualModeSelfAttention,
    DualNorm,
    FeedForward,
    FrameStacking,
    GlobalCMVN,
    _valid_mask,
    check_mode,
    chunk_attention_mask,
    dual_mode_mean,
    sinusoid_table,
    streaming_mean_chunk,
)


def _zero_padding(x: Tensor, lengths: Tensor | None) -> Tensor:
    """Zero frames past each length so full-context convs and pools never see padding."""
    if lengths is None:
        return x
    return x * _valid_mask(lengths, x.shape[1]).unsqueeze(-1).to(x.dtype)


class ConvModule(nn.Module):
    """Conformer convolution module: pointwise+GLU, dual-mode depthwise conv, dual norm, SiLU, pointwise."""

    def __init__(self, d_model: int, kernel_size: int, norm: str, dropout: float):
        super().__init__()
        self.pointwise_in = nn.Linear(d_model, 2 * d_model)
        self.depthwise = DualModeDepthwiseConv(d_model, kernel_size)
        self.norm = DualNorm(d_model, norm)
        self.pointwise_out = nn.Linear(d_model, d_model)
        self.activation = nn.SiLU()
        self.dropout = nn.Dropout(dropout)

    def _post(self, y: Tensor, mode: str) -> Tensor:
        y = self.activation(self.norm(y.transpose(1, 2), mode))
        return self.dropout(self.pointwise_out(y))

    def forward(self, x: Tensor, lengths: Tensor | None, mode: str) -> Tensor:
        """x: [B, T, D] -> [B, T, D]"""
        y = nn.functional.glu(self.pointwise_in(x), dim=-1)
        y = _zero_padding(y, lengths)
        return self._post(self.depthwise(y.transpose(1, 2), mode), mode)

    def forward_chunk(self, x: Tensor, cache: Tensor) -> tuple[Tensor, Tensor]:
        """x: [B, C, D], cache: [B, D, (k-1)/2] -> (y [B, C, D], new cache)"""
        y = nn.functional.glu(self.pointwise_in(x), dim=-1)
        y, cache = self.depthwise.forward_chunk(y.transpose(1, 2), cache)
        return self._post(y, "streaming"), cache


class ConformerBlock(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        d = cfg.d_model
        self.ff1 = FeedForward(d, cfg.ff_mult, cfg.dropout)
        self.ff2 = FeedForward(d, cfg.ff_mult, cfg.dropout)
        self.attn = DualModeSelfAttention(d, cfg.num_heads, cfg.left_context, cfg.max_rel_pos, cfg.dropout)
        self.conv = ConvModule(d, cfg.conv_kernel, cfg.norm, cfg.dropout)
        self.norm_ff1 = DualNorm(d, cfg.norm)
        self.norm_attn = DualNorm(d, cfg.norm)
        self.norm_conv = DualNorm(d, cfg.norm)
        self.norm_ff2 = DualNorm(d, cfg.norm)
        self.norm_out = DualNorm(d, cfg.norm)
        self.dropout = nn.Dropout(cfg.dropout)

    def forward(self, x: Tensor, lengths: Tensor | None, mode: str) -> Tensor:
        """x: [B, T, D] -> [B, T, D]"""
        x = x + 0.5 * self.ff1(self.norm_ff1(x, mode))
        x = x + self.dropout(self.attn(self.norm_attn(x, mode), lengths, mode))
        x = x + self.conv(self.norm_conv(x, mode), lengths, mode)
        x = x + 0.5 * self.ff2(self.norm_ff2(x, mode))
        return self.norm_out(x, mode)

    def _chunk(self, x: Tensor, attend, conv_cache: Tensor) -> tuple[Tensor, Tensor]:
        """Streaming on a chunk around `attend` (normed x -> attention output), which owns the
        attention cache. x: [B, C, D], conv_cache: [B, D, K] -> (y, conv_cache)"""
        mode = "streaming"
        x = x + 0.5 * self.ff1(self.norm_ff1(x, mode))
        x = x + attend(self.norm_attn(x, mode))
        c, conv_cache = self.conv.forward_chunk(self.norm_conv(x, mode), conv_cache)
        x = x + c
        x = x + 0.5 * self.ff2(self.norm_ff2(x, mode))
        return self.norm_out(x, mode), conv_cache

    def forward_chunk(
        self, x: Tensor, key_cache: Tensor, value_cache: Tensor, conv_cache: Tensor, mask: Tensor
    ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """x: [B, C, D], key/value caches [B, H, W, D/H], conv_cache [B, D, K], mask: the chunk's
        chunk_attention_mask [B, 1, C, W+C] -> (y, keys, values, conv_cache)"""
        caches = {}

        def attend(h: Tensor) -> Tensor:
            a, caches["key"], caches["value"] = self.attn.forward_chunk_kv(h, key_cache, value_cache, mask)
            return a

        y, conv_cache = self._chunk(x, attend, conv_cache)
        return y, caches["key"], caches["value"], conv_cache

    def forward_chunk_input_cache(
        self, x: Tensor, attn_cache: Tensor, conv_cache: Tensor, mask: Tensor
    ) -> tuple[Tensor, Tensor, Tensor]:
        """The same step caching attention inputs instead (sherpa-onnx's conformer layout).
        x: [B, C, D], attn_cache: [B, W, D], conv_cache: [B, D, K], mask [B, 1, C, W+C]
        -> (y, attn_cache, conv_cache)"""
        caches = {}

        def attend(h: Tensor) -> Tensor:
            a, caches["attn"] = self.attn.forward_chunk(h, attn_cache, mask)
            return a

        y, conv_cache = self._chunk(x, attend, conv_cache)
        return y, caches["attn"], conv_cache


class _DualModeEncoder(nn.Module):
    """Causal frame stacking, then a stack of dual-mode blocks built by `block`."""

    def __init__(self, cfg: ModelConfig, block: type[nn.Module]):
        super().__init__()
        self.cfg = cfg
        self.subsampling = FrameStacking(cfg.num_mel_bins, cfg.d_model, cfg.subsampling, cfg.dropout, cfg.input_norm)
        self.layers = nn.ModuleList(block(cfg) for _ in range(cfg.num_layers))
        self.conv_cache_len = (cfg.conv_kernel - 1) // 2

    def forward(self, feats: Tensor, lengths: Tensor | None, mode: str) -> tuple[Tensor, Tensor | None]:
        """feats: [B, T, F], lengths: [B] -> (out [B, T // subsampling, D], out_lens [B])"""
        check_mode(mode)
        x, out_lens = self.subsampling(feats, lengths, mode)
        for layer in self.layers:
            x = layer(x, out_lens, mode)
        return x, out_lens


def key_value_caches(cfg: ModelConfig, batch: int) -> tuple[Tensor, Tensor]:
    """Empty attention caches of a streaming step, keys and values [L, B, H, W, D/H]: split into
    heads, the layout the attention products read (`DualModeSelfAttention.forward_chunk_kv`), so a
    step rearranges only its new frames."""
    shape = (cfg.num_layers, batch, cfg.num_heads, cfg.left_context, cfg.d_model // cfg.num_heads)
    return torch.zeros(shape), torch.zeros(shape)


class ConformerEncoder(_DualModeEncoder):
    state_names = ("cached_key", "cached_value", "cached_conv", "processed_lens")
    state_batch_dims = (1, 1, 2, 0)

    def __init__(self, cfg: ModelConfig):
        super().__init__(cfg, ConformerBlock)

    def init_state(self, batch: int) -> list[Tensor]:
        c = self.cfg
        return [
            *key_value_caches(c, batch),
            torch.zeros(c.num_layers, self.conv_cache_len, batch, c.d_model),
            torch.zeros(batch, dtype=torch.int64),
        ]

    def forward_chunk(self, feats: Tensor, state: list[Tensor]) -> tuple[Tensor, list[Tensor]]:
        """feats: [B, C*subsampling, F]; state: cached_key, cached_value [L, B, H, W, D/H] (projected
        keys and values of the last W frames, see `key_value_caches`), cached_conv [L, K, B, D],
        processed_lens [B] (encoder frames already emitted) -> (out [B, C, D], new state)."""
        keys, values, cached_conv, processed = state
        x, _ = self.subsampling(feats, None, "streaming")
        mask = chunk_attention_mask(x.shape[1], self.cfg.left_context, processed, x.dtype)
        new_keys, new_values, new_conv = [], [], []
        for i, layer in enumerate(self.layers):
            x, k, v, c = layer.forward_chunk(x, keys[i], values[i], cached_conv[i].permute(1, 2, 0), mask)
            new_keys.append(k)
            new_values.append(v)
            new_conv.append(c.permute(2, 0, 1))
        processed = processed + x.shape[1]
        return x, [torch.stack(new_keys), torch.stack(new_values), torch.stack(new_conv), processed]

    def forward_chunk_input_cache(self, feats: Tensor, state: list[Tensor]) -> tuple[Tensor, list[Tensor]]:
        """The streaming step in sherpa-onnx's conformer layout, which caches attention inputs:
        state cached_attn [L, W, B, D], cached_conv [L, K, B, D], processed_lens [B] -> (out, new state)."""
        cached_attn, cached_conv, processed = state
        x, _ = self.subsampling(feats, None, "streaming")
        mask = chunk_attention_mask(x.shape[1], self.cfg.left_context, processed, x.dtype)
        new_attn, new_conv = [], []
        for i, layer in enumerate(self.layers):
            x, a, c = layer.forward_chunk_input_cache(
                x, cached_attn[i].permute(1, 0, 2), cached_conv[i].permute(1, 2, 0), mask
            )
            new_attn.append(a.permute(1, 0, 2))
            new_conv.append(c.permute(2, 0, 1))
        processed = processed + x.shape[1]
        return x, [torch.stack(new_attn), torch.stack(new_conv), processed]


class ContextNetBlock(nn.Module):
    """Depthwise-separable dual-mode convs + squeeze-excitation with dual-mode pooling + residual."""

    convs_per_block = 3

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        d = cfg.d_model
        self.depthwise = nn.ModuleList(DualModeDepthwiseConv(d, cfg.conv_kernel) for _ in range(self.convs_per_block))
        self.pointwise = nn.ModuleList(nn.Linear(d, d) for _ in range(self.convs_per_block))
        self.norms = nn.ModuleList(DualNorm(d, cfg.norm) for _ in range(self.convs_per_block))
        self.se_down = nn.Linear(d, d // cfg.se_reduction)
        self.se_up = nn.Linear(d // cfg.se_reduction, d)
        self.activation = nn.SiLU()
        self.dropout = nn.Dropout(cfg.dropout)

    def _conv_layer(self, i: int, y: Tensor, mode: str) -> Tensor:
        """y: depthwise output [B, D, T] -> [B, T, D]"""
        return self.activation(self.norms[i](self.pointwise[i](y.transpose(1, 2)), mode))

    def _excite(self, y: Tensor, pooled: Tensor) -> Tensor:
        gate = torch.sigmoid(self.se_up(self.activation(self.se_down(pooled))))
        return y * gate

    def forward(self, x: Tensor, lengths: Tensor | None, mode: str) -> Tensor:
        y = x
        for i, conv in enumerate(self.depthwise):
            y = _zero_padding(y, lengths)
            y = self._conv_layer(i, conv(y.transpose(1, 2), mode), mode)
        y = self._excite(y, dual_mode_mean(_zero_padding(y, lengths), lengths, mode))
        return x + self.dropout(y)

    def forward_chunk(
        self, x: Tensor, conv_caches: list[Tensor], se_sum: Tensor, processed: Tensor
    ) -> tuple[Tensor, list[Tensor], Tensor]:
        """x: [B, C, D], conv_caches: each [B, D, K], se_sum: [B, D] -> (y, caches, se_sum)"""
        y = x
        new_caches = []
        for i, conv in enumerate(self.depthwise):
            out, cache = conv.forward_chunk(y.transpose(1, 2), conv_caches[i])
            new_caches.append(cache)
            y = self._conv_layer(i, out, "streaming")
        pooled, se_sum = streaming_mean_chunk(y, se_sum, processed)
        return x + self._excite(y, pooled), new_caches, se_sum


class ContextNetEncoder(_DualModeEncoder):
    state_names = ("cached_conv", "cached_se_sum", "processed_lens")
    state_batch_dims = (2, 1, 0)

    def __init__(self, cfg: ModelConfig):
        super().__init__(cfg, ContextNetBlock)

    def init_state(self, batch: int) -> list[Tensor]:
        c = self.cfg
        n_convs = c.num_layers * ContextNetBlock.convs_per_block
        return [
            torch.zeros(n_convs, self.conv_cache_len, batch, c.d_model),
            torch.zeros(c.num_layers, batch, c.d_model),
            torch.zeros(batch, dtype=torch.int64),
        ]

    def forward_chunk(self, feats: Tensor, state: list[Tensor]) -> tuple[Tensor, list[Tensor]]:
        """feats: [B, C*subsampling, F]; state: cached_conv [L*convs, K, B, D], cached_se_sum [L, B, D],
        processed_lens [B] -> (out [B, C, D], new state)."""
        cached_conv, se_sums, processed = state
        x, _ = self.subsampling(feats, None, "streaming")
        n = ContextNetBlock.convs_per_block
        new_conv, new_se = [], []
        for i, layer in enumerate(self.layers):
            caches = [cached_conv[i * n + j].permute(1, 2, 0) for j in range(n)]
            x, caches, se = layer.forward_chunk(x, caches, se_sums[i], processed)
            new_conv.extend(c.permute(2, 0, 1) for c in caches)
            new_se.append(se)
        processed = processed + x.shape[1]
        return x, [torch.stack(new_conv), torch.stack(new_se), processed]


class ConvStem(GlobalCMVN):
    """Whisper's front end, dual-mode: global CMVN, a per-frame input projection, two k=3 convs
    (the second with stride 2) with GELU, then absolute sinusoidal positions.

    The input projection lets the stem take kaldi fbank (what our runtime and sherpa-onnx compute)
    where Whisper's convs expect its own log-mel: both are log mel energies of one spectrum, so a
    linear map fitted once (`dualasr.pretrained`) bridges them. Positions cycle through a table of
    `max_abs_pos` entries (Whisper's 30 s), so a stream of any length stays inside it; streaming
    training starts each utterance at a random offset so the model learns the wrap-around.
    """

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        d, f = cfg.d_model, cfg.num_mel_bins
        self._init_cmvn(f)
        self.input_proj = nn.Linear(f, f)
        nn.init.eye_(self.input_proj.weight)
        nn.init.zeros_(self.input_proj.bias)
        self.conv1 = DualModeConv1d(f, d, 3)
        self.conv2 = DualModeConv1d(d, d, 3, stride=2)
        self.activation = nn.GELU()
        self.register_buffer("positions", sinusoid_table(cfg.max_abs_pos, d), persistent=False)

    def _position(self, frames: int, offset: Tensor) -> Tensor:
        """offset: [B] int64 first frame's position -> encodings [B, frames, D]."""
        pos = offset.view(-1, 1) + torch.arange(frames, device=offset.device).view(1, -1)
        return self.positions[torch.remainder(pos, self.positions.shape[0])]

    def forward(
        self, x: Tensor, lengths: Tensor | None, mode: str, offset: Tensor | None = None
    ) -> tuple[Tensor, Tensor | None]:
        """x: [B, T, F] (T a multiple of 2), lengths: [B], offset: [B] first position (default 0)
        -> ([B, T / 2, D], lengths // 2)"""
        x = _zero_padding(self.input_proj(self.normalize(x)), lengths)
        x = _zero_padding(self.activation(self.conv1(x.transpose(1, 2), mode)).transpose(1, 2), lengths)
        x = self.activation(self.conv2(x.transpose(1, 2), mode)).transpose(1, 2)
        if offset is None:
            offset = torch.zeros(x.shape[0], dtype=torch.int64, device=x.device)
        out_lens = None if lengths is None else torch.div(lengths, 2, rounding_mode="floor")
        return x + self._position(x.shape[1], offset), out_lens

    def forward_chunk(
        self, x: Tensor, conv_in_cache: Tensor, conv_mid_cache: Tensor, processed: Tensor
    ) -> tuple[Tensor, Tensor, Tensor]:
        """x: [B, C, F]; caches [B, F, 1] and [B, D, 1]; processed: [B] int64 stem frames emitted
        before -> (y [B, C / 2, D], new caches)"""
        x = self.input_proj(self.normalize(x))
        y, conv_in_cache = self.conv1.forward_chunk(x.transpose(1, 2), conv_in_cache)
        y, conv_mid_cache = self.conv2.forward_chunk(self.activation(y), conv_mid_cache)
        y = self.activation(y).transpose(1, 2)
        return y + self._position(y.shape[1], processed), conv_in_cache, conv_mid_cache


class TransformerBlock(nn.Module):
    """Whisper's pre-LN block, dual-mode: self-attention (bounded left window in streaming) and
    a GELU MLP, with one LayerNorm set per mode."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        d = cfg.d_model
        self.norm_attn = DualNorm(d, cfg.norm)
        self.attn = DualModeSelfAttention(d, cfg.num_heads, cfg.left_context, cfg.max_rel_pos, cfg.dropout)
        self.norm_ff = DualNorm(d, cfg.norm)
        self.ff = FeedForward(d, cfg.ff_mult, cfg.dropout, activation=nn.GELU)
        self.dropout = nn.Dropout(cfg.dropout)

    def forward(self, x: Tensor, lengths: Tensor | None, mode: str) -> Tensor:
        """x: [B, T, D] -> [B, T, D]"""
        x = x + self.dropout(self.attn(self.norm_attn(x, mode), lengths, mode))
        return x + self.ff(self.norm_ff(x, mode))

    def forward_chunk(
        self, x: Tensor, key_cache: Tensor, value_cache: Tensor, mask: Tensor
    ) -> tuple[Tensor, Tensor, Tensor]:
        """x: [B, C, D], key/value caches [B, H, W, D/H], mask: the chunk's chunk_attention_mask
        [B, 1, C, W+C] -> (y, key cache, value cache)"""
        a, key_cache, value_cache = self.attn.forward_chunk_kv(
            self.norm_attn(x, "streaming"), key_cache, value_cache, mask
        )
        x = x + a
        return x + self.ff(self.norm_ff(x, "streaming")), key_cache, value_cache


class TransformerEncoder(nn.Module):
    """ConvStem (2x) -> pre-LN Transformer blocks -> final dual norm -> stacking of
    subsampling / 2 frames + linear (causal, no cache when chunks are whole output frames).

    Shaped like Whisper's encoder so it can start from Whisper tiny.en (`dualasr.pretrained`).
    The streaming state caches projected keys and values, so each frame is projected once.
    """

    state_names = ("cached_key", "cached_value", "cached_conv_in", "cached_conv_mid", "processed_lens")
    state_batch_dims = (1, 1, 1, 1, 0)

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        if cfg.subsampling % 2:
            raise ValueError(f"the transformer encoder needs an even model.subsampling, got {cfg.subsampling}")
        self.cfg = cfg
        self.stack = cfg.subsampling // 2
        self.subsampling = ConvStem(cfg)
        self.layers = nn.ModuleList(TransformerBlock(cfg) for _ in range(cfg.num_layers))
        self.norm_out = DualNorm(cfg.d_model, cfg.norm)
        self.reduce = nn.Linear(self.stack * cfg.d_model, cfg.d_model)

    def _stack(self, x: Tensor) -> Tensor:
        """[B, T, D] normed (T a multiple of the stack) -> [B, T / stack, D]"""
        return self.reduce(x.reshape(x.shape[0], x.shape[1] // self.stack, self.stack * x.shape[2]))

    def forward(
        self, feats: Tensor, lengths: Tensor | None, mode: str, offset: Tensor | None = None,
        frozen_body: bool = False,
    ) -> tuple[Tensor, Tensor | None]:
        """feats: [B, T, F], lengths: [B], offset: [B] first stem position (training only: random
        in streaming mode) -> (out [B, T // subsampling, D], out_lens [B]).

        frozen_body: run the stem and blocks without autograd (training warm-up of a pretrained
        encoder: only the new output stacking and the decoder learn, at a third of the cost)."""
        with torch.set_grad_enabled(torch.is_grad_enabled() and not frozen_body):
            x, out_lens = self.body(feats, lengths, mode, offset)
        return self._stack(x), out_lens

    def body(self, feats: Tensor, lengths: Tensor | None, mode: str, offset: Tensor | None = None,
             ) -> tuple[Tensor, Tensor | None]:
        """Stem and blocks, before the output stacking: feats [B, T, F] -> (x [B, T', D] with
        T' = T // subsampling * stack, out_lens [B] after stacking). `forward` = `_stack(body(...))`."""
        x, out_lens = self.lower(feats, lengths, mode, offset)
        return self.upper(x, out_lens, mode, len(self.layers)), out_lens

    def lower(self, feats: Tensor, lengths: Tensor | None, mode: str, offset: Tensor | None = None,
              blocks: int | None = None) -> tuple[Tensor, Tensor | None]:
        """Stem and the lowest `blocks` blocks (all when None), no final norm: feats [B, T, F] ->
        (x [B, T', D], out_lens [B] after stacking). A body split at a block (a frozen lower part,
        train.frozen_blocks) runs the rest with `upper`."""
        check_mode(mode)
        s = self.cfg.subsampling
        feats = feats[:, : feats.shape[1] // s * s]
        if lengths is not None:
            lengths = torch.div(lengths, s, rounding_mode="floor") * s
        x, mid_lens = self.subsampling(feats, lengths, mode, offset)
        for layer in self.layers[:blocks]:
            x = layer(x, mid_lens, mode)
        return x, None if lengths is None else torch.div(lengths, s, rounding_mode="floor")

    def upper(self, x: Tensor, out_lens: Tensor | None, mode: str, first_block: int) -> Tensor:
        """The blocks from `first_block` on and the final norm: x [B, T', D] from
        `lower(..., blocks=first_block)` -> [B, T', D]."""
        mid_lens = None if out_lens is None else out_lens * self.stack
        for layer in self.layers[first_block:]:
            x = layer(x, mid_lens, mode)
        return self.norm_out(x, mode)

    def init_state(self, batch: int) -> list[Tensor]:
        c = self.cfg
        return [
            *key_value_caches(c, batch),
            torch.zeros(self.subsampling.conv1.left, batch, c.num_mel_bins),
            torch.zeros(self.subsampling.conv2.left, batch, c.d_model),
            torch.zeros(batch, dtype=torch.int64),
        ]

    def forward_chunk(self, feats: Tensor, state: list[Tensor]) -> tuple[Tensor, list[Tensor]]:
        """feats: [B, C*subsampling, F]; state: cached_key, cached_value [L, B, H, W, D/H] (see
        `key_value_caches`), cached_conv_in [1, B, F], cached_conv_mid [1, B, D], processed_lens [B]
        (encoder frames already emitted) -> (out [B, C, D], new state)."""
        keys, values, conv_in, conv_mid, processed = state
        stem_processed = processed * self.stack
        x, conv_in, conv_mid = self.subsampling.forward_chunk(
            feats, conv_in.permute(1, 2, 0), conv_mid.permute(1, 2, 0), stem_processed
        )
        mask = chunk_attention_mask(x.shape[1], self.cfg.left_context, stem_processed, x.dtype)
        new_keys, new_values = [], []
        for i, layer in enumerate(self.layers):
            x, k, v = layer.forward_chunk(x, keys[i], values[i], mask)
            new_keys.append(k)
            new_values.append(v)
        out = self._stack(self.norm_out(x, "streaming"))
        return out, [
            torch.stack(new_keys), torch.stack(new_values), conv_in.permute(2, 0, 1), conv_mid.permute(2, 0, 1),
            processed + out.shape[1],
        ]


ENCODERS: dict[str, type[nn.Module]] = {
    "conformer": ConformerEncoder,
    "contextnet": ContextNetEncoder,
    "transformer": TransformerEncoder,
}


def build_encoder(cfg: ModelConfig) -> nn.Module:
    return ENCODERS[cfg.encoder](cfg)
