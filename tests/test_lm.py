"""The token n-gram LM (dualasr.runtime.lm), `dualasr lm`, and its shallow fusion in beam search."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from dualasr.audio import load_audio
from dualasr.fileio import atomic_write
from dualasr.metrics import wer
from dualasr.runtime import Recognizer
from dualasr.runtime.cli import default_export_dir
from dualasr.runtime.lm import LMError, OovPenalty, TokenNgramLM
from dualasr.tokenizer import Tokenizer

EXPORT = default_export_dir()  # the built-in model's shipped export
SENTENCE = "please enter your account number followed by the pound key"  # what speech_wav says
RNG = np.random.default_rng(0)
TOY = [list(RNG.integers(0, 6, size=RNG.integers(1, 9))) for _ in range(200)] + [[1, 2, 3]] * 50


@pytest.fixture(scope="module")
def tokenizer() -> Tokenizer:
    return Tokenizer(EXPORT / "tokenizer.model")


@pytest.fixture(scope="module")
def weak_export(tmp_path_factory) -> Path:
    """The `tiny` character model's ONNX export: it misspells speech_wav's sentence, which leaves
    the LM something to correct (the built-in model gets it right without one)."""
    from dualasr.demo import TINY_MODEL
    from dualasr.export.exporter import export_checkpoint

    out = tmp_path_factory.mktemp("tiny") / "export"
    export_checkpoint(TINY_MODEL, out, ["onnx"], ["none"], [320])
    return out


@pytest.fixture(scope="module")
def weak_tokenizer(weak_export) -> Tokenizer:
    return Tokenizer(weak_export / "tokenizer.model")


@pytest.mark.parametrize("order", [1, 2, 3, 5])
def test_every_distribution_sums_to_one(order):
    lm = TokenNgramLM.train(TOY, vocab_size=6, order=order)
    histories = [(), lm.initial_history(), (1,), (1, 2), (5, 5, 5, 5), (6, 1, 2, 3)]  # seen, unseen, start
    for h in histories:
        p = np.exp(lm.log_probs(h).astype(np.float64))
        assert p.shape == (7,)
        assert abs(p.sum() - 1.0) < 1e-5, (order, h)
        assert (p > 0).all()


def test_frequent_continuations_and_held_out_perplexity():
    lm = TokenNgramLM.train(TOY, vocab_size=6, order=3)
    after_12 = lm.log_probs(lm.next_history(lm.next_history(lm.initial_history(), 1), 2))
    assert after_12.argmax() == 3  # "1 2" is followed by 3 fifty times
    assert lm.log_probs((1, 2, 3))[6] == lm.log_probs((2, 3)).max()  # then the sentence ends
    rng = np.random.default_rng(1)  # held out: new sentences from the process that made TOY
    held_out = [list(rng.integers(0, 6, size=rng.integers(1, 9))) for _ in range(200)] + [[1, 2, 3]] * 50
    per_token = -sum(lm.sentence_log_prob(s) for s in held_out) / sum(len(s) + 1 for s in held_out)
    assert per_token < 0.95 * np.log(7)  # better than uniform over 6 tokens and the end


def test_save_load_round_trip_and_refusals(tmp_path, tokenizer):
    lm = TokenNgramLM.train(TOY, vocab_size=6, order=4, tokenizer_sha256="ab" * 32, words=["one", "two"])
    path = tmp_path / "lm.npz"
    atomic_write(path, lm.save_to)
    again = TokenNgramLM.load(path, tokenizer_sha256="ab" * 32, vocab_size=6)
    for h in [(), (6,), (1, 2), (3, 1, 2), (0, 0, 0)]:
        np.testing.assert_array_equal(again.log_probs(h), lm.log_probs(h))
    assert again.words == {"one", "two"}
    v2 = tmp_path / "v2.npz"  # format 2 (no words) still loads, with no words
    with np.load(path) as z:
        np.savez(v2, **{k: z[k] for k in z.files if k != "words"} | {"format": np.asarray(2)})
    assert TokenNgramLM.load(v2).words == frozenset()
    with pytest.raises(LMError, match="another tokenizer"):
        TokenNgramLM.load(path, tokenizer_sha256="cd" * 32)
    with pytest.raises(LMError, match="built for 6 tokens"):
        TokenNgramLM.load(path, vocab_size=tokenizer.vocab_size)
    with pytest.raises(FileNotFoundError, match="dualasr lm"):
        TokenNgramLM.load(tmp_path / "missing.npz")
    old = tmp_path / "old.npz"  # a file of another format version
    with np.load(path) as z:
        np.savez(old, **{k: z[k] for k in z.files if k != "format"})
    with pytest.raises(LMError, match="format 1, this dualasr reads formats 2 and 3"):
        TokenNgramLM.load(old)
    (tmp_path / "junk.npz").write_bytes(b"not an npz")
    with pytest.raises(LMError, match="not a token n-gram LM"):
        TokenNgramLM.load(tmp_path / "junk.npz")
    with pytest.raises(ValueError, match="out of range"):
        TokenNgramLM.train([[7]], vocab_size=6)
    with pytest.raises(ValueError, match="too high for 1023 tokens"):  # history keys are int64
        TokenNgramLM.train([[1]], vocab_size=1023, order=8)


@pytest.fixture(scope="module")
def sentence_lm(tokenizer) -> TokenNgramLM:
    """An LM that knows one sentence: the one the test audio says."""
    return TokenNgramLM.train([tokenizer.encode(SENTENCE)] * 20, tokenizer.vocab_size, order=5,
                              tokenizer_sha256=tokenizer.sha256)


@pytest.mark.parametrize("mode", ["streaming", "full"])
def test_fusion_at_weight_zero_is_plain_beam_search_and_the_lm_steers(speech_wav, weak_export, weak_tokenizer, mode):
    sentence_lm = TokenNgramLM.train([weak_tokenizer.encode(SENTENCE)] * 20, weak_tokenizer.vocab_size, order=5,
                                     tokenizer_sha256=weak_tokenizer.sha256)
    samples = load_audio(speech_wav)
    plain = Recognizer(weak_export, mode=mode, decoding="beam").recognize(samples, 16000)
    zero = Recognizer(weak_export, mode=mode, decoding="beam", lm=sentence_lm, lm_weight=0.0,
                      lm_token_bonus=0.0).recognize(samples, 16000)
    assert zero.token_ids == plain.token_ids
    fused = Recognizer(weak_export, mode=mode, decoding="beam", lm=sentence_lm, lm_weight=0.5,
                       lm_token_bonus=1.0).recognize(samples, 16000)
    assert wer([SENTENCE], [fused.text]) < wer([SENTENCE], [plain.text])


def test_fused_streaming_is_the_same_for_any_split(speech_wav, sentence_lm):
    samples = load_audio(speech_wav)
    rec = Recognizer(EXPORT, mode="streaming", decoding="beam", lm=sentence_lm, lm_weight=0.5, lm_token_bonus=1.0)
    whole = rec.recognize(samples, 16000).token_ids
    for sizes in ([160], [4000, 7], [16000, 333, 9000]):
        s = rec.create_stream()
        i = k = 0
        while i < len(samples):
            s.accept_waveform(16000, samples[i:i + sizes[k % len(sizes)]])
            i, k = i + sizes[k % len(sizes)], k + 1
            while rec.is_ready(s):
                rec.decode(s)
        s.input_finished()
        rec.decode(s)
        assert s.result.token_ids == whole, sizes


def test_recognizer_refuses_an_lm_without_beam_search_or_for_another_tokenizer(tmp_path, sentence_lm):
    with pytest.raises(ValueError, match="beam search only"):
        Recognizer(EXPORT, decoding="greedy", lm=sentence_lm)
    other = TokenNgramLM.train([[1, 2]], sentence_lm.vocab_size, order=2, tokenizer_sha256="0" * 64)
    path = tmp_path / "other.npz"
    atomic_write(path, other.save_to)
    with pytest.raises(LMError, match="another tokenizer"):
        Recognizer(EXPORT, decoding="beam", lm=path)
    with pytest.raises(LMError, match="the LM given: built with another tokenizer"):  # a loaded LM too
        Recognizer(EXPORT, decoding="beam", lm=other)


def test_oov_penalty_follows_words_across_pieces():
    pieces = ["<blk>", "\u2581fa", "ir", "est", "\u2581the", "ist"]
    oov = OovPenalty(frozenset({"fairest", "the"}), pieces, -2.0)
    word = ""
    for token in (1, 2, 3):
        word = oov.next_word(word, token)
    assert word == "fairest" and oov.final(word) == 0.0
    assert oov.next_word(word, 4) == "the"  # a piece with "\u2581" starts the next word
    assert oov.final(oov.next_word(oov.next_word("", 1), 5)) == -2.0  # "faist" is not a word
    assert oov.final("") == 0.0  # nothing said yet
    assert oov.starts_word.tolist() == [False, True, False, False, True, False]


def test_oov_penalty_keeps_spellings_to_the_lm_texts_words(speech_wav, weak_export, weak_tokenizer):
    # The LM knows the sentence's words only: a large OOV penalty turns misspellings into its words
    # (where the beam holds them: "accont" -> "account").
    lm = TokenNgramLM.train([weak_tokenizer.encode(SENTENCE)] * 20, weak_tokenizer.vocab_size, order=5,
                            tokenizer_sha256=weak_tokenizer.sha256, words=SENTENCE.split())
    samples = load_audio(speech_wav)
    outside = {}
    for penalty in (0.0, -20.0):
        rec = Recognizer(weak_export, mode="full", decoding="beam", beam=8, lm=lm, lm_weight=0.1, lm_token_bonus=0.5,
                         lm_oov_penalty=penalty)
        assert rec.lm_oov_penalty == penalty
        outside[penalty] = [w for w in rec.recognize(samples, 16000).text.split() if w not in lm.words]
    assert len(outside[-20.0]) < len(outside[0.0]), outside
    no_words = TokenNgramLM.train([weak_tokenizer.encode(SENTENCE)], weak_tokenizer.vocab_size, order=3)
    assert Recognizer(weak_export, decoding="beam", lm=no_words).lm_oov_penalty == 0.0  # a format-2 file: off


def _dualasr(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "dualasr.cli", *map(str, args)], capture_output=True, text=True)


def test_cli_builds_excludes_refuses_to_overwrite_and_transcribes(tmp_path, speech_wav):
    text = tmp_path / "text.txt"
    text.write_text(f"{SENTENCE}\nthe pound key is on the right\nplease hold the line\n")
    manifest = tmp_path / "eval.jsonl"
    manifest.write_text('{"id": "a", "audio": "a.wav", "text": "Please hold the line."}\n')
    out = tmp_path / "lm.npz"
    r = _dualasr("lm", EXPORT, "--out", out, "--sources", "", "--text", text, "--exclude", manifest, "--order", "4")
    assert r.returncode == 0, r.stderr
    assert "2 sentences" in r.stdout and "1 dropped" in r.stdout
    before = out.read_bytes()
    r = _dualasr("lm", EXPORT, "--out", out, "--sources", "", "--text", text)
    assert r.returncode == 2 and "does not replace" in r.stderr and "Traceback" not in r.stderr
    assert out.read_bytes() == before
    r = _dualasr("transcribe", EXPORT, speech_wav, "--mode", "full", "--lm", out)  # --lm implies beam search
    assert r.returncode == 0, r.stderr
    assert "[onnxruntime full fp32]" in r.stdout
    for option in ("--lm-weight", "--lm-oov-penalty"):
        r = _dualasr("transcribe", EXPORT, speech_wav, option, "0.3")
        assert r.returncode == 2 and "need --lm" in r.stderr
    r = _dualasr("lm", tmp_path, "--out", tmp_path / "x.npz")
    assert r.returncode == 2 and "not an export folder" in r.stderr
    (tmp_path / "latin1.txt").write_bytes("caf\xe9 au lait\n".encode("latin-1"))
    r = _dualasr("lm", EXPORT, "--out", tmp_path / "y.npz", "--sources", "", "--text", tmp_path / "latin1.txt")
    assert r.returncode == 2 and "not UTF-8 text" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "y.npz").exists()
