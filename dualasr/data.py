"""Utterance lists: JSONL manifests and LibriSpeech folders, in plain Python (no torch).

The torch pieces that turn them into training batches (FeatureDataset, DurationBucketSampler,
collate) are in dualasr.batching.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from dualasr.fileio import atomic_write
from dualasr.tokenizer import normalize_text

__all__ = [
    "Utterance",
    "read_manifest",
    "write_manifest",
    "read_librispeech",
    "load_utterances",
]


@dataclass
class Utterance:
    """One audio file and its transcript. `speech_end` (seconds) marks where speech stops
    before trailing padding, for endpointing/latency measurements; None when unknown.
    `speaker` and `source` (where the recording comes from) keep held-out speakers apart."""

    id: str
    audio: str
    text: str
    duration: float | None = None
    speech_end: float | None = None
    speaker: str | None = None
    source: str | None = None


# ---------------------------------------------------------------------------------------
# JSONL manifests


def read_manifest(path: str | os.PathLike[str]) -> list[Utterance]:
    """Read a JSONL manifest: one {"audio", "text", ["id", "duration", "speech_end", "speaker", "source"]}
    per line.

    Relative audio paths are resolved against the manifest's folder; ids default to the
    audio file's stem and must be unique.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"manifest not found: {path}")
    base = path.parent
    utts: list[Utterance] = []
    seen: dict[str, int] = {}
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            where = f"{path} line {lineno}"
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                raise ValueError(f"{where}: invalid JSON ({e.msg})") from None
            if not isinstance(obj, dict):
                raise ValueError(f"{where}: expected a JSON object, got {type(obj).__name__}")
            for key in ("audio", "text"):
                if key not in obj:
                    raise ValueError(f"{where}: missing key {key!r}")
                if not isinstance(obj[key], str):
                    raise ValueError(f"{where}: {key!r} must be a string")
            audio = Path(obj["audio"]).expanduser()
            if not audio.is_absolute():
                audio = base / audio
            uid = str(obj["id"]) if obj.get("id") not in (None, "") else audio.stem
            if uid in seen:
                raise ValueError(f"{where}: duplicate id {uid!r} (first on line {seen[uid]})")
            seen[uid] = lineno
            try:
                duration = _opt_float(obj.get("duration"))
                speech_end = _opt_float(obj.get("speech_end"))
            except (TypeError, ValueError):
                raise ValueError(f"{where}: 'duration'/'speech_end' must be numbers") from None
            for key in ("speaker", "source"):
                if obj.get(key) is not None and not isinstance(obj[key], str):
                    raise ValueError(f"{where}: {key!r} must be a string")
            utts.append(
                Utterance(uid, str(audio), obj["text"], duration, speech_end, obj.get("speaker"), obj.get("source"))
            )
    return utts


def _opt_float(x: Any) -> float | None:
    return None if x is None else float(x)


def write_manifest(path: str | os.PathLike[str], utts: Sequence[Utterance]) -> None:
    """Write `utts` as JSONL atomically; audio inside the manifest's folder is stored relative
    to it so a corpus folder can be moved or copied as a whole."""
    path = Path(path)
    base = path.parent.resolve()
    lines = []
    for u in utts:
        audio = Path(u.audio)
        try:
            audio_s = Path(os.path.relpath(audio.resolve(), base)).as_posix()
            if audio_s.startswith("../"):
                audio_s = str(audio.resolve())
        except ValueError:  # different drive on Windows
            audio_s = str(audio.resolve())
        obj = {k: v for k, v in asdict(u).items() if v is not None}
        obj["audio"] = audio_s
        lines.append(json.dumps(obj, ensure_ascii=False) + "\n")
    atomic_write(path, "".join(lines))


# ---------------------------------------------------------------------------------------
# LibriSpeech

_TRANS_NAME = re.compile(r"^(\d+)-(\d+)\.trans\.txt$")


def read_librispeech(root: str | os.PathLike[str]) -> list[Utterance]:
    """All utterances under a LibriSpeech tree.

    `root` may be a subset folder (``train-clean-100``), the ``LibriSpeech`` folder holding
    subsets, or its parent: every ``<speaker>/<chapter>/<speaker>-<chapter>.trans.txt``
    below it is read. Texts are normalized (LibriSpeech is upper case); durations come
    from the flac headers.
    """
    import soundfile as sf

    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"LibriSpeech folder not found: {root}")
    trans_files = sorted(p for p in root.rglob("*.trans.txt") if _TRANS_NAME.match(p.name))
    if not trans_files:
        raise ValueError(
            f"no LibriSpeech transcripts (<speaker>/<chapter>/<speaker>-<chapter>.trans.txt) "
            f"found under {root}"
        )
    utts: list[Utterance] = []
    for trans in trans_files:
        with open(trans, encoding="utf-8") as f:
            for lineno, line in enumerate(f, 1):
                if not line.strip():
                    continue
                uid, _, text = line.strip().partition(" ")
                flac = trans.parent / f"{uid}.flac"
                if not flac.is_file():
                    raise FileNotFoundError(
                        f"{trans} line {lineno}: audio for {uid!r} is missing ({flac})"
                    )
                duration = sf.info(str(flac)).duration
                utts.append(Utterance(uid, str(flac), normalize_text(text), duration))
    return utts


def load_utterances(source: str | os.PathLike[str]) -> list[Utterance]:
    """A JSONL manifest (``*.jsonl``) or a LibriSpeech folder."""
    p = Path(source)
    if p.is_dir():
        return read_librispeech(p)
    if p.suffix == ".jsonl":
        return read_manifest(p)
    if not p.exists():
        raise FileNotFoundError(f"data source not found: {p}")
    raise ValueError(f"unsupported data source {p}: expected a .jsonl manifest or a LibriSpeech folder")
