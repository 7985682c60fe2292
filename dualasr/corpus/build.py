"""Building the synthetic corpus: one plan per utterance, rendered in parallel, resumable."""

from __future__ import annotations

import json
import os
import random
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

from dualasr.corpus.augment import Augmentation
from dualasr.corpus.text import _draw_texts
from dualasr.corpus.tts import _ESPEAK_VARIANTS, ENGINES, _require, synthesize
from dualasr.data import Utterance, write_manifest
from dualasr.fileio import atomic_write
from dualasr.tokenizer import normalize_text


@dataclass
class _Plan:
    id: str
    split: str
    text: str
    engine: str
    voice: str
    speed: float
    pitch: float
    lead_silence: float
    trail_silence: float
    augment: Augmentation | None

    def key(self) -> dict:
        return asdict(self)


def _plan(uid: str, split: str, text: str, seed: int, engines: Sequence[str], augment: bool) -> _Plan:
    # One RNG per utterance: its rendering is independent of how many others there are.
    r = random.Random(f"{seed}-{uid}")
    engine = r.choice(list(engines))
    voice = r.choice(ENGINES[engine])
    if engine == "espeak-ng":
        voice += r.choice(_ESPEAK_VARIANTS)
    aug = None
    if augment:
        aug = Augmentation(
            speed=r.choice([0.9, 1.0, 1.0, 1.1]),
            noise=r.choice([None, None, "white", "pink"]),
            snr_db=round(r.uniform(10, 30), 1),
            reverb=r.choice([0, 0, 0, round(r.uniform(20, 60))]),
            telephone=r.random() < 0.2,
            gain_db=round(r.uniform(-12, -1), 1),
            seed=r.getrandbits(32),
        )
    return _Plan(
        id=uid, split=split, text=text, engine=engine, voice=voice,
        speed=round(r.uniform(0.8, 1.2), 3), pitch=round(r.uniform(0.8, 1.25), 3),
        lead_silence=round(r.uniform(0.05, 0.4), 3), trail_silence=round(r.uniform(0.2, 0.6), 3),
        augment=aug,
    )


def _render(plan: _Plan, wav: Path, sample_rate: int) -> Utterance:
    meta_path = wav.with_suffix(".json")
    if wav.is_file() and meta_path.is_file():
        try:
            meta = json.loads(meta_path.read_text())
            if meta.get("plan") == plan.key():  # same rendering requested: reuse (resume)
                return Utterance(plan.id, str(wav), plan.text, meta["duration"], meta["speech_end"])
        except (ValueError, KeyError):
            pass  # unreadable sidecar: render again
    res = synthesize(
        plan.text, wav, plan.engine, plan.voice, plan.speed, plan.pitch, sample_rate,
        augment=plan.augment, lead_silence=plan.lead_silence, trail_silence=plan.trail_silence,
    )
    meta = {"plan": plan.key(), "duration": res.duration, "speech_end": res.speech_end,
            "speech_start": res.speech_start}
    atomic_write(meta_path, json.dumps(meta) + "\n")  # written last: marks the wav complete
    return Utterance(plan.id, str(wav), plan.text, round(res.duration, 4), round(res.speech_end, 4))


def _map_parallel(fn: Callable, items: Sequence, jobs: int, log: Callable[[str], None] | None, what: str) -> list:
    """Order-preserving parallel map. Threads suffice: the work is in TTS/sox/ffmpeg subprocesses."""
    results = []
    t0 = time.monotonic()
    step = max(1, len(items) // 20)
    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        for i, res in enumerate(pool.map(fn, items), 1):
            results.append(res)
            if log and (i % step == 0 or i == len(items)):
                log(f"{what}: {i}/{len(items)} ({time.monotonic() - t0:.0f} s)")
    return results


def build_corpus(
    out_dir: str | os.PathLike[str],
    num_train: int = 2000,
    num_valid: int = 100,
    num_test: int = 200,
    seed: int = 0,
    engines: Sequence[str] = ("espeak-ng", "flite"),
    augment: bool = True,
    extra_texts: Iterable[str] | None = None,
    jobs: int = 2,
    sample_rate: int = 16000,
    log: Callable[[str], None] | None = None,
) -> dict[str, Path]:
    """Synthesize train/valid/test sets into `out_dir`; returns {"train": train.jsonl, ...}.

    Texts of the three splits are disjoint (test first, then valid, then train), and
    `extra_texts` (e.g. real-prompt training transcripts) are added to train as
    ``extra-NNNNNN`` utterances unless they equal a valid/test text. All splits are
    rendered with the same voice/augmentation distribution. Files already rendered with
    the same settings are reused, so an interrupted build resumes.
    """
    out = Path(out_dir)
    unknown = [e for e in engines if e not in ENGINES]
    if unknown or not engines:
        raise ValueError(f"unknown engines {unknown}; choose from {sorted(ENGINES)}")
    for e in engines:
        _require(e)
    if augment:
        _require("sox")

    test_texts = _draw_texts(num_test, "test", seed, set())
    valid_texts = _draw_texts(num_valid, "valid", seed, set(test_texts))
    held_out = set(test_texts) | set(valid_texts)
    train_texts = _draw_texts(num_train, "train", seed, held_out)
    extras = [t for t in (normalize_text(x) for x in (extra_texts or ())) if t and t not in held_out]

    plans: list[_Plan] = []
    for split, texts, prefix in (("train", train_texts, "train"), ("train", extras, "extra"),
                                 ("valid", valid_texts, "valid"), ("test", test_texts, "test")):
        plans += [_plan(f"{prefix}-{i:06d}", split, t, seed, engines, augment) for i, t in enumerate(texts)]

    wav_dir = out / "wav"
    for split in ("train", "valid", "test"):
        (wav_dir / split).mkdir(parents=True, exist_ok=True)
    utts = _map_parallel(
        lambda p: _render(p, wav_dir / p.split / f"{p.id}.wav", sample_rate), plans, jobs, log, "synthesize"
    )
    manifests: dict[str, Path] = {}
    for split in ("train", "valid", "test"):
        path = out / f"{split}.jsonl"
        write_manifest(path, [u for p, u in zip(plans, utts) if p.split == split])
        manifests[split] = path
    return manifests

