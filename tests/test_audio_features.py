"""dualasr.audio and dualasr.features: loading/checking audio and kaldi-compatible fbank."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

import kaldi_native_fbank

from dualasr.audio import AudioError, load_audio, prepare_samples, save_wav  # noqa: E402
from dualasr.features import (  # noqa: E402
    FbankConfig,
    compute_fbank,
    num_frames,
    spec_augment,
)

G722_FILE = Path("/usr/share/asterisk/sounds/en_US_f_Allison/auth-thankyou.g722")
# Float32 rounding inside kaldi-native-fbank itself moves bins ~70 dB below a frame's peak (log
# power near the -15.9 floor) by up to ~5e-4; a float64 reference is no closer.
KALDI_TOL = 1e-3


# ---------------------------------------------------------------------------------------------
# helpers


def knf_options(cfg: FbankConfig) -> "kaldi_native_fbank.FbankOptions":
    """kaldi_native_fbank options equal to `cfg`, set field by field (knf's own defaults differ:
    dither 3e-5, snip_edges true, 23 bins, high_freq 0)."""
    opts = kaldi_native_fbank.FbankOptions()
    opts.frame_opts.samp_freq = cfg.sample_rate
    opts.frame_opts.frame_length_ms = cfg.frame_length_ms
    opts.frame_opts.frame_shift_ms = cfg.frame_shift_ms
    opts.frame_opts.dither = cfg.dither
    opts.frame_opts.snip_edges = cfg.snip_edges
    opts.frame_opts.preemph_coeff = cfg.preemph_coeff
    opts.frame_opts.remove_dc_offset = cfg.remove_dc_offset
    opts.frame_opts.window_type = cfg.window_type
    opts.mel_opts.num_bins = cfg.num_mel_bins
    opts.mel_opts.low_freq = cfg.low_freq
    opts.mel_opts.high_freq = cfg.high_freq
    opts.use_energy = cfg.use_energy
    opts.energy_floor = cfg.energy_floor
    opts.use_log_fbank = cfg.use_log_fbank
    opts.use_power = cfg.use_power
    return opts


def knf_fbank(samples: np.ndarray, cfg: FbankConfig, pieces: list[int] | None = None) -> np.ndarray:
    """Run kaldi_native_fbank.OnlineFbank over `samples`, optionally fed in pieces of the given sizes."""
    fbank = kaldi_native_fbank.OnlineFbank(knf_options(cfg))
    if pieces is None:
        fbank.accept_waveform(cfg.sample_rate, samples.tolist())
    else:
        start = 0
        for size in pieces:
            fbank.accept_waveform(cfg.sample_rate, samples[start : start + size].tolist())
            start += size
        assert start == len(samples)
    fbank.input_finished()
    n = fbank.num_frames_ready
    if n == 0:
        return np.zeros((0, cfg.feature_dim), dtype=np.float32)
    return np.stack([np.asarray(fbank.get_frame(i), dtype=np.float32) for i in range(n)])


@pytest.fixture(scope="module")
def speech(tmp_path_factory) -> np.ndarray:
    """A few seconds of synthetic speech at 16 kHz (espeak-ng writes 22050 Hz)."""
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed")
    path = tmp_path_factory.mktemp("speech") / "speech.wav"
    text = "The quick brown fox jumps over the lazy dog. Streaming and full context share one encoder."
    subprocess.run(["espeak-ng", "-w", str(path), text], check=True, capture_output=True)
    assert sf.info(str(path)).samplerate == 22050
    return load_audio(path)


@pytest.fixture(scope="module")
def noise() -> np.ndarray:
    rng = np.random.default_rng(0)
    return np.clip(rng.normal(0.0, 0.3, 16000 * 2 + 123), -1.0, 1.0).astype(np.float32)


# ---------------------------------------------------------------------------------------------
# features vs kaldi-native-fbank


@pytest.mark.parametrize("signal", ["speech", "noise"])
def test_fbank_matches_kaldi_native_fbank(signal, request):
    samples = request.getfixturevalue(signal)
    cfg = FbankConfig()
    ours = compute_fbank(torch.from_numpy(samples), cfg).numpy()
    ref = knf_fbank(samples, cfg)
    assert ours.shape == ref.shape == (num_frames(len(samples), cfg), 80)
    assert ours.shape[0] == (len(samples) + 80) // 160
    diff = np.abs(ours - ref)
    print(f"{signal}: {ours.shape[0]} frames, vs kaldi-native-fbank max abs diff {diff.max():.2e}, mean {diff.mean():.2e}")
    assert diff.max() <= KALDI_TOL
    # The max comes from a few near-floor bins; a systematic mismatch would move the mean.
    assert diff.mean() <= 2e-5


def test_fbank_matches_kaldi_snip_edges(speech):
    cfg = FbankConfig(snip_edges=True)
    ours = compute_fbank(torch.from_numpy(speech), cfg).numpy()
    ref = knf_fbank(speech, cfg)
    assert ours.shape[0] == 1 + (len(speech) - 400) // 160 == num_frames(len(speech), cfg)
    assert ours.shape == ref.shape
    assert np.abs(ours - ref).max() <= KALDI_TOL


@pytest.mark.parametrize("n", [1, 37, 399, 400, 401, 559, 1600])
def test_fbank_short_inputs_frame_count(n):
    # Short waveforms exercise kaldi's repeated edge reflection.
    samples = np.random.default_rng(n).uniform(-0.5, 0.5, n).astype(np.float32)
    for snip in (False, True):
        cfg = FbankConfig(snip_edges=snip)
        ours = compute_fbank(torch.from_numpy(samples), cfg).numpy()
        ref = knf_fbank(samples, cfg)
        assert ours.shape == ref.shape == (num_frames(n, cfg), 80)
        if ours.size:
            assert np.abs(ours - ref).max() <= KALDI_TOL


def test_fbank_other_options_match_kaldi(noise):
    cfg = FbankConfig(num_mel_bins=40, use_energy=True, use_power=False, window_type="hamming", high_freq=7000.0)
    ours = compute_fbank(torch.from_numpy(noise), cfg).numpy()
    ref = knf_fbank(noise, cfg)
    assert ours.shape == ref.shape == (num_frames(len(noise), cfg), 41)
    assert np.abs(ours - ref).max() <= KALDI_TOL


def test_kaldi_streaming_pieces_equal_one_piece(speech):
    # The streaming runtime feeds audio as it arrives; features must not depend on chunking.
    cfg = FbankConfig()
    whole = knf_fbank(speech, cfg)
    rng = np.random.default_rng(1)
    pieces, left = [], len(speech)
    while left > 0:
        size = int(min(left, rng.integers(1, 3000)))
        pieces.append(size)
        left -= size
    chunked = knf_fbank(speech, cfg, pieces=pieces)
    assert chunked.shape == whole.shape
    np.testing.assert_array_equal(chunked, whole)


def test_fbank_config_round_trip():
    cfg = FbankConfig(num_mel_bins=64, snip_edges=True)
    assert FbankConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match="bogus"):
        FbankConfig.from_dict({"bogus": 1})


# ---------------------------------------------------------------------------------------------
# spec_augment


def test_spec_augment_deterministic_and_leaves_padding():
    torch.manual_seed(0)
    feats = torch.randn(3, 200, 80)
    lengths = torch.tensor([200, 120, 60])
    feats[1, 120:] = 0.0
    feats[2, 60:] = 0.0

    def run(seed: int) -> torch.Tensor:
        g = torch.Generator().manual_seed(seed)
        return spec_augment(feats, lengths, max_time_frac=0.2, generator=g)

    a, b = run(123), run(123)
    assert torch.equal(a, b)
    assert not torch.equal(a, run(124))
    assert not torch.equal(a, feats)
    assert torch.equal(a[1, 120:], feats[1, 120:])
    assert torch.equal(a[2, 60:], feats[2, 60:])
    # Masked cells hold the utterance mean over its valid frames.
    changed = a[2, :60] != feats[2, :60]
    assert changed.any()
    torch.testing.assert_close(a[2, :60][changed], feats[2, :60].mean().expand(int(changed.sum())))


# ---------------------------------------------------------------------------------------------
# audio


def test_stereo_mixdown(tmp_path):
    left = np.full(1600, 0.5, dtype=np.float32)
    right = np.full(1600, -0.25, dtype=np.float32)
    path = tmp_path / "stereo.wav"
    sf.write(str(path), np.stack([left, right], axis=1), 16000, subtype="FLOAT")
    np.testing.assert_allclose(load_audio(path), 0.125, atol=1e-7)
    # In memory, either layout.
    np.testing.assert_allclose(prepare_samples(np.stack([left, right], axis=1), 16000), 0.125)
    np.testing.assert_allclose(prepare_samples(np.stack([left, right], axis=0), 16000), 0.125)


def test_resample_8k_to_16k(tmp_path):
    t = np.arange(8000) / 8000
    tone = (0.5 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    path = tmp_path / "tone8k.wav"
    save_wav(path, tone, sample_rate=8000)
    out = load_audio(path)
    assert out.dtype == np.float32 and out.ndim == 1
    assert len(out) == 16000
    assert np.abs(out).max() <= 1.0
    # Still a 440 Hz tone.
    assert abs(np.argmax(np.abs(np.fft.rfft(out))) - 440) <= 1


def test_int16_scaling_and_save_round_trip(tmp_path):
    pcm = np.array([0, 16384, -32768, 32767, -1], dtype=np.int16)
    expected = pcm.astype(np.float32) / 32768
    np.testing.assert_array_equal(prepare_samples(pcm, 16000), expected)
    path = tmp_path / "pcm.wav"
    save_wav(path, pcm)
    np.testing.assert_array_equal(load_audio(path), expected)
    assert sf.info(str(path)).subtype == "PCM_16"
    assert [p.name for p in tmp_path.iterdir()] == ["pcm.wav"]  # temp file was renamed away
    np.testing.assert_allclose(prepare_samples(np.array([2**30], dtype=np.int32), 16000), [0.5])
    assert prepare_samples(np.zeros(10, dtype=np.float64), 16000).dtype == np.float32


def test_bad_files_raise_audio_error_naming_path(tmp_path):
    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")
    corrupt = tmp_path / "corrupt.wav"
    corrupt.write_bytes(np.random.default_rng(0).bytes(4096))
    good = tmp_path / "good.wav"
    save_wav(good, np.zeros(16000, dtype=np.float32))
    truncated = tmp_path / "truncated.wav"
    truncated.write_bytes(good.read_bytes()[:20000])
    header_only = tmp_path / "header_only.wav"
    header_only.write_bytes(good.read_bytes()[:30])
    zero_frames = tmp_path / "zero_frames.wav"
    sf.write(str(zero_frames), np.zeros(0, dtype=np.int16), 16000, subtype="PCM_16")
    nan = tmp_path / "nan.wav"
    sf.write(str(nan), np.array([0.0, np.nan, 0.1], dtype=np.float32), 16000, subtype="FLOAT")

    cases = [tmp_path / "missing.wav", tmp_path, empty, corrupt, truncated, header_only, zero_frames, nan]
    for path in cases:
        with pytest.raises(AudioError) as info:
            load_audio(path)
        assert str(path) in str(info.value), f"{path}: {info.value}"

    with pytest.raises(AudioError, match="<array>"):
        prepare_samples(np.array([0.0, np.inf], dtype=np.float32), 16000)
    with pytest.raises(AudioError, match="int16"):
        prepare_samples(np.array([1000.0, -2000.0]), 16000)  # int16-scaled floats
    with pytest.raises(AudioError, match="1 NaN/Inf"):
        prepare_samples(np.array([0.5, np.nan, 0.25], dtype=np.float32), 16000)


def test_prepare_samples_clips_overshoot_and_never_returns_the_callers_buffer():
    quiet = np.array([0.5, -0.25, 0.0], dtype=np.float32)
    out = prepare_samples(quiet, 16000)
    np.testing.assert_array_equal(out, quiet)
    assert not np.shares_memory(out, quiet)  # the caller may reuse its buffer
    np.testing.assert_array_equal(prepare_samples(np.array([1.5, -1.2, 0.5], dtype=np.float32), 16000), [1.0, -1.0, 0.5])


@pytest.mark.skipif(not G722_FILE.exists(), reason=f"{G722_FILE} not present (asterisk sounds not installed)")
@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg is not installed")
def test_g722_via_ffmpeg():
    out = load_audio(G722_FILE)
    # G.722 is 64 kbit/s, i.e. 2 samples per byte at 16 kHz.
    assert out.dtype == np.float32 and out.ndim == 1
    assert len(out) == 2 * G722_FILE.stat().st_size
    assert 0.05 < np.abs(out).max() <= 1.0


def test_audio_module_does_not_import_torch():
    # The torch-free on-device harness imports dualasr.audio.
    code = "import sys, dualasr.audio; assert 'torch' not in sys.modules, 'dualasr.audio imported torch'"
    subprocess.run([__import__("sys").executable, "-c", code], check=True)


def test_missing_ffmpeg_is_a_clear_error(tmp_path, monkeypatch):
    import dualasr.audio

    path = tmp_path / "clip.mp3"
    path.write_bytes(b"\xff\xfb" + bytes(100))
    monkeypatch.setattr(dualasr.audio.shutil, "which", lambda name: None)
    with pytest.raises(AudioError, match="ffmpeg") as info:
        load_audio(path)
    assert str(path) in str(info.value)
