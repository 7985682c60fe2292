"""The shipped model (dualasr/assets/default/model.pt) on real recorded speech it never trained on:
it recognizes, the torch-free runtime equals the batched PyTorch oracle (tests/oracle.py) token for
token; and an unmodified sherpa-onnx decodes the export of the trained sherpa-onnx-compatible
`tiny` model (dualasr/assets/tiny/model.pt) to the same tokens."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from dualasr.demo import DEFAULT_MODEL, TINY_MODEL, real_test_set

pytestmark = [pytest.mark.usefixtures("one_torch_thread_module")]

N_UTTS = 20
# Measured on these 20 prompts: streaming 19.7%, full 5.1% (benchmarks/results/demo_first20.json,
# `dualasr demo --limit 20 --json benchmarks/results/demo_first20.json`).
# The bounds leave room for onnxruntime/BLAS differences, not for a broken model.
MAX_WER = {"streaming": 25.0, "full": 16.0}


@pytest.fixture(scope="module")
def export_dir(tmp_path_factory):
    from dualasr.export.exporter import export_checkpoint

    out = tmp_path_factory.mktemp("default") / "export"
    export_checkpoint(DEFAULT_MODEL, out, ["onnx"], ["none"], [320])
    return out


@pytest.fixture(scope="module")
def tiny_sherpa_export(tmp_path_factory):
    from dualasr.export.exporter import export_checkpoint

    out = tmp_path_factory.mktemp("tiny") / "export"
    export_checkpoint(TINY_MODEL, out, ["sherpa-onnx"], ["none"], [320])
    return out


@pytest.fixture(scope="module")
def real_speech():
    from dualasr.audio import load_audio

    utts = real_test_set(N_UTTS)  # the Asterisk prompts: scripts/setup.sh installs them
    return utts, [load_audio(u.audio) for u in utts]




@pytest.mark.parametrize("mode", ["streaming", "full"])
def test_recognizes_held_out_real_speech(export_dir, real_speech, mode):
    from dualasr.metrics import wer
    from dualasr.runtime.recognizer import Recognizer
    from dualasr.tokenizer import normalize_text

    utts, waves = real_speech
    rec = Recognizer(export_dir, mode=mode, threads=1)
    hyps = [rec.recognize(w, 16000).text for w in waves]
    score = 100 * wer([normalize_text(u.text) for u in utts], hyps)
    print(f"{mode}: WER {score:.1f}% on {len(utts)} held-out real prompts; e.g. {hyps[0]!r}")
    assert score < MAX_WER[mode]


def test_runtime_equals_pytorch_streaming_on_real_speech(export_dir, real_speech):
    from oracle import oracle_recognize

    from dualasr.checkpoint import load_model
    from dualasr.runtime.recognizer import Recognizer

    _, waves = real_speech
    model = load_model(DEFAULT_MODEL)[0]
    ours = Recognizer(export_dir, mode="streaming", threads=1)
    for w in waves[:5]:
        a = ours.recognize(w, 16000)
        assert a.token_ids and a.token_ids == oracle_recognize(model, w, "streaming").token_ids


def test_sherpa_onnx_decodes_our_export_like_our_runtime(tiny_sherpa_export, real_speech):
    import json

    from dualasr.checkpoint import load_model
    from test_sherpa import _piece_ids, _recognizer, reference_greedy, sherpa_decode

    export_dir = tiny_sherpa_export
    entry = json.loads((export_dir / "manifest.json").read_text())["artifacts"]["sherpa-onnx"]["fp32"]
    model, _, _ = load_model(TINY_MODEL)
    _, waves = real_speech
    tail = np.zeros(4800, np.float32)  # apps append tail silence; sherpa skips a partial last chunk
    wavs = [np.concatenate([w, tail]) for w in waves[:4]]
    got = sherpa_decode(_recognizer(export_dir, entry, "greedy_search"), _piece_ids(export_dir, entry), wavs)
    for w, tokens in zip(wavs, got):
        assert tokens and tokens == reference_greedy(model, w)


def test_verify_passes_on_the_shipped_export(real_speech):
    """What `dualasr transcribe` and `make demo` load must pass `dualasr verify` on real speech,
    int8 included (its relative error and token agreement against PyTorch fp32)."""
    from pathlib import Path

    from dualasr.export.verify import format_report, verify_export
    from dualasr.runtime.cli import default_export_dir

    utts, _ = real_speech
    report = verify_export(default_export_dir(), [Path(u.audio) for u in utts[:6]])
    assert report["ok"], format_report(report)
    verified = {(c["runtime"], c["precision"], c["metric"]) for c in report["checks"]}
    assert {("onnxruntime", "int8", "relative_error"), ("onnxruntime", "int8", "token_agreement"),
            ("onnxruntime", "fp32", "token_agreement")} <= verified


def test_demo_command_runs_both_modes():
    r = subprocess.run([sys.executable, "-m", "dualasr.cli", "demo", "--limit", "3"],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "== streaming mode" in r.stdout and "== full mode" in r.stdout
    # The Asterisk prompts, then real_eval's 8 speakers (scripts/setup.sh fetches its packages).
    assert "held-out Asterisk prompts" in r.stdout and "8 speakers it never heard" in r.stdout
    assert r.stdout.count("3 utterances") == 2 and "skipped" not in r.stdout
    assert r.stdout.count("WER") == 8 and "Latency@50" in r.stdout
    assert r.stdout.count("beam 8 + LM: WER") == 4  # greedy, then beam search with the cached LM fused
