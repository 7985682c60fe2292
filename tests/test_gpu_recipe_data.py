"""The data tools of the GPU recipe (benchmarks/train_gpu.sh): Opus packing under a size budget and
speed-perturbed copies, on a small synthetic manifest."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np

from dualasr.audio import load_audio, save_wav
from dualasr.data import Utterance, read_manifest, write_manifest

ROOT = Path(__file__).resolve().parents[1]


def _manifest(folder: Path, n: int) -> Path:
    rng = np.random.default_rng(0)
    t = np.arange(16000) / 16000
    utts = []
    for i in range(n):
        tone = 0.3 * np.sin(2 * np.pi * (200 + 50 * i) * t) + 0.01 * rng.standard_normal(t.size)
        path = folder / f"u{i}.wav"
        save_wav(path, tone.astype(np.float32))
        utts.append(Utterance(f"spk/u{i}", str(path), f"utterance {i}", 1.0, 0.9))
    manifest = folder / "set.jsonl"
    write_manifest(manifest, utts)
    return manifest


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=120, cwd=ROOT)


def test_pack_opus_fills_the_budget_and_decodes(tmp_path: Path) -> None:
    manifest = _manifest(tmp_path, 6)
    out = tmp_path / "packed"
    first = _run("benchmarks/pack_opus.py", str(out), "--budget-mb", "1", f"a={manifest}@0.8:2")
    assert first.returncode == 0, first.stderr
    size_a = sum(p.stat().st_size for p in (out / "a").iterdir())
    # The fill item gets as many utterances as the budget left: here room for about two more.
    budget = (size_a + 2.5 * size_a / 2) / 1e6
    done = _run("benchmarks/pack_opus.py", str(out), "--budget-mb", f"{budget}", f"a={manifest}@0.8:2",
                f"b={manifest}@0.8:fill")
    assert done.returncode == 0, done.stderr
    packed = read_manifest(out / "b.jsonl")
    assert 1 <= len(packed) < 6
    assert sum(p.stat().st_size for p in (out / "b").iterdir()) + size_a <= budget * 1e6
    summary = json.loads((out / "pack.json").read_text())
    assert summary["a"]["utterances"] == 2 and summary["b"]["utterances"] == len(packed)
    for u in packed:  # '/' in ids becomes '__' in file names; the audio decodes at 16 kHz
        assert "/" not in Path(u.audio).name and Path(u.audio).suffix == ".ogg"
        assert abs(load_audio(u.audio).size - 16000) < 400


def test_pack_opus_refuses_fill_before_the_last_item(tmp_path: Path) -> None:
    manifest = _manifest(tmp_path, 1)
    done = _run("benchmarks/pack_opus.py", str(tmp_path / "p"), "--budget-mb", "1", f"a={manifest}@0.8:fill",
                f"b={manifest}@0.8")
    assert done.returncode != 0 and "only the last item" in done.stderr


def test_speed_perturb_scales_audio_and_times(tmp_path: Path) -> None:
    manifest = _manifest(tmp_path, 2)
    done = _run("benchmarks/speed_perturb.py", str(manifest), str(tmp_path / "sp"), "--factors", "0.9,1.1")
    assert done.returncode == 0, done.stderr
    copies = read_manifest(tmp_path / "sp" / "set-sp.jsonl")
    assert [u.id for u in copies] == ["spk/u0-sp0.9", "spk/u0-sp1.1", "spk/u1-sp0.9", "spk/u1-sp1.1"]
    for u in copies:
        factor = float(u.id.rsplit("-sp", 1)[1])
        assert abs(load_audio(u.audio).size - 16000 / factor) < 2
        assert abs(u.duration - 1.0 / factor) < 0.01 and abs(u.speech_end - 0.9 / factor) < 0.01
        assert u.text.startswith("utterance")
