"""Audio loading, checking and saving.

Everything downstream (features, training, the on-device harness) assumes one representation:
a float32 mono numpy array at 16 kHz with samples in [-1, 1] (NOT scaled by 32768; this is what
sherpa-onnx expects with its default normalize_samples=True).

`AudioReader` reads a file (or standard input, "-") block by block, so a caller that streams
(`dualasr transcribe`) needs memory independent of the file's length; `load_audio` reads it whole.

This module must not import torch: the torch-free streaming harness uses it too.
"""

from __future__ import annotations

import math
import os
import shutil
import stat
import struct
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import soundfile as sf
from dualasr.polyphase import resample_poly

from dualasr.fileio import atomic_write

__all__ = ["AudioError", "AudioReader", "channel_axis", "display_name", "load_audio", "prepare_samples", "save_wav"]

# Containers libsndfile reads natively. Everything else (mp3, g722, m4a, ...) goes through ffmpeg,
# which is more forgiving and supports far more codecs.
_SOUNDFILE_SUFFIXES = {".wav", ".wave", ".flac", ".ogg", ".oga", ".opus", ".aiff", ".aif", ".au", ".caf", ".w64"}

# Raw bitstreams carry no header, so ffmpeg cannot probe them and needs the demuxer named.
_FFMPEG_FORCED_FORMATS = {".g722": "g722"}

_MAX_CHANNELS = 8
# Sane PCM rates. Outside them a typo (e.g. 16_000_001) would make resample_poly build a filter of
# 10 * max(up, down) taps per side: gigabytes, a MemoryError deep inside scipy.
MIN_SAMPLE_RATE, MAX_SAMPLE_RATE = 1000, 384_000
SAMPLE_RATE = 16000  # what every model, data set and manifest of dualasr works at


class AudioError(ValueError):
    """Audio could not be loaded or is unusable. The message names the input and says what to do."""


def display_name(path: str | os.PathLike) -> str:
    """A file name fit for one line of output: bytes that are not UTF-8 and control characters
    (a newline in a name) are shown as backslash escapes."""
    text = os.fsencode(path).decode("utf-8", "backslashreplace")
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text)


STDIN = "-"  # the path that means standard input


class AudioReader:
    """An audio file, or standard input for the path "-", read block by block.

    wav/flac/ogg files are read with soundfile; other formats, pipes and standard input are decoded
    by an `ffmpeg` subprocess whose output is read as it comes, so no file's length ever decides
    how much memory is used. Blocks are [frames, channels] float32 at the file's own rate, not yet
    checked (prepare_samples does that). Use as a context manager (closing stops ffmpeg).

    Raises (at construction, or while reading for ffmpeg):
        AudioError: missing path, directory, empty file, unreadable/corrupt/truncated file, a WAV
            header that under-states its data, no audio frames, ffmpeg needed but not installed.
    """

    def __init__(self, path: str | os.PathLike, name: str | None = None):
        self.path = path
        self.name = name or ("<stdin>" if str(path) == STDIN else display_name(path))
        self._sound: sf.SoundFile | None = None
        self._ffmpeg: subprocess.Popen | None = None
        self.frames_read = 0
        if str(path) == STDIN:
            self._open_ffmpeg(None, sys.stdin.buffer)
            return
        path = Path(path)
        if not path.exists():
            raise AudioError(f"{self.name}: no such file; check the path (relative paths resolve from {os.getcwd()})")
        if path.is_dir():
            raise AudioError(f"{self.name}: is a directory, not an audio file; pass the path of a single audio file")
        regular = stat.S_ISREG(path.stat().st_mode)  # a pipe or device has no size: ffmpeg reads it as a stream
        if regular and path.stat().st_size == 0:
            raise AudioError(f"{self.name}: file is empty (0 bytes); re-record or re-download it")
        if regular and path.suffix.lower() in _SOUNDFILE_SUFFIXES:
            self._open_soundfile(path)
        elif regular:
            self._open_ffmpeg(path, None)
        else:  # a pipe (/dev/fd/N of `<(...)`, a FIFO): opened here, ffmpeg reads it as its input
            with open(path, "rb") as pipe:
                self._open_ffmpeg(path, pipe)

    # ------------------------------------------------------------------ soundfile

    def _open_soundfile(self, path: Path) -> None:
        _check_wav_header(path, self.name)
        try:
            self._sound = sf.SoundFile(os.fsencode(path))  # bytes: any file name, UTF-8 or not
        except sf.SoundFileError as e:
            raise AudioError(f"{self.name}: unreadable or corrupt audio file ({e}); re-export it as WAV or FLAC") from None
        self.sample_rate, self.channels = int(self._sound.samplerate), int(self._sound.channels)
        if self._sound.frames == 0:
            self.close()
            raise AudioError(f"{self.name}: file has a valid header but no audio frames; check the recording")

    # ------------------------------------------------------------------ ffmpeg

    def _open_ffmpeg(self, path: Path | None, pipe) -> None:
        """ffmpeg decoding `path`, or what it reads from `pipe` (a binary file object) if given."""
        ffmpeg = shutil.which("ffmpeg")
        what = "reading standard input" if path is None else f"decoding '{path.suffix or 'piped'}' audio"
        if ffmpeg is None:
            raise AudioError(
                f"{self.name}: {what} needs ffmpeg, which is not on PATH; "
                "install it (e.g. `apt-get install ffmpeg`) or convert the file to WAV/FLAC"
            )
        cmd = [ffmpeg, "-hide_banner", "-loglevel", "error"]
        forced = _FFMPEG_FORCED_FORMATS.get(path.suffix.lower()) if path is not None else None
        if forced:
            cmd += ["-f", forced]
        # Native rate and channels: mixdown and resampling happen here, the same for every format.
        cmd += ["-i", "pipe:0" if pipe is not None else os.fsencode(path), "-vn", "-c:a", "pcm_f32le", "-f", "wav", "pipe:1"]
        self._errors = tempfile.TemporaryFile()  # unnamed: nothing is left behind, whatever happens
        self._ffmpeg = subprocess.Popen(cmd, stdin=pipe if pipe is not None else subprocess.DEVNULL,
                                        stdout=subprocess.PIPE, stderr=self._errors)
        try:
            self.channels, self.sample_rate = _read_wav_stream_header(self._ffmpeg.stdout)
        except AudioError as e:
            self._ffmpeg_failed(str(e))

    def _ffmpeg_failed(self, fallback: str) -> None:
        proc = self._ffmpeg
        proc.kill()
        proc.wait()
        self._errors.seek(0)
        lines = self._errors.read().decode("utf-8", "replace").strip().splitlines()
        self.close()
        msg = lines[-1] if lines else fallback
        raise AudioError(f"{self.name}: ffmpeg could not decode it ({msg}); check that it is a valid audio file")

    # ------------------------------------------------------------------ reading

    def blocks(self, frames: int) -> Iterator[np.ndarray]:
        """Blocks of up to `frames` frames, [n, channels] float32, until the end of the audio."""
        while True:
            if self._sound is not None:
                try:
                    block = self._sound.read(frames, dtype="float32", always_2d=True)
                except sf.SoundFileError as e:
                    raise AudioError(f"{self.name}: unreadable or corrupt audio file ({e}); re-export it as WAV or FLAC") from None
            else:
                size = 4 * self.channels
                data = self._ffmpeg.stdout.read(frames * size)
                block = np.frombuffer(data[: len(data) - len(data) % size], dtype="<f4").reshape(-1, self.channels)
            if block.shape[0] == 0:
                self._finish()
                return
            self.frames_read += block.shape[0]
            yield block

    def _finish(self) -> None:
        if self._ffmpeg is not None and self._ffmpeg.wait() != 0:
            self._ffmpeg_failed(f"exit code {self._ffmpeg.returncode}")
        if self.frames_read == 0:
            raise AudioError(f"{self.name}: decoded no audio frames; check that it contains audio")

    def read_all(self) -> np.ndarray:
        """The whole audio, [frames, channels] float32."""
        return np.concatenate(list(self.blocks(1 << 20)) or [np.zeros((0, self.channels), np.float32)])

    def close(self) -> None:
        if self._sound is not None:
            self._sound.close()
            self._sound = None
        if self._ffmpeg is not None:
            if self._ffmpeg.poll() is None:
                self._ffmpeg.kill()  # stopped early (an error downstream): do not leave it running
            self._ffmpeg.wait()
            self._ffmpeg.stdout.close()
            self._errors.close()
            self._ffmpeg = None

    def __enter__(self) -> "AudioReader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def load_audio(path: str | os.PathLike, sample_rate: int = 16000) -> np.ndarray:
    """Read an audio file ("-": standard input) as float32 mono samples in [-1, 1] at `sample_rate`.

    Read by AudioReader (soundfile for wav/flac/ogg, an `ffmpeg` subprocess for the rest). Stereo
    is mixed down by averaging; other rates are resampled with `scipy.signal.resample_poly` using
    the exact rational ratio.

    Returns:
        samples: float32 array of shape [num_samples]

    Raises:
        AudioError: see AudioReader, plus NaN/Inf samples and unusable rates.
    """
    with AudioReader(path) as reader:
        samples = reader.read_all()
    return prepare_samples(samples, reader.sample_rate, target_rate=sample_rate, name=reader.name)


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
    peak = float(np.abs(x).max())  # NaN and Inf carry through the max: one pass checks both
    if not math.isfinite(peak):
        bad = int((~np.isfinite(x)).sum())
        raise AudioError(f"{name}: contains {bad} NaN/Inf samples; the file or upstream processing is broken")
    if peak > 2.0:
        # Almost always int16-range values stored as float; silently clipping would destroy them.
        raise AudioError(
            f"{name}: float samples reach {peak:.1f} but must be in [-1, 1]; "
            "if they are int16-scaled, divide by 32768 (or pass the int16 array itself)"
        )

    if sample_rate != target_rate:
        g = math.gcd(int(sample_rate), int(target_rate))
        x = resample_poly(x, int(target_rate) // g, int(sample_rate) // g)
    elif peak <= 1.0:  # nothing to clip; still never hand back the caller's own buffer
        return x.astype(np.float32, copy=np.may_share_memory(x, samples))
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


def _check_wav_header(path: Path, name: str) -> None:
    """Raise AudioError if a RIFF/WAVE file's data chunk disagrees with the bytes that follow it.

    libsndfile silently reads the declared length: a copy cut short would hide the missing audio,
    and a header that under-states the data (a recorder that was killed, a tool that wrote the
    header first) would drop everything after the first milliseconds.
    """
    with open(path, "rb") as f:
        head = f.read(12)
        if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
            return  # not plain RIFF/WAVE (or badly broken): let soundfile decide
        file_size = path.stat().st_size
        byte_rate = 0
        while True:
            chunk = f.read(8)
            if len(chunk) < 8:
                return  # no data chunk; soundfile reports that itself
            chunk_id, size = chunk[:4], struct.unpack("<I", chunk[4:])[0]
            if chunk_id == b"fmt " and size >= 16:
                fmt = f.read(16)
                if len(fmt) < 16:
                    return  # cut inside the header: soundfile reports it
                byte_rate = struct.unpack("<I", fmt[8:12])[0]
                f.seek(size - 16 + (size & 1), os.SEEK_CUR)
                continue
            if chunk_id != b"data":
                f.seek(size + (size & 1), os.SEEK_CUR)  # chunks are padded to even sizes
                continue
            available = file_size - f.tell()
            # 0 and 0xFFFFFFFF are placeholders written by streaming encoders; libsndfile reads to the end.
            if size in (0, 0xFFFFFFFF):
                return
            if size > available:
                raise AudioError(
                    f"{name}: truncated WAV file (header declares {size} data bytes, only {available} present); "
                    "re-copy or re-export the file"
                )
            f.seek(size + (size & 1), os.SEEK_CUR)
            if not _only_chunks_follow(f, file_size):
                seconds = f" ({size / byte_rate:.3f} s of {available / byte_rate:.3f} s)" if byte_rate else ""
                raise AudioError(
                    f"{name}: the WAV header declares {size} data bytes but {available} bytes of audio follow it{seconds}; "
                    "only the declared part would be read. Repair the header, e.g. "
                    "`ffmpeg -ignore_length 1 -i in.wav out.wav`, or `sox --ignore-length in.wav out.wav`"
                )
            return


def _only_chunks_follow(f, file_size: int) -> bool:
    """The bytes after the data chunk are whole RIFF chunks (LIST, id3 ...), as a writer leaves
    them; audio samples there mean the header under-states the data. A stray byte or few of
    padding (< a chunk header) is tolerated."""
    while file_size - f.tell() >= 8:
        head = f.read(8)
        size = struct.unpack("<I", head[4:])[0]
        if not all(32 <= b < 127 for b in head[:4]) or f.tell() + size > file_size + 1:
            return False
        f.seek(size + (size & 1), os.SEEK_CUR)
    return True


def _read_wav_stream_header(stream) -> tuple[int, int]:
    """(channels, rate) from the WAV header ffmpeg writes to a pipe; leaves `stream` at the samples."""

    def read(n: int) -> bytes:
        data = stream.read(n)
        if len(data) < n:
            raise AudioError("no audio stream found")
        return data

    if read(12)[8:12] != b"WAVE":
        raise AudioError("no WAV output")
    channels = rate = 0
    while True:
        chunk_id, size = read(4), struct.unpack("<I", read(4))[0]
        if chunk_id == b"data":
            if not channels:
                raise AudioError("no format chunk")
            return channels, rate
        body = read(size + (size & 1))
        if chunk_id == b"fmt ":
            channels, rate = struct.unpack("<HI", body[2:8])
