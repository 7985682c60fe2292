"""Dual-mode encoders (transcription networks): Conformer and ContextNet.

Both share one interface:
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
    DualModeDepthwiseConv,
    DualModeSelfAttention,
    DualNorm,
    FeedForward,
    FrameStacking,
    _valid_mask,
    check_mode,
    dual_mode_mean,
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

    def forward_chunk(
        self, x: Tensor, attn_cache: Tensor, conv_cache: Tensor, processed: Tensor
    ) -> tuple[Tensor, Tensor, Tensor]:
        """x: [B, C, D], attn_cache: [B, W, D], conv_cache: [B, D, K] -> (y, attn_cache, conv_cache)"""
        mode = "streaming"
        x = x + 0.5 * self.ff1(self.norm_ff1(x, mode))
        a, attn_cache = self.attn.forward_chunk(self.norm_attn(x, mode), attn_cache, processed)
        x = x + a
        c, conv_cache = self.conv.forward_chunk(self.norm_conv(x, mode), conv_cache)
        x = x + c
        x = x + 0.5 * self.ff2(self.norm_ff2(x, mode))
        return self.norm_out(x, mode), attn_cache, conv_cache


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


class ConformerEncoder(_DualModeEncoder):
    state_names = ("cached_attn", "cached_conv", "processed_lens")
    state_batch_dims = (2, 2, 0)

    def __init__(self, cfg: ModelConfig):
        super().__init__(cfg, ConformerBlock)

    def init_state(self, batch: int) -> list[Tensor]:
        c = self.cfg
        return [
            torch.zeros(c.num_layers, c.left_context, batch, c.d_model),
            torch.zeros(c.num_layers, self.conv_cache_len, batch, c.d_model),
            torch.zeros(batch, dtype=torch.int64),
        ]

    def forward_chunk(self, feats: Tensor, state: list[Tensor]) -> tuple[Tensor, list[Tensor]]:
        """feats: [B, C*subsampling, F]; state: cached_attn [L, W, B, D], cached_conv [L, K, B, D],
        processed_lens [B] (encoder frames already emitted) -> (out [B, C, D], new state)."""
        cached_attn, cached_conv, processed = state
        x, _ = self.subsampling(feats, None, "streaming")
        new_attn, new_conv = [], []
        for i, layer in enumerate(self.layers):
            x, a, c = layer.forward_chunk(
                x, cached_attn[i].permute(1, 0, 2), cached_conv[i].permute(1, 2, 0), processed
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


def build_encoder(cfg: ModelConfig) -> nn.Module:
    return ConformerEncoder(cfg) if cfg.encoder == "conformer" else ContextNetEncoder(cfg)
