"""Building the synthetic corpus: one plan per utterance, rendered in parallel, resumable.

Recipes (`RECIPES`): "legacy" is what the built-in model was trained on (template sentences,
espeak-ng and flite, basic augmentation); "multivoice" mixes every engine of `dualasr.corpus.tts`
(all licence-compatible) with natural sentences, keeping the templates as a minor share, and adds
tempo, formant, synthetic-room and codec augmentation.
"""

from __future__ import annotations

import json
import os
import random
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

from dualasr.corpus.augment import CODECS, Augmentation
from dualasr.corpus.sentences import natural_sentences
from dualasr.corpus.text import draw_mixed_texts
from dualasr.corpus.tts import _ESPEAK_VARIANTS, ENGINES, SynthesisError, _require, check_engine, synthesize
from dualasr.data import Utterance, write_manifest
from dualasr.fileio import atomic_write
from dualasr.tokenizer import normalize_text

AUGMENT_LEVELS = ("none", "basic", "full")
# name -> (engine weights, text source weights, augmentation level)
RECIPES: dict[str, tuple[dict[str, float], dict[str, float], str]] = {
    "legacy": ({"espeak-ng": 1, "flite": 1}, {"templates": 1}, "basic"),
    "multivoice": (
        # Shares favour the clearest voices and keep every engine; each voice's speed and Whisper
        # WER: benchmarks/results/tts_voices.md, this mix's speed: corpus_multivoice_200.json there.
        {"espeak-ng": 3, "flite": 2, "pico": 3, "rhvoice": 4, "festival": 2, "piper": 2, "hibari": 3},
        {"templates": 0.1, "wordnet": 0.5, "fortunes": 0.4},
        "full",
    ),
}
# Past this share of failed utterances a build is an error, not bad luck with a few texts.
MAX_FAILED_FRACTION = 0.01


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
        d = asdict(self)
        d["augment"] = self.augment.key() if self.augment else None
        return d


def _plan(uid: str, split: str, text: str, seed: int, mix: Mapping[str, float], augment: str) -> _Plan:
    # One RNG per utterance: its rendering is independent of how many others there are.
    r = random.Random(f"{seed}-{uid}")
    names = list(mix)
    if len(set(mix.values())) == 1:
        engine = r.choice(names)  # an even mix draws as the first recipe did: same corpus
    else:
        engine = r.choices(names, weights=[mix[k] for k in names])[0]
    voice = r.choice(ENGINES[engine])
    if engine == "espeak-ng":
        voice += r.choice(_ESPEAK_VARIANTS)
    aug = None
    if augment != "none":
        aug = Augmentation(
            speed=r.choice([0.9, 1.0, 1.0, 1.1]),
            noise=r.choice([None, None, "white", "pink"]),
            snr_db=round(r.uniform(10, 30), 1),
            reverb=r.choice([0, 0, 0, round(r.uniform(20, 60))]),
            telephone=r.random() < 0.2,
            gain_db=round(r.uniform(-12, -1), 1),
            seed=r.getrandbits(32),
        )
    plan = _Plan(
        id=uid, split=split, text=text, engine=engine, voice=voice,
        speed=round(r.uniform(0.8, 1.2), 3), pitch=round(r.uniform(0.8, 1.25), 3),
        lead_silence=round(r.uniform(0.05, 0.4), 3), trail_silence=round(r.uniform(0.2, 0.6), 3),
        augment=aug,
    )
    if augment == "full":  # drawn last, so everything above is as in a "basic" plan
        aug.tempo = round(r.uniform(0.85, 1.15), 3) if r.random() < 0.3 else 1.0
        aug.formant = round(r.uniform(0.88, 1.12), 3) if r.random() < 0.4 else 1.0
        if r.random() < 0.35:  # a synthetic room instead of sox's reverberator
            aug.reverb, aug.rir_rt60, aug.rir_drr_db = 0, round(r.uniform(0.2, 0.8), 2), round(r.uniform(-2, 12), 1)
        if aug.noise and r.random() < 0.3:
            aug.noise = "brown"
        aug.codec = r.choice(sorted(CODECS)) if r.random() < 0.15 else None
    return plan


def _render(plan: _Plan, wav: Path, sample_rate: int) -> tuple[Utterance, bool]:
    """-> (the utterance, whether a finished file with the same plan was reused)."""
    meta_path = wav.with_suffix(".json")
    if wav.is_file() and meta_path.is_file():
        try:
            meta = json.loads(meta_path.read_text())
            if meta.get("plan") == plan.key():  # same rendering requested: reuse (resume)
                return Utterance(plan.id, str(wav), plan.text, meta["duration"], meta["speech_end"]), True
        except (ValueError, KeyError):
            pass  # unreadable sidecar: render again
    res = synthesize(
        plan.text, wav, plan.engine, plan.voice, plan.speed, plan.pitch, sample_rate,
        augment=plan.augment, lead_silence=plan.lead_silence, trail_silence=plan.trail_silence,
    )
    meta = {"plan": plan.key(), "duration": res.duration, "speech_end": res.speech_end,
            "speech_start": res.speech_start}
    atomic_write(meta_path, json.dumps(meta) + "\n")  # written last: marks the wav complete
    return Utterance(plan.id, str(wav), plan.text, round(res.duration, 4), round(res.speech_end, 4)), False


def _map_parallel(fn: Callable, items: Sequence, jobs: int, log: Callable[[str], None] | None, what: str) -> list:
    """Order-preserving parallel map. Threads suffice: the work is in TTS and sox subprocesses
    and in onnxruntime (piper, hibari), which releases the GIL."""
    results = []
    t0 = time.monotonic()
    step = max(1, len(items) // 20)
    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        for i, res in enumerate(pool.map(fn, items), 1):
            results.append(res)
            if log and (i % step == 0 or i == len(items)):
                log(f"{what}: {i}/{len(items)} ({time.monotonic() - t0:.0f} s)")
    return results


def _render_or_error(plan: _Plan, wav: Path, sample_rate: int) -> tuple[Utterance | SynthesisError, float | None]:
    """-> (utterance or the error, seconds spent rendering or None when a finished file was reused)."""
    t0 = time.perf_counter()
    try:
        utt, reused = _render(plan, wav, sample_rate)
    except SynthesisError as e:  # one odd text must not end a 30k-utterance build
        return e, None
    return utt, None if reused else time.perf_counter() - t0


def parse_weights(spec: str, what: str) -> dict[str, float]:
    """"a=2,b,c=0.5" -> {"a": 2.0, "b": 1.0, "c": 0.5} (a name alone weighs 1)."""
    weights: dict[str, float] = {}
    for item in (x.strip() for x in spec.split(",")):
        if not item:
            continue
        name, _, w = item.partition("=")
        try:
            weights[name.strip()] = float(w) if w else 1.0
        except ValueError:
            raise ValueError(f"bad {what} weight {item!r}: write name=number, e.g. {name.strip()}=2") from None
        if weights[name.strip()] < 0:
            raise ValueError(f"bad {what} weight {item!r}: weights must be >= 0")
    return weights


def _summary(plans: Sequence[_Plan], sources: Sequence[str], results: Sequence, render_seconds: Sequence,
             seconds: float, settings: dict) -> dict:
    done = [(p, s, u) for p, s, u in zip(plans, sources, results) if isinstance(u, Utterance)]
    hours = Counter()
    for p, _, u in done:
        hours[p.split] += u.duration / 3600
    # Per engine: utterances rendered in this run (not reused) and their wall time per worker.
    rendered, busy = Counter(), Counter()
    for p, sec in zip(plans, render_seconds):
        if sec is not None:
            rendered[p.engine] += 1
            busy[p.engine] += sec
    return {
        "utterances": dict(Counter(p.split for p, _, _ in done)),
        "hours": {k: round(v, 3) for k, v in hours.items()},
        "engines": dict(Counter(p.engine for p, _, _ in done).most_common()),
        "voices": dict(Counter(f"{p.engine}/{p.voice}" for p, _, _ in done).most_common()),
        "text_sources": dict(Counter(s for _, s, _ in done).most_common()),
        "unique_train_texts": len({p.text for p, _, _ in done if p.split == "train"}),
        "failed": [{"id": p.id, "error": str(u)} for p, u in zip(plans, results) if not isinstance(u, Utterance)],
        "seconds": round(seconds, 1),
        "rendered_utt_per_s_per_worker": {e: round(rendered[e] / busy[e], 2) for e in rendered if busy[e] > 0},
        "settings": settings,
    }


def build_corpus(
    out_dir: str | os.PathLike[str],
    num_train: int = 2000,
    num_valid: int = 100,
    num_test: int = 200,
    seed: int = 0,
    engines: Sequence[str] | Mapping[str, float] = ("espeak-ng", "flite"),
    augment: bool | str = True,
    extra_texts: Iterable[str] | None = None,
    jobs: int = 2,
    sample_rate: int = 16000,
    log: Callable[[str], None] | None = None,
    texts: Mapping[str, float] | None = None,
) -> dict[str, Path]:
    """Synthesize train/valid/test sets into `out_dir`; returns {"train": train.jsonl, ...}.

    engines: names (an even mix) or {name: weight}; each utterance draws its engine, voice,
    rate and pitch. texts: {source: weight} over "templates" and the natural sources
    (`dualasr.corpus.sentences`), default templates only. augment: "none", "basic"
    (speed, noise, reverb, telephone, gain) or "full" (also tempo, formants, synthetic rooms,
    codecs); True means "basic".

    Texts of the three splits are disjoint (test first, then valid, then train), and
    `extra_texts` (e.g. real-prompt training transcripts) are added to train as
    ``extra-NNNNNN`` utterances unless they equal a valid/test text. All splits are
    rendered with the same voice/augmentation distribution. Files already rendered with
    the same settings are reused, so an interrupted build resumes. `summary.json` gets the
    counts, hours, per-voice and per-source counts, each engine's rendering speed and any
    failed utterances; more than 1% failed raises SynthesisError after the manifests are written.
    """
    t0 = time.monotonic()
    out = Path(out_dir)
    mix = dict(engines) if isinstance(engines, Mapping) else dict.fromkeys(engines, 1.0)
    mix = {k: float(w) for k, w in mix.items() if w > 0}
    unknown = [e for e in mix if e not in ENGINES]
    if unknown or not mix:
        raise ValueError(f"unknown engines {unknown}; choose from {sorted(ENGINES)}")
    augment = {True: "basic", False: "none"}.get(augment, augment)
    if augment not in AUGMENT_LEVELS:
        raise ValueError(f"unknown augmentation {augment!r}; choose from {', '.join(AUGMENT_LEVELS)}")
    text_mix = dict(texts or {"templates": 1.0})
    for e in mix:
        check_engine(e)
    if augment != "none":
        _require("sox")

    test_texts, test_src = draw_mixed_texts(num_test, "test", seed, text_mix, set())
    valid_texts, valid_src = draw_mixed_texts(num_valid, "valid", seed, text_mix, set(test_texts))
    held_out = set(test_texts) | set(valid_texts)
    train_texts, train_src = draw_mixed_texts(num_train, "train", seed, text_mix, held_out)
    extras = [t for t in (normalize_text(x) for x in (extra_texts or ())) if t and t not in held_out]

    plans: list[_Plan] = []
    sources: list[str] = []
    for split, split_texts, src, prefix in (
        ("train", train_texts, train_src, "train"), ("train", extras, ["extra"] * len(extras), "extra"),
        ("valid", valid_texts, valid_src, "valid"), ("test", test_texts, test_src, "test"),
    ):
        plans += [_plan(f"{prefix}-{i:06d}", split, t, seed, mix, augment) for i, t in enumerate(split_texts)]
        sources += src

    wav_dir = out / "wav"
    for split in ("train", "valid", "test"):
        (wav_dir / split).mkdir(parents=True, exist_ok=True)
    rendered = _map_parallel(
        lambda p: _render_or_error(p, wav_dir / p.split / f"{p.id}.wav", sample_rate), plans, jobs, log, "synthesize"
    )
    results = [r for r, _ in rendered]
    manifests: dict[str, Path] = {}
    for split in ("train", "valid", "test"):
        path = out / f"{split}.jsonl"
        write_manifest(path, [u for p, u in zip(plans, results) if p.split == split and isinstance(u, Utterance)])
        manifests[split] = path
    settings = {"seed": seed, "engines": mix, "texts": text_mix, "augment": augment, "sample_rate": sample_rate,
                "num_train": num_train, "num_valid": num_valid, "num_test": num_test, "extra_texts": len(extras),
                "jobs": jobs}
    summary = _summary(plans, sources, results, [sec for _, sec in rendered], time.monotonic() - t0, settings)
    summary["sentences_available"] = {k: {split: len(v) for split, v in natural_sentences(k).items()}
                                      for k in text_mix if k != "templates"}
    atomic_write(out / "summary.json", json.dumps(summary, indent=1) + "\n")
    failed = summary["failed"]
    if failed:
        if log:
            log(f"{len(failed)} utterance(s) failed and are left out of the manifests; first: {failed[0]['error']}")
        if len(failed) > MAX_FAILED_FRACTION * len(plans):
            raise SynthesisError(f"{len(failed)} of {len(plans)} utterances failed (see {out / 'summary.json'}); "
                                 f"first: {failed[0]['error']}")
    return manifests
