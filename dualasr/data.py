"""Utterance lists (JSONL manifests, LibriSpeech) and the torch pieces that batch them.

The manifest/LibriSpeech readers are plain Python. torch is imported only when the
training pieces (FeatureDataset, DurationBucketSampler, collate) are first used.
"""

from __future__ import annotations

import json
import math
import os
import random
import re
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

from dualasr.fileio import atomic_write
from dualasr.tokenizer import Tokenizer, normalize_text

__all__ = [
    "Utterance",
    "read_manifest",
    "write_manifest",
    "read_librispeech",
    "load_utterances",
    "FeatureDataset",
    "collate",
    "DurationBucketSampler",
]

FRAME_SHIFT_S = 0.01  # fbank hop; used to estimate frame counts from durations


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


# ---------------------------------------------------------------------------------------
# Torch: features, batches, sampling


def __getattr__(name: str) -> Any:
    # PEP 562: the torch classes are defined on first use, so corpus building and the
    # manifest readers work without importing torch (~1 s, and absent on some boxes).
    if name in _TORCH_CLASSES:
        globals().update(_define_torch_classes())
        return globals()[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


_TORCH_CLASSES = ("FeatureDataset", "DurationBucketSampler")


def _define_torch_classes() -> dict[str, type]:
    import torch
    from torch.utils.data import Dataset, Sampler

    class FeatureDataset(Dataset):
        """Utterances -> {id, feats [T, 80], tokens LongTensor [U], text}.

        Features are cached in memory by default: our corpora are a few thousand short
        utterances (tens of MB of fbank), and decoding audio (ffmpeg for g722) dominates
        otherwise. DataLoader workers each fill their own copy; call `precompute()` first
        to share one.
        """

        def __init__(
            self,
            utts: Sequence[Utterance],
            tokenizer: Tokenizer,
            fbank_cfg: Any = None,
            cache: bool = True,
        ) -> None:
            self.utts = list(utts)
            self.tokenizer = tokenizer
            self.fbank_cfg = fbank_cfg
            self.cache = cache
            self._feats: dict[int, torch.Tensor] = {}

        def __len__(self) -> int:
            return len(self.utts)

        def features(self, i: int) -> torch.Tensor:
            if i in self._feats:
                return self._feats[i]
            # Lazy: dualasr.features is written in parallel and imports heavier things.
            from dualasr.audio import load_audio
            from dualasr.features import compute_fbank

            wave = torch.from_numpy(load_audio(self.utts[i].audio))
            feats = compute_fbank(wave) if self.fbank_cfg is None else compute_fbank(wave, self.fbank_cfg)
            if self.cache:
                self._feats[i] = feats
            return feats

        def precompute(self) -> None:
            """Fill the cache in this process. Do it before building a DataLoader with
            workers: forked workers then share it, instead of each refilling its own copy
            (which dies with the worker at the end of every epoch)."""
            for i in range(len(self.utts)):
                self._feats[i] = self.features(i)  # stored even with cache=False: asked for

        def __getitem__(self, i: int) -> dict[str, Any]:
            u = self.utts[i]
            tokens = torch.tensor(self.tokenizer.encode(u.text), dtype=torch.long)
            return {"id": u.id, "feats": self.features(i), "tokens": tokens, "text": u.text}

        def frame_lengths(self) -> list[int]:
            """Frame counts for the sampler, estimated from durations without loading audio
            (falls back to computing features where a duration is missing)."""
            out = []
            for i, u in enumerate(self.utts):
                if u.duration is not None:
                    out.append(max(1, int(round(u.duration / FRAME_SHIFT_S))))
                else:
                    out.append(int(self.features(i).shape[0]))
            return out


    class DurationBucketSampler(Sampler[list[int]]):
        """Batches of similar-length utterances holding at most `max_frames` padded frames
        (batch size x longest item; an item longer than that gets a batch of its own).

        Per epoch: sort by length, cut into `num_buckets` equal-count buckets, shuffle inside
        each bucket, pack batches greedily, shuffle the batch order. Everything is seeded by
        `seed + epoch`, so a given (seed, epoch) always yields the same batches. For DDP every
        rank builds the same global list and takes every `num_replicas`-th batch; the list is
        padded by repeating its head (or truncated with `drop_last`) so ranks step equally.
        """

        def __init__(
            self,
            lengths: Sequence[int],
            max_frames: int,
            num_buckets: int = 10,
            shuffle: bool = True,
            seed: int = 0,
            num_replicas: int = 1,
            rank: int = 0,
            drop_last: bool = False,
        ) -> None:
            if max_frames <= 0:
                raise ValueError("max_frames must be positive")
            if not 0 <= rank < num_replicas:
                raise ValueError(f"rank {rank} out of range for num_replicas={num_replicas}")
            if len(lengths) == 0:
                raise ValueError("DurationBucketSampler: no utterances")
            self.lengths = [int(x) for x in lengths]
            self.max_frames = int(max_frames)
            self.num_buckets = max(1, int(num_buckets))
            self.shuffle = shuffle
            self.seed = int(seed)
            self.num_replicas = int(num_replicas)
            self.rank = int(rank)
            self.drop_last = drop_last
            self.epoch = 0
            self._skip = 0

        def set_epoch(self, epoch: int) -> None:
            self.epoch = int(epoch)

        def skip_batches(self, n: int) -> None:
            """Skip the first `n` batches of this rank's next iteration (resume mid-epoch)."""
            self._skip = max(0, int(n))

        def _global_batches(self) -> list[list[int]]:
            rng = random.Random(self.seed + self.epoch)
            order = sorted(range(len(self.lengths)), key=lambda i: (self.lengths[i], i))
            size = math.ceil(len(order) / self.num_buckets)
            batches: list[list[int]] = []
            for start in range(0, len(order), size):
                bucket = order[start : start + size]
                if self.shuffle:
                    rng.shuffle(bucket)
                batch: list[int] = []
                longest = 0
                for i in bucket:
                    new_longest = max(longest, self.lengths[i])
                    if batch and new_longest * (len(batch) + 1) > self.max_frames:
                        batches.append(batch)
                        batch, new_longest = [], self.lengths[i]
                    batch.append(i)
                    longest = new_longest
                if batch:
                    batches.append(batch)
            if self.shuffle:
                rng.shuffle(batches)
            if self.num_replicas > 1:
                rem = len(batches) % self.num_replicas
                if rem and self.drop_last:
                    batches = batches[: len(batches) - rem]
                elif rem:
                    pad = self.num_replicas - rem
                    batches += [batches[j % len(batches)] for j in range(pad)]
            return batches

        def _rank_batches(self) -> list[list[int]]:
            return self._global_batches()[self.rank :: self.num_replicas]

        def __iter__(self) -> Iterator[list[int]]:
            skip, self._skip = self._skip, 0  # a skip applies to one iteration only
            yield from self._rank_batches()[skip:]

        def __len__(self) -> int:
            return max(0, len(self._rank_batches()) - self._skip)

    classes = {"FeatureDataset": FeatureDataset, "DurationBucketSampler": DurationBucketSampler}
    for cls in classes.values():
        cls.__module__, cls.__qualname__ = __name__, cls.__name__  # picklable by reference
    return classes


def collate(items: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Zero-pad a list of FeatureDataset items into a batch."""
    import torch

    if not items:
        raise ValueError("collate: empty batch")
    feat_lens = torch.tensor([it["feats"].shape[0] for it in items], dtype=torch.long)
    token_lens = torch.tensor([it["tokens"].shape[0] for it in items], dtype=torch.long)
    dim = items[0]["feats"].shape[1]
    feats = torch.zeros(len(items), int(feat_lens.max()), dim, dtype=items[0]["feats"].dtype)
    tokens = torch.zeros(len(items), int(token_lens.max()), dtype=torch.long)
    for b, it in enumerate(items):
        feats[b, : feat_lens[b]] = it["feats"]
        tokens[b, : token_lens[b]] = it["tokens"]
    return {
        "feats": feats,
        "feat_lens": feat_lens,
        "tokens": tokens,
        "token_lens": token_lens,
        "ids": [it["id"] for it in items],
        "texts": [it["text"] for it in items],
    }
