"""Text normalization and a sentencepiece tokenizer with the RNN-T blank at id 0.

No torch here: the torch-free runtime (`dualasr.runtime`) decodes with this module.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import unicodedata
from collections.abc import Iterable, Sequence
from pathlib import Path

import sentencepiece as spm

from dualasr.fileio import atomic_write

__all__ = ["BLANK_ID", "BLANK_PIECE", "UNK_ID", "Tokenizer", "normalize_text", "number_words", "ordinal_words", "spoken_text"]

BLANK_ID = 0
BLANK_PIECE = "<blk>"
UNK_ID = 1

_DIGITS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
_BRACKETED = re.compile(r"\[[^\]]*\]")
_DIGIT_RUN = re.compile(r"[0-9]+")
_NOT_KEPT = re.compile(r"[^a-z' ]+")
# An apostrophe survives only inside a word ("don't", "party's"): quotes like 'this' go.
_LOOSE_APOSTROPHE = re.compile(r"(?<![a-z])'|'(?![a-z])")
_SPACES = re.compile(r"\s+")


def _spell_digits(match: re.Match[str]) -> str:
    return " " + " ".join(_DIGITS[int(d)] for d in match.group(0)) + " "


def normalize_text(text: str) -> str:
    """Lowercase words over a-z and apostrophe, separated by single spaces.

    Digits are read one by one ("42" -> "four two"), "&" becomes "and", bracketed
    descriptions such as "[beep]" are dropped and any other punctuation becomes a
    word break (so "call-forward" -> "call forward").
    """
    text = _BRACKETED.sub(" ", text)
    # Fold accents and typographic apostrophes so "café" and "don’t" keep their letters.
    text = unicodedata.normalize("NFKD", text.replace("\u2019", "'").replace("\u2018", "'"))
    text = "".join(c for c in text if not unicodedata.combining(c)).lower()
    text = text.replace("&", " and ")
    text = _DIGIT_RUN.sub(_spell_digits, text)
    text = _NOT_KEPT.sub(" ", text)
    text = _LOOSE_APOSTROPHE.sub(" ", text)
    return _SPACES.sub(" ", text).strip()


# ---------------------------------------------------------------------------------------
# Written text -> spoken words, for TTS prompts: a TTS engine reads "1984" as "nineteen eighty
# four", so the transcript must say that, not normalize_text's digit-by-digit "one nine eight four".

_ONES = (
    "zero one two three four five six seven eight nine ten eleven twelve thirteen "
    "fourteen fifteen sixteen seventeen eighteen nineteen"
).split()
_TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()
_ORDINAL_WORDS = {"one": "first", "two": "second", "three": "third", "five": "fifth", "eight": "eighth",
                  "nine": "ninth", "twelve": "twelfth"}


def number_words(n: int) -> str:
    """0..999,999,999 as English words ("one hundred and five", "two thousand", "three million")."""
    if not 0 <= n <= 999_999_999:
        raise ValueError(f"number_words supports 0..999999999, got {n}")
    if n < 20:
        return _ONES[n]
    if n < 100:
        return _TENS[n // 10] + ("" if n % 10 == 0 else " " + _ONES[n % 10])
    if n < 1000:
        rest = n % 100
        return _ONES[n // 100] + " hundred" + ("" if rest == 0 else " and " + number_words(rest))
    for size, name in ((1_000_000, "million"), (1000, "thousand")):
        if n >= size:
            rest = n % size
            tail = "" if rest == 0 else (" and " if rest < 100 else " ") + number_words(rest)
            return number_words(n // size) + " " + name + tail
    raise AssertionError(n)  # unreachable


def ordinal_words(n: int) -> str:
    """1 -> "first", 21 -> "twenty first", 30 -> "thirtieth"."""
    words = number_words(n).split()
    last = words[-1]
    if last in _ORDINAL_WORDS:
        words[-1] = _ORDINAL_WORDS[last]
    elif last.endswith("y"):
        words[-1] = last[:-1] + "ieth"
    else:
        words[-1] = last + "th"
    return " ".join(words)


def _year_words(n: int) -> str:
    """1000..2099 read as pairs ("ten sixty six", "nineteen oh five"); 2000..2009 and round
    thousands as a number ("two thousand and five")."""
    hi, lo = divmod(n, 100)
    if 2000 <= n < 2010 or n % 1000 == 0:
        return number_words(n)
    if lo == 0:
        return number_words(hi) + " hundred"
    return number_words(hi) + " " + ("oh " + _ONES[lo] if lo < 10 else number_words(lo))


_ABBREVIATIONS = {
    "mr.": "mister", "mrs.": "missus", "ms.": "miz", "dr.": "doctor", "prof.": "professor",
    "jr.": "junior", "sr.": "senior", "vs.": "versus", "etc.": "et cetera", "e.g.": "for example",
    "i.e.": "that is", "a.m.": "a m", "p.m.": "p m", "mt.": "mount", "u.s.": "u s", "u.s.a.": "u s a",
    "u.k.": "u k", "ok": "okay",
}  # not "St." (saint or street?) nor "no." (a sentence may end in "no.")
_ABBREVIATION_RE = re.compile(
    r"(?<![\w.])(" + "|".join(re.escape(a) for a in sorted(_ABBREVIATIONS, key=len, reverse=True)) + r")(?!\w)",
    re.IGNORECASE,
)
_NUMBER_SIGN = re.compile(r"\bno\.\s?(?=\d)", re.IGNORECASE)  # "No. 5": "number five"
_MONEY = re.compile(r"([$£])(\d[\d,]*)(?:\.(\d\d))?\b")
_PERCENT = re.compile(r"(\d[\d,]*(?:\.\d+)?)\s?%")
_ORDINAL_NUM = re.compile(r"\b(\d+)(st|nd|rd|th)\b", re.IGNORECASE)
_CLOCK = re.compile(r"\b(\d{1,2}):(\d\d)\b")
_DECIMAL = re.compile(r"\b(\d+)\.(\d+)\b")
_NUMBER = re.compile(r"\b\d{1,3}(?:,\d{3})+\b|\b\d+\b")
_SYMBOLS = {"+": " plus ", "=": " equals ", "@": " at ", "%": " percent ", "#": " number "}


def _cardinal(digits: str) -> str:
    n = int(digits.replace(",", ""))
    if n > 999_999_999 or (len(digits) > 1 and digits.startswith("0")):
        return " ".join(_ONES[int(d)] for d in digits if d.isdigit())  # ids, zip codes: digit by digit
    return number_words(n)


def _number(match: re.Match[str]) -> str:
    digits = match.group(0)
    n = int(digits.replace(",", ""))
    if "," not in digits and len(digits) == 4 and 1000 <= n <= 2099:
        return _year_words(n)
    return _cardinal(digits)


def _money(match: re.Match[str]) -> str:
    unit, sub = ("dollar", "cent") if match.group(1) == "$" else ("pound", "penny")
    whole = int(match.group(2).replace(",", ""))
    words = f"{_cardinal(match.group(2))} {unit}{'' if whole == 1 else 's'}"
    if match.group(3) and int(match.group(3)):
        cents = int(match.group(3))
        words += f" and {number_words(cents)} {sub if cents == 1 else ('pence' if sub == 'penny' else 'cents')}"
    return f" {words} "


def _clock(match: re.Match[str]) -> str:
    h, m = int(match.group(1)), int(match.group(2))
    if h > 24 or m > 59:
        return match.group(0)
    if m == 0:
        return f" {number_words(h)} o'clock "
    return f" {number_words(h)} {'oh ' + _ONES[m] if m < 10 else number_words(m)} "


def spoken_text(text: str) -> str:
    """Written English -> the words a reader would say, normalized like `normalize_text`.

    Numbers become words ("42" -> "forty two", "1,500" -> "one thousand five hundred",
    "1984" -> "nineteen eighty four", "3.5" -> "three point five", "21st" -> "twenty first",
    "3:45" -> "three forty five"), "$5.50" -> "five dollars and fifty cents", "10%" -> "ten
    percent", common abbreviations are expanded ("Dr." -> "doctor", "e.g." -> "for example") and
    "+ = @ # &" are read out. Anything left is handled by `normalize_text`.
    """
    text = _ABBREVIATION_RE.sub(lambda m: " " + _ABBREVIATIONS[m.group(1).lower()] + " ", text)
    text = _NUMBER_SIGN.sub(" number ", text)
    text = _MONEY.sub(_money, text)
    text = _PERCENT.sub(lambda m: f" {m.group(1)} percent ", text)
    text = _ORDINAL_NUM.sub(lambda m: f" {ordinal_words(int(m.group(1)))} "
                            if int(m.group(1)) <= 999_999_999 else m.group(0), text)
    text = _CLOCK.sub(_clock, text)
    text = _DECIMAL.sub(lambda m: f" {_cardinal(m.group(1))} point "
                        + " ".join(_ONES[int(d)] for d in m.group(2)) + " ", text)
    text = _NUMBER.sub(lambda m: f" {_number(m)} ", text)
    for symbol, words in _SYMBOLS.items():
        text = text.replace(symbol, words)
    return normalize_text(text)


class Tokenizer:
    """A sentencepiece model whose id 0 is the RNN-T blank ("<blk>").

    Text is normalized with `normalize_text` before encoding, so the same
    function must be applied to references when scoring.
    """

    def __init__(self, model_path: str | os.PathLike[str]) -> None:
        self.model_path = Path(model_path)
        if not self.model_path.is_file():
            raise FileNotFoundError(f"tokenizer model not found: {self.model_path}")
        self._load(self.model_path.read_bytes())

    def _load(self, data: bytes) -> None:
        sp = spm.SentencePieceProcessor()
        try:
            sp.LoadFromSerializedProto(data)
        except Exception as e:  # sentencepiece raises RuntimeError/OSError depending on version
            raise ValueError(f"corrupt sentencepiece model {self.model_path}: {e}") from e
        if sp.get_piece_size() <= UNK_ID or sp.id_to_piece(BLANK_ID) != BLANK_PIECE:
            raise ValueError(
                f"{self.model_path} was not trained by Tokenizer.train: id {BLANK_ID} must be "
                f"{BLANK_PIECE!r}, got {sp.id_to_piece(BLANK_ID) if sp.get_piece_size() else None!r}"
            )
        self._sp = sp
        self._data = data
        self.sha256 = hashlib.sha256(data).hexdigest()

    # The processor itself is not picklable; DataLoader workers need copies of us.
    def __getstate__(self) -> dict:
        return {"model_path": str(self.model_path), "data": self._data}

    def __setstate__(self, state: dict) -> None:
        self.model_path = Path(state["model_path"])
        self._load(state["data"])

    @classmethod
    def train(
        cls,
        texts: Iterable[str],
        model_path: str | os.PathLike[str],
        vocab_size: int = 128,
        model_type: str = "unigram",
        user_defined_symbols: Sequence[str] = (),
    ) -> Tokenizer:
        """Train on normalized `texts`, write the model atomically to `model_path`, load it."""
        model_path = Path(model_path)
        lines = [t for t in (normalize_text(x) for x in texts) if t]
        if not lines:
            raise ValueError("cannot train a tokenizer: no non-empty text after normalization")
        buf = io.BytesIO()
        spm.SentencePieceTrainer.train(
            sentence_iterator=iter(lines),
            model_writer=buf,
            vocab_size=vocab_size,
            model_type=model_type,
            character_coverage=1.0,
            # Blank shares the pad slot so it is id 0 and never produced by encode().
            pad_id=BLANK_ID,
            pad_piece=BLANK_PIECE,
            unk_id=UNK_ID,
            bos_id=-1,
            eos_id=-1,
            # Tiny corpora cannot fill a 128-piece vocabulary; let sentencepiece shrink it.
            hard_vocab_limit=False,
            # We already normalized; identity keeps encode/decode an exact round trip.
            normalization_rule_name="identity",
            user_defined_symbols=list(user_defined_symbols),
            minloglevel=2,
        )
        atomic_write(model_path, buf.getvalue())
        return cls(model_path)

    @classmethod
    def placeholder(cls, vocab_size: int, model_path: str | os.PathLike[str]) -> Tokenizer:
        """A tokenizer of exactly `vocab_size` pieces for a model that was never trained (random-weight
        exports, to size a model before training it): one piece per letter, then filler pieces
        `<unusedN>` that no text encodes to."""
        letters = "abcdefghijklmnopqrstuvwxyz'"
        texts = [" ".join(letters[i:] + letters[:i]) for i in range(len(letters))]
        base = cls.train(texts, model_path, vocab_size=len(letters) + 3, model_type="char").vocab_size
        if vocab_size < base:
            raise ValueError(f"a placeholder tokenizer needs at least {base} pieces (blank, unk, letters); got {vocab_size}")
        fillers = [f"<unused{i}>" for i in range(vocab_size - base)]
        tok = cls.train(texts, model_path, vocab_size=vocab_size, model_type="char", user_defined_symbols=fillers)
        assert tok.vocab_size == vocab_size, (tok.vocab_size, vocab_size)
        return tok

    @property
    def vocab_size(self) -> int:
        return self._sp.get_piece_size()

    @property
    def blank_id(self) -> int:
        return BLANK_ID

    def encode(self, text: str) -> list[int]:
        return list(self._sp.encode(normalize_text(text), out_type=int))

    def decode(self, ids: Iterable[int]) -> str:
        """Ids -> text; blanks (0) and out-of-range ids are ignored."""
        n = self.vocab_size
        kept = [int(i) for i in ids if 0 < int(i) < n]
        return self._sp.decode(kept)

    def id_to_piece(self, i: int) -> str:
        return self._sp.id_to_piece(int(i))

    def piece_to_id(self, piece: str) -> int:
        return self._sp.piece_to_id(piece)

    def write_tokens_txt(self, path: str | os.PathLike[str]) -> None:
        """sherpa-onnx tokens.txt: "piece id" per line, "<blk> 0" first."""
        lines = [f"{self.id_to_piece(i)} {i}\n" for i in range(self.vocab_size)]
        atomic_write(Path(path), "".join(lines).encode("utf-8"))

    def __repr__(self) -> str:
        return f"Tokenizer({str(self.model_path)!r}, vocab_size={self.vocab_size})"
