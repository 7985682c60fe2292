"""A token n-gram language model for shallow fusion in beam search (numpy, no torch).

An RNN-T trained on a few hours of text spells words as they sound ("fairist crechures"): its
predictor has seen little English. Shallow fusion adds `lm_weight * log P_lm(token | history)` to
every non-blank extension in modified beam search, with the history in the model's own tokens, as
icefall's token n-gram fusion does, so the LM needs no lexicon and runs with any export whose
tokenizer it was built with.

The model is interpolated Kneser-Ney over token ids (one absolute discount per order, estimated
from its counts of counts; continuation counts below the top order). Sentence start and end share one extra id, `vocab_size`: as history it
means "start of sentence", as a prediction "end of sentence".

File (.npz, `save_to`/`load`): per order k = 1..N, the contexts of length k-1 seen in training
(`ctx{k}` [M, k-1] int32), each context's entries (`off{k}` [M+1] into `tok{k}` int32 and
`prob{k}` float32: the discounted probability of the token after the context) and its back-off
weight (`gamma{k}` [M] float32); plus `vocab_size`, `order`, and `tokenizer_sha256` so a mismatched
tokenizer is refused at load.
"""

from __future__ import annotations

import os
import threading
import zipfile
from collections import Counter, OrderedDict
from typing import BinaryIO, Iterable

import numpy as np

__all__ = ["TokenNgramLM", "LMError"]

DEFAULT_DISCOUNT = 0.75  # when an order has too few n-grams to estimate its own
_CACHE_SIZE = 4096  # distinct histories whose distribution is kept (beam search revisits few)


class LMError(ValueError):
    """A language-model file that cannot be used with this model (wrong tokenizer, bad file)."""


class TokenNgramLM:
    """P(token | last order-1 tokens) over `vocab_size` token ids plus sentence end.

    Build with `TokenNgramLM.train(sentences_as_ids, vocab_size, order)`, or `load(path)`.
    `log_probs(history)` -> [vocab_size + 1] float32 natural-log probabilities; the last entry is
    the end of sentence. `history` is a tuple of the last (at most order-1) token ids, sentence
    start included as `vocab_size` while the sentence is shorter than the order.
    """

    def __init__(self, vocab_size: int, order: int, tables: list[dict[tuple[int, ...], tuple[np.ndarray, np.ndarray, float]]],
                 tokenizer_sha256: str = ""):
        self.vocab_size, self.order, self.tables = int(vocab_size), int(order), tables
        self.tokenizer_sha256 = tokenizer_sha256
        self.sentence_boundary = self.vocab_size
        self._cache: OrderedDict[tuple[int, ...], np.ndarray] = OrderedDict()
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ scoring

    def initial_history(self) -> tuple[int, ...]:
        return (self.sentence_boundary,)

    def next_history(self, history: tuple[int, ...], token: int) -> tuple[int, ...]:
        return (history + (token,))[-(self.order - 1):] if self.order > 1 else ()

    def log_probs(self, history: tuple[int, ...]) -> np.ndarray:
        """[vocab_size + 1] log P(token | history), end of sentence last."""
        history = history[-(self.order - 1):] if self.order > 1 else ()
        with self._lock:  # one LM serves the streams of every thread (see Recognizer)
            cached = self._cache.get(history)
            if cached is not None:
                self._cache.move_to_end(history)
                return cached
        out = np.log(np.maximum(self._probs(history), 1e-30)).astype(np.float32)
        out.flags.writeable = False  # shared through the cache
        with self._lock:
            self._cache[history] = out
            if len(self._cache) > _CACHE_SIZE:
                self._cache.popitem(last=False)
        return out

    def _probs(self, history: tuple[int, ...]) -> np.ndarray:
        # The longest seen suffix of the history first, then back off: p = a(h, .) + gamma(h) * p(. | h').
        if not history:
            probs = np.full(self.vocab_size + 1, 1.0 / (self.vocab_size + 1))
            entry = self.tables[0].get(())
        else:
            probs = self._probs(history[1:])
            entry = self.tables[len(history)].get(history)
        if entry is None:
            return probs
        tokens, discounted, gamma = entry
        probs = probs * gamma
        probs[tokens] += discounted
        return probs

    def sentence_log_prob(self, ids: Iterable[int]) -> float:
        """log P(ids, end of sentence): for tests and perplexity."""
        history, total = self.initial_history(), 0.0
        for token in list(ids) + [self.sentence_boundary]:
            total += float(self.log_probs(history)[token])
            history = self.next_history(history, token)
        return total

    # ------------------------------------------------------------------ training

    @classmethod
    def train(cls, sentences: Iterable[list[int]], vocab_size: int, order: int = 5,
              tokenizer_sha256: str = "") -> "TokenNgramLM":
        """Interpolated Kneser-Ney from sentences given as token ids (each in 0..vocab_size-1)."""
        if order < 1:
            raise ValueError(f"order must be >= 1, got {order}")
        boundary = vocab_size
        top: Counter[tuple[int, ...]] = Counter()  # raw counts of the top order's n-grams
        for ids in sentences:
            if any(not 0 <= t < vocab_size for t in ids):
                raise ValueError(f"token id out of range 0..{vocab_size - 1} in {ids[:20]}")
            seq = [boundary] * max(order - 1, 1) + list(ids) + [boundary]
            start = max(order - 1, 1)
            for i in range(start, len(seq)):
                # Near the start, the history is the sentence start alone (not padded boundaries).
                lo = max(i - order + 1, start - 1)
                top[tuple(seq[lo:i + 1])] += 1
        counts: list[Counter[tuple[int, ...]]] = [Counter() for _ in range(order + 1)]  # by n-gram length
        for gram, c in top.items():
            counts[len(gram)][gram] += c
        # Lower orders count distinct left extensions (continuation counts); n-grams that start at
        # the sentence start cannot be extended to the left and keep the raw counts `top` gave them.
        for n in range(order, 1, -1):
            for gram in counts[n]:
                counts[n - 1][gram[1:]] += 1
        tables: list[dict] = []
        for n in range(1, order + 1):
            # Ney's discount from the counts of counts: D = n1 / (n1 + 2 n2).
            n1 = sum(1 for c in counts[n].values() if c == 1)
            n2 = sum(1 for c in counts[n].values() if c == 2)
            discount = n1 / (n1 + 2 * n2) if n1 and n2 else DEFAULT_DISCOUNT
            by_context: dict[tuple[int, ...], list[tuple[int, int]]] = {}
            for gram, c in counts[n].items():
                by_context.setdefault(gram[:-1], []).append((gram[-1], c))
            table = {}
            for context, entries in by_context.items():
                tokens = np.asarray([t for t, _ in entries], dtype=np.int32)
                cs = np.asarray([c for _, c in entries], dtype=np.float64)
                total = cs.sum()
                table[context] = (tokens, (np.maximum(cs - discount, 0) / total).astype(np.float32),
                                  float(np.float32(discount * len(cs) / total)))  # as the file stores it
            tables.append(table)
        return cls(vocab_size, order, tables, tokenizer_sha256)

    # ------------------------------------------------------------------ file

    def save_to(self, f: BinaryIO) -> None:
        """Write the .npz to an open binary file (`dualasr.fileio.atomic_write(path, lm.save_to)`)."""
        arrays: dict[str, np.ndarray] = {"vocab_size": np.asarray(self.vocab_size), "order": np.asarray(self.order),
                                         "tokenizer_sha256": np.asarray(self.tokenizer_sha256)}
        for k, table in enumerate(self.tables, start=1):
            contexts = sorted(table)
            arrays[f"ctx{k}"] = np.asarray(contexts, dtype=np.int32).reshape(len(contexts), k - 1)
            arrays[f"off{k}"] = np.cumsum([0] + [len(table[c][0]) for c in contexts]).astype(np.int64)
            arrays[f"tok{k}"] = np.concatenate([table[c][0] for c in contexts]).astype(np.int32)
            arrays[f"prob{k}"] = np.concatenate([table[c][1] for c in contexts]).astype(np.float32)
            arrays[f"gamma{k}"] = np.asarray([table[c][2] for c in contexts], dtype=np.float32)
        np.savez_compressed(f, **arrays)

    @classmethod
    def load(cls, path: str | os.PathLike, tokenizer_sha256: str = "", vocab_size: int | None = None) -> "TokenNgramLM":
        """Read a file written by `save_to`; refuse one built for another tokenizer."""
        if not os.path.isfile(path):
            raise FileNotFoundError(f"{path}: no such LM file; build one with `dualasr lm EXPORT_DIR --out FILE`")
        try:
            z = np.load(path, allow_pickle=False)
            order, vsize = int(z["order"]), int(z["vocab_size"])
            built_for = str(z["tokenizer_sha256"])
        except (OSError, KeyError, ValueError, zipfile.BadZipFile, AttributeError) as e:
            raise LMError(f"{path}: not a token n-gram LM file written by `dualasr lm` ({e})") from None
        if vocab_size is not None and vsize != vocab_size:
            raise LMError(f"{path}: built for {vsize} tokens, the model has {vocab_size}; build the LM "
                          "with this model's tokenizer (`dualasr lm EXPORT_DIR --out FILE`)")
        if tokenizer_sha256 and built_for and built_for != tokenizer_sha256:
            raise LMError(f"{path}: built with another tokenizer (sha256 {built_for[:12]}..., the model's is "
                          f"{tokenizer_sha256[:12]}...); build the LM with this model's tokenizer (`dualasr lm EXPORT_DIR --out FILE`)")
        tables = []
        for k in range(1, order + 1):
            ctx, off, tok, prob, gamma = (z[f"{name}{k}"] for name in ("ctx", "off", "tok", "prob", "gamma"))
            tables.append({tuple(int(t) for t in ctx[i]): (tok[off[i]:off[i + 1]], prob[off[i]:off[i + 1]], float(gamma[i]))
                           for i in range(len(ctx))})
        return cls(vsize, order, tables, built_for)
