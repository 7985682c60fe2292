"""Real speech: the Asterisk core prompts (one female speaker, G.722) with a fixed test split."""

from __future__ import annotations

import gzip
import hashlib
import os
import re
from collections.abc import Callable, Sequence
from pathlib import Path

from dualasr.audio import load_audio, save_wav
from dualasr.corpus.augment import speech_bounds
from dualasr.corpus.build import _map_parallel
from dualasr.data import Utterance, write_manifest
from dualasr.tokenizer import normalize_text

ASTERISK_SOUNDS = "/usr/share/asterisk/sounds/en_US_f_Allison"
ASTERISK_TRANSCRIPTS = "/usr/share/doc/asterisk-core-sounds-en/core-sounds-en.txt.gz"
_AUDIO_EXTS = (".wav", ".flac", ".g722")
_PARENS = re.compile(r"\([^)]*\)")
_MULTI_DIGIT = re.compile(r"\d\s*[\d.,]*\d")


def _asterisk_spoken(text: str) -> str | None:
    """Transcript -> the words actually spoken, or None when that is ambiguous/empty."""
    text = _PARENS.sub(" ", text)  # "(simple tone sound plays)", "(note: ...)"
    text = re.sub(r"\[[^\]]*\]", " ", text)  # "[beep]", "at [@]"
    if _MULTI_DIGIT.search(text):
        # "dial 500", "H.323": digit-by-digit normalization would not match the recording.
        return None
    text = text.replace("*", " star ").replace("#", " pound ")
    return normalize_text(text) or None


def read_asterisk_prompts(
    sounds_dir: str | os.PathLike[str] = ASTERISK_SOUNDS,
    transcripts: str | os.PathLike[str] = ASTERISK_TRANSCRIPTS,
) -> list[Utterance]:
    """The Asterisk prompts that have both a transcript and an audio file.

    Ids are the prompt names ("hello-world", "digits/1"). Dropped: descriptions only
    ("[beep]", "(10 seconds of silence)") and transcripts with multi-digit numbers, whose
    spoken form is ambiguous ("dial 500"). "*"/"#" are read "star"/"pound".
    """
    sounds_dir, transcripts = Path(sounds_dir), Path(transcripts)
    if not transcripts.is_file():
        raise FileNotFoundError(f"Asterisk transcripts not found: {transcripts} (apt-get install asterisk-core-sounds-en)")
    if not sounds_dir.is_dir():
        raise FileNotFoundError(f"Asterisk sounds not found: {sounds_dir} (apt-get install asterisk-core-sounds-en-g722)")
    opener = gzip.open if transcripts.suffix == ".gz" else open
    utts: dict[str, Utterance] = {}
    with opener(transcripts, "rt", encoding="utf-8", errors="replace") as f:
        for line in f:
            line = line.strip()
            if not line or line.startswith(";") or ":" not in line:
                continue
            name, _, text = line.partition(":")
            name = name.strip()
            spoken = _asterisk_spoken(text)
            if spoken is None or name in utts:
                continue
            audio = next((sounds_dir / (name + e) for e in _AUDIO_EXTS if (sounds_dir / (name + e)).is_file()), None)
            if audio is not None:
                utts[name] = Utterance(name, str(audio), spoken)
    return sorted(utts.values(), key=lambda u: u.id)


def _asterisk_is_test(name: str, test_fraction: float) -> bool:
    h = int.from_bytes(hashlib.sha1(name.encode("utf-8")).digest()[:8], "big")
    return h / 2**64 < test_fraction


def split_asterisk(utts: Sequence[Utterance], test_fraction: float = 0.2) -> tuple[list[Utterance], list[Utterance]]:
    """Fixed split: a prompt is test iff the first 8 bytes of sha1(name), read as a big-endian
    integer over 2**64, are below `test_fraction`. Depends on nothing but the name, so the
    real-speech test set never changes between runs, machines or package versions."""
    train = [u for u in utts if not _asterisk_is_test(u.id, test_fraction)]
    test = [u for u in utts if _asterisk_is_test(u.id, test_fraction)]
    return train, test


def _convert_prompt(u: Utterance, wav: Path, sample_rate: int) -> Utterance:
    if wav.is_file():
        x = load_audio(wav, sample_rate)  # resume: already converted
    else:
        x = load_audio(u.audio, sample_rate)
        save_wav(wav, x, sample_rate)
    _, end = speech_bounds(x, sample_rate)
    return Utterance(u.id, str(wav), u.text, round(len(x) / sample_rate, 4), round(end / sample_rate, 4))


def build_asterisk_set(
    out_dir: str | os.PathLike[str],
    sounds_dir: str | os.PathLike[str] = ASTERISK_SOUNDS,
    transcripts: str | os.PathLike[str] = ASTERISK_TRANSCRIPTS,
    test_fraction: float = 0.2,
    jobs: int = 2,
    sample_rate: int = 16000,
    log: Callable[[str], None] | None = None,
) -> dict[str, Path]:
    """Convert the prompts to wav under out_dir/real/ and write real_train.jsonl / real_test.jsonl.
    speech_end is estimated with `speech_bounds` (the recordings carry trailing silence)."""
    out = Path(out_dir)
    utts = read_asterisk_prompts(sounds_dir, transcripts)
    real = out / "real"
    real.mkdir(parents=True, exist_ok=True)
    conv = _map_parallel(
        lambda u: _convert_prompt(u, real / (u.id.replace("/", "_") + ".wav"), sample_rate),
        utts, jobs, log, "asterisk",
    )
    train, test = split_asterisk(conv, test_fraction)
    paths = {"real_train": out / "real_train.jsonl", "real_test": out / "real_test.jsonl"}
    write_manifest(paths["real_train"], train)
    write_manifest(paths["real_test"], test)
    return paths

