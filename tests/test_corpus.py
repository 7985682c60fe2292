"""The multi-voice corpus: spoken-form text, natural sentences, text mixing, every TTS engine,
augmentation (formants, tempo, synthetic rooms, codecs), resumable builds and their summary."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from dualasr.audio import load_audio
from dualasr.corpus import Augmentation, SynthesisError, build_corpus, synthesize
from dualasr.corpus import build as build_mod
from dualasr.corpus.augment import CODECS, sox_effects, synthetic_rir
from dualasr.corpus.sentences import WORDNET_DIR, FORTUNES_DIR, clean_sentence, natural_sentences, sentence_split
from dualasr.corpus.text import draw_mixed_texts
from dualasr.corpus.tts import ENGINES, check_engine
from dualasr.data import read_manifest
from dualasr.tokenizer import normalize_text, number_words, spoken_text


def _engine_ok(engine: str) -> bool:
    try:
        check_engine(engine)
    except SynthesisError:
        return False
    return shutil.which("sox") is not None


_HAVE_TEXTS = (WORDNET_DIR / "data.noun").is_file() and FORTUNES_DIR.is_dir()
needs_texts = pytest.mark.skipif(not _HAVE_TEXTS, reason="wordnet-base and fortunes not installed")
_MULTIVOICE = build_mod.RECIPES["multivoice"][0]
needs_all_engines = pytest.mark.skipif(not all(_engine_ok(e) for e in _MULTIVOICE),
                                       reason="scripts/setup.sh installs every engine")


# --------------------------------------------------------------------------- text


@pytest.mark.parametrize("raw, spoken", [
    ("In 1984 Dr. Smith paid $3.50.", "in nineteen eighty four doctor smith paid three dollars and fifty cents"),
    ("2,500 apples, 10% off", "two thousand five hundred apples ten percent off"),
    ("on the 21st at 3:45", "on the twenty first at three forty five"),
    ("He was No. 1 in 1066, I said no.", "he was number one in ten sixty six i said no"),
    ("pi is 3.14 and 7 + 3 = 10", "pi is three point one four and seven plus three equals ten"),
    ("call 0800 e.g. at 10:00", "call zero eight zero zero for example at ten o'clock"),
    ("in 2005 and 2024", "in two thousand and five and twenty twenty four"),
    ("Don't say 'that' -- Call-Forward", "don't say that call forward"),
])
def test_spoken_text(raw: str, spoken: str) -> None:
    assert spoken_text(raw) == spoken
    assert spoken_text(raw) == normalize_text(spoken_text(raw))  # what the tokenizer sees


def test_number_words_range() -> None:
    assert number_words(1_000_001) == "one million and one"
    assert number_words(123_456) == "one hundred and twenty three thousand four hundred and fifty six"
    with pytest.raises(ValueError):
        number_words(10**9)


@pytest.mark.parametrize("raw, expected", [
    ("He sat on the bank of the river.", "he sat on the bank of the river"),
    ("It cost $5 in 1999!", "it cost five dollars in nineteen ninety nine"),
    ("Too short.", None),  # 2 words
    ("See http://example.com for more words here", None),
    ("The NASA probe landed on the moon today", None),  # acronym: no one reading
    ("x = y[3] * z", None),
    ("J. R. R. Tolkien wrote many long books", None),  # initials
    (" ".join(["word"] * 26), None),
])
def test_clean_sentence(raw: str, expected: str | None) -> None:
    assert clean_sentence(raw) == expected


def test_sentence_split_is_fixed() -> None:
    # Pinned: a sentence's split is a function of its text and must never drift.
    got = {t: sentence_split(t) for t in ("horses are herbivores", "loop a rope", "a major contribution")}
    assert got == {t: sentence_split(t) for t in got} and set(got.values()) <= {"train", "valid", "test"}
    counts = {s: 0 for s in ("train", "valid", "test")}
    for i in range(20000):
        counts[sentence_split(f"sentence number {i}")] += 1
    assert 0.025 < counts["test"] / 20000 < 0.035 and 0.025 < counts["valid"] / 20000 < 0.035


@needs_texts
@pytest.mark.parametrize("source", ["wordnet", "fortunes"])
def test_natural_sentences(source: str) -> None:
    splits = natural_sentences(source)
    assert len(splits["train"]) > 10000 and len(splits["test"]) > 300 and len(splits["valid"]) > 300
    assert not set(splits["train"]) & set(splits["test"]) and not set(splits["valid"]) & set(splits["test"])
    for split, texts in splits.items():
        for t in texts[:500]:
            assert sentence_split(t) == split and t == normalize_text(t) and 3 <= len(t.split()) <= 25


@needs_texts
def test_draw_mixed_texts_deterministic_and_disjoint() -> None:
    mix = {"templates": 0.2, "wordnet": 0.5, "fortunes": 0.3}
    test, test_src = draw_mixed_texts(60, "test", 4, mix, set())
    train, train_src = draw_mixed_texts(400, "train", 4, mix, set(test))
    assert not set(train) & set(test)
    assert set(train_src) == set(mix) and 0.35 < train_src.count("wordnet") / 400 < 0.65
    more, more_src = draw_mixed_texts(600, "train", 4, mix, set(test))
    assert more[:400] == train and more_src[:400] == train_src  # growing n keeps every earlier text
    assert draw_mixed_texts(400, "train", 5, mix, set(test))[0] != train  # the seed matters
    with pytest.raises(ValueError, match="ask for fewer"):
        draw_mixed_texts(10**5, "test", 4, {"wordnet": 1}, set())


# --------------------------------------------------------------------------- augmentation


def test_augmentation_key_keeps_old_sidecars_valid() -> None:
    basic = Augmentation(speed=1.1, noise="pink", seed=3)
    assert set(basic.key()) == {"speed", "noise", "snr_db", "reverb", "telephone", "gain_db", "seed"}
    assert Augmentation(formant=1.1, codec="mp3").key()["codec"] == "mp3"


def test_sox_effects() -> None:
    assert sox_effects(Augmentation()) == []
    # A formant shift of 1.1 is sox pitch +165 cents; an engine without its own rate/F0 control
    # gets the plan's speed as tempo and its pitch as more shift.
    effects = sox_effects(Augmentation(formant=1.1, tempo=0.9), engine_speed=1.2, engine_pitch=1.0)
    assert effects == ["tempo", "-s", "1.0800", "pitch", "165.0"]
    assert sox_effects(Augmentation(reverb=40, speed=0.9)) == ["gain", "-6", "speed", "0.9000", "reverb", "40"]


def test_telephone_band_on_a_slowed_down_8khz_voice(tmp_path: Path) -> None:
    """Some voices speak at 8 kHz; slowed down to 0.9 they fell below the 6.8 kHz that the
    telephone band's 3.4 kHz filter needs, and sox failed (1 utterance in 12,000 of the corpus)."""
    src, out = tmp_path / "voice8k.wav", tmp_path / "out.wav"
    sf.write(src, 0.3 * np.sin(2 * np.pi * 440 * np.arange(8000) / 8000), 8000, subtype="PCM_16")
    effects = sox_effects(Augmentation(speed=0.9, formant=0.94, reverb=30, telephone=True))
    subprocess.run(["sox", "-R", "-V1", str(src), "-b", "16", "-c", "1", str(out), *effects, "rate", "16000"],
                   check=True, capture_output=True)
    y = load_audio(out, 16000)
    assert abs(len(y) / 16000 - 1 / 0.9) < 0.01 and np.abs(y).max() > 0.05


def test_synthetic_rir_decay_and_drr() -> None:
    sr = 16000
    h = synthetic_rir(0.5, 6.0, sr, np.random.default_rng(0))
    assert h[0] == 1.0 and len(h) == int(0.5 * sr)
    tail = h[1:]
    assert 10 * np.log10(1.0 / np.sum(tail**2)) == pytest.approx(6.0, abs=0.01)
    # Energy in the last 50 ms is about 60 dB * (0.45/0.5) below the first 50 ms after onset.
    onset = int(np.argmax(np.abs(tail) > 0))
    first = np.mean(tail[onset: onset + 800] ** 2)
    last = np.mean(tail[-800:] ** 2)
    assert 10 * np.log10(first / last) == pytest.approx(60 * (len(tail) - onset - 800) / sr / 0.5, abs=4)


# --------------------------------------------------------------------------- engines


@pytest.mark.parametrize("engine", sorted(ENGINES))
def test_every_engine_speaks_each_voice(engine: str, tmp_path: Path) -> None:
    if not _engine_ok(engine):
        pytest.skip(f"{engine} not installed (scripts/setup.sh installs it)")
    for voice in ENGINES[engine][:2] if engine == "espeak-ng" else ENGINES[engine]:
        wav = tmp_path / f"{voice}.wav"
        res = synthesize("the cat sat by the warm fire", wav, engine, voice, speed=1.1, pitch=0.9,
                         augment=Augmentation(formant=1.05, seed=7))
        x, sr = sf.read(wav)
        assert sr == 16000 and x.ndim == 1 and res.duration == pytest.approx(len(x) / sr, abs=1e-3)
        assert 0.8 < res.speech_end - res.speech_start < 4.0, (engine, voice)
        again = tmp_path / f"{voice}-again.wav"
        synthesize("the cat sat by the warm fire", again, engine, voice, speed=1.1, pitch=0.9,
                   augment=Augmentation(formant=1.05, seed=7))
        assert np.array_equal(load_audio(wav), load_audio(again)), f"{engine}/{voice} is not repeatable"


@pytest.mark.skipif(not _engine_ok("espeak-ng"), reason="espeak-ng and sox")
@pytest.mark.parametrize("codec", sorted(CODECS))
def test_room_noise_and_codec(codec: str, tmp_path: Path) -> None:
    clean = synthesize("the cat sat by the warm fire", tmp_path / "clean.wav", "espeak-ng", "en-us",
                       augment=Augmentation(seed=1))
    aug = Augmentation(seed=1, rir_rt60=0.4, rir_drr_db=3.0, noise="brown", snr_db=15, codec=codec)
    res = synthesize("the cat sat by the warm fire", tmp_path / "aug.wav", "espeak-ng", "en-us", augment=aug)
    x, y = load_audio(tmp_path / "clean.wav"), load_audio(tmp_path / "aug.wav")
    assert len(x) == len(y) and res.speech_end == clean.speech_end
    assert not np.allclose(x, y, atol=0.01)
    # The speech is still there: the two line up (correlation of envelopes).
    env = [np.convolve(np.abs(v), np.ones(400) / 400, "same") for v in (x, y)]
    assert np.corrcoef(*env)[0, 1] > 0.6
    # The codec alone keeps the timing (mp3 would start ~70 ms late): speech_end stays true.
    synthesize("the cat sat by the warm fire", tmp_path / "codec.wav", "espeak-ng", "en-us",
               augment=Augmentation(seed=1, codec=codec))
    z = load_audio(tmp_path / "codec.wav")
    ex, ez = [np.convolve(np.abs(v), np.ones(80) / 80, "same") for v in (x, z)]
    lags = range(-160, 161)
    lag = max(lags, key=lambda k: np.dot(ex[max(0, -k): len(ex) - max(0, k)], ez[max(0, k): len(ez) - max(0, -k)]))
    assert abs(lag) <= 32, f"{codec} output is {lag / 16:.1f} ms off"


# --------------------------------------------------------------------------- building


@needs_texts
@needs_all_engines
def test_build_multivoice_summary_and_resume(tmp_path: Path) -> None:
    engines, texts, _ = build_mod.RECIPES["multivoice"]
    out = tmp_path / "mv"
    kwargs = dict(num_train=14, num_valid=2, num_test=2, seed=1, engines=engines, texts=texts, augment="full", jobs=2)
    paths = build_corpus(out, **kwargs)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["utterances"] == {"train": 14, "valid": 2, "test": 2} and summary["failed"] == []
    assert sum(summary["voices"].values()) == 18 and sum(summary["engines"].values()) == 18
    assert summary["hours"]["train"] > 0 and summary["settings"]["augment"] == "full"
    assert summary["sentences_available"]["wordnet"]["train"] > 10000
    assert set(summary["rendered_utt_per_s_per_worker"]) == set(summary["engines"])
    for u in read_manifest(paths["train"]):
        assert 0 < u.speech_end < u.duration and u.text == normalize_text(u.text)
    mtimes = {p: p.stat().st_mtime_ns for p in out.rglob("*.wav")}
    build_corpus(out, **kwargs)
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*.wav")} == mtimes  # resumed: nothing re-rendered


@pytest.mark.skipif(not _engine_ok("espeak-ng"), reason="espeak-ng and sox")
def test_failed_utterances_are_reported_not_fatal(tmp_path: Path, monkeypatch) -> None:
    real = build_mod.synthesize

    def flaky(text, out_wav, *args, **kwargs):
        if Path(out_wav).name == "train-000002.wav":
            raise SynthesisError("espeak-ng voice 'en-us' on 'x': exited with 1: boom")
        return real(text, out_wav, *args, **kwargs)

    monkeypatch.setattr(build_mod, "synthesize", flaky)
    monkeypatch.setattr(build_mod, "MAX_FAILED_FRACTION", 0.2)
    paths = build_corpus(tmp_path, num_train=6, num_valid=0, num_test=0, engines=("espeak-ng",), jobs=1)
    assert [u.id for u in read_manifest(paths["train"])] == [f"train-00000{i}" for i in (0, 1, 3, 4, 5)]
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert [f["id"] for f in summary["failed"]] == ["train-000002"] and "boom" in summary["failed"][0]["error"]
    monkeypatch.setattr(build_mod, "MAX_FAILED_FRACTION", 0.1)
    with pytest.raises(SynthesisError, match="1 of 6 utterances failed"):
        build_corpus(tmp_path / "strict", num_train=6, num_valid=0, num_test=0, engines=("espeak-ng",), jobs=1)
    assert len(read_manifest(tmp_path / "strict" / "train.jsonl")) == 5  # written before the error


def test_cli_rejects_bad_weights_in_one_line(tmp_path: Path) -> None:
    for bad, message in ((["--mix", "pico=lots"], "bad engine weight 'pico=lots'"),
                         (["--texts", "wordnet=-1"], "weights must be >= 0"),
                         (["--texts", "novels=1"], "unknown text source 'novels'")):
        proc = subprocess.run([sys.executable, "-m", "dualasr.corpus", str(tmp_path), "--num-train", "1", *bad],
                              capture_output=True, text=True, timeout=120)
        assert proc.returncode == 1 and message in proc.stderr, proc.stderr
        assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
