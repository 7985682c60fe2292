"""Robustness at every entry point: bad audio, tampered exports, hours-long and concurrent streams,
crash-safe training.

Entry points: the runtime (Recognizer streaming via accept_waveform, and recognize), `dualasr
transcribe`, `dualasr verify --audio`, training data loading (FeatureDataset, `dualasr train`),
`dualasr bench`. Each bad input must give a correct result or an error that names the input, raised
before anything runs deep inside a runtime; none may crash or print a traceback.

Fast tier: one ONNX fp32 export of the random-weight tiny checkpoint per module, torch on 1 thread.
Slow tier (-m slow): the 1-hour soak and the ExecuTorch checks (an ExecuTorch export takes ~1 min).
"""

from __future__ import annotations

import gc
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dualasr.audio import AudioError, load_audio
from dualasr.export.manifest import FORMAT_VERSION, ManifestError
from dualasr.runtime import Recognizer
from dualasr.runtime.simulate import current_rss_mb

CHUNK_MS = 320
RATE = 16000
ENV = {**os.environ, "PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS": "1"}


# ---------------------------------------------------------------------------------- fixtures


pytestmark = pytest.mark.usefixtures("one_torch_thread_module")


@pytest.fixture(scope="module")
def export_dir(random_checkpoint, tmp_path_factory) -> Path:
    from dualasr.export.exporter import export_checkpoint

    out = tmp_path_factory.mktemp("robust") / "export"
    manifest = export_checkpoint(random_checkpoint, out, ["onnx"], ["none"], [CHUNK_MS])
    assert "fp32" in manifest["artifacts"]["onnx"], manifest["errors"]
    return out


@pytest.fixture(scope="module")
def speech(speech_wav) -> np.ndarray:
    return load_audio(speech_wav)


@pytest.fixture(scope="module")
def rec(export_dir) -> Recognizer:
    return Recognizer(export_dir, mode="streaming", threads=1)


@pytest.fixture(scope="module")
def rec_full(export_dir) -> Recognizer:
    return Recognizer(export_dir, mode="full", threads=1)


def feed(rec: Recognizer, samples: np.ndarray, sizes: list[int], rate: int = RATE, name: str | None = None) -> list[int]:
    """Stream `samples` in pieces of the given sizes (cycled; 0 = an empty piece), decoding as
    chunks complete; -> final token ids."""
    s = rec.create_stream(name)
    i, k = 0, 0
    n_total = samples.shape[0]
    while i < n_total:
        n = sizes[k % len(sizes)]
        s.accept_waveform(rate, samples[i : i + n])
        i, k = i + n, k + 1
        while rec.is_ready(s):
            rec.decode(s)
    s.input_finished()
    rec.decode(s)
    assert s.result.is_final
    return s.result.token_ids


def oracle_tokens(checkpoint: Path, samples: np.ndarray, mode: str) -> list[int]:
    """The batched PyTorch oracle's tokens (tests/oracle.py) for 16 kHz samples."""
    from oracle import oracle_recognize

    from dualasr.checkpoint import load_model

    return oracle_recognize(load_model(checkpoint)[0], samples, mode, chunk_ms=CHUNK_MS).token_ids


# ---------------------------------------------------------------------------------- audio files

# name -> phrase the error must contain (besides the file's path)
BAD_FILES = {
    "empty.wav": "empty",
    "header_only.wav": "no audio frames",
    "truncated.wav": "truncated WAV",
    "garbage.wav": "unreadable or corrupt",
    "garbage.flac": "unreadable or corrupt",
    "text_as.wav": "unreadable or corrupt",
    "garbage.mp3": "ffmpeg",
    "nan.wav": "NaN/Inf",
    "inf.wav": "NaN/Inf",
    "int16_scaled_float.wav": r"must be in \[-1, 1\]",
    "absurd_rate.wav": "outside the supported",
    "a_directory.wav": "is a directory",
    "missing.wav": "no such file",
}
GOOD_FILES = ("silence.wav", "dc_offset.wav", "ten_samples.wav", "under_one_chunk.wav", "stereo.wav",
              "telephone_8k_ulaw.wav", "telephone_8k_pcm.wav", "hifi_44k.flac", "clipped.wav",
              "float_peak_1_5.wav", "pcm_u8.wav", "pcm_32.wav", "speech.mp3")


@pytest.fixture(scope="module")
def audio_files(speech, tmp_path_factory) -> tuple[dict[str, Path], dict[str, Path]]:
    """(good name -> path, bad name -> path): every kind of file a user may hand us."""
    from scipy.signal import resample_poly

    d = tmp_path_factory.mktemp("audio")
    good: dict[str, Path] = {}
    bad: dict[str, Path] = {n: d / n for n in BAD_FILES}

    def write(name: str, x: np.ndarray, rate: int = RATE, subtype: str = "PCM_16", fmt: str | None = None):
        sf.write(str(d / name), x, rate, subtype=subtype, format=fmt)
        good[name] = d / name

    write("silence.wav", np.zeros(2 * RATE, np.int16))  # exact digital silence: constant fbank frames
    write("dc_offset.wav", np.full(RATE, 0.25, np.float32))  # DC removal makes it silence too
    write("ten_samples.wav", (speech[8000:8010] * 32767).astype(np.int16))
    write("under_one_chunk.wav", speech[8000:11200])  # 0.2 s < one 320 ms chunk
    write("stereo.wav", np.stack([speech, 0.5 * speech], axis=1))
    tel = resample_poly(speech, 1, 2).astype(np.float32)
    write("telephone_8k_ulaw.wav", tel, 8000, "ULAW")
    write("telephone_8k_pcm.wav", tel, 8000)
    write("hifi_44k.flac", resample_poly(speech, 441, 160).clip(-1, 1), 44100, "PCM_24")
    write("clipped.wav", np.clip(speech * 20, -1, 1))
    write("float_peak_1_5.wav", speech / np.abs(speech).max() * 1.5, RATE, "FLOAT")
    write("pcm_u8.wav", speech, RATE, "PCM_U8")
    write("pcm_32.wav", speech, RATE, "PCM_32")
    if shutil.which("ffmpeg"):
        subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", "-i", str(good["stereo.wav"]),
                        str(d / "speech.mp3")], check=True)
        good["speech.mp3"] = d / "speech.mp3"
    else:
        bad["garbage.mp3"] = d / "garbage.mp3"  # then "needs ffmpeg" is the expected error

    rng = np.random.default_rng(0)
    bad["empty.wav"].write_bytes(b"")
    sf.write(str(bad["header_only.wav"]), np.zeros(0, np.int16), RATE, subtype="PCM_16")
    sf.write(str(d / "full.wav"), speech, RATE, subtype="PCM_16")
    full = (d / "full.wav").read_bytes()
    bad["truncated.wav"].write_bytes(full[: len(full) // 2])  # a copy cut short
    bad["garbage.wav"].write_bytes(rng.bytes(6000))
    bad["garbage.flac"].write_bytes(b"fLaC" + rng.bytes(6000))
    bad["text_as.wav"].write_text("this is not audio\n" * 50)
    bad["garbage.mp3"].write_bytes(rng.bytes(6000))
    x = speech.copy()
    x[1000] = np.nan
    sf.write(str(bad["nan.wav"]), x, RATE, subtype="FLOAT")
    x = speech.astype(np.float64)
    x[5] = np.inf
    sf.write(str(bad["inf.wav"]), x, RATE, subtype="DOUBLE")
    sf.write(str(bad["int16_scaled_float.wav"]), speech * 32768, RATE, subtype="FLOAT")
    sf.write(str(bad["absurd_rate.wav"]), (speech * 32767).astype(np.int16), 1_000_001, subtype="PCM_16")
    bad["a_directory.wav"].mkdir()
    return good, bad


def test_load_audio_refuses_every_bad_file_by_name(audio_files):
    """The gateway of transcribe, verify and training: each bad file -> AudioError naming it."""
    good, bad = audio_files
    for name, path in bad.items():
        with pytest.raises(AudioError) as e:
            load_audio(path)
        assert str(path) in str(e.value), e.value
        assert e.match(BAD_FILES[name])
    for name, path in good.items():
        x = load_audio(path)
        assert x.dtype == np.float32 and x.ndim == 1 and x.size > 0 and np.isfinite(x).all(), name
        assert np.abs(x).max() <= 1.0


# ---------------------------------------------------------------------------------- runtime: streaming


def _bad_pieces(speech: np.ndarray) -> list[tuple[str, int, object, str]]:
    """(case, sample rate, samples, error phrase) that Stream.accept_waveform must refuse."""
    nan = speech[:3000].copy()
    nan[7] = np.nan
    inf = speech[:3000].copy()
    inf[0] = np.inf
    ninf = speech[:3000].astype(np.float64)
    ninf[-1] = -np.inf
    piece = speech[:3000]
    return [
        ("nan", RATE, nan, "NaN/Inf"),
        ("+inf", RATE, inf, "NaN/Inf"),
        ("-inf float64", RATE, ninf, "NaN/Inf"),
        ("int16 range as float", RATE, piece * 32768, r"in \[-1, 1\]"),
        ("float16", RATE, piece.astype(np.float16), "dtype"),
        ("int8", RATE, (piece * 127).astype(np.int8), "dtype"),
        ("complex", RATE, piece.astype(np.complex64), "dtype"),
        ("strings", RATE, np.array(["0.1", "0.2"]), "dtype"),
        ("3-D", RATE, np.zeros((2, 2, 100), np.float32), "shape"),
        ("9 channels", RATE, np.zeros((1000, 9), np.float32), "shape"),
        ("rate 0", 0, piece, "sample rate"),
        ("negative rate", -RATE, piece, "sample rate"),
        ("float rate", 16000.0, piece, "positive integer"),
        ("rate None", None, piece, "sample rate"),
        ("rate 500 Hz", 500, piece, "outside the supported"),
        ("rate 1 GHz + 1", 1_000_000_001, piece, "outside the supported"),
    ]


def test_stream_refuses_bad_pieces_and_stays_usable(rec, speech):
    want = rec.recognize(speech, RATE).token_ids
    cases = _bad_pieces(speech)
    for case, rate, samples, phrase in cases:
        s = rec.create_stream(name=f"mic[{case}]")
        with pytest.raises(AudioError) as e:
            s.accept_waveform(rate, samples)
        assert f"mic[{case}]" in str(e.value) and e.match(phrase), (case, str(e.value))
        # The refused piece left no trace: the stream goes on as if it never came.
        for i in range(0, len(speech), 4000):
            s.accept_waveform(RATE, speech[i : i + 4000])
            while rec.is_ready(s):
                rec.decode(s)
        s.input_finished()
        rec.decode(s)
        assert s.result.token_ids == want, case
    # After the end of input and after a rate was fixed:
    s = rec.create_stream(name="mic-x")
    s.accept_waveform(8000, speech[:800])
    with pytest.raises(AudioError, match="mic-x.*changed from 8000 to 16000"):
        s.accept_waveform(RATE, speech[:800])
    s.input_finished()
    with pytest.raises(RuntimeError, match="mic-x.*after input_finished"):
        s.accept_waveform(8000, speech[:800])
    print(f"runtime streaming: {len(cases) + 2} bad inputs refused")


def test_recognize_refuses_bad_arrays(rec, rec_full, speech):
    cases = _bad_pieces(speech) + [("empty", RATE, np.zeros(0, np.float32), "zero length"),
                                   ("empty int16", RATE, np.zeros((0, 2), np.int16), "zero length")]
    for r in (rec, rec_full):
        for case, rate, samples, phrase in cases:
            with pytest.raises(AudioError, match=phrase) as e:
                r.recognize(samples, rate, name=f"utt[{case}]")
            assert f"utt[{case}]" in str(e.value), (case, str(e.value))


def test_edge_audio_gives_results(rec, rec_full, speech, random_checkpoint):
    """Valid but unusual audio: results equal the PyTorch oracle (or the equivalent input)."""
    silence = np.zeros(3 * RATE, np.float32)
    padded = np.concatenate([silence, speech, silence])
    for mode, r in (("streaming", rec), ("full", rec_full)):
        for audio in (silence, padded, np.full(RATE, 0.25, np.float32)):  # digital silence, DC offset
            got = r.recognize(audio, RATE)
            assert got.is_final and got.token_ids == oracle_tokens(random_checkpoint, audio, mode), mode
        # shorter than one encoder frame / one chunk
        assert r.recognize(speech[8000:8100], RATE).token_ids == []
        short = speech[8000:11200]
        assert r.recognize(short, RATE).token_ids == oracle_tokens(random_checkpoint, short, mode)
        # float slightly beyond full scale is clipped, exactly as clipping it first
        loud = speech / np.abs(speech).max() * 1.5
        assert r.recognize(loud, RATE).token_ids == r.recognize(np.clip(loud, -1, 1), RATE).token_ids
        # denormal-tiny samples, int32 and uint8 PCM, a python list
        assert r.recognize(speech * 1e-38, RATE).is_final
        pcm32 = (speech.astype(np.float64) * 2**31).clip(-(2**31), 2**31 - 1).astype(np.int32)
        assert r.recognize(pcm32, RATE).token_ids == r.recognize(pcm32 / 2**31, RATE).token_ids
        assert r.recognize((speech * 127 + 128).astype(np.uint8), RATE).is_final
        assert r.recognize(speech[:4000].tolist(), RATE).is_final
    # A stream that never got audio, and one that got only empty pieces.
    s = rec.create_stream()
    for _ in range(3):
        s.accept_waveform(RATE, np.zeros(0, np.int16))
    s.input_finished()
    rec.decode(s)
    assert s.result.is_final and s.result.token_ids == []
    # Stereo: once a piece of > 8 frames fixed the layout, single frames [1, 2] stay one frame
    # (alone, [1, 2] is ambiguous and reads as torchaudio's [channels=1, frames=2]).
    stereo = np.stack([speech, 0.5 * speech], axis=1)
    assert feed(rec, stereo, [1600, 1, 2, 3, 1]) == rec.recognize(stereo, RATE).token_ids
    chans_first = np.ascontiguousarray(stereo.T)
    s = rec.create_stream("mic-layout")
    s.accept_waveform(RATE, chans_first[:, :1000])
    with pytest.raises(AudioError, match="mic-layout.*2 channels on axis 0"):
        s.accept_waveform(RATE, stereo[:1000])  # switched layout mid-stream
    # One 60 s piece at once: decoded in chunks, same as small pieces.
    long = np.tile(padded, 5)[: 60 * RATE]
    assert feed(rec, long, [len(long)]) == feed(rec, long, [3000])


@settings(max_examples=10, deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(
    rate=st.sampled_from([8000, 16000, 44100, 48000]),
    dtype=st.sampled_from(["float32", "int16"]),
    stereo=st.booleans(),
    lead_silence=st.sampled_from([0, 1234, 8000]),
    sizes=st.lists(st.integers(min_value=0, max_value=12000), min_size=1, max_size=5).filter(any),
    full=st.booleans(),
)
def test_any_split_any_format_gives_same_tokens(rec, rec_full, speech, rate, dtype, stereo, lead_silence, sizes, full):
    """Extends tests/test_runtime.py::test_any_split_gives_same_tokens (16 kHz float mono, streaming):
    any rate (streaming resampler), int16, stereo, digital silence, empty pieces, full mode."""
    from scipy.signal import resample_poly

    r = rec_full if full else rec
    x = np.concatenate([np.zeros(lead_silence, np.float32), speech[: 2 * RATE]])
    if rate != RATE:
        g = np.gcd(rate, RATE)
        x = resample_poly(x, rate // g, RATE // g).astype(np.float32).clip(-1, 1)
    if dtype == "int16":
        x = np.round(x * 32767).astype(np.int16)
    if stereo:
        x = np.stack([x, x], axis=1)
    sizes = [n and max(1, n * rate // RATE) for n in sizes]  # the same durations at every rate
    first = next(i for i, n in enumerate(sizes) if n)
    if stereo and sizes[first] <= 8:  # the first 2-D piece fixes the layout: make it unambiguous
        sizes[first] = 9
    whole = r.recognize(x, rate).token_ids
    assert feed(r, x, sizes, rate) == whole


# ---------------------------------------------------------------------------------- CLI: transcribe


def _cli(*args: object, timeout: int = 180) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "dualasr.cli", *map(str, args)], capture_output=True,
                          text=True, timeout=timeout, env=ENV)


def test_cli_transcribe_every_file_kind(export_dir, audio_files, rec):
    good, bad = audio_files
    files = [*good.values(), *bad.values()]
    out = _cli("transcribe", export_dir, *files, "--json")
    assert out.returncode == 1, out.stderr  # some failed, the others were transcribed
    assert "Traceback" not in out.stderr
    data = json.loads(out.stdout)
    done = {Path(f["file"]).name: f for f in data["files"]}
    assert set(done) == set(good), set(good) ^ set(done)
    for name, path in bad.items():
        msg = data["errors"][str(path)]
        assert str(path) in msg and re.search(BAD_FILES[name], msg), (name, msg)
        assert f"{path}: error:" in out.stderr
    # Same tokens as the library on the same samples (stereo/8 kHz/u-law/mp3 go through load_audio).
    for name in ("stereo.wav", "telephone_8k_ulaw.wav", "hifi_44k.flac", "silence.wav"):
        assert done[name]["tokens"] == rec.recognize(load_audio(good[name]), RATE).token_ids, name
    print(f"dualasr transcribe: {len(bad)} bad files refused by name, {len(good)} edge-case files transcribed")


def test_cli_transcribe_full_mode_and_bad_arguments(export_dir, audio_files, capsys, tmp_path):
    """In-process through dualasr.cli.main (the same error handling as the command)."""
    from dualasr.cli import main

    good, bad = audio_files
    assert main(["transcribe", str(export_dir), *map(str, good.values()), "--mode", "full"]) == 0
    out = capsys.readouterr()
    assert all(f"{p}: " in out.out for p in good.values()) and "RTF" in out.out
    # Only bad files: exit 2 with a summary; a directory or nothing as the export; no audio.
    assert main(["transcribe", str(export_dir), *map(str, bad.values())]) == 2
    assert "no file could be transcribed" in capsys.readouterr().err
    assert main(["transcribe", str(tmp_path), str(good["silence.wav"])]) == 2
    assert "no manifest.json" in capsys.readouterr().err
    assert main(["transcribe", str(export_dir)]) == 2
    assert "no audio files given" in capsys.readouterr().err
    assert main(["transcribe", str(export_dir), str(good["silence.wav"]), "--chunk-ms", "160"]) == 2
    assert "exported: 320" in capsys.readouterr().err


# ---------------------------------------------------------------------------------- CLI: verify --audio


def test_cli_verify_refuses_bad_audio(export_dir, audio_files, capsys):
    from dualasr.cli import main

    good, bad = audio_files
    for name, path in bad.items():
        assert main(["verify", str(export_dir), "--audio", str(path)]) == 2, name
        err = capsys.readouterr().err
        assert "dualasr verify: error:" in err and str(path) in err, (name, err)
        assert re.search(BAD_FILES[name], err), (name, err)
    assert main(["verify", str(export_dir), "--audio", str(good["ten_samples.wav"])]) == 2
    assert "too short to verify" in capsys.readouterr().err
    print(f"dualasr verify --audio: {len(bad) + 1} bad files refused by name")


def test_cli_verify_edge_audio_passes(export_dir, audio_files, capsys, tmp_path):
    """Digital silence, 8 kHz u-law, stereo, 44.1 kHz: the export still verifies."""
    from dualasr.cli import main

    good, _ = audio_files
    files = [good[n] for n in ("silence.wav", "telephone_8k_ulaw.wav", "stereo.wav", "hifi_44k.flac")]
    report = tmp_path / "report.json"
    status = main(["verify", str(export_dir), "--audio", *map(str, files), "--json", str(report)])
    out = capsys.readouterr().out
    assert status == 0, out
    data = json.loads(report.read_text())
    assert data["ok"] and len(data["audio"]) == 4


# ---------------------------------------------------------------------------------- tampered exports


def _tamper(src: Path, dst: Path, case: str) -> str:
    """Copy the export and damage it; -> the phrase the refusal must contain."""
    shutil.copytree(src, dst)
    weights = dst / "onnx" / "fp32" / "weights.bin"
    manifest_path = dst / "manifest.json"
    m = json.loads(manifest_path.read_text())
    if case == "sha256":
        data = bytearray(weights.read_bytes())
        data[len(data) // 3] ^= 0x01  # one bit, same size
        weights.write_bytes(bytes(data))
        return r"weights\.bin has sha256 .*modified or corrupted"
    if case == "missing weights":
        weights.unlink()
        return r"weights\.bin listed in the manifest is missing"
    if case == "truncated weights":
        weights.write_bytes(weights.read_bytes()[:1000])
        return r"weights\.bin is 1000 bytes but the manifest says .*truncated"
    if case == "missing graph":
        (dst / "onnx" / "fp32" / f"encoder_streaming_{CHUNK_MS}ms.onnx").unlink()
        return "encoder_streaming_320ms.onnx listed in the manifest is missing"
    if case == "newer format":
        m["format_version"] = FORMAT_VERSION + 1
    elif case == "path escapes":
        outside = dst.parent / f"{dst.name}-evil.onnx"
        shutil.copy(dst / "onnx" / "fp32" / "joiner.onnx", outside)
        m["artifacts"]["onnx"]["fp32"]["graphs"]["joiner"] = f"../{outside.name}"
        m["files"][f"../{outside.name}"] = m["files"]["onnx/fp32/joiner.onnx"]
    elif case == "symlink escapes":
        outside = dst.parent / f"{dst.name}-joiner.onnx"
        joiner = dst / "onnx" / "fp32" / "joiner.onnx"
        shutil.move(joiner, outside)
        joiner.symlink_to(outside)
        return r"joiner\.onnx.*leads outside the export folder"
    elif case == "corrupt manifest":
        manifest_path.write_text(manifest_path.read_text()[:200])
        return "not valid JSON"
    manifest_path.write_text(json.dumps(m))
    return {"newer format": "newer than this dualasr reads", "path escapes": "escape the export folder"}[case]


TAMPER_CASES = ["sha256", "missing weights", "truncated weights", "missing graph", "newer format",
                "path escapes", "symlink escapes", "corrupt manifest"]


@pytest.fixture()
def nothing_may_load(monkeypatch):
    """Any attempt to open a model (runtime backends, verify's PyTorch reference) fails the test."""
    from dualasr import checkpoint
    from dualasr.runtime import backends, torch_backend

    def refuse(*a, **k):
        raise AssertionError("a model was loaded from a damaged export")

    for cls in (backends.OnnxRuntimeBackend, backends.ExecuTorchBackend, backends.CoreMLBackend,
                torch_backend.TorchBackend):
        monkeypatch.setattr(cls, "__init__", refuse)
    monkeypatch.setattr(checkpoint, "load_model", refuse)
    monkeypatch.setattr("onnxruntime.InferenceSession", refuse)


@pytest.mark.parametrize("case", TAMPER_CASES)
def test_damaged_export_refused_at_every_entry_point(case, export_dir, speech_wav, tmp_path, capsys, nothing_may_load):
    from dualasr.cli import main

    bad = tmp_path / "export"
    phrase = _tamper(export_dir, bad, case)
    # runtime
    for backend in ("onnxruntime", "executorch", "torch"):
        with pytest.raises(ManifestError, match=phrase):
            Recognizer(bad, backend=backend)
    if case not in ("sha256",):  # size/structure problems are caught even without checksums
        with pytest.raises(ManifestError, match=phrase):
            Recognizer(bad, verify_checksums=False)
    # dualasr transcribe (exit 2, the reason, no traceback)
    assert main(["transcribe", str(bad), str(speech_wav)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("dualasr transcribe: error:") and re.search(phrase, err), err
    # dualasr bench (exit 2)
    assert main(["bench", str(bad), "--data", str(_data_manifest(tmp_path / "d.jsonl", [speech_wav])), *BENCH_ONE_CELL]) == 2
    err = capsys.readouterr().err
    assert err.startswith("dualasr bench: error:") and re.search(phrase, err), err
    # dualasr verify (exit 1, "not intact")
    assert main(["verify", str(bad), "--audio", str(speech_wav)]) == 1
    err = capsys.readouterr().err
    assert "the export is not intact" in err and re.search(phrase, err), err


def test_damaged_export_real_cli_has_no_traceback(export_dir, speech_wav, tmp_path):
    bad = tmp_path / "export"
    _tamper(export_dir, bad, "truncated weights")
    for cmd in (["transcribe", bad, speech_wav], ["verify", bad]):
        out = _cli(*cmd)
        assert out.returncode in (1, 2) and "truncated" in out.stderr and "Traceback" not in out.stderr, out.stderr


BENCH_ONE_CELL = ["--backends", "onnxruntime", "--peers", "none", "--threads", "1", "--precisions", "fp32",
                  "--modes", "streaming", "--no-compute"]


def _data_manifest(path: Path, audio: list[Path]) -> Path:
    path.write_text("".join(json.dumps({"audio": str(a), "text": "call the office"}) + "\n" for a in audio))
    return path


def test_cli_bench_audio(export_dir, audio_files, speech_wav, tmp_path, capsys):
    """`dualasr bench --data`: a bad file is refused by name before any cell runs (exit 2); the
    edge-case files run through a real cell."""
    from dualasr.cli import main

    good, bad = audio_files
    for name, path in bad.items():
        m = _data_manifest(tmp_path / f"{name}.jsonl", [speech_wav, path])
        assert main(["bench", str(export_dir), "--data", str(m), *BENCH_ONE_CELL]) == 2, name
        err = capsys.readouterr().err
        assert "dualasr bench: error:" in err and str(path) in err and re.search(BAD_FILES[name], err), (name, err)
    m = _data_manifest(tmp_path / "good.jsonl", list(good.values()))
    report = tmp_path / "bench.json"
    assert main(["bench", str(export_dir), "--data", str(m), *BENCH_ONE_CELL, "--json", str(report)]) == 0
    cells = json.loads(report.read_text())["cells"]
    assert [c["status"] for c in cells] == ["ok"], cells
    print(f"dualasr bench --data: {len(bad)} bad files refused by name; {len(good)} edge-case files benchmarked")


# ---------------------------------------------------------------------------------- long streams


def _periodic_audio(speech: np.ndarray, rec: Recognizer) -> tuple[np.ndarray, int]:
    """One period of the soak signal: the speech clip, then digital silence longer than the
    streaming encoder's receptive field (layers x (attention window + conv left context) encoder
    frames: 4 x (32 + 7) = 6.24 s for the tiny model), padded to whole chunks.
    -> (period samples, period length in encoder frames)."""
    m = rec.manifest["model"]
    receptive = m["num_layers"] * (m.get("left_context", 0) + (m["conv_kernel"] - 1) // 2)  # encoder frames
    samples_per_frame = int(round(rec.frame_shift_s * rec.sample_rate))
    samples_per_chunk = rec.chunk_frames * samples_per_frame
    need = len(speech) + receptive * rec.subsampling * samples_per_frame
    chunks = -(-need // samples_per_chunk) + 1
    period = np.zeros(chunks * samples_per_chunk, np.float32)
    period[: len(speech)] = speech
    return period, chunks * rec.chunk_frames // rec.subsampling


def _pieces(period: np.ndarray, periods: int, sizes=(1600, 999, 2400, 160)):
    """The periodic signal in microphone-sized pieces, generated on the fly (never held whole)."""
    total, pos, k = len(period) * periods, 0, 0
    while pos < total:
        n = min(sizes[k % len(sizes)], total - pos)
        i = pos % len(period)
        yield period[i : i + n] if i + n <= len(period) else np.concatenate([period[i:], period[: i + n - len(period)]])
        pos, k = pos + n, k + 1


def _reference_periods(rec: Recognizer, period: np.ndarray, period_frames: int) -> list[list[tuple[int, int]]]:
    """Decode 4 periods on a fresh stream (1600 samples at a time) -> per period [(token, frame
    within the period)]. Also proves the decoder state at the start of period 2 equals that at the
    start of period 3 (float state bit-exact; processed_lens only masks a cache that is full by
    then), so every later period must decode exactly like period 2."""
    s = rec.create_stream("reference")
    x = np.tile(period, 4)
    states = []
    for i in range(0, len(x), 1600):
        s.accept_waveform(RATE, x[i : i + 1600])
        while rec.is_ready(s):
            rec.decode(s)
            if s.frames_decoded % period_frames == 0:
                h = s.hyps[0]
                floats = [t.copy() for t, sp in zip(s.encoder_state, rec.graphs.encoder_states) if sp.name != "processed_lens"]
                states.append((floats, h.context.copy(), h.pred_out.copy()))
    s.input_finished()
    rec.decode(s)
    a, b = states[1], states[2]
    assert all(np.array_equal(x, y) for x, y in zip(a[0], b[0])), "encoder state is not periodic"
    assert np.array_equal(a[1], b[1]) and np.array_equal(a[2], b[2]), "predictor state is not periodic"
    out: list[list[tuple[int, int]]] = [[], [], [], []]
    r = s.result
    for tok, t in zip(r.token_ids, r.timestamps):
        f = int(round(t / rec.encoder_frame_s)) - 1
        out[f // period_frames].append((tok, f % period_frames))
    assert out[3] == out[2]
    return out


def soak(rec: Recognizer, speech: np.ndarray, minutes: float) -> dict:
    """Stream `minutes` of the periodic signal with sherpa-onnx's endpoint rules and a reset at
    each endpoint; compare every period's tokens with the reference as soon as it is complete."""
    period, pf = _periodic_audio(speech, rec)
    periods = int(np.ceil(minutes * 60 * RATE / len(period)))
    ref = _reference_periods(rec, period, pf)
    assert ref[2], "the reference period decoded to nothing; the comparison would be vacuous"
    s = rec.create_stream("soak")
    pending: dict[int, list[tuple[int, int]]] = defaultdict(list)
    emitted = segments = checked = tokens = 0
    mismatched: list[int] = []
    rss: list[tuple[float, float]] = []
    t0 = time.perf_counter()

    def collect() -> None:
        nonlocal emitted, tokens
        r = s.result
        for tok, t in zip(r.token_ids[emitted:], r.timestamps[emitted:]):
            f = int(round(t / rec.encoder_frame_s)) - 1
            pending[f // pf].append((tok, f % pf))
        tokens += len(r.token_ids) - emitted
        emitted = len(r.token_ids)

    def check(upto_frame: int) -> None:
        nonlocal checked
        for k in sorted(p for p in pending if (p + 1) * pf <= upto_frame):
            if pending.pop(k) != ref[min(k, 2)]:
                mismatched.append(k)
            checked += 1

    for piece in _pieces(period, periods):
        s.accept_waveform(RATE, piece)
        if not rec.is_ready(s):
            continue
        while rec.is_ready(s):
            rec.decode(s)
        collect()
        if rec.is_endpoint(s):
            segments += 1
            rec.reset(s)
            emitted = 0
        check(s.frames_decoded)
        done = s.frames_decoded // pf
        if s.frames_decoded % pf == 0 and (done == 2 or done % 25 == 0):
            gc.collect()
            rss.append((s.audio_seconds, current_rss_mb()))
    s.input_finished()
    rec.decode(s)
    collect()
    check(10**12)
    gc.collect()
    rss.append((s.audio_seconds, current_rss_mb()))
    return {"audio_h": s.audio_seconds / 3600, "wall_s": time.perf_counter() - t0, "periods": periods,
            "compared": checked, "period_s": len(period) / RATE,
            "mismatched": mismatched, "segments": segments, "tokens": tokens, "rss_mb": rss,
            "feature_backlog": s.frames_available, "resampler_backlog": s.frontend.buffered_samples()}


def _report_soak(stats: dict, record_property) -> None:
    (a0, r0), (a1, r1) = stats["rss_mb"][0], stats["rss_mb"][-1]
    line = (f"soak: {stats['audio_h'] * 60:.1f} min of audio in {stats['wall_s']:.1f} s wall, "
            f"{stats['compared']} periods of {stats['period_s']:.2f} s compared, {stats['segments']} endpoint resets, {stats['tokens']} tokens; "
            f"RSS {r0:.1f} MiB at {a0:.0f} s -> {r1:.1f} MiB at {a1:.0f} s "
            f"(max {max(r for _, r in stats['rss_mb']):.1f} MiB)")
    print(line)
    for k in ("audio_h", "wall_s", "segments", "tokens"):
        record_property(f"soak_{k}", stats[k])
    record_property("soak_rss_start_mb", r0)
    record_property("soak_rss_end_mb", r1)


@pytest.mark.parametrize("minutes", [5, pytest.param(60, marks=pytest.mark.slow)], ids=["5min", "1h"])
def test_soak_long_stream(export_dir, speech_wav, minutes, record_property):
    """5 min (fast tier) / 1 h (slow) of speech + digital-silence gaps through one stream: every
    period decodes exactly like the reference (no drift, endpoint resets change nothing), buffers
    stay below one chunk and RSS stays flat. The soak runs in a process of its own (this file's
    __main__), so RSS is the stream's alone: a pytest worker's heap, shaped by every test before,
    moved by 5.7 MiB during one soak while the same soak alone moved by 0.4 MiB."""
    r = subprocess.run([sys.executable, __file__, str(export_dir), str(speech_wav), str(minutes)],
                       capture_output=True, text=True, env=ENV, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    stats = json.loads(r.stdout.splitlines()[-1])
    _report_soak(stats, record_property)
    assert stats["audio_h"] * 60 >= minutes
    assert stats["compared"] == stats["periods"] and stats["mismatched"] == []
    assert stats["segments"] >= stats["audio_h"] * 3600 / (20 + CHUNK_MS / 1000) - 1  # the 20 s rule at least
    assert stats["feature_backlog"] == 0 and stats["resampler_backlog"] == 0
    assert stats["rss_mb"][-1][1] - stats["rss_mb"][0][1] < 4.0, stats["rss_mb"]


# ---------------------------------------------------------------------------------- concurrency


def _thread_inputs(speech: np.ndarray) -> list[tuple[np.ndarray, int, list[int]]]:
    """8 different streams: (samples, rate, piece sizes)."""
    from scipy.signal import resample_poly

    rng = np.random.default_rng(8)
    noise = (rng.standard_normal(2 * RATE) * 0.05).astype(np.float32)
    silence = np.zeros(RATE, np.float32)
    return [
        (speech, RATE, [1600]),
        (speech[::-1].copy(), RATE, [999, 5000]),
        (noise, RATE, [320]),
        (np.round(resample_poly(speech, 1, 2) * 32767).astype(np.int16), 8000, [800, 77]),
        (resample_poly(speech, 3, 1).astype(np.float32).clip(-1, 1), 48000, [4800]),
        (np.concatenate([silence, speech, silence]), RATE, [16000]),
        (np.clip(speech * 20, -1, 1), RATE, [2000, 1]),
        (np.stack([speech, speech[::-1]], axis=1), RATE, [3333, 1]),
    ]


def run_threads(rec: Recognizer, inputs, repeats: int = 2) -> tuple[list, list]:
    """Thread i decodes input i as a stream of the shared `rec`, `repeats` times, all threads
    starting together; -> (each input decoded alone first, per thread the results)."""
    alone = [feed(rec, x, sizes, rate) for x, rate, sizes in inputs]
    got: list[list[list[int]]] = [[] for _ in inputs]
    errors: list[BaseException] = []
    barrier = threading.Barrier(len(inputs))

    def work(i: int) -> None:
        x, rate, sizes = inputs[i]
        try:
            barrier.wait(timeout=60)
            for _ in range(repeats):
                got[i].append(feed(rec, x, sizes, rate, name=f"thread-{i}"))
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(inputs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert not any(t.is_alive() for t in threads), "a decoding thread hung"
    assert not errors, errors
    return alone, got


def test_eight_threads_share_one_recognizer(rec, rec_full, speech):
    """8 Python threads, 8 streams, one streaming Recognizer (and one full-mode one): every
    stream's tokens equal decoding it alone (see the Recognizer docstring for the rules)."""
    inputs = _thread_inputs(speech)
    for r in (rec, rec_full):
        alone, got = run_threads(r, inputs)
        assert all(len(t) > 0 for t in alone[:2])
        assert got == [[a, a] for a in alone]


# ---------------------------------------------------------------------------------- ExecuTorch (slow)


@pytest.fixture(scope="module")
def et_export(builtin_et_export) -> tuple[Path, Path]:
    from dualasr.export.exporter import DEFAULT_CHECKPOINT

    return DEFAULT_CHECKPOINT, builtin_et_export


@pytest.mark.slow
def test_executorch_digital_silence_and_threads(et_export, speech):
    """The ExecuTorch graphs on constant fbank frames (digital silence, DC offset) equal the
    PyTorch oracle in both modes (they returned NaN before the StableLayerNorm export); one
    ExecuTorch Recognizer shared by 8 threads gives each stream's solo result (its lock)."""
    ckpt, export = et_export
    silence = np.zeros(2 * RATE, np.float32)
    for mode in ("streaming", "full"):
        r = Recognizer(export, backend="executorch", mode=mode)
        for audio in (silence, np.concatenate([silence, speech, silence]), np.full(RATE, 0.25, np.float32)):
            assert r.recognize(audio, RATE).token_ids == oracle_tokens(ckpt, audio, mode), mode
    # Shorter than encoder_full's declared minimum (12 frames): a clear error, not a runtime crash.
    with pytest.raises(ValueError, match="clip: .* shorter than this export's full-context graph accepts"):
        Recognizer(export, backend="executorch", mode="full").recognize(speech[8000:9000], RATE, name="clip")
    r = Recognizer(export, backend="executorch")
    alone, got = run_threads(r, _thread_inputs(speech), repeats=1)
    assert got == [[a] for a in alone]


if __name__ == "__main__":  # the soak of test_soak_long_stream: EXPORT_DIR SPEECH_WAV MINUTES -> its stats as JSON
    export, wav, soak_minutes = sys.argv[1], sys.argv[2], float(sys.argv[3])
    print(json.dumps(soak(Recognizer(export, threads=1, endpoint=True), load_audio(wav), soak_minutes)))
