"""Offline English speech corpus: template sentences spoken by espeak-ng / flite, plus the
real Asterisk telephone prompts (one female speaker, G.722) as a fixed real-speech test set.

No torch here. Everything is deterministic per seed: the text, voice, rate, pitch, padding
and augmentation of utterance i in split s depend only on (seed, s, i), so growing
`num_train` never changes the valid/test sets, and a rerun skips finished files.

    python -m dualasr.corpus OUT --num-train 3000 --num-valid 200 --num-test 200 --asterisk
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import math
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from dualasr.audio import load_audio, save_wav
from dualasr.data import Utterance, write_manifest
from dualasr.fileio import atomic_write
from dualasr.tokenizer import normalize_text

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

# ---------------------------------------------------------------------------------------
# Text: template sentences over a small vocabulary

_ONES = (
    "zero one two three four five six seven eight nine ten eleven twelve thirteen "
    "fourteen fifteen sixteen seventeen eighteen nineteen"
).split()
_TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()
_ORDINALS = (
    "_ first second third fourth fifth sixth seventh eighth ninth tenth eleventh twelfth "
    "thirteenth fourteenth fifteenth sixteenth seventeenth eighteenth nineteenth twentieth"
).split()


def number_words(n: int) -> str:
    """0..9999 as English words ("one hundred and five", "two thousand")."""
    if not 0 <= n <= 9999:
        raise ValueError(f"number_words supports 0..9999, got {n}")
    if n < 20:
        return _ONES[n]
    if n < 100:
        return _TENS[n // 10] + ("" if n % 10 == 0 else " " + _ONES[n % 10])
    if n < 1000:
        rest = n % 100
        return _ONES[n // 100] + " hundred" + ("" if rest == 0 else " and " + number_words(rest))
    rest = n % 1000
    tail = "" if rest == 0 else (" and " if rest < 100 else " ") + number_words(rest)
    return _ONES[n // 1000] + " thousand" + tail


def _ordinal(n: int) -> str:
    if n <= 20:
        return _ORDINALS[n]
    if n == 30:
        return "thirtieth"
    if n in (21, 22, 23, 24, 25, 26, 27, 28, 29, 31):
        return ("twenty " if n < 30 else "thirty ") + _ORDINALS[n % 10]
    raise ValueError(n)


def _time(r: random.Random) -> str:
    h = r.randint(1, 12)
    m = r.choice([0, 0, 5, 10, 15, 20, 30, 30, 40, 45, 50, r.randint(1, 59)])
    if m == 0:
        s = r.choice([f"{_ONES[h]} o'clock", _ONES[h]])
    elif m == 30 and r.random() < 0.4:
        s = f"half past {_ONES[h]}"
    elif m == 15 and r.random() < 0.4:
        s = f"quarter past {_ONES[h]}"
    elif m == 45 and r.random() < 0.4:
        s = f"quarter to {_ONES[h % 12 + 1]}"
    else:
        s = f"{_ONES[h]} {'oh ' + _ONES[m] if m < 10 else number_words(m)}"
    if r.random() < 0.4:
        s += " " + r.choice(["in the morning", "in the afternoon", "in the evening", "at night"])
    return s


def _duration(r: random.Random) -> str:
    n = r.choice([1, 2, 3, 5, 10, 15, 20, 25, 30, 45, r.randint(2, 59)])
    unit = r.choice(["minute", "minute", "second", "hour"])
    if n == 1:
        return f"{r.choice(['one', 'a'])} {unit}"
    s = f"{number_words(n)} {unit}s"
    if unit == "hour" and n > 12:
        s = f"{number_words(n % 12 or 2)} hours"
    if r.random() < 0.15:
        s += " and thirty seconds" if unit == "minute" else ""
    return s


def _digits(r: random.Random, lo: int = 3, hi: int = 7) -> str:
    return " ".join(_ONES[r.randint(0, 9)] for _ in range(r.randint(lo, hi)))


def _date(r: random.Random) -> str:
    month, day = r.choice(_MONTHS), r.randint(1, 31 if r.random() < 0.9 else 28)
    return r.choice([f"{month} {_ordinal(day)}", f"the {_ordinal(day)} of {month}"])


def _money(r: random.Random) -> str:
    d = r.choice([r.randint(1, 99), r.randint(100, 999), r.randint(1000, 5000)])
    s = f"{number_words(d)} dollar{'s' if d != 1 else ''}"
    if r.random() < 0.5:
        s += f" and {number_words(r.randint(1, 99))} cents"
    return s


_MONTHS = (
    "january february march april may june july august september october november december"
).split()
_DAYS = "monday tuesday wednesday thursday friday saturday sunday".split()

# Slot fillers: a list of strings, or a function of the RNG.
_SLOTS: dict[str, Sequence[str] | Callable[[random.Random], str]] = {
    "time": _time,
    "duration": _duration,
    "digits": _digits,
    "date": _date,
    "money": _money,
    "digit": lambda r: _ONES[r.randint(0, 9)],
    "count": lambda r: number_words(r.choice([r.randint(2, 12), r.randint(13, 99)])),
    "temp": lambda r: number_words(r.randint(55, 85)),
    "percent": lambda r: number_words(r.choice(range(10, 101, 10))),
    "day": _DAYS + ["today", "tomorrow", "tonight", "next week", "this weekend"],
    "weekday": _DAYS,
    "contact": [
        "mom", "dad", "john", "mary", "david", "sarah", "the office", "the doctor", "my sister",
        "my brother", "the front desk", "customer service", "the school", "grandma", "alex",
    ],
    "phone_kind": ["mobile", "cell phone", "home phone", "work phone"],
    "message": [
        "i am running late", "see you soon", "call me back", "i will be home at six",
        "the meeting has moved", "thank you", "happy birthday", "i am on my way",
    ],
    "device": ["lights", "lamp", "fan", "heater", "radio", "television", "coffee maker", "oven"],
    "room": ["kitchen", "bedroom", "living room", "office", "garage", "bathroom", "hallway"],
    "onoff": ["on", "off"],
    "genre": ["jazz", "rock", "classical", "country", "relaxing", "dance", "piano"],
    "account_item": [
        "account number", "password", "pin number", "extension", "mailbox number", "phone number",
        "zip code", "date of birth", "member number", "conference number",
    ],
    "menu_action": [
        "check your balance", "pay your bill", "speak with an operator", "hear these options again",
        "leave a message", "change your password", "return to the main menu", "record your name",
        "listen to your messages", "report a problem", "hear your account balance",
        "transfer your call", "cancel your order", "mute or unmute yourself",
    ],
    "dept": ["sales", "billing", "technical support", "customer service", "the operator",
             "accounting", "the company directory", "new orders"],
    "company": ["city bank", "blue sky airlines", "the north street clinic", "green valley power",
                "super awesome company", "main street pharmacy"],
    "task": ["call the doctor", "buy milk", "pay the bill", "pick up the kids", "take my medicine",
             "send the report", "water the plants", "book a table", "check the mail"],
    "food": ["pizza", "coffee", "tea", "bread", "eggs", "rice", "soup", "apples", "cheese", "chicken"],
    "place": ["the station", "the airport", "the park", "work", "home", "the store", "the library",
              "the hospital", "the bank", "school"],
    "person": ["my friend", "the doctor", "our teacher", "your brother", "the driver", "my boss",
               "the neighbor", "the manager"],
    "weather": ["sunny", "cloudy", "cold", "warm", "windy", "rainy", "hot"],
    "adj": ["good", "great", "busy", "quiet", "late", "early", "ready", "tired", "happy"],
}

_TEMPLATES: tuple[str, ...] = (
    # timers, alarms, reminders
    "set a timer for {duration}",
    "start a timer for {duration}",
    "how much time is left on the timer",
    "cancel the timer",
    "wake me up at {time}",
    "set an alarm for {time}",
    "set an alarm for {day} at {time}",
    "turn off the alarm",
    "remind me to {task} at {time}",
    "remind me to {task} {day}",
    "what time is it",
    "it is {time}",
    "the time is {time}",
    "the meeting is on {date} at {time}",
    "my appointment is on {weekday} at {time}",
    "what is the date {day}",
    "today is {weekday} {date}",
    "the train leaves at {time}",
    # calls and messages
    "call {contact}",
    "call {contact} on the {phone_kind}",
    "please call {contact} {day}",
    "dial {digits}",
    "my phone number is {digits}",
    "the extension is {digits}",
    "send a message to {contact} saying {message}",
    "text {contact} {message}",
    "read my new messages",
    "you have {count} new messages",
    "you have one new message",
    # phone menus
    "please enter your {account_item} followed by the pound key",
    "please enter your {account_item} then press pound",
    "please say or enter your {account_item}",
    "press {digit} to {menu_action}",
    "to {menu_action} press {digit}",
    "for {dept} press {digit}",
    "for {dept} please press {digit}",
    "to repeat this menu press star",
    "thank you for calling {company}",
    "thank you for calling {company} your call is important to us",
    "please hold while we transfer your call",
    "please hold while i try to connect you",
    "all of our agents are busy please stay on the line",
    "the person you are calling is not available",
    "please leave your message after the tone",
    "when you are done hang up or press the pound key",
    "your call cannot be completed as dialed",
    "please check the number and dial again",
    "the number you have dialed is not in service",
    "that is not a valid option please try again",
    "invalid entry please try again",
    "your account balance is {money}",
    "your payment of {money} was received on {date}",
    "you entered {digits} if this is correct press one",
    "your estimated wait time is {count} minutes",
    "the conference has {count} participants",
    "you are now muted",
    "goodbye",
    "thank you goodbye",
    # home and devices
    "turn {onoff} the {device}",
    "turn {onoff} the {device} in the {room}",
    "turn {onoff} the {room} {device}",
    "set the temperature to {temp} degrees",
    "set the volume to {percent} percent",
    "play some {genre} music",
    "play {genre} music in the {room}",
    "stop the music",
    "what is the weather like {day}",
    "it will be {weather} {day}",
    "it is {temp} degrees and {weather}",
    # everyday sentences
    "i will meet you at {place} at {time}",
    "can you help me find my keys",
    "we need to buy {food} and {food}",
    "add {food} to my shopping list",
    "i would like some {food} please",
    "how long does it take to get to {place}",
    "{person} is waiting at {place}",
    "{person} will call you back {day}",
    "i am {adj} today",
    "we are going to {place} {day}",
    "the weather is {weather} today",
    "please close the door",
    "could you say that again please",
    "i do not understand",
    "thank you very much",
    "see you {day}",
    "good morning how are you",
    "have a nice day",
    "the bus is {adj} again",
    "where is the nearest {place_kind}",
    "how far is it to {place}",
    "it costs {money}",
    "my order number is {digits}",
)
_SLOTS["place_kind"] = ["bank", "station", "hospital", "pharmacy", "store", "park", "library"]

_SLOT_RE = re.compile(r"\{(\w+)\}")


@dataclass
class SentenceGenerator:
    """Natural-ish English sentences from templates; same seed, same sequence."""

    seed: int = 0
    rng: random.Random = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.rng = random.Random(f"sentences-{self.seed}")

    def _fill(self, name: str) -> str:
        filler = _SLOTS[name]
        return filler(self.rng) if callable(filler) else self.rng.choice(filler)

    def sentence(self) -> str:
        template = self.rng.choice(_TEMPLATES)
        return normalize_text(_SLOT_RE.sub(lambda m: self._fill(m.group(1)), template))

    def __iter__(self):
        while True:
            yield self.sentence()


def generate_sentences(n: int, seed: int = 0) -> list[str]:
    """The first `n` sentences of `SentenceGenerator(seed)` (may repeat)."""
    gen = SentenceGenerator(seed)
    return [gen.sentence() for _ in range(n)]


# ---------------------------------------------------------------------------------------
# Synthesis

ENGINES: dict[str, tuple[str, ...]] = {
    # espeak-ng: base voices x variants ("+f3" = female 3); mbrola voices need extra packages.
    "espeak-ng": (
        "en-us", "en", "en-gb-scotland", "en-gb-x-rp", "en-029", "en-us-nyc", "en-gb-x-gbclan",
        "en-gb-x-gbcwmd",
    ),
    # flite's awb_time only says times, so it is left out.
    "flite": ("kal", "kal16", "awb", "rms", "slt"),
}
_ESPEAK_VARIANTS = ("", "", "+m1", "+m2", "+m3", "+m4", "+m7", "+f1", "+f2", "+f3", "+f4", "+f5", "+klatt2")
# Mean F0 (Hz) of each flite voice, measured; pitch factors scale it. rms ignores the setting.
_FLITE_F0 = {"kal": 95.0, "kal16": 95.0, "awb": 130.0, "rms": 101.0, "slt": 176.0}
_INSTALL_HINT = {"espeak-ng": "apt-get install espeak-ng", "flite": "apt-get install flite",
                 "sox": "apt-get install sox"}


class SynthesisError(RuntimeError):
    """A TTS engine or sox is missing, failed or timed out."""


@dataclass
class Augmentation:
    """Signal-level augmentation applied after TTS. Defaults are a no-op.

    speed: sox `speed` perturbation (tempo and pitch, like Kaldi's 0.9/1.1).
    noise: "white" or "pink" noise added at `snr_db` (relative to the speech part).
    reverb: sox reverberance in percent, 0 = off.
    telephone: 300-3400 Hz band and an 8 kHz round trip.
    gain_db: peak level of the speech in dBFS.
    seed: seeds the noise, so the same Augmentation yields the same file.
    """

    speed: float = 1.0
    noise: str | None = None
    snr_db: float = 20.0
    reverb: float = 0.0
    telephone: bool = False
    gain_db: float = -3.0
    seed: int = 0


@dataclass
class SynthResult:
    duration: float  # seconds in the written file
    speech_start: float  # where the (trimmed) speech starts, after the leading pad
    speech_end: float  # where it ends, before the trailing pad


def _require(tool: str) -> str:
    exe = shutil.which(tool)
    if exe is None:
        raise SynthesisError(f"{tool} is not installed or not on PATH ({_INSTALL_HINT.get(tool, '')})")
    return exe


def _run(cmd: list[str], timeout: float, what: str) -> None:
    try:
        proc = subprocess.run(cmd, capture_output=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise SynthesisError(f"{what}: {cmd[0]} timed out after {timeout:.0f} s") from None
    if proc.returncode != 0:
        err = proc.stderr.decode(errors="replace").strip()[-500:]
        raise SynthesisError(f"{what}: {Path(cmd[0]).name} exited with {proc.returncode}: {err}")


def _tts(text: str, out: Path, engine: str, voice: str, speed: float, pitch: float, timeout: float) -> None:
    what = f"{engine} voice {voice!r} on {text[:40]!r}"
    if engine == "espeak-ng":
        exe = _require("espeak-ng")
        wpm = int(round(175 * speed))
        p = int(min(99, max(0, round(50 * pitch))))
        # "--" would be spoken on some builds; normalized text never starts with "-" anyway.
        _run([exe, "-v", voice, "-s", str(wpm), "-p", str(p), "-w", str(out), text], timeout, what)
    elif engine == "flite":
        exe = _require("flite")
        base = voice.split("+")[0]
        cmd = [exe, "-voice", base, "-t", text, "-o", str(out),
               "--setf", f"duration_stretch={1.0 / speed:.4f}"]
        if base in _FLITE_F0:
            cmd += ["--setf", f"int_f0_target_mean={_FLITE_F0[base] * pitch:.1f}"]
        _run(cmd, timeout, what)
    else:
        raise ValueError(f"unknown TTS engine {engine!r}; choose from {sorted(ENGINES)}")
    if not out.is_file() or out.stat().st_size <= 44:
        raise SynthesisError(f"{what}: produced no audio (unknown voice?)")


def speech_bounds(x: np.ndarray, sample_rate: int = 16000, threshold_db: float = -40.0) -> tuple[int, int]:
    """[start, end) samples of the part louder than `threshold_db` below the loudest 10 ms
    frame. Cheap energy VAD for clean or mildly noisy single utterances."""
    hop = sample_rate // 100
    n = len(x) // hop
    if n == 0:
        return 0, len(x)
    rms = np.sqrt((x[: n * hop].astype(np.float64).reshape(n, hop) ** 2).mean(axis=1) + 1e-20)
    loud = np.nonzero(rms >= rms.max() * 10 ** (threshold_db / 20))[0]
    if loud.size == 0:
        return 0, len(x)
    return int(loud[0] * hop), int(min(len(x), (loud[-1] + 1) * hop))


def _noise(kind: str, n: int, rng: np.random.Generator) -> np.ndarray:
    white = rng.standard_normal(n)
    if kind == "white":
        return white
    if kind != "pink":
        raise ValueError(f"unknown noise {kind!r}; use 'white' or 'pink'")
    spec = np.fft.rfft(white)
    f = np.arange(spec.size, dtype=np.float64)
    f[0] = 1.0
    return np.fft.irfft(spec / np.sqrt(f), n)  # 1/f power


def synthesize(
    text: str,
    out_wav: str | os.PathLike[str],
    engine: str,
    voice: str,
    speed: float = 1.0,
    pitch: float = 1.0,
    sample_rate: int = 16000,
    augment: Augmentation | None = None,
    lead_silence: float = 0.1,
    trail_silence: float = 0.3,
    timeout: float = 60.0,
) -> SynthResult:
    """Speak `text` into a 16-bit mono wav at `sample_rate`.

    speed and pitch are relative to the voice's default (1.0): espeak-ng gets
    ``-s 175*speed -p 50*pitch``, flite ``duration_stretch=1/speed`` and its mean F0 times
    `pitch`. The engine's own edge silence is trimmed, then exactly `lead_silence` /
    `trail_silence` seconds are added, so `speech_end` is where the speech stops.
    """
    out_wav = Path(out_wav)
    if not text.strip():
        raise ValueError(f"nothing to synthesize for {out_wav}: empty text")
    aug = augment or Augmentation()
    with tempfile.TemporaryDirectory(prefix="dualasr-tts-") as tmp:
        raw = Path(tmp) / "raw.wav"
        _tts(text, raw, engine, voice, speed, pitch, timeout)
        effects: list[str] = []
        if aug.speed != 1.0:
            effects += ["speed", f"{aug.speed:.4f}"]
        if aug.reverb > 0:
            effects = ["gain", "-6", *effects]  # headroom: the reverb tail adds energy
        if aug.reverb > 0:
            effects += ["reverb", f"{aug.reverb:.0f}"]
        if aug.telephone:
            effects += ["sinc", "300-3400", "rate", "8000"]
        if effects:
            sox = _require("sox")
            proc = Path(tmp) / "proc.wav"
            # -R: repeatable (no random dither); rate at the end brings everything to the target.
            _run([sox, "-R", "-V1", str(raw), "-b", "16", "-c", "1", str(proc), *effects,
                  "rate", str(sample_rate)], timeout, f"sox {' '.join(effects)}")
            raw = proc
        x = load_audio(raw, sample_rate).astype(np.float64)

    start, end = speech_bounds(x, sample_rate)
    speech = x[start:end]
    peak = float(np.abs(speech).max()) or 1.0
    speech *= 10 ** (aug.gain_db / 20) / peak
    lead, trail = int(round(lead_silence * sample_rate)), int(round(trail_silence * sample_rate))
    y = np.concatenate([np.zeros(lead), speech, np.zeros(trail)])
    if aug.noise:
        rng = np.random.default_rng(aug.seed)
        noise = _noise(aug.noise, len(y), rng)
        p_speech = float(np.mean(speech**2)) + 1e-12
        noise *= math.sqrt(p_speech / (np.mean(noise**2) * 10 ** (aug.snr_db / 10)))
        y = y + noise
    y = np.clip(y, -1.0, 1.0).astype(np.float32)
    out_wav.parent.mkdir(parents=True, exist_ok=True)
    save_wav(out_wav, y, sample_rate)
    return SynthResult(
        duration=len(y) / sample_rate,
        speech_start=lead / sample_rate,
        speech_end=(lead + len(speech)) / sample_rate,
    )


# ---------------------------------------------------------------------------------------
# Building the synthetic corpus


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


def _draw_texts(
    n: int, stream: str, seed: int, exclude: set[str], max_tries_per_text: int = 50
) -> list[str]:
    """`n` sentences not in `exclude` and, while the generator allows, unique."""
    gen = SentenceGenerator(seed=hash_seed(f"{seed}-{stream}"))
    out: list[str] = []
    seen = set(exclude)
    misses = 0
    while len(out) < n:
        s = gen.sentence()
        if s not in seen:
            out.append(s)
            seen.add(s)
            misses = 0
        else:
            misses += 1
            if misses > max_tries_per_text:  # generator exhausted: accept repeats, never excluded
                if s not in exclude:
                    out.append(s)
                misses = 0
    return out


def hash_seed(s: str) -> int:
    """Stable 32-bit seed from a string (Python's hash() is salted per process)."""
    return int.from_bytes(hashlib.sha1(s.encode()).digest()[:4], "little")


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


# ---------------------------------------------------------------------------------------
# Real speech: the Asterisk core prompts

ASTERISK_SOUNDS = "/usr/share/asterisk/sounds/en_US_f_Allison"
ASTERISK_TRANSCRIPTS = "/usr/share/doc/asterisk-core-sounds-en/core-sounds-en.txt.gz"
_AUDIO_EXTS = (".wav", ".flac", ".g722")
_PARENS = re.compile(r"\([^)]*\)")
_MULTI_DIGIT = re.compile(r"\d\s*[\d.,]*\d")


def _asterisk_spoken(text: str) -> str | None:
    """Transcript -> the words actually spoken, or None when that is ambiguous/empty."""
    text = _PARENS.sub(" ", text)  # "(simple tone sound plays)", "(note: ...)"
    text = re.sub(r"\[[^\]]*\]", " ", text)  # "[beep]", "at [@]"
    if _MULTI_DIGIT.search(text):
        # "dial 500", "H.323": digit-by-digit normalization would not match the recording.
        return None
    text = text.replace("*", " star ").replace("#", " pound ")
    return normalize_text(text) or None


def read_asterisk_prompts(
    sounds_dir: str | os.PathLike[str] = ASTERISK_SOUNDS,
    transcripts: str | os.PathLike[str] = ASTERISK_TRANSCRIPTS,
) -> list[Utterance]:
    """The Asterisk prompts that have both a transcript and an audio file.

    Ids are the prompt names ("hello-world", "digits/1"). Dropped: descriptions only
    ("[beep]", "(10 seconds of silence)") and transcripts with multi-digit numbers, whose
    spoken form is ambiguous ("dial 500"). "*"/"#" are read "star"/"pound".
    """
    sounds_dir, transcripts = Path(sounds_dir), Path(transcripts)
    if not transcripts.is_file():
        raise FileNotFoundError(f"Asterisk transcripts not found: {transcripts} (apt-get install asterisk-core-sounds-en)")
    if not sounds_dir.is_dir():
        raise FileNotFoundError(f"Asterisk sounds not found: {sounds_dir} (apt-get install asterisk-core-sounds-en-g722)")
    opener = gzip.open if transcripts.suffix == ".gz" else open
    utts: dict[str, Utterance] = {}
    with opener(transcripts, "rt", encoding="utf-8", errors="replace") as f:
        for line in f:
            line = line.strip()
            if not line or line.startswith(";") or ":" not in line:
                continue
            name, _, text = line.partition(":")
            name = name.strip()
            spoken = _asterisk_spoken(text)
            if spoken is None or name in utts:
                continue
            audio = next((sounds_dir / (name + e) for e in _AUDIO_EXTS if (sounds_dir / (name + e)).is_file()), None)
            if audio is not None:
                utts[name] = Utterance(name, str(audio), spoken)
    return sorted(utts.values(), key=lambda u: u.id)


def _asterisk_is_test(name: str, test_fraction: float) -> bool:
    h = int.from_bytes(hashlib.sha1(name.encode("utf-8")).digest()[:8], "big")
    return h / 2**64 < test_fraction


def split_asterisk(utts: Sequence[Utterance], test_fraction: float = 0.2) -> tuple[list[Utterance], list[Utterance]]:
    """Fixed split: a prompt is test iff the first 8 bytes of sha1(name), read as a big-endian
    integer over 2**64, are below `test_fraction`. Depends on nothing but the name, so the
    real-speech test set never changes between runs, machines or package versions."""
    train = [u for u in utts if not _asterisk_is_test(u.id, test_fraction)]
    test = [u for u in utts if _asterisk_is_test(u.id, test_fraction)]
    return train, test


def _convert_prompt(u: Utterance, wav: Path, sample_rate: int) -> Utterance:
    if wav.is_file():
        x = load_audio(wav, sample_rate)  # resume: already converted
    else:
        x = load_audio(u.audio, sample_rate)
        save_wav(wav, x, sample_rate)
    _, end = speech_bounds(x, sample_rate)
    return Utterance(u.id, str(wav), u.text, round(len(x) / sample_rate, 4), round(end / sample_rate, 4))


def build_asterisk_set(
    out_dir: str | os.PathLike[str],
    sounds_dir: str | os.PathLike[str] = ASTERISK_SOUNDS,
    transcripts: str | os.PathLike[str] = ASTERISK_TRANSCRIPTS,
    test_fraction: float = 0.2,
    jobs: int = 2,
    sample_rate: int = 16000,
    log: Callable[[str], None] | None = None,
) -> dict[str, Path]:
    """Convert the prompts to wav under out_dir/real/ and write real_train.jsonl / real_test.jsonl.
    speech_end is estimated with `speech_bounds` (the recordings carry trailing silence)."""
    out = Path(out_dir)
    utts = read_asterisk_prompts(sounds_dir, transcripts)
    real = out / "real"
    real.mkdir(parents=True, exist_ok=True)
    conv = _map_parallel(
        lambda u: _convert_prompt(u, real / (u.id.replace("/", "_") + ".wav"), sample_rate),
        utts, jobs, log, "asterisk",
    )
    train, test = split_asterisk(conv, test_fraction)
    paths = {"real_train": out / "real_train.jsonl", "real_test": out / "real_test.jsonl"}
    write_manifest(paths["real_train"], train)
    write_manifest(paths["real_test"], test)
    return paths


# ---------------------------------------------------------------------------------------
# CLI


def build_parser(parser: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    p = parser or argparse.ArgumentParser(prog="python -m dualasr.corpus", description=__doc__.split("\n\n")[0])
    p.add_argument("out_dir", help="output folder (reruns resume)")
    p.add_argument("--num-train", type=int, default=2000)
    p.add_argument("--num-valid", type=int, default=100)
    p.add_argument("--num-test", type=int, default=200)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--engines", default="espeak-ng,flite", help="comma-separated: espeak-ng,flite")
    p.add_argument("--no-augment", action="store_true", help="no speed/noise/reverb/telephone")
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
    paths = build_corpus(
        args.out_dir, args.num_train, args.num_valid, args.num_test, args.seed,
        engines=tuple(e.strip() for e in args.engines.split(",") if e.strip()),
        augment=not args.no_augment, extra_texts=extra, jobs=args.jobs, log=log,
    )
    if args.asterisk:
        paths.update(build_asterisk_set(args.out_dir, jobs=args.jobs, log=log))
    for name, path in paths.items():
        log(f"{name}: {path}")
    return paths


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        run(args)
    except (SynthesisError, FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
