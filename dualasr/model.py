"""The RNN-T: a dual-mode transcriber (encoder), and a predictor and joiner shared by both modes.

Kept split (transcriber / predictor / joiner, as in torchaudio's RNN-T) so each part is exported
on its own. Token id 0 is blank; the predictor also uses it as start-of-sequence.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .config import ModelConfig
from .encoder import build_encoder
from .layers import DualNorm, depthwise_conv_windows


class StatelessPredictor(nn.Module):
    """Embedding + depthwise conv over the last `context_size` tokens (sherpa-onnx's decoder).

    Context id -1 means "no token yet" and embeds to zeros, so the first step sees [-1, ..., blank].
    """

    def __init__(self, vocab_size: int, dim: int, context_size: int):
        super().__init__()
        self.context_size = context_size
        self.embedding = nn.Embedding(vocab_size, dim)
        self.conv = nn.Conv1d(dim, dim, kernel_size=context_size, groups=dim, bias=False)
        self.activation = nn.ReLU()
        self.unfolded_step = False  # set by export.wrappers.use_unfolded_depthwise_convs (ONNX graphs)

    def initial_context(self) -> list[int]:
        return [-1] * (self.context_size - 1) + [0]

    def init_state(self, batch: int) -> list[Tensor]:
        return []

    def state_batch_dims(self) -> list[int]:
        return []

    def _embed(self, y: Tensor) -> Tensor:
        """y: [B, N] int64 (may hold -1) -> [B, N, P]"""
        return self.embedding(y.clamp(min=0)) * (y >= 0).unsqueeze(-1).to(self.embedding.weight.dtype)

    def _run(self, y: Tensor) -> Tensor:
        """y: [B, N] -> [B, N - context_size + 1, P]"""
        out = self.conv(self._embed(y).transpose(1, 2)).transpose(1, 2)
        return self.activation(out)

    def forward(self, targets: Tensor) -> Tensor:
        """targets: [B, U] label ids -> [B, U+1, P]; output u has seen targets[:u]."""
        start = torch.tensor(self.initial_context(), dtype=targets.dtype, device=targets.device)
        y = torch.cat([start.expand(targets.shape[0], -1), targets], dim=1)
        return self._run(y)

    def step(self, context: Tensor, state: list[Tensor]) -> tuple[Tensor, list[Tensor]]:
        """context: [B, context_size] last tokens -> (out [B, P], [])"""
        if self.unfolded_step:  # the conv's one output window as tap products (layers.depthwise_conv_windows)
            out = depthwise_conv_windows(self._embed(context).transpose(0, 1), self.conv.weight[:, 0, :].t())[0]
            return self.activation(out), []
        return self._run(context)[:, -1], []


class LSTMPredictor(nn.Module):
    """The paper's prediction network: embedding + LSTM, fed the previous label."""

    context_size = 1

    def __init__(self, vocab_size: int, dim: int, num_layers: int, dropout: float):
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, dim)
        self.lstm = nn.LSTM(dim, dim, num_layers=num_layers, batch_first=True,
                            dropout=dropout if num_layers > 1 else 0.0)
        self.num_layers = num_layers
        self.dim = dim

    def initial_context(self) -> list[int]:
        return [0]

    def init_state(self, batch: int) -> list[Tensor]:
        zeros = torch.zeros(self.num_layers, batch, self.dim, device=self.embedding.weight.device)
        return [zeros, zeros.clone()]

    def state_batch_dims(self) -> list[int]:
        return [1, 1]

    def forward(self, targets: Tensor) -> Tensor:
        """targets: [B, U] -> [B, U+1, P]"""
        y = torch.cat([torch.zeros_like(targets[:, :1]), targets], dim=1)
        out, _ = self.lstm(self.embedding(y))
        return out

    def step(self, context: Tensor, state: list[Tensor]) -> tuple[Tensor, list[Tensor]]:
        """context: [B, 1], state: [h, c] each [layers, B, P] -> (out [B, P], [h, c])"""
        out, (h, c) = self.lstm(self.embedding(context), (state[0], state[1]))
        return out[:, -1], [h, c]


class Joiner(nn.Module):
    """logits = out(tanh(enc_proj(enc) + pred_proj(pred))), broadcasting over leading dims."""

    def __init__(self, encoder_dim: int, predictor_dim: int, joiner_dim: int, vocab_size: int):
        super().__init__()
        self.enc_proj = nn.Linear(encoder_dim, joiner_dim)
        self.pred_proj = nn.Linear(predictor_dim, joiner_dim)
        self.out = nn.Linear(joiner_dim, vocab_size)

    def forward(self, enc: Tensor, pred: Tensor) -> Tensor:
        """enc: [..., D], pred: [..., P] -> [..., V]"""
        return self.joint(self.enc_proj(enc), self.pred_proj(pred))

    def joint(self, enc_projected: Tensor, pred_projected: Tensor) -> Tensor:
        """Both already projected to joiner_dim (what sherpa-onnx's joiner graph takes)."""
        return self.out(torch.tanh(enc_projected + pred_projected))


class Transducer(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        self.encoder = build_encoder(cfg)
        if cfg.predictor == "lstm":
            self.predictor = LSTMPredictor(cfg.vocab_size, cfg.predictor_dim, cfg.predictor_layers, cfg.dropout)
        else:
            self.predictor = StatelessPredictor(cfg.vocab_size, cfg.predictor_dim, cfg.context_size)
        self.joiner = Joiner(cfg.d_model, cfg.predictor_dim, cfg.joiner_dim, cfg.vocab_size)
        # Auxiliary CTC head: training-only help to find alignments early (not part of RNN-T export).
        self.ctc_head = nn.Linear(cfg.d_model, cfg.vocab_size) if cfg.aux_ctc else None

    def encode(self, feats: Tensor, lengths: Tensor, mode: str, **options) -> tuple[Tensor, Tensor]:
        """feats: [B, T, F], lengths: [B] -> (enc [B, T', D], enc_lens [B]). options: the transformer
        encoder's training-only `offset` (first absolute positions) and `frozen_body`."""
        return self.encoder(feats, lengths, mode, **options)

    def lattice_logits(self, enc: Tensor, pred: Tensor) -> Tensor:
        """enc: [B, T, D], pred: [B, U+1, P] -> logits [B, T, U+1, V]"""
        return self.joiner(enc.unsqueeze(2), pred.unsqueeze(1))

    def forward(self, feats: Tensor, lengths: Tensor, targets: Tensor, mode: str) -> tuple[Tensor, Tensor]:
        """-> (logits [B, T', U+1, V], enc_lens [B])"""
        enc, enc_lens = self.encode(feats, lengths, mode)
        return self.lattice_logits(enc, self.predictor(targets)), enc_lens


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def dual_mode_overhead(model: nn.Module) -> float:
    """Extra parameters of the dual-mode model over a streaming-only one, as a fraction of the
    latter: only the full-mode normalization sets are extra (everything else is shared)."""
    extra = sum(count_parameters(m.full) for m in model.modules() if isinstance(m, DualNorm))
    return extra / (count_parameters(model) - extra)
