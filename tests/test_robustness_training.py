"""Crash-safe training (split from tests/test_robustness.py, whose audio fixtures it reuses):
training data loading names bad audio, and SIGKILL mid-epoch then --resume gives identical weights."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from dualasr.audio import AudioError
from test_robustness import BAD_FILES, ENV, audio_files, speech  # noqa: F401  (fixtures)

def _train_args(out: Path, manifest: Path, steps: int, *extra: str) -> list[str]:
    from test_train import MICRO

    args = ["train", "--config", "tiny", "--out", str(out), "--no-progress"]
    for item in [*MICRO, f"data.train={manifest}", "data.valid=", f"train.max_steps={steps}",
                 "train.checkpoint_every=1", "train.max_frames_per_batch=700", *extra]:
        args += ["--set", item]
    return args


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    from dualasr.corpus import build_corpus

    out = tmp_path_factory.mktemp("corpus")
    build_corpus(out, num_train=12, num_valid=0, num_test=0, seed=5)
    return out / "train.jsonl"


def test_training_data_refuses_bad_audio_by_name(corpus, audio_files, tmp_path, capsys):
    """FeatureDataset and `dualasr train`: a bad file in a manifest stops training with its name;
    odd-but-valid files load; an utterance shorter than one encoder frame is named too."""
    from dualasr.cli import main
    from dualasr.batching import FeatureDataset
    from dualasr.data import Utterance, read_manifest, write_manifest
    from dualasr.tokenizer import Tokenizer

    good, bad = audio_files
    utts = read_manifest(corpus)
    tok = Tokenizer.train([u.text for u in utts], tmp_path / "tok.model", vocab_size=40)
    odd = [Utterance(n, str(p), "call the office") for n, p in good.items()]
    ds = FeatureDataset(odd + [Utterance(n, str(p), "call the office") for n, p in bad.items()], tok)
    for i, u in enumerate(ds.utts[: len(odd)]):
        feats = ds[i]["feats"]
        assert feats.ndim == 2 and feats.shape[1] == 80 and bool(feats.isfinite().all()), u.id
    for i, u in enumerate(ds.utts[len(odd):], start=len(odd)):
        with pytest.raises(AudioError, match=BAD_FILES[u.id]) as e:
            ds[i]
        assert u.audio in str(e.value)
    # `dualasr train`: exit 2, the file named, no traceback; also without durations in the manifest.
    for name in ("truncated.wav", "nan.wav", "a_directory.wav"):
        for with_duration in (True, False):
            m = tmp_path / f"bad-{name}-{with_duration}.jsonl"
            extra = Utterance("bad", str(bad[name]), "thank you", 1.0 if with_duration else None)
            write_manifest(m, [*utts[:6], extra, *utts[6:]])
            assert main(_train_args(tmp_path / "run", m, 4)) == 2
            err = capsys.readouterr().err
            assert err.startswith("dualasr train: error:") and str(bad[name]) in err, err
    m = tmp_path / "short.jsonl"
    write_manifest(m, [*utts, Utterance("too-short", str(good["ten_samples.wav"]), "hi", 0.001)])
    assert main(_train_args(tmp_path / "run-short", m, 4)) == 2
    err = capsys.readouterr().err
    assert "too-short" in err and "shorter than one encoder frame" in err, err


def _wait_for_step(metrics: Path, proc: subprocess.Popen, step: int, timeout: float = 120.0) -> None:
    t0 = time.time()
    while time.time() - t0 < timeout:
        if proc.poll() is not None:
            raise AssertionError(f"training ended (rc {proc.returncode}) before step {step}: {proc.stderr.read()}")
        if metrics.is_file():
            lines = [json.loads(x) for x in metrics.read_text().splitlines() if x.strip().endswith("}")]
            if any(r.get("step", 0) >= step for r in lines):
                return
        time.sleep(0.005)
    raise AssertionError(f"no step {step} within {timeout} s")


def test_sigkill_mid_epoch_then_resume_gives_identical_weights(corpus, tmp_path):
    """A real `dualasr train` process is SIGKILLed twice at arbitrary points (mid-step or
    mid-checkpoint-write); --resume continues from the last intact checkpoint and ends with the same
    weights, bit for bit, as an uninterrupted run with the same seed."""
    import torch

    from dualasr.checkpoint import read_checkpoint
    from dualasr.train import LATEST

    steps = 24  # ~8 batches per epoch with 700 frames per batch: kills land mid-epoch, with margin
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    cmd = [sys.executable, "-m", "dualasr.cli"]
    r = subprocess.run(cmd + _train_args(straight, corpus, steps), capture_output=True, text=True, env=ENV, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]

    kills = []
    for at_step, resume in ((3, False), (8, True)):
        proc = subprocess.Popen(cmd + _train_args(killed, corpus, steps) + (["--resume"] if resume else []),
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=ENV)
        try:
            _wait_for_step(killed / "metrics.jsonl", proc, at_step)
        finally:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=60)
            proc.stderr.close()
        assert proc.returncode == -signal.SIGKILL
        st = read_checkpoint(killed / LATEST)["training_state"]  # intact, whatever was being written
        kills.append((st["step"], st["epoch"], st["batch_in_epoch"]))
        assert at_step - 1 <= st["step"] < steps
    assert any(0 < b for _, _, b in kills), f"no kill landed mid-epoch: {kills}"

    r = subprocess.run(cmd + _train_args(killed, corpus, steps) + ["--resume"], capture_output=True, text=True,
                       env=ENV, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    assert f"resumed from {killed / LATEST} at step {kills[-1][0]}" in r.stdout
    a, b = read_checkpoint(straight / LATEST), read_checkpoint(killed / LATEST)
    assert b["training_state"]["step"] == steps
    for k in a["model"]:
        torch.testing.assert_close(a["model"][k], b["model"][k], rtol=0, atol=0, msg=k)
    print(f"SIGKILL at (step, epoch, batch_in_epoch) {kills}; resumed weights identical to the straight run")
