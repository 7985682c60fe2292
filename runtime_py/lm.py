"""A token n-gram language model for shallow fusion in beam search (numpy, no torch).

An RNN-T trained on a few hours of text spells words as they sound ("fairist crechures"): its
predictor has seen little English. Shallow fusion adds `lm_weight * log P_lm(token | history)` to
every non-blank extension in modified beam search, with the history in the model's own tokens, as
icefall's token n-gram fusion does, so the LM needs no lexicon and runs with any export whose
tokenizer it was built with.

The model is interpolated Kneser-Ney over token ids (one absolute discount per order, estimated
from its counts of counts; continuation counts below the top order). Sentence start and end share
one extra id, `vocab_size`: as history it means "start of sentence", as a prediction "end of
sentence".

File (.npz, `save_to`/`load`), the arrays the scorer searches (`_Contexts`), per order k = 1..N:
`keys{k}` the histories of length k-1 seen in training as int64 keys, ascending; `off{k}` [M+1]
into `tok{k}` (int32, the tokens seen after each) and `prob{k}` (float32, their discounted
probability); `gamma{k}` [M] float32 the back-off weights; plus `vocab_size`, `order` and
`tokenizer_sha256`, so an LM built with another tokenizer is refused at load; `format`
(FORMAT_VERSION); optionally `words`, the words of the text it was built from (`OovPenalty`).
"""

from __future__ import annotations

import os
import threading
import zipfile
from collections import Counter, OrderedDict
from dataclasses import dataclass
from typing import BinaryIO, Iterable

import numpy as np

__all__ = ["TokenNgramLM", "OovPenalty", "LMError", "FORMAT_VERSION"]

DEFAULT_DISCOUNT = 0.75  # when an order has too few n-grams to estimate its own
FORMAT_VERSION = 3  # 3: + the text's words; 2: without them (still read); 1: never released
_ARRAYS = ("keys", "off", "tok", "prob", "gamma")  # one of each per order in the file
_CACHE_SIZE = 4096  # distinct histories whose distribution is kept (beam search revisits few)


class LMError(ValueError):
    """A language-model file that cannot be used with this model (wrong tokenizer, bad file)."""


@dataclass
class _Contexts:
    """The histories of one length seen in training, as sorted arrays (no Python object per n-gram,
    so a phone-side process holds the LM in about the file's size).

    keys: [M] int64, ascending (see `TokenNgramLM.key`); off: [M + 1] into tok/prob; tok: [E] int32
    the tokens seen after each history; prob: [E] float32 their discounted probability; gamma: [M]
    float32 each history's back-off weight.
    """

    keys: np.ndarray
    off: np.ndarray
    tok: np.ndarray
    prob: np.ndarray
    gamma: np.ndarray

    def find(self, key: int) -> int:
        """Row of `key`, or -1 when the history was not seen."""
        i = int(np.searchsorted(self.keys, key))
        return i if i < self.keys.size and int(self.keys[i]) == key else -1


class TokenNgramLM:
    """P(token | last order-1 tokens) over `vocab_size` token ids plus sentence end.

    Build with `TokenNgramLM.train(sentences_as_ids, vocab_size, order)`, or `load(path)`.
    `log_probs(history)` -> [vocab_size + 1] float32 natural-log probabilities; the last entry is
    the end of sentence. `history` is a tuple of the last (at most order-1) token ids, sentence
    start included as `vocab_size` while the sentence is shorter than the order.
    """

    def __init__(self, vocab_size: int, order: int, tables: list[_Contexts], tokenizer_sha256: str = "",
                 words: frozenset[str] = frozenset()):
        self.vocab_size, self.order, self.tables = int(vocab_size), int(order), tables
        self.tokenizer_sha256 = tokenizer_sha256
        self.words = words  # the training text's words (empty: not recorded)
        self.sentence_boundary = self.vocab_size
        self._cache: OrderedDict[tuple[int, ...], np.ndarray] = OrderedDict()
        self._lock = threading.Lock()

    @staticmethod
    def check_order(vocab_size: int, order: int) -> None:
        if order < 1:
            raise ValueError(f"order must be >= 1, got {order}")
        if (vocab_size + 1) ** (order - 1) >= 2**63:
            raise ValueError(f"order {order} is too high for {vocab_size} tokens: a history's key would not "
                             "fit in 64 bits; use a lower order")

    def key(self, history: tuple[int, ...]) -> int:
        """A history as one integer: its tokens as digits in base vocab_size + 1."""
        k = 0
        for t in reversed(history):
            k = k * (self.vocab_size + 1) + t
        return k

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
        # From no history up to the whole one: p(. | h) = a(h, .) + gamma(h) * p(. | h minus its
        # oldest token). A history not seen in training leaves p as its shorter suffix's, and so
        # does every longer one (a seen history's suffixes were all seen).
        probs = np.full(self.vocab_size + 1, 1.0 / (self.vocab_size + 1))
        for n in range(len(history) + 1):
            table = self.tables[n]
            row = table.find(self.key(history[len(history) - n:]))
            if row < 0:
                break
            lo, hi = table.off[row], table.off[row + 1]
            probs *= table.gamma[row]
            probs[table.tok[lo:hi]] += table.prob[lo:hi]
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
              tokenizer_sha256: str = "", words: Iterable[str] = ()) -> "TokenNgramLM":
        """Interpolated Kneser-Ney from sentences given as token ids (each in 0..vocab_size-1);
        `words`: the same text's words, kept for `OovPenalty`."""
        cls.check_order(vocab_size, order)
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
        lm = cls(vocab_size, order, [], tokenizer_sha256, frozenset(words))
        for n in range(1, order + 1):
            # Ney's discount from the counts of counts: D = n1 / (n1 + 2 n2).
            n1 = sum(1 for c in counts[n].values() if c == 1)
            n2 = sum(1 for c in counts[n].values() if c == 2)
            discount = n1 / (n1 + 2 * n2) if n1 and n2 else DEFAULT_DISCOUNT
            grams = sorted((lm.key(g[:-1]), g[-1], c) for g, c in counts[n].items())
            keys = np.asarray([k for k, _, _ in grams], dtype=np.int64)
            starts = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1]]) if keys.size else np.zeros(0, np.int64)
            cs = np.asarray([c for _, _, c in grams], dtype=np.float64)
            totals = np.add.reduceat(cs, starts) if cs.size else cs
            per_row = np.repeat(totals, np.diff(np.r_[starts, cs.size]))
            lm.tables.append(_Contexts(
                keys=keys[starts], off=np.r_[starts, cs.size].astype(np.int64),
                tok=np.asarray([t for _, t, _ in grams], dtype=np.int32),
                prob=(np.maximum(cs - discount, 0) / per_row).astype(np.float32),
                gamma=(discount * np.diff(np.r_[starts, cs.size]) / totals).astype(np.float32)))
        return lm

    # ------------------------------------------------------------------ file

    def save_to(self, f: BinaryIO) -> None:
        """Write the .npz to an open binary file (`dualasr.fileio.atomic_write(path, lm.save_to)`)."""
        arrays: dict[str, np.ndarray] = {"format": np.asarray(FORMAT_VERSION),
                                         "vocab_size": np.asarray(self.vocab_size), "order": np.asarray(self.order),
                                         "tokenizer_sha256": np.asarray(self.tokenizer_sha256)}
        for k, table in enumerate(self.tables, start=1):
            for name in _ARRAYS:
                arrays[f"{name}{k}"] = getattr(table, name)
        if self.words:
            arrays["words"] = np.asarray(sorted(self.words), dtype=np.str_)
        np.savez_compressed(f, **arrays)

    @classmethod
    def load(cls, path: str | os.PathLike, tokenizer_sha256: str = "", vocab_size: int | None = None) -> "TokenNgramLM":
        """Read a file written by `save_to`; refuse one built for another tokenizer."""
        if not os.path.isfile(path):
            raise FileNotFoundError(f"{path}: no such LM file; build one with `dualasr lm EXPORT_DIR --out FILE`")
        try:
            z = np.load(path, allow_pickle=False)
            version = int(z["format"]) if "format" in z.files else 1
            order, vsize = int(z["order"]), int(z["vocab_size"])
            built_for = str(z["tokenizer_sha256"])
        except (OSError, KeyError, ValueError, zipfile.BadZipFile, AttributeError) as e:
            raise LMError(f"{path}: not a token n-gram LM file written by `dualasr lm` ({e})") from None
        if version not in (2, FORMAT_VERSION):
            raise LMError(f"{path}: LM file format {version}, this dualasr reads formats 2 and {FORMAT_VERSION}; "
                          "build it again with `dualasr lm EXPORT_DIR --out FILE`")
        try:
            cls.check_order(vsize, order)
            tables = [_Contexts(*(z[f"{name}{k}"] for name in _ARRAYS)) for k in range(1, order + 1)]
            words = frozenset(z["words"].tolist()) if "words" in z.files else frozenset()
        except (KeyError, ValueError) as e:
            raise LMError(f"{path}: not a token n-gram LM file written by `dualasr lm` ({e})") from None
        lm = cls(vsize, order, tables, built_for, words)
        lm.check_tokenizer(tokenizer_sha256, vocab_size, str(path))
        return lm

    def check_tokenizer(self, tokenizer_sha256: str = "", vocab_size: int | None = None, source: str = "the LM") -> None:
        """Raise LMError unless this LM was built for a tokenizer of that sha256 and vocabulary size
        (either left out: not checked; an LM that recorded no sha256: vocabulary only)."""
        if vocab_size is not None and self.vocab_size != vocab_size:
            raise LMError(f"{source}: built for {self.vocab_size} tokens, the model has {vocab_size}; build the LM "
                          "with this model's tokenizer (`dualasr lm EXPORT_DIR --out FILE`)")
        if tokenizer_sha256 and self.tokenizer_sha256 and self.tokenizer_sha256 != tokenizer_sha256:
            raise LMError(f"{source}: built with another tokenizer (sha256 {self.tokenizer_sha256[:12]}..., the model's "
                          f"is {tokenizer_sha256[:12]}...); build the LM with this model's tokenizer "
                          "(`dualasr lm EXPORT_DIR --out FILE`)")


class OovPenalty:
    """A score for each word the LM's text never had, charged in beam search when the word ends.

    A small acoustic model spells by ear ("fairist", "memry") and the token LM only makes such
    spellings less likely piece by piece; this counts a finished word against the LM text's
    vocabulary (`TokenNgramLM.words`), as a lexicon does in word-level decoders, without forbidding
    new words (names, rare forms): they pay `penalty` once each.

    A hypothesis carries its unfinished word (`Hyp.word`); a word ends when a piece that starts a
    new word is emitted (sentencepiece's leading "▁"), or with the utterance (`final`).
    """

    def __init__(self, words: frozenset[str], pieces: list[str], penalty: float):
        self.words, self.penalty = words, float(penalty)
        self.pieces = pieces
        self.starts_word = np.asarray([p.startswith("\u2581") for p in pieces])  # [V]

    def next_word(self, word: str, token: int) -> str:
        """The unfinished word after emitting `token`."""
        piece = self.pieces[token]
        return piece[1:] if self.starts_word[token] else word + piece

    def final(self, word: str) -> float:
        """The charge for `word` once it is finished: 0 for none or a known word."""
        return 0.0 if not word or word in self.words else self.penalty
