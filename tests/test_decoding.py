"""Greedy / modified beam search on tiny stand-in models, and the metrics helpers."""

from __future__ import annotations

import itertools
import math
import os

import numpy as np
import pytest
import torch
from torch import Tensor, nn

from dualasr.decoding import Hypothesis, beam_search, frames_to_seconds, greedy_search
from dualasr.metrics import (
    emission_latency,
    energy_end_of_speech,
    latency_percentiles,
    plot_emission_lattice,
    wer,
    word_errors,
)

V = 6  # vocabulary incl. blank 0


# --------------------------------------------------------------------------- stand-ins


class StatelessPredictor(nn.Module):
    """Context-2 stateless predictor: one-hot of the last label (zeros at start) as output."""

    context_size = 2

    def initial_context(self) -> list[int]:
        return [-1, 0]

    def init_state(self, batch: int) -> list[Tensor]:
        return []

    def state_batch_dims(self) -> list[int]:
        return []

    def step(self, context: Tensor, state: list[Tensor]) -> tuple[Tensor, list[Tensor]]:
        assert context.shape[1] == 2 and context.dtype == torch.long
        out = nn.functional.one_hot(context[:, -1].clamp_min(0), V).float()
        out[:, 0] = 0.0  # start context is "no label yet"
        return out, state


class OneHotJoiner(nn.Module):
    """logits = enc - 10 * pred + blank bias: emit the frame's token unless just emitted."""

    def forward(self, enc: Tensor, pred: Tensor) -> Tensor:
        bias = torch.zeros(V)
        bias[0] = 2.0
        return enc - 10.0 * pred + bias


class Engineered(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.predictor = StatelessPredictor()
        self.joiner = OneHotJoiner()


def engineered_enc(plan: dict[int, int], frames: int) -> Tensor:
    """[T, V]: 5 on the token to emit at each planned frame, else nothing (-> blank)."""
    enc = torch.zeros(frames, V)
    for t, tok in plan.items():
        enc[t, tok] = 5.0
    return enc


class LSTMPredictor(nn.Module):
    """Embedding + 1-layer LSTM (state [h, c], batch on dim 1), context 1, start token 0."""

    context_size = 1

    def __init__(self, hidden: int = 8) -> None:
        super().__init__()
        self.embed = nn.Embedding(V, hidden)
        self.lstm = nn.LSTM(hidden, hidden, batch_first=True)
        self.hidden = hidden

    def initial_context(self) -> list[int]:
        return [0]

    def init_state(self, batch: int) -> list[Tensor]:
        return [torch.zeros(1, batch, self.hidden), torch.zeros(1, batch, self.hidden)]

    def state_batch_dims(self) -> list[int]:
        return [1, 1]

    def step(self, context: Tensor, state: list[Tensor]) -> tuple[Tensor, list[Tensor]]:
        out, (h, c) = self.lstm(self.embed(context[:, -1:]), (state[0], state[1]))
        return out[:, 0], [h, c]


class AddJoiner(nn.Module):
    def __init__(self, d: int, p: int) -> None:
        super().__init__()
        self.enc_proj, self.pred_proj = nn.Linear(d, 16), nn.Linear(p, 16)
        self.out = nn.Linear(16, V)

    def forward(self, enc: Tensor, pred: Tensor) -> Tensor:
        return self.out(torch.tanh(self.enc_proj(enc) + self.pred_proj(pred)))


class RandomLSTMModel(nn.Module):
    def __init__(self, seed: int, d: int = 4) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.predictor = LSTMPredictor()
        self.joiner = AddJoiner(d, 8)


# --------------------------------------------------------------------------- greedy / beam


PLAN = {1: 3, 2: 5, 4: 1, 5: 2}  # frame -> token


def test_greedy_emits_engineered_sequence_at_known_frames() -> None:
    enc = torch.stack([engineered_enc(PLAN, 7), engineered_enc({0: 4, 2: 3}, 7)])
    hyps = greedy_search(Engineered(), enc, torch.tensor([7, 2]))
    assert hyps[0].tokens == [3, 5, 1, 2] and hyps[0].frames == [1, 2, 4, 5]
    # Second utterance has only 2 valid frames: the token planned at frame 2 is cut off.
    assert hyps[1].tokens == [4] and hyps[1].frames == [0]
    assert all(isinstance(h, Hypothesis) and h.score < 0 for h in hyps)


def test_beam_emits_engineered_sequence_at_known_frames() -> None:
    enc = engineered_enc(PLAN, 7)
    for beam in (1, 4):
        for x in (enc, enc[None]):
            hyp = beam_search(Engineered(), x, beam=beam)
            assert hyp.tokens == [3, 5, 1, 2] and hyp.frames == [1, 2, 4, 5]


def test_greedy_respects_max_symbols_per_frame() -> None:
    class AlwaysLabel(nn.Module):
        def forward(self, enc: Tensor, pred: Tensor) -> Tensor:
            logits = torch.zeros(*torch.broadcast_shapes(enc.shape[:-1], pred.shape[:-1]), V)
            logits[..., 1] = 5.0  # label 1 always wins; blank never does
            return logits

    model = Engineered()
    model.joiner = AlwaysLabel()
    hyps = greedy_search(model, torch.zeros(2, 4, V), torch.tensor([4, 3]), max_symbols_per_frame=2)
    assert hyps[0].frames == [0, 0, 1, 1, 2, 2, 3, 3]
    assert hyps[1].frames == [0, 0, 1, 1, 2, 2]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_beam1_equals_greedy_one_symbol(seed: int) -> None:
    model = RandomLSTMModel(seed)
    enc = torch.randn(1, 12, 4, generator=torch.Generator().manual_seed(seed)) * 3
    g = greedy_search(model, enc, torch.tensor([12]), max_symbols_per_frame=1)[0]
    b = beam_search(model, enc, beam=1)
    assert g.tokens == b.tokens and g.frames == b.frames
    assert math.isclose(g.score, b.score, abs_tol=1e-5)
    assert len(g.tokens) > 0  # the comparison is not vacuous


def test_batched_greedy_equals_per_utterance() -> None:
    model = RandomLSTMModel(3)
    enc = torch.randn(3, 10, 4, generator=torch.Generator().manual_seed(3)) * 3
    lens = torch.tensor([10, 6, 8])
    batched = greedy_search(model, enc, lens, max_symbols_per_frame=3)
    for i in range(3):
        one = greedy_search(model, enc[i : i + 1, : int(lens[i])], lens[i : i + 1])[0]
        assert batched[i].tokens == one.tokens and batched[i].frames == one.frames
        assert math.isclose(batched[i].score, one.score, abs_tol=1e-5)


def _exhaustive_best(model, enc: Tensor) -> tuple[tuple[int, ...], float]:
    """Sum over all <=1-symbol-per-frame paths per token sequence; return the best."""
    pred = model.predictor
    cache: dict[tuple[int, ...], tuple[Tensor, Tensor, list[Tensor]]] = {}

    def after(seq: tuple[int, ...]) -> tuple[Tensor, Tensor, list[Tensor]]:
        """(context, predictor output, state) after emitting seq; memoised."""
        if seq not in cache:
            if not seq:
                ctx = torch.tensor([pred.initial_context()])
                out, state = pred.step(ctx, pred.init_state(1))
            else:
                ctx, _, state = after(seq[:-1])
                ctx = torch.cat([ctx[:, 1:], torch.tensor([[seq[-1]]])], 1)
                out, state = pred.step(ctx, state)
            cache[seq] = (ctx, out, state)
        return cache[seq]

    by_seq: dict[tuple[int, ...], list[float]] = {}
    with torch.no_grad():
        for choice in itertools.product(range(V), repeat=enc.shape[0]):
            seq: tuple[int, ...] = ()
            score = 0.0
            for t, c in enumerate(choice):
                logp = torch.log_softmax(model.joiner(enc[t][None], after(seq)[1]), -1)[0]
                score += float(logp[c])
                if c != 0:
                    seq = seq + (c,)
            by_seq.setdefault(seq, []).append(score)
    f64 = torch.float64
    totals = {k: float(torch.logsumexp(torch.tensor(v, dtype=f64), 0)) for k, v in by_seq.items()}
    best = max(totals, key=totals.get)
    return best, totals[best]


def test_unpruned_beam_merges_paths_exactly() -> None:
    """With a beam wide enough to prune nothing, merged scores are exact path sums."""
    model = RandomLSTMModel(5)
    enc = torch.randn(3, 4, generator=torch.Generator().manual_seed(5)) * 0.5
    best, score = _exhaustive_best(model, enc)
    hyp = beam_search(model, enc, beam=V**3)
    assert tuple(hyp.tokens) == best
    assert math.isclose(hyp.score, score, abs_tol=1e-5)


def test_beam_rejects_multi_symbol() -> None:
    with pytest.raises(ValueError):
        beam_search(Engineered(), engineered_enc(PLAN, 7), max_symbols_per_frame=2)


def test_frames_to_seconds() -> None:
    assert frames_to_seconds([0, 3, 10], 0.04) == pytest.approx([0.0, 0.12, 0.4])
    assert frames_to_seconds(torch.tensor([2]), 0.06) == pytest.approx([0.12])


# --------------------------------------------------------------------------- metrics


def test_wer() -> None:
    assert wer(["a b c d"], ["a b c d"]) == 0.0
    assert wer(["a b c d"], ["a x c"]) == pytest.approx(2 / 4)  # 1 sub + 1 del
    # Corpus-level: errors / total reference words; empty refs count insertions.
    assert wer(["a b", "", "c"], ["a b", "z", "c"]) == pytest.approx(1 / 3)
    assert wer(["", ""], ["", ""]) == 0.0
    assert wer([""], ["x"]) == 1.0
    assert wer(["a  b "], [" a b"]) == 0.0  # whitespace is not an error
    with pytest.raises(ValueError):
        wer(["a"], [])


def test_word_errors_is_jiwers_edit_distance() -> None:
    """jiwer (test-only) is the oracle: S + D + I of its alignment, on random word sequences."""
    import jiwer

    rng = np.random.default_rng(0)
    words = ["a", "b", "c", "d", "e"]
    for _ in range(500):
        ref = list(rng.choice(words, rng.integers(1, 12)))
        hyp = list(rng.choice(words, rng.integers(0, 12)))
        out = jiwer.process_words(" ".join(ref), " ".join(hyp))
        assert word_errors(ref, hyp) == out.substitutions + out.deletions + out.insertions, (ref, hyp)
    assert word_errors([], ["x", "y"]) == 2 and word_errors(["x"], []) == 1 and word_errors([], []) == 0


def test_latency_and_percentiles() -> None:
    assert emission_latency([0.5, 1.2, 1.9], 2.0) == pytest.approx(-0.1)  # can be negative
    assert emission_latency([0.5, 2.3], 2.0) == pytest.approx(0.3)
    assert emission_latency([], 2.0) is None
    p = latency_percentiles([0.1, None, 0.2, 0.3, 0.4, 0.5, None])
    assert p["p50"] == pytest.approx(0.3) and p["p90"] == pytest.approx(0.46)
    empty = latency_percentiles([None])
    assert math.isnan(empty["p50"]) and math.isnan(empty["p90"])


def test_energy_end_of_speech_tone_then_silence() -> None:
    sr = 16000
    tone = 0.5 * np.sin(2 * np.pi * 440 * np.arange(int(1.23 * sr)) / sr)
    noise = 1e-4 * np.random.default_rng(0).standard_normal(int(0.8 * sr))  # -70 dB
    audio = np.concatenate([np.zeros(int(0.2 * sr)), tone, noise]).astype(np.float32)
    end = energy_end_of_speech(audio, sr)
    assert abs(end - 1.43) <= 0.01  # tone ends at 0.2 + 1.23 s; 10 ms frames
    # int16 input and a stereo layout give the same answer.
    pcm = (audio * 32767).astype(np.int16)
    assert energy_end_of_speech(pcm, sr) == pytest.approx(end)
    assert energy_end_of_speech(np.stack([audio, audio], 1), sr) == pytest.approx(end)
    assert energy_end_of_speech(np.zeros(sr), sr) == 0.0


def test_plot_emission_lattice(tmp_path) -> None:
    out = tmp_path / "sub" / "lattice.png"
    plot_emission_lattice(
        str(out),
        {"streaming": [3, 7, 12], "full": [2, 6, 9]},
        ["▁the", "▁cat", "s"],
        0.04,
        "emission times",
    )
    assert out.exists() and out.stat().st_size > 1000
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(os.listdir(out.parent)) == ["lattice.png"]  # no temp file left behind
    plot_emission_lattice(str(out), {"streaming": []}, None, 0.04, "empty")  # overwrite ok
    assert out.exists()
