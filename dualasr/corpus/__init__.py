"""Offline English speech corpus: template and natural sentences spoken by many offline TTS
voices, plus the real Asterisk telephone prompts (one female speaker, G.722) as a fixed
real-speech test set.

No torch here. Everything is deterministic per seed: the text, voice, rate, pitch, padding
and augmentation of utterance i in split s depend only on (seed, s, i), so growing
`num_train` never changes the valid/test sets, and a rerun skips finished files.

    python -m dualasr.corpus OUT --num-train 3000 --num-valid 200 --num-test 200 --asterisk
    python -m dualasr.corpus OUT --recipe multivoice --num-train 30000 --jobs 2

Modules: text (templates, text mixing), sentences (natural sentences from Debian packages),
tts (engines and voices), augment, build (plans, parallel resumable rendering, summary.json),
asterisk (the real prompts).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from dualasr.corpus.asterisk import (
    ASTERISK_SOUNDS,
    ASTERISK_TRANSCRIPTS,
    build_asterisk_set,
    read_asterisk_prompts,
    split_asterisk,
)
from dualasr.corpus.augment import Augmentation, speech_bounds
from dualasr.corpus.build import AUGMENT_LEVELS, RECIPES, build_corpus, parse_weights
from dualasr.corpus.text import SentenceGenerator, generate_sentences, hash_seed, number_words
from dualasr.corpus.tts import ENGINES, SynthesisError, SynthResult, synthesize

__all__ = [
    "ENGINES",
    "SynthesisError",
    "Augmentation",
    "SynthResult",
    "SentenceGenerator",
    "generate_sentences",
    "number_words",
    "synthesize",
    "speech_bounds",
    "build_corpus",
    "read_asterisk_prompts",
    "split_asterisk",
    "build_asterisk_set",
    "main",
]


def build_parser(parser: argparse.ArgumentParser | None = None,
                 prog: str = "python -m dualasr.corpus") -> argparse.ArgumentParser:
    p = parser or argparse.ArgumentParser(prog=prog, description=__doc__.split("\n\n")[0])
    p.add_argument("out_dir", help="output folder (reruns resume)")
    p.add_argument("--num-train", type=int, default=2000)
    p.add_argument("--num-valid", type=int, default=100)
    p.add_argument("--num-test", type=int, default=200)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--recipe", choices=sorted(RECIPES), default="legacy",
                   help="engine mix, text mix and augmentation to start from (default legacy: templates "
                        "spoken by espeak-ng and flite; multivoice: every engine and natural text)")
    p.add_argument("--engines", "--mix", dest="engines",
                   help=f"engines and weights, e.g. espeak-ng,flite or pico=2,rhvoice=3 (from {', '.join(ENGINES)})")
    p.add_argument("--texts", help="text sources and weights, e.g. templates=0.1,wordnet=0.5,fortunes=0.4")
    p.add_argument("--augment", choices=AUGMENT_LEVELS,
                   help="none; basic: speed/noise/reverb/telephone; full: also tempo/formants/rooms/codecs")
    p.add_argument("--no-augment", action="store_true", help="same as --augment none")
    p.add_argument("--extra-texts", help="text file, one sentence per line, added to train")
    p.add_argument("--asterisk", action="store_true",
                   help="also convert the Asterisk prompts to real_train.jsonl / real_test.jsonl")
    p.add_argument("--asterisk-texts", action="store_true",
                   help="also synthesize the real_train prompt texts (never real_test's)")
    p.add_argument("--jobs", type=int, default=2)
    return p


def run(args: argparse.Namespace) -> dict[str, Path]:
    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    extra: list[str] = []
    if args.extra_texts:
        extra += Path(args.extra_texts).read_text(encoding="utf-8").splitlines()
    if args.asterisk_texts:
        train, test = split_asterisk(read_asterisk_prompts())
        test_texts = {u.text for u in test}
        # Real test transcripts must stay unseen, even when a train prompt says the same words.
        extra += [u.text for u in train if u.text not in test_texts]
    engines, texts, augment = RECIPES[args.recipe]
    paths = build_corpus(
        args.out_dir, args.num_train, args.num_valid, args.num_test, args.seed,
        engines=parse_weights(args.engines, "engine") if args.engines else engines,
        texts=parse_weights(args.texts, "text source") if args.texts else texts,
        augment="none" if args.no_augment else (args.augment or augment),
        extra_texts=extra, jobs=args.jobs, log=log,
    )
    if args.asterisk:
        paths.update(build_asterisk_set(args.out_dir, jobs=args.jobs, log=log))
    for name, path in paths.items():
        log(f"{name}: {path}")
    return paths


def main(argv: Sequence[str] | None = None, prog: str = "python -m dualasr.corpus") -> int:
    args = build_parser(prog=prog).parse_args(argv)
    try:
        run(args)
    except (SynthesisError, FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
