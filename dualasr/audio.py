"""Audio loading, checking and saving.

Everything downstream (features, training, the on-device harness) assumes one representation:
a float32 mono numpy array at 16 kHz with samples in [-1, 1] (NOT scaled by 32768; this is what
sherpa-onnx expects with its default normalize_samples=True).

This module must not import torch: the torch-free streaming harness uses it too.
"""

from __future__ import annotations

import math
import os
import shutil
import struct
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf
from dualasr.polyphase import resample_poly

from dualasr.fileio import atomic_write

__all__ = ["AudioError", "channel_axis", "load_audio", "prepare_samples", "save_wav"]

# Containers libsndfile reads natively. Everything else (mp3, g722, m4a, ...) goes through ffmpeg,
# which is more forgiving and supports far more codecs.
_SOUNDFILE_SUFFIXES = {".wav", ".wave", ".flac", ".ogg", ".oga", ".opus", ".aiff", ".aif", ".au", ".caf", ".w64"}

# Raw bitstreams carry no header, so ffmpeg cannot probe them and needs the demuxer named.
_FFMPEG_FORCED_FORMATS = {".g722": "g722"}

_MAX_CHANNELS = 8
# Sane PCM rates. Outside them a typo (e.g. 16_000_001) would make resample_poly build a filter of
# 10 * max(up, down) taps per side: gigabytes, a MemoryError deep inside scipy.
MIN_SAMPLE_RATE, MAX_SAMPLE_RATE = 1000, 384_000


class AudioError(ValueError):
    """Audio could not be loaded or is unusable. The message names the input and says what to do."""


def load_audio(path: str | os.PathLike, sample_rate: int = 16000) -> np.ndarray:
    """Read an audio file as float32 mono samples in [-1, 1] at `sample_rate`.

    wav/flac/ogg are read with soundfile; other formats (mp3, .g722, ...) are decoded by an
    `ffmpeg` subprocess. Stereo is mixed down by averaging; other rates are resampled with
    `scipy.signal.resample_poly` using the exact rational ratio.

    Returns:
        samples: float32 array of shape [num_samples]

    Raises:
        AudioError: missing path, directory, empty/zero-length, unreadable/corrupt/truncated
            file, NaN/Inf samples, or ffmpeg needed but not installed.
    """
    path = Path(path)
    if not path.exists():
        raise AudioError(f"{path}: no such file; check the path (relative paths resolve from {os.getcwd()})")
    if path.is_dir():
        raise AudioError(f"{path}: is a directory, not an audio file; pass the path of a single audio file")
    if path.stat().st_size == 0:
        raise AudioError(f"{path}: file is empty (0 bytes); re-record or re-download it")

    if path.suffix.lower() in _SOUNDFILE_SUFFIXES:
        samples, file_rate = _read_soundfile(path)
    else:
        samples, file_rate = _read_ffmpeg(path)
    return prepare_samples(samples, file_rate, target_rate=sample_rate, name=str(path))


def prepare_samples(
    samples: np.ndarray,
    sample_rate: int,
    target_rate: int = 16000,
    name: str = "<array>",
    channel_axis: int | None = None,
) -> np.ndarray:
    """Check and convert in-memory audio to float32 mono in [-1, 1] at `target_rate`.

    Args:
        samples: [num_samples], [frames, channels] or [channels, frames] (channels <= 8).
            int16 is divided by 32768, int32 by 2**31, uint8 (8-bit PCM) is centred at 128;
            floats are taken as already in [-1, 1].
        sample_rate: rate of `samples` in Hz.
        target_rate: rate of the result in Hz.
        name: how to refer to the input in error messages (e.g. the file path).
        channel_axis: the channel axis of 2-D samples when the caller knows it (a stream's pieces:
            one stereo frame [1, 2] would otherwise read as [channels=1, frames=2]); None: guess.

    Returns:
        samples: float32 array of shape [num_samples_at_target_rate]
    """
    x = np.asarray(samples)
    if not isinstance(sample_rate, (int, np.integer)) or sample_rate <= 0:
        raise AudioError(f"{name}: sample rate must be a positive integer, got {sample_rate!r}")
    if not isinstance(target_rate, (int, np.integer)) or target_rate <= 0:
        raise AudioError(f"{name}: target sample rate must be a positive integer, got {target_rate!r}")
    for what, rate in (("sample rate", sample_rate), ("target sample rate", target_rate)):
        if not MIN_SAMPLE_RATE <= rate <= MAX_SAMPLE_RATE:
            raise AudioError(
                f"{name}: {what} {rate} Hz is outside the supported {MIN_SAMPLE_RATE}..{MAX_SAMPLE_RATE} Hz; "
                "pass the audio's real rate (e.g. 8000, 16000, 44100, 48000)"
            )

    x = _to_float32(x, name)
    x = _to_mono(x, name, channel_axis)
    if x.size == 0:
        raise AudioError(f"{name}: contains no audio samples (zero length); check the recording")
    if not np.isfinite(x).all():
        bad = int((~np.isfinite(x)).sum())
        raise AudioError(f"{name}: contains {bad} NaN/Inf samples; the file or upstream processing is broken")
    peak = float(np.abs(x).max())
    if peak > 2.0:
        # Almost always int16-range values stored as float; silently clipping would destroy them.
        raise AudioError(
            f"{name}: float samples reach {peak:.1f} but must be in [-1, 1]; "
            "if they are int16-scaled, divide by 32768 (or pass the int16 array itself)"
        )

    if sample_rate != target_rate:
        g = math.gcd(int(sample_rate), int(target_rate))
        x = resample_poly(x, int(target_rate) // g, int(sample_rate) // g)
    # Float files and resampling may overshoot full scale slightly; keep the [-1, 1] promise.
    return np.clip(x, -1.0, 1.0).astype(np.float32, copy=False)


def save_wav(path: str | os.PathLike, samples: np.ndarray, sample_rate: int = 16000) -> None:
    """Write `samples` ([num_samples], any dtype `prepare_samples` accepts) as 16-bit PCM mono wav.

    The file is written to a temporary file in the same directory and then renamed, so a reader
    never sees a half-written file.
    """
    path = Path(path)
    x = prepare_samples(samples, sample_rate, target_rate=sample_rate, name=str(path))
    # Same scale as reading (x * 32768), so int16 -> save -> load round-trips exactly.
    pcm = np.clip(np.round(x.astype(np.float64) * 32768.0), -32768, 32767).astype(np.int16)

    directory = path.parent if str(path.parent) else Path(".")
    if not directory.is_dir():
        raise AudioError(f"{path}: directory {directory} does not exist; create it first")
    atomic_write(path, lambda f: sf.write(f, pcm, sample_rate, subtype="PCM_16", format="WAV"))


def _to_float32(x: np.ndarray, name: str) -> np.ndarray:
    if x.dtype == np.int16:
        return x.astype(np.float32) / 32768.0
    if x.dtype == np.int32:
        return (x.astype(np.float64) / 2**31).astype(np.float32)
    if x.dtype == np.uint8:
        return (x.astype(np.float32) - 128.0) / 128.0
    if x.dtype == np.float32:
        return x
    if x.dtype == np.float64:
        return x.astype(np.float32)
    raise AudioError(f"{name}: unsupported sample dtype {x.dtype}; pass int16, int32, float32 or float64 samples")


def channel_axis(x: np.ndarray, name: str = "<array>") -> int | None:
    """The channel axis of samples: None for [num_samples], 1 for [frames, channels] (soundfile's
    layout), 0 for [channels, frames] (torchaudio's). A 2-D array with at least as many rows as
    columns is read as [frames, channels].

    Raises:
        AudioError: not 1-D/2-D, or more than 8 channels either way.
    """
    if x.ndim == 1:
        return None
    if x.ndim == 2:
        if x.shape[1] <= _MAX_CHANNELS and x.shape[0] >= x.shape[1]:
            return 1
        if x.shape[0] <= _MAX_CHANNELS:
            return 0
    raise AudioError(
        f"{name}: cannot interpret samples of shape {x.shape} as audio; "
        f"pass [num_samples], [frames, channels] or [channels, frames] with at most {_MAX_CHANNELS} channels"
    )


def _to_mono(x: np.ndarray, name: str, axis: int | None = None) -> np.ndarray:
    """axis: the channel axis of a 2-D array (None: decide with channel_axis)."""
    if x.ndim == 1:
        return x
    if x.ndim == 2 and x.size == 0:
        return x.reshape(0)  # no frames (or no channels): the caller reports "zero length"
    if axis is None or x.ndim != 2 or x.shape[axis] > _MAX_CHANNELS:
        axis = channel_axis(x, name)
    return x.mean(axis=axis, dtype=np.float64).astype(np.float32) if x.shape[axis] > 1 else np.take(x, 0, axis=axis)


def _read_soundfile(path: Path) -> tuple[np.ndarray, int]:
    try:
        _check_wav_not_truncated(path)
        samples, rate = sf.read(str(path), dtype="float32", always_2d=True)
    except sf.SoundFileError as e:
        raise AudioError(f"{path}: unreadable or corrupt audio file ({e}); re-export it as WAV or FLAC") from e
    if samples.shape[0] == 0:
        raise AudioError(f"{path}: file has a valid header but no audio frames; check the recording")
    return samples, int(rate)


def _check_wav_not_truncated(path: Path) -> None:
    """Raise AudioError if a RIFF/WAVE file's data chunk is shorter than its header declares.

    libsndfile silently returns the samples that are there, which would hide a broken copy.
    """
    with open(path, "rb") as f:
        head = f.read(12)
        if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
            return  # not plain RIFF/WAVE (or badly broken): let soundfile decide
        file_size = path.stat().st_size
        while True:
            chunk = f.read(8)
            if len(chunk) < 8:
                return  # no data chunk; soundfile reports that itself
            chunk_id, size = chunk[:4], struct.unpack("<I", chunk[4:])[0]
            if chunk_id == b"data":
                available = file_size - f.tell()
                # 0 and 0xFFFFFFFF are placeholders written by streaming encoders.
                if size not in (0, 0xFFFFFFFF) and size > available:
                    raise AudioError(
                        f"{path}: truncated WAV file (header declares {size} data bytes, only {available} present); "
                        "re-copy or re-export the file"
                    )
                return
            f.seek(size + (size & 1), os.SEEK_CUR)  # chunks are padded to even sizes


def _read_ffmpeg(path: Path) -> tuple[np.ndarray, int]:
    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg is None:
        raise AudioError(
            f"{path}: decoding '{path.suffix}' files needs ffmpeg, which is not on PATH; "
            "install it (e.g. `apt-get install ffmpeg`) or convert the file to WAV/FLAC"
        )
    cmd = [ffmpeg, "-nostdin", "-hide_banner", "-loglevel", "error", "-y"]
    forced = _FFMPEG_FORCED_FORMATS.get(path.suffix.lower())
    if forced:
        cmd += ["-f", forced]
    with tempfile.TemporaryDirectory(prefix="dualasr-ffmpeg-") as tmp:
        out = os.path.join(tmp, "decoded.wav")
        # Keep the native rate and channels: mixdown and resampling happen in prepare_samples so
        # every input format goes through the same resampler.
        cmd += ["-i", str(path), "-vn", "-c:a", "pcm_f32le", "-f", "wav", out]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0 or not os.path.exists(out):
            msg = proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else f"exit code {proc.returncode}"
            raise AudioError(f"{path}: ffmpeg could not decode the file ({msg}); check that it is a valid audio file")
        try:
            samples, rate = sf.read(out, dtype="float32", always_2d=True)
        except sf.SoundFileError as e:
            raise AudioError(f"{path}: ffmpeg output is unreadable ({e}); check that it is a valid audio file") from e
    if samples.shape[0] == 0:
        raise AudioError(f"{path}: ffmpeg decoded no audio frames; check that the file contains audio")
    return samples, int(rate)
