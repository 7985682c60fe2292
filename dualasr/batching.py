"""The torch pieces that turn utterance lists (dualasr.data) into training batches: features and
tokens per utterance (FeatureDataset), similar-length batches for one or many ranks
(DurationBucketSampler), zero-padding (collate)."""

from __future__ import annotations

import math
import random
from collections.abc import Iterator, Sequence
from typing import Any

import torch
from torch.utils.data import Dataset, Sampler

from dualasr.audio import load_audio
from dualasr.data import Utterance
from dualasr.features import FbankConfig, compute_fbank
from dualasr.tokenizer import Tokenizer

__all__ = ["FeatureDataset", "DurationBucketSampler", "collate"]

FRAME_SHIFT_S = FbankConfig.frame_shift_ms / 1000  # fbank hop; estimates frame counts from durations


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
        fbank_cfg: FbankConfig | None = None,
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
        feats = torch.from_numpy(_features_of((self.utts[i].audio, self.fbank_cfg)))
        if self.cache:
            self._feats[i] = feats
        return feats

    def precompute(self, jobs: int = 1) -> None:
        """Fill the cache in this process. Do it before building a DataLoader with
        workers: forked workers then share it, instead of each refilling its own copy
        (which dies with the worker at the end of every epoch). `jobs` > 1 decodes and
        computes features in that many processes, so that a GPU does not wait through a
        first epoch of audio decoding; start them before CUDA is initialized (they fork)."""
        todo = [i for i in range(len(self.utts)) if i not in self._feats]
        if jobs > 1 and len(todo) > 1:
            from concurrent.futures import ProcessPoolExecutor

            work = [(self.utts[i].audio, self.fbank_cfg) for i in todo]
            with ProcessPoolExecutor(jobs) as pool:
                for i, feats in zip(todo, pool.map(_features_of, work, chunksize=16)):
                    self._feats[i] = torch.from_numpy(feats)
            return
        for i in todo:
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


def _features_of(item: tuple[str, FbankConfig | None]):
    """One utterance's fbank [T, 80] as a numpy array (picklable: FeatureDataset.precompute's worker)."""
    audio, fbank_cfg = item
    wave = torch.from_numpy(load_audio(audio))
    return (compute_fbank(wave) if fbank_cfg is None else compute_fbank(wave, fbank_cfg)).numpy()


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


def length_sorted_batches(lengths: Sequence[int], max_frames: int) -> list[list[int]]:
    """Indices sorted by length, cut into batches whose padded size (count x longest) stays within
    max_frames (a longer single item is a batch of its own): for evaluation passes, no shuffling."""
    batches: list[list[int]] = []
    batch: list[int] = []
    for i in sorted(range(len(lengths)), key=lambda i: lengths[i]):
        if batch and (len(batch) + 1) * lengths[i] > max_frames:
            batches.append(batch)
            batch = []
        batch.append(i)
    return batches + [batch] if batch else batches


def pad_rows(rows: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Tensors [T_i, ...] (same trailing shape and dtype) -> (zero-padded [B, max T_i, ...], lengths [B])."""
    lens = torch.tensor([r.shape[0] for r in rows], dtype=torch.long)
    out = rows[0].new_zeros((len(rows), int(lens.max()), *rows[0].shape[1:]))
    for i, r in enumerate(rows):
        out[i, : r.shape[0]] = r
    return out, lens


def collate(items: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Zero-pad a list of FeatureDataset items into a batch."""
    if not items:
        raise ValueError("collate: empty batch")
    feats, feat_lens = pad_rows([it["feats"] for it in items])
    tokens, token_lens = pad_rows([it["tokens"].long() for it in items])
    return {
        "feats": feats,
        "feat_lens": feat_lens,
        "tokens": tokens,
        "token_lens": token_lens,
        "ids": [it["id"] for it in items],
        "texts": [it["text"] for it in items],
    }
