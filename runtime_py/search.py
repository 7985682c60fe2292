"""Frame-synchronous RNN-T search in numpy over the exported predictor/joiner graphs.

Both searches consume encoder frames as they arrive and keep everything they need between calls in
`Hyp` objects (one per stream for greedy, `beam` per stream for beam search), so a stream can be
decoded chunk by chunk and the result equals decoding all frames at once. They compute what
dualasr.decoding.greedy_search / beam_search (the batched PyTorch oracle) compute:

* greedy: at each frame up to `max_symbols_per_frame` tokens. The joiner runs on the next
  `lookahead` frames of every stream at once with the stream's current predictor output: every
  frame before the first non-blank is a blank, so it needs no second look. Only a stream that
  emitted runs the predictor (batched over the streams that did) and looks again from the frame
  it emitted at. A trained model emits on few frames, so a chunk costs about 1 + (tokens
  emitted) joiner calls instead of one per frame and symbol. Greedy keeps no path score: with
  one hypothesis nothing reads it (the oracle's score is a sum of argmax log-probabilities).
* modified beam search: at most one token per frame per hypothesis; the `beam` best
  (hypothesis, token) pairs survive; pairs with equal token sequences are merged (log-add,
  keeping the first path's emission frames). With a token n-gram LM (`lm.TokenNgramLM`), every
  non-blank extension also scores `lm_weight * log P_lm(token | the hypothesis's last tokens)`
  (shallow fusion); blanks are not scored by the LM. With an `lm.OovPenalty`, a word the LM's
  text never had costs its penalty when it ends (a piece starting the next word, or the end).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .graphs import ModelGraphs, split_states, stack_states
from .lm import OovPenalty, TokenNgramLM

__all__ = ["Hyp", "initial_hyp", "lm_start", "greedy_search", "beam_search_step", "log_softmax"]

LOOKAHEAD = 8  # encoder frames per greedy joiner call and stream (320 ms at 40 ms frames)


@dataclass
class Hyp:
    """A partial hypothesis and the predictor state needed to extend it.

    token_ids: emitted non-blank ids; frames: absolute encoder frame of each emission;
    score: log-probability of the path, blanks included (beam search; greedy leaves it 0);
    context: [K] int64 last tokens;
    pred_out: [P] predictor output for that context; pred_state: predictor state, batch 1;
    lm_history: the last tokens as the fused LM's history (beam search with an LM; else empty);
    word: the unfinished last word (beam search with an OovPenalty; else empty).
    """

    token_ids: list[int]
    frames: list[int]
    score: float
    context: np.ndarray
    pred_out: np.ndarray
    pred_state: list[np.ndarray]
    lm_history: tuple[int, ...] = ()
    word: str = ""

    def copy_with(self, token: int | None, frame: int, score: float) -> "Hyp":
        ids = self.token_ids + [token] if token is not None else list(self.token_ids)
        frames = self.frames + [frame] if token is not None else list(self.frames)
        return Hyp(ids, frames, score, self.context, self.pred_out, self.pred_state, self.lm_history, self.word)


def log_softmax(x: np.ndarray) -> np.ndarray:
    """Along the last axis, in float32 (as the oracle's .float().log_softmax)."""
    x = x.astype(np.float32, copy=False)
    m = x.max(axis=-1, keepdims=True)
    return x - m - np.log(np.exp(x - m).sum(axis=-1, keepdims=True))


def _check_finite(graphs: ModelGraphs, value: float) -> None:
    """A NaN/Inf joiner output means garbage in (or in the predictor output behind it)."""
    if not math.isfinite(value):
        graphs.check_finite("joiner", np.asarray([value]))


def lm_start(lm: TokenNgramLM | None) -> tuple[int, ...]:
    """A new sentence's LM history (empty without an LM)."""
    return lm.initial_history() if lm is not None else ()


def initial_hyp(graphs: ModelGraphs, lm: TokenNgramLM | None = None) -> Hyp:
    ctx = graphs.initial_context.copy()
    out, state = graphs.predictor(ctx[None, :], graphs.predictor_initial_state())
    return Hyp([], [], 0.0, ctx, out[0], state, lm_start(lm))


def _extend(graphs: ModelGraphs, parents: list[Hyp], tokens: list[int]) -> list[tuple[np.ndarray, np.ndarray, list[np.ndarray]]]:
    """One batched predictor step for each (parent, new token) -> [(context, pred_out, state)]."""
    contexts = np.empty((len(parents), graphs.context_size), dtype=np.int64)  # [N, K]: shifted left, + token
    for i, (p, token) in enumerate(zip(parents, tokens)):
        contexts[i, :-1] = p.context[1:]
        contexts[i, -1] = token
    specs = graphs.predictor_states
    state = stack_states([p.pred_state for p in parents], specs) if specs else []
    out, new_state = graphs.predictor(contexts, state)
    rows = split_states(new_state, specs, len(parents)) if specs else [[] for _ in parents]
    return [(contexts[i], out[i], rows[i]) for i in range(len(parents))]


def greedy_search(
    graphs: ModelGraphs,
    hyps: list[Hyp],
    encoder_out: np.ndarray,
    num_frames: list[int],
    first_frame: list[int],
    max_symbols_per_frame: int = 3,
    blank_id: int = 0,
    start: list[int] | None = None,
    lookahead: int = LOOKAHEAD,
) -> None:
    """Extend each stream's greedy hypothesis in place with new encoder frames.

    Args:
        hyps: one per stream (row of encoder_out).
        encoder_out: [B, T, D] new encoder frames.
        num_frames: valid frames per row (<= T; the rest is padding).
        first_frame: absolute index of each row's frame 0 (for emission timestamps).
        start: per row, the first frame searched (default 0); earlier frames emit nothing.
        lookahead: frames per row and joiner call (any value >= 1 gives the same tokens).
    """
    frame = list(start or [0] * len(hyps))  # per row: the frame to look at next
    symbols = [0] * len(hyps)  # tokens emitted so far at that frame
    active = [b for b in range(len(hyps)) if frame[b] < num_frames[b]]
    while active:
        spans = [(b, frame[b], min(num_frames[b], frame[b] + lookahead)) for b in active]
        if len(spans) == 1:  # one stream (the usual case): no gathering
            b, lo, hi = spans[0]
            enc, pred = encoder_out[b, lo:hi], np.repeat(hyps[b].pred_out[None, :], hi - lo, axis=0)
        else:
            enc = np.concatenate([encoder_out[b, lo:hi] for b, lo, hi in spans])
            pred = np.repeat(np.stack([hyps[b].pred_out for b in active]), [hi - lo for _, lo, hi in spans], axis=0)
        logits = graphs.joiner(enc, pred)
        _check_finite(graphs, float(logits.max()))  # NaN/Inf anywhere (the max propagates NaN)
        best = logits.argmax(axis=-1)
        nonblank = best != blank_id
        emitted: list[int] = []
        row = 0
        for b, lo, hi in spans:
            k = int(nonblank[row:row + hi - lo].argmax())  # the first non-blank, or 0 if none
            if not nonblank[row + k]:  # blanks to the end of the window
                frame[b], symbols[b] = hi, 0
            else:  # k blanks, then a token at frame lo + k
                hyps[b].token_ids.append(int(best[row + k]))
                hyps[b].frames.append(first_frame[b] + lo + k)
                symbols[b] = (symbols[b] if k == 0 else 0) + 1
                frame[b] = lo + k
                if symbols[b] == max_symbols_per_frame:  # no more at this frame: the next one
                    frame[b], symbols[b] = lo + k + 1, 0
                emitted.append(b)
            row += hi - lo
        if emitted:
            new = _extend(graphs, [hyps[b] for b in emitted], [hyps[b].token_ids[-1] for b in emitted])
            for b, (ctx, out, state) in zip(emitted, new):
                hyps[b].context, hyps[b].pred_out, hyps[b].pred_state = ctx, out, state
        active = [b for b in active if frame[b] < num_frames[b]]


def _top_k(values: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k largest of 1-D `values`, largest first, equal values by lower index: a
    stable descending sort's first k, in linear time (a full sort of beams x vocabulary every
    frame was a large share of the search)."""
    if k >= values.size:
        return np.argsort(-values, kind="stable")
    kth = np.partition(values, values.size - k)[values.size - k]  # the k-th largest
    above = np.flatnonzero(values > kth)
    chosen = np.concatenate([above, np.flatnonzero(values == kth)[: k - above.size]])
    return chosen[np.argsort(-values[chosen], kind="stable")]


def beam_search_step(
    graphs: ModelGraphs, beams: list[Hyp], encoder_frame: np.ndarray, frame: int, beam: int, blank_id: int = 0,
    lm: TokenNgramLM | None = None, lm_weight: float = 0.0, lm_token_bonus: float = 0.0,
    oov: OovPenalty | None = None,
) -> list[Hyp]:
    """One frame of modified beam search for one stream.

    Args:
        beams: the current hypotheses (at most `beam`).
        encoder_frame: [D] this frame's encoder output.
        frame: its absolute index (recorded on emission).
        lm, lm_weight: shallow fusion (the hypotheses must come from `initial_hyp(graphs, lm)`).
        lm_token_bonus: added to every non-blank extension when an LM is fused: the LM's cost of
            each token would otherwise favour paths that say less (deletions).
        oov: charges a finished word outside the LM text's words (`Hyp.word` tracks it).

    Returns:
        The new hypotheses, at most `beam`, in descending score order of their first path.
    """
    pred_out = np.stack([b.pred_out for b in beams])  # [K, P]
    enc = np.repeat(encoder_frame[None, :], len(beams), axis=0)
    logp = graphs.check_finite("joiner", log_softmax(graphs.joiner(enc, pred_out)))  # [K, V]
    vocab = logp.shape[-1]
    base = np.asarray([b.score for b in beams], dtype=np.float64)
    scores = logp.astype(np.float64)
    if lm is not None and lm_weight:
        fused = lm_weight * np.stack([lm.log_probs(b.lm_history)[:vocab] for b in beams]).astype(np.float64)
        fused += lm_token_bonus
        fused[:, blank_id] = 0.0
        scores += fused
    if oov is not None:  # a piece that starts a word finishes the hypothesis's last one
        finished = np.asarray([oov.final(b.word) for b in beams])
        scores[:, oov.starts_word[:vocab]] += finished[:, None]
    total = (base[:, None] + scores).ravel()
    top = _top_k(total, beam)

    merged: dict[tuple[int, ...], Hyp] = {}
    to_extend: list[tuple[tuple[int, ...], int]] = []  # (key, parent index) of label extensions
    for flat in top.tolist():
        src, tok = divmod(flat, vocab)
        score = float(total[flat])
        hyp = beams[src].copy_with(None if tok == blank_id else tok, frame, score)
        if lm is not None and tok != blank_id:
            hyp.lm_history = lm.next_history(hyp.lm_history, tok)
        if oov is not None and tok != blank_id:
            hyp.word = oov.next_word(hyp.word, tok)
        key = tuple(hyp.token_ids)
        if key in merged:
            # Same tokens by another path: log-add (keep the first path's frames and state).
            merged[key].score = float(np.logaddexp(merged[key].score, score))
            continue
        merged[key] = hyp
        if tok != blank_id:
            to_extend.append((key, src))

    if to_extend:
        ext = _extend(graphs, [beams[src] for _, src in to_extend], [key[-1] for key, _ in to_extend])
        for (key, _), (ctx, out, state) in zip(to_extend, ext):
            h = merged[key]
            h.context, h.pred_out, h.pred_state = ctx, out, state
    return list(merged.values())
