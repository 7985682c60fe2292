"""`dualasr lm`: build the token n-gram LM that beam search fuses (dualasr.runtime.lm).

The text is English prose found offline (`dualasr.corpus.sentences`: WordNet's usage examples and
the fortune cookies, their train split only) and any text files given, one sentence per line,
tokenized with the export's own tokenizer. Sentences that share a run of `OVERLAP_WORDS` words with
any text of a manifest passed as --exclude are dropped, so an LM never holds a sentence of a set it
is scored on.

    dualasr lm EXPORT_DIR --out lm.npz --exclude data/real/real_eval.jsonl
    dualasr transcribe EXPORT_DIR audio.wav --lm lm.npz
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Iterable

from .data import read_manifest
from .export.manifest import artifact_path
from .fileio import atomic_write
from .runtime.lm import TokenNgramLM
from .tokenizer import Tokenizer, normalize_text, spoken_text

__all__ = ["build_lm", "tokenizer_of", "add_arguments", "main", "OVERLAP_WORDS"]

OVERLAP_WORDS = 5  # a shared run this long counts as the same sentence (quotes, reworded glosses)
DEFAULT_SOURCES = ("fortunes", "wordnet")


def _word_runs(text: str, n: int = OVERLAP_WORDS) -> set[tuple[str, ...]]:
    words = text.split()
    if len(words) < n:  # a short text counts as a whole: only an identical sentence overlaps it
        return {tuple(words)} if words else set()
    return {tuple(words[i:i + n]) for i in range(len(words) - n + 1)}


def build_lm(
    tokenizer: Tokenizer,
    sources: Iterable[str] = DEFAULT_SOURCES,
    text_files: Iterable[str | os.PathLike] = (),
    exclude_texts: Iterable[str] = (),
    order: int = 5,
) -> tuple[TokenNgramLM, dict]:
    """The LM and what it was built from: {"sentences", "dropped_overlapping", "tokens"}."""
    from .corpus.sentences import natural_sentences

    sentences: list[str] = []
    for source in sources:
        sentences += natural_sentences(source)["train"]
    for path in text_files:
        try:
            with open(path, encoding="utf-8") as f:
                sentences += [spoken_text(line.strip()) for line in f if line.strip()]
        except UnicodeDecodeError as e:
            raise ValueError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start}); convert it to UTF-8") from None
    excluded: set[tuple[str, ...]] = set()
    for text in exclude_texts:
        excluded |= _word_runs(normalize_text(text))
    normalized = [normalize_text(s) for s in sentences]  # what the tokenizer reads, once
    kept = [s for s in normalized if not (excluded and _word_runs(s) & excluded)]
    ids = [tokenizer.encode(s) for s in kept]
    words = {w for s in kept for w in s.split()}
    lm = TokenNgramLM.train(ids, tokenizer.vocab_size, order, tokenizer_sha256=tokenizer.sha256, words=words)
    summary = {"sentences": len(kept), "dropped_overlapping": len(sentences) - len(kept),
               "tokens": sum(len(x) for x in ids), "words": len(words)}
    return lm, summary


def tokenizer_of(path: Path) -> Tokenizer:
    """The tokenizer of an export folder (its manifest's), or a tokenizer .model file itself."""
    if path.is_dir():
        manifest = path / "manifest.json"
        if not manifest.is_file():
            raise FileNotFoundError(f"{path} is not an export folder (no manifest.json); pass an export "
                                    "folder or a tokenizer .model file")
        m = json.loads(manifest.read_text())
        return Tokenizer(artifact_path(m, path, m["tokenizer"]["file"]))
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such export folder or tokenizer file")
    return Tokenizer(path)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("tokenizer", help="export folder (its tokenizer) or a tokenizer .model file")
    p.add_argument("--out", required=True, help="LM file to write (.npz); an existing file is not replaced")
    p.add_argument("--order", type=int, default=5, help="n-gram order in tokens (default 5)")
    p.add_argument("--sources", default=",".join(DEFAULT_SOURCES),
                   help="comma list of offline text sources (fortunes, wordnet; '' for none)")
    p.add_argument("--text", action="append", default=[], help="a text file, one sentence per line (repeatable)")
    p.add_argument("--exclude", action="append", default=[], metavar="MANIFEST",
                   help="drop sentences overlapping the texts of this manifest (repeatable): the sets you score on")


def main(args: argparse.Namespace) -> int:
    out = Path(args.out)
    if out.exists():
        raise FileExistsError(f"{out} exists; dualasr lm does not replace files: choose another --out or remove it")
    tokenizer = tokenizer_of(Path(args.tokenizer))
    TokenNgramLM.check_order(tokenizer.vocab_size, args.order)  # before any text is read
    sources = [s for s in args.sources.split(",") if s]
    if not sources and not args.text:
        raise ValueError("no text: give --sources or --text")
    exclude = [u.text for m in args.exclude for u in read_manifest(m)]
    t0 = time.perf_counter()
    lm, summary = build_lm(tokenizer, sources, args.text, exclude, args.order)
    atomic_write(out, lm.save_to)
    print(f"{out}: order {lm.order}, {summary['sentences']} sentences, {summary['tokens']} tokens, "
          f"{summary['words']} distinct words ({summary['dropped_overlapping']} dropped as overlapping --exclude), "
          f"{out.stat().st_size / 1e6:.1f} MB, {time.perf_counter() - t0:.0f} s")
    return 0
