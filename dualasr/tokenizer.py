"""Text normalization and a sentencepiece tokenizer with the RNN-T blank at id 0.

No torch here: the torch-free runtime (`dualasr.runtime`) decodes with this module.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import unicodedata
from collections.abc import Iterable
from pathlib import Path

import sentencepiece as spm

from dualasr.fileio import atomic_write

__all__ = ["BLANK_ID", "BLANK_PIECE", "UNK_ID", "Tokenizer", "normalize_text"]

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
            minloglevel=2,
        )
        atomic_write(model_path, buf.getvalue())
        return cls(model_path)

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
