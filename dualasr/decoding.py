"""Greedy and modified-beam RNN-T decoding with emission frames recorded.

Coded against the model interface (see `dualasr/model.py`):

* `model.predictor.context_size: int`, `initial_context() -> list[int]`,
  `init_state(batch) -> list[Tensor]`, `state_batch_dims() -> list[int]`,
  `step(context [B, context_size] int64, state) -> (out [B, P], new_state)`;
* `model.joiner(enc [..., D], pred [..., P]) -> logits [..., V]` (broadcasting).

Blank is token 0. Each emitted token records the encoder frame it was emitted
at, which is what the latency metrics and the emission-lattice plot consume.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor

BLANK = 0

__all__ = [
    "Hypothesis",
    "greedy_search",
    "beam_search",
    "beam_search_hypotheses",
    "frames_to_seconds",
    "select_state",
    "concat_states",
    "where_state",
]


@dataclass
class Hypothesis:
    """A decoded token sequence.

    tokens: emitted non-blank token ids; frames: encoder frame index at which each
    token was emitted (same length as tokens); score: total log-probability of the
    chosen path (blanks included; log-added over merged paths in beam search).
    """

    tokens: list[int] = field(default_factory=list)
    frames: list[int] = field(default_factory=list)
    score: float = 0.0


# --------------------------------------------------------------------------- state helpers


def select_state(state: list[Tensor], batch_dims: list[int], index: Tensor) -> list[Tensor]:
    """Pick batch rows `index` (int64 [K]) from every state tensor."""
    return [s.index_select(d, index) for s, d in zip(state, batch_dims)]


def concat_states(states: list[list[Tensor]], batch_dims: list[int]) -> list[Tensor]:
    """Concatenate several states along their batch dims (same layout each)."""
    if not states:
        raise ValueError("concat_states needs at least one state")
    return [torch.cat([st[i] for st in states], dim=d) for i, d in enumerate(batch_dims)]


def where_state(
    mask: Tensor, new: list[Tensor], old: list[Tensor], batch_dims: list[int]
) -> list[Tensor]:
    """Row-wise choice: `new` where mask (bool [B]) is true, else `old`."""
    out = []
    for n, o, d in zip(new, old, batch_dims):
        shape = [1] * n.dim()
        shape[d] = mask.shape[0]
        out.append(torch.where(mask.view(shape), n, o))
    return out


def _initial_context(model, batch: int, device: torch.device) -> Tensor:
    """[batch, context_size] int64 filled with the predictor's start context."""
    ctx = torch.tensor(model.predictor.initial_context(), dtype=torch.long, device=device)
    if ctx.numel() != model.predictor.context_size:
        raise ValueError("initial_context() length differs from predictor.context_size")
    return ctx[None, :].expand(batch, -1).clone()


def _push(context: Tensor, tokens: Tensor) -> Tensor:
    """Shift the context window left and append tokens: [B, C], [B] -> [B, C]."""
    return torch.cat([context[:, 1:], tokens[:, None]], dim=1)


# --------------------------------------------------------------------------- greedy


@torch.no_grad()
def greedy_search(
    model, enc: Tensor, enc_lens: Tensor, max_symbols_per_frame: int = 3
) -> list[Hypothesis]:
    """Batched greedy RNN-T decoding.

    Args:
        model: see module docstring.
        enc: [B, T, D] encoder output.
        enc_lens: [B] valid frames per utterance.
        max_symbols_per_frame: cap on non-blank symbols emitted at one frame.

    Returns:
        One Hypothesis per utterance; score sums the chosen log-probs (blanks too).
    """
    if max_symbols_per_frame < 1:
        raise ValueError("max_symbols_per_frame must be >= 1")
    batch, frames, _ = enc.shape
    device = enc.device
    pred = model.predictor
    dims = pred.state_batch_dims()
    enc_lens = enc_lens.to(device)

    context = _initial_context(model, batch, device)
    state = pred.init_state(batch)
    pred_out, state = pred.step(context, state)
    hyps = [Hypothesis() for _ in range(batch)]
    scores = torch.zeros(batch, dtype=torch.float64, device=device)

    for t in range(frames):
        active = t < enc_lens  # [B]
        if not bool(active.any()):
            break
        enc_t = enc[:, t]  # [B, D]
        for _ in range(max_symbols_per_frame):
            logp = torch.log_softmax(model.joiner(enc_t, pred_out).float(), dim=-1)  # [B, V]
            best_lp, best = logp.max(dim=-1)
            scores += torch.where(active, best_lp.double(), torch.zeros_like(scores))
            emit = active & (best != BLANK)
            if not bool(emit.any()):
                break
            for b in emit.nonzero().flatten().tolist():
                hyps[b].tokens.append(int(best[b]))
                hyps[b].frames.append(t)
            # why: step the whole batch (one call) and keep the result only where a
            # token was emitted; the other rows keep their predictor output and state.
            new_context = _push(context, best)
            new_out, new_state = pred.step(new_context, state)
            context = torch.where(emit[:, None], new_context, context)
            pred_out = torch.where(emit[:, None], new_out, pred_out)
            state = where_state(emit, new_state, state, dims)
            active = emit  # only rows that just emitted may emit again at this frame

    for b, h in enumerate(hyps):
        h.score = float(scores[b])
    return hyps


# --------------------------------------------------------------------------- beam


@dataclass
class _Beam:
    """Internal: a hypothesis plus what the predictor needs to extend it."""

    hyp: Hypothesis
    context: Tensor  # [context_size]
    pred_out: Tensor  # [P]
    state: list[Tensor]  # batch size 1 along the predictor's batch dims


@torch.no_grad()
def beam_search(
    model, enc: Tensor, beam: int = 4, max_symbols_per_frame: int = 1
) -> Hypothesis:
    """The best-scoring hypothesis of `beam_search_hypotheses` (same arguments)."""
    return max(beam_search_hypotheses(model, enc, beam, max_symbols_per_frame), key=lambda h: h.score)


@torch.no_grad()
def beam_search_hypotheses(
    model, enc: Tensor, beam: int = 4, max_symbols_per_frame: int = 1
) -> list[Hypothesis]:
    """Modified beam search (at most one symbol per frame, as in icefall/sherpa).

    Per frame every kept hypothesis is extended by every vocabulary entry (blank =
    stay, label = append), the `beam` best (hypothesis, token) pairs survive, and
    pairs with equal token sequences are merged by log-adding their scores.

    Args:
        model: see module docstring.
        enc: [T, D] or [1, T, D] encoder output of one utterance.
        beam: number of hypotheses kept per frame.
        max_symbols_per_frame: must be 1 (the defining restriction of this search).

    Returns:
        The final hypotheses (at most `beam`), each token sequence once.
    """
    if max_symbols_per_frame != 1:
        raise ValueError("modified beam search emits at most one symbol per frame")
    if beam < 1:
        raise ValueError("beam must be >= 1")
    if enc.dim() == 3:
        if enc.shape[0] != 1:
            raise ValueError("beam_search decodes one utterance; got batch > 1")
        enc = enc[0]
    device = enc.device
    pred = model.predictor
    dims = pred.state_batch_dims()

    context = _initial_context(model, 1, device)
    out, state = pred.step(context, pred.init_state(1))
    beams = [_Beam(Hypothesis(), context[0], out[0], state)]

    for t in range(enc.shape[0]):
        pred_out = torch.stack([b.pred_out for b in beams])  # [K, P]
        logp = torch.log_softmax(model.joiner(enc[t][None, :], pred_out).float(), dim=-1)
        vocab = logp.shape[-1]
        base = torch.tensor([b.hyp.score for b in beams], dtype=torch.float64, device=device)
        total = (base[:, None] + logp.double()).flatten()  # [K * V]
        top_scores, top_idx = total.topk(min(beam, total.numel()))

        merged: dict[tuple[int, ...], _Beam] = {}
        to_extend: list[tuple[tuple[int, ...], int]] = []  # (key, source beam) for labels
        for score, flat in zip(top_scores.tolist(), top_idx.tolist()):
            k, tok = divmod(flat, vocab)
            src = beams[k]
            if tok == BLANK:
                hyp = Hypothesis(list(src.hyp.tokens), list(src.hyp.frames), score)
            else:
                hyp = Hypothesis(src.hyp.tokens + [tok], src.hyp.frames + [t], score)
            key = tuple(hyp.tokens)
            if key in merged:
                # Same tokens by another path: log-add (keep the first path's frames).
                old = merged[key].hyp
                old.score = float(torch.logaddexp(torch.tensor(old.score), torch.tensor(score)))
                continue
            merged[key] = _Beam(hyp, src.context, src.pred_out, src.state)
            if tok != BLANK:
                to_extend.append((key, k))

        if to_extend:
            # One batched predictor step for every hypothesis that gained a token.
            new_tok = torch.tensor([key[-1] for key, _ in to_extend], device=device)
            ctx = torch.stack([beams[k].context for _, k in to_extend])
            st = concat_states([beams[k].state for _, k in to_extend], dims)
            ctx = _push(ctx, new_tok)
            out, st = pred.step(ctx, st)
            for i, (key, _) in enumerate(to_extend):
                one = torch.tensor([i], dtype=torch.long, device=device)
                entry = merged[key]
                entry.context, entry.pred_out = ctx[i], out[i]
                entry.state = select_state(st, dims, one)
        beams = list(merged.values())

    return [b.hyp for b in beams]


def ctc_best_path(log_probs: Tensor, length: int) -> list[int]:
    """Best path of one utterance's CTC output [T, V] (blank id 0): repeats collapsed, blanks dropped."""
    ids = log_probs[:length].argmax(-1).tolist()
    return [k for j, k in enumerate(ids) if k and (j == 0 or ids[j - 1] != k)]


def frames_to_seconds(frames: list[int] | Tensor, frame_shift_s: float) -> list[float]:
    """Encoder frame indices -> seconds (frame index x frame shift, i.e. frame start).

    Callers that want "the time the frame has been fully heard" add one frame shift.
    """
    if isinstance(frames, Tensor):
        frames = frames.tolist()
    return [float(f) * frame_shift_s for f in frames]
