"""`dualasr export` on the command line: one line per artifact plus the summary (at most 40
lines, progress-bar redraws counted), every converter message in OUT/export.log."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from dualasr.export.exporter import DEFAULT_CHECKPOINT

pytestmark = pytest.mark.skipif(not DEFAULT_CHECKPOINT.is_file(), reason="built-in model not shipped in this checkout")

MAX_LINES = 40


def _export(out: Path, formats: str) -> tuple[subprocess.CompletedProcess, list[str]]:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    r = subprocess.run([sys.executable, "-m", "dualasr.cli", "export", "--out", str(out), "--formats", formats,
                        "--quantize", "none,int8"], capture_output=True, text=True, env=env, timeout=1200)
    # Progress-bar redraws (\r) count as lines: that is what a user sees scroll by.
    lines = [ln for ln in re.split(r"[\r\n]+", r.stdout + r.stderr) if ln.strip()]
    return r, lines


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
    out = tmp_path / "onnx"
    r, lines = _export(out, "onnx,sherpa-onnx")
    _check_quiet(r, lines, out, artifacts=4)


@pytest.mark.slow
def test_cli_export_of_every_format_is_short(tmp_path: Path):
    pytest.importorskip("executorch")
    pytest.importorskip("coremltools")
    out = tmp_path / "all"
    r, lines = _export(out, "onnx,executorch,coreml,sherpa-onnx")
    _check_quiet(r, lines, out, artifacts=8)
    assert (out / "export.log").stat().st_size > 0  # the converters did talk; it went to the log
