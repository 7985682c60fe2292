"""Shared fixtures: small checkpoints built on the fly (random weights, for equivalence tests only;
recognition tests use the trained built-in model in dualasr/assets)."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from pathlib import Path

# The test models are tiny: torch's intra-op thread pool only adds overhead, and on a busy 2-core
# machine oversubscribed OpenMP threads made the suite many times slower. Set before torch loads;
# subprocesses inherit it. Tests that measure threading pass explicit counts.
os.environ.setdefault("OMP_NUM_THREADS", "1")

import pytest

# `make setup` (scripts/setup.sh) installs every engine, package and data file the tests need and
# then writes this stamp. After it, a skip for something missing means an install step is missing
# or broken, so it fails the run; only what no install can give this machine may still skip.
SETUP_STAMP = Path(__file__).resolve().parents[1] / ".setup-done"
SKIPS_NO_INSTALL_CAN_FIX = ("needs macOS",)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if not report.skipped or hasattr(report, "wasxfail") or not SETUP_STAMP.exists():
        return
    reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
    if not any(allowed in reason for allowed in SKIPS_NO_INSTALL_CAN_FIX):
        report.outcome = "failed"
        report.longrepr = (f"{item.nodeid} skipped after `make setup` ({SETUP_STAMP.name} exists): {reason}; "
                           "scripts/setup.sh should have installed what it needs")


@contextlib.contextmanager
def one_torch_thread():
    """Run torch on one intra-op thread, restoring the global count afterwards: the tiny models'
    per-chunk ops are far too small for a thread pool, which on 2 shared cores made reference
    decoding 5-100x slower."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


# `make test` runs two pytest-xdist workers (--dist loadgroup). Tests that read the built-in
# model's session-scoped exports go to one worker, so each export is built once per run, not once
# per worker; the demo's lazy ExecuTorch export joins them, as it lowers the same programs.
SHARED_EXPORT_FIXTURES = {"builtin_et_export", "builtin_every_format"}
SHARED_EXPORTS_GROUP = "builtin-exports"


@pytest.hookimpl(tryfirst=True)  # before xdist's own hook, which reads the groups
def pytest_collection_modifyitems(config, items):
    for item in items:
        if SHARED_EXPORT_FIXTURES & set(item.fixturenames):
            item.add_marker(pytest.mark.xdist_group(SHARED_EXPORTS_GROUP))


@pytest.fixture(scope="session", autouse=True)
def lowering_cache(tmp_path_factory) -> Path:
    """One ExecuTorch lowering cache for the whole run, every xdist worker and subprocess included:
    exports of the same weights in several tests lower once, and nothing is read from or left in
    the user's cache. (Entries are renamed into place, so workers may store at once.)"""
    base = tmp_path_factory.getbasetemp()
    # Under xdist each worker's basetemp is a folder of the run's own (pytest-N/popen-gwK).
    root = (base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base) / "lowering-cache"
    root.mkdir(exist_ok=True)
    os.environ["DUALASR_LOWERING_CACHE"] = str(root)
    return root


@pytest.fixture(scope="module")
def one_torch_thread_module():
    """`one_torch_thread` for a whole test module (request it with pytest.mark.usefixtures)."""
    with one_torch_thread():
        yield


def make_checkpoint(path: Path, preset: str = "tiny", **model_overrides) -> Path:
    import torch

    from dualasr.checkpoint import save_checkpoint
    from dualasr.config import load_config
    from dualasr.model import Transducer
    from dualasr.tokenizer import Tokenizer

    texts = ["please enter your account number followed by the pound key", "thank you for calling",
             "set a timer for ten minutes", "call the office at four thirty"] * 5
    tok = Tokenizer.train(texts, path.parent / f"{path.stem}.tok.model", vocab_size=40)
    cfg = load_config(preset, [f"model.{k}={v}" for k, v in model_overrides.items()])
    cfg.model.vocab_size = tok.vocab_size
    torch.manual_seed(0)
    model = Transducer(cfg.model).eval()
    # Random weights make near-uniform joiner outputs; scale the output layer so greedy search
    # emits a varied token sequence that export/runtime equality tests can compare.
    with torch.no_grad():
        model.joiner.out.weight.mul_(8.0)
    save_checkpoint(path, model, cfg, tok.model_path)
    return path


@pytest.fixture(scope="session")
def random_checkpoint(tmp_path_factory) -> Path:
    """A tiny conformer with a stateless predictor and random weights."""
    return make_checkpoint(tmp_path_factory.mktemp("ckpt") / "random-tiny.pt")


@pytest.fixture(scope="session")
def builtin_et_export(tmp_path_factory) -> Path:
    """The built-in model exported once to ExecuTorch fp32 with 320 ms (the default, first) and
    160 ms streaming graphs; the ExecuTorch tests of several modules share it. Its encoder_full,
    320 ms step, predictor and joiner are the very programs of the every-format CLI export's fp32
    (tests/test_export_cli.py, which runs first), so the session's lowering cache serves them and
    only the 160 ms step is lowered here (a lowering takes minutes)."""
    from dualasr.export.exporter import DEFAULT_CHECKPOINT, export_checkpoint

    out = tmp_path_factory.mktemp("et") / "export"
    manifest = export_checkpoint(DEFAULT_CHECKPOINT, out, ["executorch"], ["none"], [320, 160])
    assert "fp32" in manifest["artifacts"].get("executorch", {}), manifest["errors"]
    assert [e["chunk_ms"] for e in manifest["streaming"]] == [320, 160]
    return out


def cli_export(out: Path, formats: str, *extra: str) -> tuple[subprocess.CompletedProcess, list[str]]:
    """`dualasr export --out OUT --formats FORMATS --quantize none,int8 EXTRA` in a fresh process ->
    (result, the lines a user sees: progress-bar redraws (\\r) count as lines)."""
    import re

    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    r = subprocess.run([sys.executable, "-m", "dualasr.cli", "export", "--out", str(out), "--formats", formats,
                        "--quantize", "none,int8", *extra], capture_output=True, text=True, env=env, timeout=1800)
    return r, [ln for ln in re.split(r"[\r\n]+", r.stdout + r.stderr) if ln.strip()]


@pytest.fixture(scope="session")
def builtin_every_format(tmp_path_factory) -> tuple[subprocess.CompletedProcess, list[str], Path]:
    """The built-in model exported once through the CLI to every format and precision (the slow
    tier's ExecuTorch int8 and Core ML checks of a 4-layer model read it too)."""
    out = tmp_path_factory.mktemp("builtin") / "all"
    r, lines = cli_export(out, "onnx,executorch,coreml")
    return r, lines, out


@pytest.fixture(scope="session")
def random_lstm_checkpoint(tmp_path_factory) -> Path:
    return make_checkpoint(tmp_path_factory.mktemp("ckpt") / "random-tiny-lstm.pt", "tiny-lstm")


@pytest.fixture(scope="session")
def speech_wav(tmp_path_factory) -> Path:
    """A few seconds of synthesized English speech, 16 kHz mono."""
    import subprocess

    from dualasr.audio import load_audio, save_wav

    d = tmp_path_factory.mktemp("speech")
    raw = d / "raw.wav"
    subprocess.run(["espeak-ng", "-v", "en-us", "-w", str(raw),
                    "please enter your account number followed by the pound key"], check=True)
    out = d / "speech.wav"
    save_wav(out, load_audio(raw), 16000)
    return out
