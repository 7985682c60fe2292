"""The `dualasr` command's own plumbing: subcommands that hand their arguments on, and the demo's
lazily exported ExecuTorch backend."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from conftest import SHARED_EXPORTS_GROUP


def _dualasr(*args: str, env: dict | None = None, timeout: int = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "dualasr.cli", *args], capture_output=True, text=True,
                          env={**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}, timeout=timeout)


def test_corpus_help_is_the_corpus_builders_help():
    r = _dualasr("corpus", "--help")
    assert r.returncode == 0, r.stderr
    assert "out_dir" in r.stdout and "--num-train" in r.stdout
    assert r.stdout.startswith("usage: dualasr corpus")  # the command the user typed


def test_corpus_without_output_folder_says_what_is_missing():
    r = _dualasr("corpus")
    assert r.returncode == 2
    assert "out_dir" in r.stderr and "Traceback" not in r.stderr


def test_other_commands_still_refuse_unknown_options():
    r = _dualasr("verify", "x", "--no-such-option")
    assert r.returncode == 2 and "unrecognized arguments: --no-such-option" in r.stderr


def test_options_may_come_between_the_export_folder_and_the_audio(tmp_path):
    # Plain argparse gave both positionals to the first run (export folder, no audio) and then
    # refused the audio files after an option as "unrecognized arguments".
    r = _dualasr("transcribe", str(tmp_path / "no-export"), "--mode", "full", "a.wav", "--json", "b.wav")
    assert r.returncode == 2 and "unrecognized" not in r.stderr, r.stderr
    assert "no-export" in r.stderr and "Traceback" not in r.stderr


@pytest.mark.slow
@pytest.mark.xdist_group(SHARED_EXPORTS_GROUP)  # lowers the programs the shared exports lower
def test_demo_on_executorch_exports_into_the_cache_once(tmp_path):
    env = {"XDG_CACHE_HOME": str(tmp_path)}
    first = _dualasr("demo", "--backend", "executorch", "--precision", "int8", "--limit", "2", env=env, timeout=1800)
    assert first.returncode == 0, first.stderr[-3000:]
    assert "exporting model.pt to executorch" in first.stdout
    assert "export executorch/int8 done in" in first.stderr and "executorch/fp32" not in first.stderr  # only what it runs
    assert "== streaming mode" in first.stdout and "== full mode" in first.stdout
    cached = list((tmp_path / "dualasr").glob("export-*-executorch-int8"))
    assert len(cached) == 1 and (cached[0] / "manifest.json").is_file()
    again = _dualasr("demo", "--backend", "executorch", "--precision", "int8", "--limit", "1", env=env, timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "exporting" not in again.stdout  # reused, not exported again
