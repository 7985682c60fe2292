"""Natural English sentences found offline in Debian packages, in spoken form.

Sources (all read from the installed package, nothing downloaded):

| name | package (Debian section) | licence | what |
|---|---|---|---|
| wordnet | wordnet-base (main) | WordNet 3.0 licence (use, copy, modify, distribute) | usage examples in the glosses |
| fortunes | fortunes (main) | BSD (fortune-mod); quotations of varied origin | the fortune cookies, split into sentences |

Each sentence is cleaned (`clean_sentence`: readable prose only, numbers and abbreviations read
out by `dualasr.tokenizer.spoken_text`, 3-25 words), deduplicated, and assigned to test, valid or
train by a hash of its text alone, so the three splits never share a sentence whatever the
counts, seed or package version of the other sentences.
"""

from __future__ import annotations

import functools
import hashlib
import re
from pathlib import Path

from dualasr.tokenizer import spoken_text

__all__ = ["TEXT_SOURCES", "clean_sentence", "natural_sentences", "sentence_split"]

WORDNET_DIR = Path("/usr/share/wordnet")
FORTUNES_DIR = Path("/usr/share/games/fortunes")
# Fraction of each source's sentences held out for test and for valid (by hash, see sentence_split).
HELD_OUT_FRACTION = {"test": 0.03, "valid": 0.03}
MIN_WORDS, MAX_WORDS = 3, 25

_NOT_PROSE = re.compile(r"[<>{}\[\]|\\_^~*/]|https?:|www\.|\.com\b|::|\t")
_SHOUTED = re.compile(r"\b[A-Z]{2,}\b")  # acronyms and shouting: no reading we could transcribe
_SENTENCE_END = re.compile(r"(?<=[.!?])[\"')]*\s+(?=[\"'(]?[A-Z])")
_ATTRIBUTION = re.compile(r"^\s*(--|~~|—)")
_SPEAKER_LABEL = re.compile(r"^\s*[A-Z][\w.' ]{0,20}:\s")  # "Q:", "A:", "Bob:" in dialogues and riddles
_ALNUM = re.compile(r"[A-Za-z0-9]")
_SINGLE_ALNUM_KEPT = {"a", "i", "o"}


def clean_sentence(raw: str) -> str | None:
    """A written sentence -> its spoken, normalized form, or None when it is not readable prose.

    Rejected: markup, code, URLs, all-caps words (acronyms are read letter by letter or as a
    word, we cannot know which), text that is mostly not letters, spelled-out initials, and
    anything outside MIN_WORDS..MAX_WORDS words once numbers and abbreviations are read out.
    """
    raw = " ".join(raw.split())
    if not raw or _NOT_PROSE.search(raw) or _SHOUTED.search(raw):
        return None
    visible = raw.replace(" ", "")
    if len(_ALNUM.findall(visible)) < 0.8 * len(visible):
        return None
    spoken = spoken_text(raw)
    words = spoken.split()
    if not MIN_WORDS <= len(words) <= MAX_WORDS:
        return None
    if any(len(w) == 1 and w not in _SINGLE_ALNUM_KEPT for w in words) or max(map(len, words)) > 20:
        return None
    return spoken


def _wordnet_examples(root: Path = WORDNET_DIR) -> list[str]:
    """The quoted usage examples in WordNet's glosses ("he was elected to a seat in the Senate")."""
    out: list[str] = []
    for pos in ("noun", "verb", "adj", "adv"):
        with open(root / f"data.{pos}", encoding="latin-1") as f:
            for line in f:
                if line.startswith("  "):  # the licence header
                    continue
                _, bar, gloss = line.partition(" | ")
                if bar:
                    out += re.findall(r'"([^"]+)"', gloss)
    return out


def _fortune_sentences(root: Path = FORTUNES_DIR) -> list[str]:
    """Every sentence of every English fortune cookie, attributions and speaker labels dropped."""
    out: list[str] = []
    for path in sorted(root.iterdir()):
        if path.suffix or path.is_symlink() or not path.is_file():  # .dat indexes, .u8 links
            continue
        for cookie in path.read_text(encoding="utf-8", errors="replace").split("\n%\n"):
            lines = [_SPEAKER_LABEL.sub("", ln) for ln in cookie.splitlines() if not _ATTRIBUTION.match(ln)]
            out += _SENTENCE_END.split(" ".join(ln.strip() for ln in lines))
    return out


# name -> (reader, Debian package that provides it)
TEXT_SOURCES = {
    "wordnet": (_wordnet_examples, "wordnet-base"),
    "fortunes": (_fortune_sentences, "fortunes"),
}


def sentence_split(text: str) -> str:
    """"test", "valid" or "train": a function of the text alone (sha1), never of any count."""
    h = int.from_bytes(hashlib.sha1(text.encode("utf-8")).digest()[:8], "big") / 2**64
    if h < HELD_OUT_FRACTION["test"]:
        return "test"
    if h < HELD_OUT_FRACTION["test"] + HELD_OUT_FRACTION["valid"]:
        return "valid"
    return "train"


@functools.lru_cache(maxsize=None)
def natural_sentences(source: str) -> dict[str, tuple[str, ...]]:
    """{"train": ..., "valid": ..., "test": ...}: the source's clean, unique sentences, sorted.

    Raises FileNotFoundError naming the Debian package when the source is not installed.
    """
    if source not in TEXT_SOURCES:
        raise ValueError(f"unknown text source {source!r}; choose from templates, {', '.join(TEXT_SOURCES)}")
    reader, package = TEXT_SOURCES[source]
    try:
        raw = reader()
    except FileNotFoundError as e:
        raise FileNotFoundError(f"text source {source!r} needs the Debian package {package} "
                                f"(apt-get install {package}): {e.filename} is missing") from None
    splits: dict[str, set[str]] = {"train": set(), "valid": set(), "test": set()}
    for sentence in raw:
        spoken = clean_sentence(sentence)
        if spoken:
            splits[sentence_split(spoken)].add(spoken)
    if not splits["train"]:
        raise FileNotFoundError(f"text source {source!r} gave no usable sentence; reinstall {package}")
    return {k: tuple(sorted(v)) for k, v in splits.items()}
