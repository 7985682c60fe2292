"""Signal-level augmentation after TTS, and the energy VAD that trims engine silence."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields

import numpy as np
from scipy.signal import fftconvolve

# Codec round trips through sox (libsox-fmt-base/-mp3; a sox call costs a fraction of an ffmpeg
# one): name -> (sox output options, file type, sample rate it runs at).
CODECS: dict[str, tuple[tuple[str, ...], str, int]] = {
    "mp3": (("-C", "32"), "mp3", 16000),  # 32 kbit/s
    "vorbis": (("-C", "0"), "ogg", 16000),  # Ogg Vorbis at its lowest quality setting
    "gsm": ((), "gsm", 8000),  # GSM full rate, the 13 kbit/s phone codec
    "amr-nb": (("-C", "4"), "amr-nb", 8000),  # AMR narrowband 7.95 kbit/s, the mobile-phone codec
}


@dataclass
class Augmentation:
    """Signal-level augmentation applied after TTS. Defaults are a no-op.

    speed: sox `speed` perturbation (tempo and pitch, like Kaldi's 0.9/1.1).
    noise: "white", "pink" or "brown" noise added at `snr_db` (relative to the speech part).
    reverb: sox reverberance in percent, 0 = off.
    telephone: 300-3400 Hz band and an 8 kHz round trip.
    gain_db: peak level of the speech in dBFS.
    seed: seeds the noise and the room, so the same Augmentation yields the same file.
    tempo: sox `tempo` (WSOLA): duration only, pitch and formants kept.
    formant: vocal-tract length factor: sox `pitch` moves F0 and formants together by this
        factor, and engines that set their own F0 get F0 / formant, so only the formants move.
    rir_rt60: convolve with a synthetic room impulse response whose reverberation time is this
        many seconds (exponentially decaying noise after the direct path), 0 = off.
    rir_drr_db: that room's direct-to-reverberant energy ratio.
    codec: a lossy codec round trip after everything else (see CODECS), None = off.
    """

    speed: float = 1.0
    noise: str | None = None
    snr_db: float = 20.0
    reverb: float = 0.0
    telephone: bool = False
    gain_db: float = -3.0
    seed: int = 0
    tempo: float = 1.0
    formant: float = 1.0
    rir_rt60: float = 0.0
    rir_drr_db: float = 5.0
    codec: str | None = None

    def key(self) -> dict:
        """The fields that define the output, without later additions left at their no-op
        default, so files rendered before those fields existed still resume."""
        defaults = {f.name: f.default for f in fields(self) if f.name in _ADDED_LATER}
        return {k: v for k, v in asdict(self).items() if k not in defaults or v != defaults[k]}


_ADDED_LATER = {"tempo", "formant", "rir_rt60", "rir_drr_db", "codec"}


def sox_effects(aug: Augmentation, engine_speed: float = 1.0, engine_pitch: float = 1.0) -> list[str]:
    """The sox effect chain for `aug` (empty: nothing to do).

    engine_speed / engine_pitch: the part of the requested rate and F0 change the TTS engine
    could not make itself, done here with `tempo` and `pitch` (which moves formants too).
    """
    effects: list[str] = []
    if aug.speed != 1.0:
        effects += ["speed", f"{aug.speed:.4f}"]
    tempo = aug.tempo * engine_speed
    if tempo != 1.0:
        effects += ["tempo", "-s", f"{tempo:.4f}"]
    shift = aug.formant * engine_pitch
    if shift != 1.0:
        effects += ["pitch", f"{1200 * math.log2(shift):.1f}"]
    if aug.reverb > 0:
        effects = ["gain", "-6", *effects]  # headroom: the reverb tail adds energy
        effects += ["reverb", f"{aug.reverb:.0f}"]
    if aug.telephone:
        # 8 kHz first: a slowed-down 8 kHz voice is below 6.8 kHz here, where a 3.4 kHz sinc fails.
        effects += ["rate", "8000", "sinc", "300-3400"]
    return effects


def synthetic_rir(rt60: float, drr_db: float, sample_rate: int, rng: np.random.Generator) -> np.ndarray:
    """A room impulse response [n]: a unit direct path, then from 2-10 ms on Gaussian noise
    decaying 60 dB in `rt60` seconds, scaled to `drr_db` direct-to-reverberant energy."""
    n = int(rt60 * sample_rate)
    delay = int(rng.uniform(0.002, 0.010) * sample_rate)
    t = np.arange(n - delay) / sample_rate
    tail = rng.standard_normal(n - delay) * 10 ** (-3 * t / rt60)  # -60 dB at t = rt60
    tail *= math.sqrt(10 ** (-drr_db / 10) / (np.sum(tail**2) + 1e-20))
    h = np.zeros(n)
    h[0] = 1.0
    h[delay:] += tail
    return h


def apply_rir(y: np.ndarray, aug: Augmentation, sample_rate: int) -> np.ndarray:
    """y [n] convolved with the room of `aug` (same length: the tail past the end is cut)."""
    rng = np.random.default_rng([aug.seed, 1])  # its own stream: the noise keeps aug.seed's
    h = synthetic_rir(aug.rir_rt60, aug.rir_drr_db, sample_rate, rng)
    return fftconvolve(y, h)[: len(y)]


def undo_delay(reference: np.ndarray, coded: np.ndarray, sample_rate: int, max_delay_s: float = 0.2) -> np.ndarray:
    """`coded` (a codec's output, which may start late: mp3 adds ~70 ms) moved back into line with
    `reference` by the lag that best matches their 1 ms envelopes, then cut or padded to its length."""
    hop = sample_rate // 1000
    n = min(len(reference), len(coded)) // hop
    env = [np.abs(v[: n * hop]).reshape(n, hop).mean(axis=1) for v in (reference, coded)]
    env = [e - e.mean() for e in env]
    max_lag = int(max_delay_s * 1000)
    scores = [np.dot(env[0][: n - lag], env[1][lag:]) for lag in range(min(max_lag, n - 1) + 1)]
    z = coded[int(np.argmax(scores)) * hop:]
    return np.pad(z[: len(reference)], (0, max(0, len(reference) - len(z))))


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
    if kind not in ("pink", "brown"):
        raise ValueError(f"unknown noise {kind!r}; use 'white', 'pink' or 'brown'")
    spec = np.fft.rfft(white)
    f = np.arange(spec.size, dtype=np.float64)
    f[0] = 1.0
    return np.fft.irfft(spec / (np.sqrt(f) if kind == "pink" else f), n)  # 1/f or 1/f^2 power


def add_noise(y: np.ndarray, speech: np.ndarray, aug: Augmentation) -> np.ndarray:
    """y plus `aug.noise` at `aug.snr_db` below the power of `speech`."""
    rng = np.random.default_rng(aug.seed)
    noise = _noise(aug.noise, len(y), rng)
    p_speech = float(np.mean(speech**2)) + 1e-12
    noise *= math.sqrt(p_speech / (np.mean(noise**2) * 10 ** (aug.snr_db / 10)))
    return y + noise
