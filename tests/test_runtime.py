"""The torch-free runtime (dualasr.runtime) against the batched PyTorch oracle (tests/oracle.py:
the checkpoint's encoder + dualasr.decoding), on every backend, the torch one included.

One ONNX fp32 export (320 ms chunks) of the random-weight tiny checkpoint is made per module;
the ExecuTorch comparison exports too (~2 min on 2 cores) and is marked slow.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import one_torch_thread
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from oracle import oracle_recognize

from dualasr.audio import AudioError, load_audio
from dualasr.export.exporter import DEFAULT_CHECKPOINT
from dualasr.runtime import EndpointConfig, EndpointRule, Recognizer
from dualasr.runtime.backends import BackendError
from dualasr.runtime.features import StreamingFbank
from dualasr.runtime.simulate import simulate, simulate_set

REPO = Path(__file__).resolve().parent.parent
CHUNK_MS = 320
# kaldi_native_fbank vs dualasr.fbank: float32 rounding far below a frame's peak (see
# tests/test_audio_features.py).
KALDI_TOL = 1e-3


# ---------------------------------------------------------------------------------- fixtures


def _export(checkpoint: Path, out: Path, formats: list[str]) -> Path:
    from dualasr.export.exporter import export_checkpoint

    manifest = export_checkpoint(checkpoint, out, formats, ["none"], [CHUNK_MS])
    missing = [f for f in formats if "fp32" not in manifest["artifacts"].get(f, {})]
    assert not missing, f"export of {missing} failed: {manifest['errors']}"
    return out


@pytest.fixture(scope="module")
def onnx_export(random_checkpoint, tmp_path_factory) -> Path:
    return _export(random_checkpoint, tmp_path_factory.mktemp("rt") / "export", ["onnx"])


@pytest.fixture(scope="module")
def lstm_export(random_lstm_checkpoint, tmp_path_factory) -> Path:
    return _export(random_lstm_checkpoint, tmp_path_factory.mktemp("rt") / "export-lstm", ["onnx"])


@pytest.fixture(scope="module")
def speech(speech_wav) -> np.ndarray:
    return load_audio(speech_wav)


@pytest.fixture(scope="module")
def recognizer(onnx_export) -> Recognizer:
    return Recognizer(onnx_export, mode="streaming")




def _oracle(checkpoint: Path, samples: np.ndarray, mode: str = "streaming", decoding: str = "greedy"):
    """The batched PyTorch oracle's result on 16 kHz samples, on one torch thread."""
    from dualasr.checkpoint import load_model

    with one_torch_thread():
        return oracle_recognize(load_model(checkpoint)[0], samples, mode, decoding, CHUNK_MS)


def _feed(rec, samples: np.ndarray, sizes: list[int], rate: int = 16000) -> list[int]:
    """Stream samples in pieces of the given sizes (cycled), decoding as chunks complete."""
    s = rec.create_stream()
    i, k = 0, 0
    while i < len(samples):
        n = sizes[k % len(sizes)]
        s.accept_waveform(rate, samples[i : i + n])
        i, k = i + n, k + 1
        while rec.is_ready(s):
            rec.decode(s)
    s.input_finished()
    rec.decode(s)
    assert s.result.is_final
    return s.result.token_ids


# ---------------------------------------------------------------------------------- features


@pytest.mark.parametrize("snip_edges", [False, True])
def test_streaming_fbank_matches_kaldi_native_fbank(speech, snip_edges):
    """Read in random pieces as frames complete: the frames, and how many are ready after each
    piece, are kaldi-native-fbank's OnlineFbank's (what sherpa-onnx computes), and the samples held
    stay bounded."""
    import kaldi_native_fbank as knf

    from dualasr.features import FbankConfig
    from test_audio_features import knf_options

    cfg = FbankConfig(snip_edges=snip_edges)
    ref = knf.OnlineFbank(knf_options(cfg))
    fb = StreamingFbank(cfg.to_dict())
    rng = np.random.default_rng(0)
    got, want, i = [], [], 0
    while i < len(speech):
        n = int(rng.integers(1, 4000))
        fb.accept_waveform(speech[i : i + n])
        ref.accept_waveform(16000, speech[i : i + n])
        i += n
        assert fb.num_frames_ready == ref.num_frames_ready
        got.append(fb.read(fb.num_available))  # read as they come: consumed frames are dropped
        assert fb.buffered_samples() < 400 + 160  # what the next frame needs: a window + a shift
    fb.input_finished()
    ref.input_finished()
    assert fb.num_frames_ready == ref.num_frames_ready
    got.append(fb.read(fb.num_available))
    got = np.concatenate(got)
    want = np.stack([np.asarray(ref.get_frame(k), dtype=np.float32) for k in range(ref.num_frames_ready)])
    assert got.shape == want.shape
    assert np.abs(got - want).max() <= KALDI_TOL


def test_streaming_resampler_matches_resample_poly():
    from scipy.signal import resample_poly

    from dualasr.runtime.resample import StreamingResampler

    rng = np.random.default_rng(1)
    for rate in (8000, 44100):
        x = (rng.standard_normal(rate + 321) * 0.1).astype(np.float32)
        g = np.gcd(rate, 16000)
        want = resample_poly(x, 16000 // g, rate // g)
        r, out, i = StreamingResampler(rate, 16000), [], 0
        while i < len(x):
            n = int(rng.integers(0, 3000))
            out.append(r.accept(x[i : i + n]))
            i += n
            assert r._buf.size < 2 * r.h.size  # bounded history
        out.append(r.flush())
        got = np.concatenate(out)
        assert got.shape == want.shape
        assert np.abs(got - want).max() < 1e-5


# ---------------------------------------------------------------------------------- equivalence


@pytest.mark.parametrize("backend", ["onnxruntime", "torch"])
@pytest.mark.parametrize("decoding", ["greedy", "beam"])
def test_streaming_matches_the_oracle(onnx_export, random_checkpoint, speech, decoding, backend):
    rec = Recognizer(onnx_export, backend=backend, mode="streaming", decoding=decoding, threads=1)
    got, want = rec.recognize(speech, 16000), _oracle(random_checkpoint, speech, "streaming", decoding)
    assert len(want.token_ids) > 5  # the random model must emit something to compare
    assert got.token_ids == want.token_ids
    assert got.timestamps == want.timestamps
    assert got.text == rec.tokenizer.decode(want.token_ids) and got.is_final
    # Emission times lie on encoder frame ends, within the audio.
    assert all(0 < t <= len(speech) / 16000 + 1e-6 for t in got.timestamps)
    assert got.timestamps == sorted(got.timestamps)


@pytest.mark.parametrize("backend", ["onnxruntime", "torch"])
@pytest.mark.parametrize("decoding", ["greedy", "beam"])
def test_full_context_matches_the_oracle(onnx_export, random_checkpoint, speech, decoding, backend):
    got = Recognizer(onnx_export, backend=backend, mode="full", decoding=decoding, threads=1).recognize(speech, 16000)
    want = _oracle(random_checkpoint, speech, "full", decoding)
    assert len(want.token_ids) > 5
    assert got.token_ids == want.token_ids and got.timestamps == want.timestamps


def test_lstm_predictor_states(lstm_export, random_lstm_checkpoint, speech):
    for decoding in ("greedy", "beam"):
        got = Recognizer(lstm_export, decoding=decoding).recognize(speech, 16000)
        want = _oracle(random_lstm_checkpoint, speech, "streaming", decoding)
        assert got.token_ids == want.token_ids and len(got.token_ids) > 0


@settings(max_examples=4, deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(sizes=st.lists(st.integers(min_value=1, max_value=9000), min_size=1, max_size=6))
def test_any_split_gives_same_tokens(recognizer, speech, sizes):
    whole = recognizer.recognize(speech, 16000).token_ids
    assert _feed(recognizer, speech, sizes) == whole


def test_beam_top_k_is_a_stable_sorts_first_k():
    """Beam search picks its candidates in linear time; they must be exactly what a stable
    descending sort would give, ties (equal scores) by lower index included."""
    from dualasr.runtime.search import _top_k

    rng = np.random.default_rng(0)
    for trial in range(2000):
        n, k = int(rng.integers(1, 60)), int(rng.integers(1, 70))
        values = rng.integers(0, 6, n).astype(np.float64) if trial % 2 else rng.standard_normal(n)
        assert np.array_equal(_top_k(values, k), np.argsort(-values, kind="stable")[:k]), (values, k)


@pytest.mark.parametrize("max_symbols", [1, 3])
def test_greedy_search_equals_the_oracle_for_any_lookahead_and_batch(onnx_export, random_checkpoint, max_symbols):
    """The numpy greedy search (joiner over `lookahead` frames per call, streams batched) emits the
    oracle's tokens at the oracle's frames, whatever the lookahead and however frames are split."""
    import torch

    from dualasr.checkpoint import load_model
    from dualasr.decoding import greedy_search as oracle_greedy
    from dualasr.runtime.search import greedy_search, initial_hyp

    model = load_model(random_checkpoint)[0]
    graphs = Recognizer(onnx_export, backend="torch", threads=1).graphs
    enc = np.random.default_rng(5).standard_normal((3, 24, model.cfg.d_model)).astype(np.float32)
    lengths = [24, 17, 9]
    with torch.no_grad(), one_torch_thread():
        want = oracle_greedy(model, torch.from_numpy(enc), torch.tensor(lengths), max_symbols)
    assert min(len(h.tokens) for h in want) > 3
    for lookahead in (1, 3, 8, 100):
        for split in (24, 5):  # all frames in one call, or in pieces of 5 as chunks would
            hyps = [initial_hyp(graphs) for _ in lengths]
            for lo in range(0, 24, split):
                valid = [max(0, min(n, lo + split) - lo) for n in lengths]
                greedy_search(graphs, hyps, enc[:, lo:lo + split], valid, [lo] * 3, max_symbols, 0, None, lookahead)
            for h, w in zip(hyps, want):
                assert (h.token_ids, h.frames) == (w.tokens, w.frames), (lookahead, split)


def test_decode_streams_batched_equals_alone(recognizer, speech):
    rng = np.random.default_rng(2)
    audios = [speech, speech[::-1].copy(), (rng.standard_normal(30000) * 0.05).astype(np.float32)]

    def encoder_calls() -> int:
        return recognizer.timers.snapshot()["calls"].get(recognizer.graphs.step_graph, 0)

    calls0 = encoder_calls()
    alone = [recognizer.recognize(a, 16000).token_ids for a in audios]
    calls_alone = encoder_calls() - calls0
    streams = [recognizer.create_stream() for _ in audios]
    piece = [1600, 2500, 4000]  # different pace per stream: batches of 1, 2 and 3 rows occur
    pos = [0, 0, 0]
    while any(p < len(a) for p, a in zip(pos, audios)):
        for i, (s, a) in enumerate(zip(streams, audios)):
            if pos[i] < len(a):
                s.accept_waveform(16000, a[pos[i] : pos[i] + piece[i]])
                pos[i] += piece[i]
                if pos[i] >= len(a):
                    s.input_finished()
        recognizer.decode_streams(streams)
    calls_batched = encoder_calls() - calls0 - calls_alone
    assert calls_batched < calls_alone  # chunks of several streams shared one step-graph call
    assert [s.result.token_ids for s in streams] == alone
    assert all(s.result.is_final for s in streams)


# ---------------------------------------------------------------------------------- torch-free


def test_runtime_never_imports_torch(onnx_export, speech_wav):
    code = (
        "import sys, numpy as np\n"
        "from dualasr.runtime import Recognizer\n"
        "from dualasr.audio import load_audio\n"
        f"r = Recognizer({str(onnx_export)!r})\n"
        f"res = r.recognize(load_audio({str(speech_wav)!r}), 16000)\n"
        "from dualasr.runtime.simulate import simulate\n"
        f"simulate(r, load_audio({str(speech_wav)!r}), 16000)\n"
        "assert res.token_ids, 'nothing recognized'\n"
        "bad = [m for m in ('torch', 'torchaudio', 'executorch') if m in sys.modules]\n"
        "assert not bad, f'runtime imported {bad}'\n"
        "print('ok')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "ok" in out.stdout


# ---------------------------------------------------------------------------------- errors


def test_tampered_export_fails_before_loading(onnx_export, tmp_path, monkeypatch):
    from dualasr.export.manifest import ManifestError
    from dualasr.runtime import backends

    bad = tmp_path / "bad"
    shutil.copytree(onnx_export, bad)
    target = bad / "onnx" / "fp32" / "joiner.onnx"
    data = bytearray(target.read_bytes())
    data[len(data) // 2] ^= 0xFF
    target.write_bytes(bytes(data))

    def refuse(*a, **k):
        raise AssertionError("a model was loaded from a tampered export")

    monkeypatch.setattr(backends.OnnxRuntimeBackend, "__init__", refuse)
    with pytest.raises(ManifestError, match="joiner.onnx"):
        Recognizer(bad)
    (bad / "onnx" / "fp32" / "weights.bin").write_bytes(b"short")
    with pytest.raises(ManifestError, match="weights.bin|joiner.onnx"):
        Recognizer(bad, verify_checksums=False)
    (bad / "manifest.json").unlink()
    with pytest.raises(ManifestError, match="manifest.json"):
        Recognizer(bad)


def test_backend_and_option_errors(onnx_export):
    with pytest.raises(BackendError, match="available"):
        Recognizer(onnx_export, providers=["qnn"])
    with pytest.raises(BackendError, match="precisions: fp32"):
        Recognizer(onnx_export, precision="int8")
    with pytest.raises(BackendError, match="executorch"):
        Recognizer(onnx_export, backend="executorch")
    with pytest.raises(BackendError, match="coreml|macOS"):
        Recognizer(onnx_export, backend="coreml")
    with pytest.raises(ValueError, match="exported: 320"):
        Recognizer(onnx_export, chunk_ms=160)
    with pytest.raises(ValueError, match="mode"):
        Recognizer(onnx_export, mode="offline")


def test_bad_audio(recognizer, speech):
    from scipy.signal import resample_poly

    s = recognizer.create_stream(name="mic-7")
    with pytest.raises(AudioError, match="mic-7.*NaN"):
        s.accept_waveform(16000, np.array([0.1, np.nan, 0.2], dtype=np.float32))
    with pytest.raises(AudioError, match="mic-7.*sample rate"):
        s.accept_waveform(0, np.zeros(10, np.float32))
    s.accept_waveform(16000, np.zeros(0, np.float32))  # empty piece: no-op
    assert s.frontend.samples_received == 0
    s.accept_waveform(16000, np.zeros(100, np.float32))
    with pytest.raises(AudioError, match="changed"):
        s.accept_waveform(8000, np.zeros(100, np.float32))
    with pytest.raises(AudioError, match="zero length"):
        recognizer.recognize(np.zeros(0, np.float32), 16000)
    with pytest.raises(AudioError, match="in \\[-1, 1\\]"):
        recognizer.recognize(speech * 32768, 16000)

    want = recognizer.recognize(speech, 16000).token_ids
    # int16, stereo (both layouts) give the same tokens as float mono
    pcm = np.round(speech * 32767).astype(np.int16)
    assert _feed(recognizer, pcm, [3000]) == recognizer.recognize(pcm.astype(np.float32) / 32768, 16000).token_ids
    stereo = np.stack([speech, speech], axis=1)
    assert _feed(recognizer, stereo, [5000]) == want
    assert recognizer.recognize(stereo.T, 16000).token_ids == want
    # another rate: resampled on the fly, same result as resampling the whole signal first
    at8k = resample_poly(speech, 1, 2).astype(np.float32)
    assert _feed(recognizer, at8k, [777, 1500], rate=8000) == recognizer.recognize(at8k, 8000).token_ids


def test_short_audio_and_finish_without_audio(recognizer, onnx_export):
    s = recognizer.create_stream()
    s.input_finished()
    recognizer.decode(s)
    assert s.result.is_final and s.result.token_ids == []
    tiny = np.full(100, 0.01, np.float32)  # < one encoder frame
    assert recognizer.recognize(tiny, 16000).token_ids == []
    assert Recognizer(onnx_export, mode="full").recognize(tiny, 16000).token_ids == []


# ---------------------------------------------------------------------------------- endpoint/memory


def test_endpoint_rules_and_reset(onnx_export, speech):
    rule = EndpointRule(must_contain_nonsilence=True, min_trailing_silence=1.2, min_utterance_length=0)
    assert rule.fires(1.3, 2.0) and not rule.fires(1.3, 1.3) and not rule.fires(1.0, 3.0)
    cfg = EndpointConfig(rule3=EndpointRule(False, 0.0, 1.0))  # force a cut every >= 1 s
    rec = Recognizer(onnx_export, endpoint=cfg)
    s = rec.create_stream()
    segments = []
    for i in range(0, len(speech), 1600):
        s.accept_waveform(16000, speech[i : i + 1600])
        while rec.is_ready(s):
            rec.decode(s)
        if rec.is_endpoint(s):
            segments.append(s.result)
            rec.reset(s)
            assert s.result.token_ids == [] and s.result.segment == len(segments)
    s.input_finished()
    rec.decode(s)
    segments.append(s.result)
    assert len(segments) >= 2
    times = [t for seg in segments for t in seg.timestamps]
    assert times == sorted(times)  # timestamps stay absolute across segments
    assert not Recognizer(onnx_export).is_endpoint(rec.create_stream())  # off by default


def test_long_stream_keeps_buffers_bounded(recognizer):
    rng = np.random.default_rng(3)
    rate = 44100
    s = recognizer.create_stream()
    for _ in range(200):  # 20 s in 100 ms pieces at 44.1 kHz
        s.accept_waveform(rate, (rng.standard_normal(rate // 10) * 0.05).astype(np.float32))
        recognizer.decode(s)
        assert s.frames_available < recognizer.chunk_frames
        assert s.frontend.buffered_samples() < 200
        assert s.frontend.fbank.buffered_samples() <= 16000 * CHUNK_MS // 1000 + 400
        assert [t.shape for t in s.encoder_state] == [tuple(x["shape"]) for x in recognizer.manifest["streaming"][0]["states"]]
    assert s.frames_decoded >= 480  # 19.2 s of encoder frames went through


# ---------------------------------------------------------------------------------- simulate / CLI


def test_simulate_reports_sane_numbers(recognizer, speech):
    r = simulate(recognizer, speech, 16000, feed_ms=100)
    d = r.to_dict()
    json.dumps(d)
    assert r.rtf > 0 and r.compute_s > 0 and r.audio_s == pytest.approx(len(speech) / 16000)
    c = r.chunk_compute_ms
    assert 0 < c["p50"] <= c["p90"] <= c["max"]
    assert r.feeds == -(-len(speech) // 1600) + 1
    frames = (len(speech) + 80) // 160  # kaldi frames with snip_edges=False
    assert frames // 32 <= r.chunks <= frames // 32 + 1  # one decode per chunk (+ the padded last)
    assert r.first_partial_latency_s is not None and r.first_partial_latency_s >= CHUNK_MS / 1000
    assert 0 < r.speech_end_s <= r.audio_s
    assert r.emission_latency_s == pytest.approx(r.timestamps[-1] - r.speech_end_s)
    assert r.final_latency_s is not None and r.final_latency_s >= r.emission_latency_s - 1e-9
    assert r.load_s > 0 and r.peak_rss_mb > 0
    assert r.token_ids == recognizer.recognize(speech, 16000).token_ids
    summary = simulate_set(recognizer, [{"samples": speech, "sample_rate": 16000},
                                        {"samples": speech[: len(speech) // 2], "sample_rate": 16000}]).summary()
    assert summary["latency_at_50_s"] <= summary["latency_at_90_s"]
    assert summary["rtf"] > 0 and summary["utterances"] == 2


def test_cli_transcribe_json(onnx_export, speech_wav, speech, recognizer, tmp_path):
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}

    def run(*args):
        return subprocess.run([sys.executable, "-m", "dualasr.cli", "transcribe", *map(str, args)],
                              capture_output=True, text=True, timeout=120, env=env)

    out = run(onnx_export, speech_wav, "--json")
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert data["files"][0]["tokens"] == recognizer.recognize(speech, 16000).token_ids
    assert data["summary"]["rtf"] > 0 and data["summary"]["backend"] == "onnxruntime"
    # A bad file among good ones: reported, the others still transcribed, exit status 1.
    bad = tmp_path / "empty.wav"
    bad.write_bytes(b"")
    text = run(onnx_export, speech_wav, bad, "--mode", "full")
    assert text.returncode == 1, text.stderr
    assert "RTF" in text.stdout and f"{speech_wav}: " in text.stdout
    assert "empty.wav" in text.stderr and "empty" in text.stderr
    missing = run(onnx_export / "nope", speech_wav)
    assert missing.returncode == 2 and "does not exist" in missing.stderr
    # --backend torch: the export's checkpoint through the same runtime, float only.
    eager = run(onnx_export, speech_wav, "--backend", "torch", "--threads", "1", "--json")
    assert eager.returncode == 0, eager.stderr
    assert json.loads(eager.stdout)["files"][0]["tokens"] == data["files"][0]["tokens"]
    assert json.loads(eager.stdout)["summary"]["backend"] == "torch"
    refused = run(onnx_export, speech_wav, "--backend", "torch", "--precision", "int8")
    assert refused.returncode == 2 and "float32 only" in refused.stderr and "Traceback" not in refused.stderr


# ---------------------------------------------------------------------------------- ExecuTorch


@pytest.fixture(scope="module")
def et_export(builtin_et_export) -> Path:
    return builtin_et_export


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["streaming", "full"])
def test_executorch_matches_the_oracle(et_export, speech, mode):
    # A little noise (digital silence has its own test below).
    noisy = speech + (np.random.default_rng(4).standard_normal(speech.size) * 1e-4).astype(np.float32)
    for decoding in ("greedy", "beam"):
        got = Recognizer(et_export, backend="executorch", mode=mode, decoding=decoding).recognize(noisy, 16000)
        want = _oracle(DEFAULT_CHECKPOINT, noisy, mode, decoding)
        assert got.token_ids == want.token_ids and len(got.token_ids) > 5


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["streaming", "full"])
def test_executorch_digital_silence(et_export, speech, mode):
    """Constant fbank frames (exact digital silence, e.g. TTS output) made ExecuTorch's layer_norm
    (E[x^2] - E[x]^2 < 0) return NaN with executorch 1.5.1; the writer now exports the two-pass
    wrappers.StableLayerNorm, so silence decodes like the PyTorch oracle."""
    rec = Recognizer(et_export, backend="executorch", mode=mode)
    silence = np.zeros(16000, np.float32)
    for audio in (speech, silence, np.concatenate([silence, speech, silence])):
        got = rec.recognize(audio, 16000)
        assert got.token_ids == _oracle(DEFAULT_CHECKPOINT, audio, mode).token_ids
