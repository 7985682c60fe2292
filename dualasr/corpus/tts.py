"""Text to speech with the offline engines (espeak-ng, flite), then augmentation by sox/numpy."""

from __future__ import annotations

import math
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dualasr.audio import load_audio, save_wav
from dualasr.corpus.augment import Augmentation, _noise, speech_bounds

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

