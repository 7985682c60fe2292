"""`dualasr export` on the command line: one line per artifact plus the summary (at most 40
lines, progress-bar redraws counted), every converter message in OUT/export.log."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import cli_export

MAX_LINES = 40


def _check_quiet(r: subprocess.CompletedProcess, lines: list[str], out: Path, artifacts: int) -> None:
    assert r.returncode == 0, r.stderr[-3000:]
    assert len(lines) <= MAX_LINES, "\n".join(lines)
    assert len([ln for ln in lines if re.match(r"export \S+/\S+ done in", ln)]) == artifacts
    noise = [ln for ln in lines if re.search(r"Warning|warn|Traceback|Failed to load|it/s|%\|", ln)]
    assert not noise, noise
    log = out / "export.log"
    assert log.is_file() and str(log) in r.stdout
    assert "export.log" not in json.loads((out / "manifest.json").read_text())["files"]


def test_cli_export_is_short_and_logs_the_rest(tmp_path: Path):
    from dualasr.demo import TINY_MODEL

    out = tmp_path / "onnx"
    r, lines = cli_export(out, "onnx,sherpa-onnx", str(TINY_MODEL))
    _check_quiet(r, lines, out, artifacts=4)


@pytest.mark.slow
def test_cli_export_of_every_format_is_short(builtin_every_format):
    r, lines, out = builtin_every_format
    _check_quiet(r, lines, out, artifacts=6)
    assert (out / "export.log").stat().st_size > 0  # the converters did talk; it went to the log
    # Every artifact of the built-in model against PyTorch on real speech (ExecuTorch fp32/int8
    # run; Core ML checked as far as this OS allows).
    v = subprocess.run([sys.executable, "-m", "dualasr.cli", "verify", str(out)], capture_output=True, text=True)
    assert v.returncode == 0 and "PASSED" in v.stdout, v.stdout[-4000:] + v.stderr[-2000:]
    assert "executorch" in v.stdout and "coreml" in v.stdout


def test_random_weight_export_of_a_preset_round_trips_through_verify(tmp_path):
    """`export --config PRESET --set ...` (no checkpoint): random weights, a placeholder tokenizer of
    the configured vocabulary, random_init in the manifest; verify and transcribe work on it."""
    out = tmp_path / "random"
    r = subprocess.run([sys.executable, "-m", "dualasr.cli", "export", "--config", "tiny", "--set", "model.vocab_size=64",
                        "--out", str(out), "--formats", "onnx", "--quantize", "none"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["random_init"] is True and manifest["vocab_size"] == 64
    assert manifest["source_checkpoint"]["path"] == "random weights of preset tiny"
    r = subprocess.run([sys.executable, "-m", "dualasr.cli", "verify", str(out)], capture_output=True, text=True)
    assert r.returncode == 0 and "PASSED" in r.stdout, r.stdout + r.stderr
    r = subprocess.run([sys.executable, "-m", "dualasr.cli", "export", "--config", "tiny", "--set", "model.vocab_size=4",
                        "--out", str(tmp_path / "small"), "--formats", "onnx"], capture_output=True, text=True)
    assert r.returncode == 2 and "at least" in r.stderr and "Traceback" not in r.stderr, r.stderr
