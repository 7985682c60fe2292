"""Issue 13, "what a hostile-but-realistic user broke": one section per item, each test failing
before its fix. Nothing here may print a Python traceback.

Fast: the export-folder tests use a stub format writer (no tracing); the runtime tests share one
ONNX fp32 export of the random-weight tiny checkpoint.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import types
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from dualasr.export import exporter
from dualasr.export.exporter import ExportError, export_checkpoint
from dualasr.export.manifest import load_manifest

ENV = {**os.environ, "PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS": "1"}


def _cli(*args: object, timeout: int = 300, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "dualasr.cli", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, env=kw.pop("env", ENV), **kw)


def _tree(root: Path) -> dict[str, bytes]:
    """Every file under root (symlinks not followed) -> its bytes."""
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


# ----------------------------------------------------------------------------- 1. export --out data loss


def _stub_write(graphs, example_inputs, export_dir, precision, calibration, model=None):
    folder = Path(export_dir) / "stub" / precision
    folder.mkdir(parents=True)
    (folder / "all.bin").write_bytes(precision.encode())
    return {"graphs": {g: f"stub/{precision}/all.bin" for g in graphs}, "weights": f"stub/{precision}/all.bin"}


@pytest.fixture()
def stub_format(monkeypatch):
    """Format "stub": writes one small file per precision, so export tests need no tracing."""
    mod = types.ModuleType("dualasr.export.stub_writer")
    mod.write = _stub_write
    monkeypatch.setitem(sys.modules, mod.__name__, mod)
    monkeypatch.setitem(exporter.FORMATS, "stub", ("stub_writer", {"none": "fp32", "int8": "int8"}))
    return mod


def test_1_folder_with_a_foreign_manifest_is_refused(stub_format, random_checkpoint, tmp_path):
    site = tmp_path / "site"
    (site / "static").mkdir(parents=True)
    (site / "manifest.json").write_text('{"name": "my web app", "start_url": "/"}')
    (site / "index.html").write_text("<html>my site</html>")
    (site / "static" / "app.js").write_text("main()")
    before = _tree(site)
    with pytest.raises(ExportError, match=r"holds a manifest.json but is not an intact dualasr export"):
        export_checkpoint(random_checkpoint, site, ["stub"], ["none"], [320])
    assert _tree(site) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["site"]


def test_1_export_holding_user_files_is_refused_naming_them(stub_format, random_checkpoint, tmp_path):
    out = tmp_path / "export"
    export_checkpoint(random_checkpoint, out, ["stub"], ["none"], [320])
    (out / "notes.txt").write_text("my notes on this model")
    (out / "recordings").mkdir()
    (out / "recordings" / "take1.wav").write_bytes(b"RIFF....")
    (out / "empty-folder").mkdir()
    before = _tree(out)
    with pytest.raises(ExportError) as e:
        export_checkpoint(random_checkpoint, out, ["stub"], ["none"], [320])
    msg = str(e.value)
    assert "notes.txt" in msg and "recordings/take1.wav" in msg and "empty-folder/" in msg
    assert "refusing to replace it" in msg
    assert _tree(out) == before and (out / "empty-folder").is_dir()


def test_1_edited_export_file_is_refused(stub_format, random_checkpoint, tmp_path):
    out = tmp_path / "export"
    export_checkpoint(random_checkpoint, out, ["stub"], ["none"], [320])
    (out / "tokens.txt").write_text((out / "tokens.txt").read_text().replace("0", "9"))  # same size, edited
    before = _tree(out)
    with pytest.raises(ExportError, match=r"not an intact dualasr export.*tokens.txt"):
        export_checkpoint(random_checkpoint, out, ["stub"], ["none"], [320])
    assert _tree(out) == before


def test_1_formats_of_an_existing_export_are_never_dropped_silently(stub_format, random_checkpoint, tmp_path, monkeypatch):
    out = tmp_path / "export"
    export_checkpoint(random_checkpoint, out, ["stub"], ["none", "int8"], [320])
    before = _tree(out)
    with pytest.raises(ExportError, match=r"stub/int8, which the new export would not have.*--replace"):
        export_checkpoint(random_checkpoint, out, ["stub"], ["none"], [320])
    assert _tree(out) == before

    # A format that worked before and fails now must not replace the old export either.
    def int8_fails(graphs, example_inputs, export_dir, precision, calibration, model=None):
        if precision == "int8":
            raise RuntimeError("quantizer crashed")
        return _stub_write(graphs, example_inputs, export_dir, precision, calibration)

    monkeypatch.setattr(stub_format, "write", int8_fails)
    with pytest.raises(ExportError, match=r"stub/int8, which the new export would not have"):
        export_checkpoint(random_checkpoint, out, ["stub"], ["none", "int8"], [320])
    assert _tree(out) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["export"]  # no temp folder left

    monkeypatch.setattr(stub_format, "write", _stub_write)
    m = export_checkpoint(random_checkpoint, out, ["stub"], ["none"], [320], replace=True)  # explicit: drop int8
    assert set(m["artifacts"]["stub"]) == {"fp32"} and not (out / "stub" / "int8").exists()
    export_checkpoint(random_checkpoint, out, ["stub"], ["none"], [160])  # an intact export is replaced
    assert load_manifest(out)["streaming"][0]["chunk_ms"] == 160


def test_1_cli_refusal_is_one_line_without_traceback(random_checkpoint, tmp_path):
    site = tmp_path / "site"
    site.mkdir()
    (site / "manifest.json").write_text('{"name": "my web app"}')
    (site / "index.html").write_text("<html></html>")
    r = _cli("export", random_checkpoint, "--out", site, "--formats", "onnx", "--quantize", "none")
    assert r.returncode == 2, r.stderr
    assert "Traceback" not in r.stderr and r.stderr.count("\n") == 1
    assert "dualasr export: error: --out" in r.stderr and "refusing to replace it" in r.stderr
    assert sorted(p.name for p in site.iterdir()) == ["index.html", "manifest.json"]


# ----------------------------------------------------------------------------- 2. signals, symlinks, --out .


def test_2_out_symlink_replaces_its_target_and_keeps_the_link(stub_format, random_checkpoint, tmp_path):
    target = tmp_path / "exports" / "v1"
    export_checkpoint(random_checkpoint, target, ["stub"], ["none"], [320])
    link = tmp_path / "current"
    link.symlink_to(target, target_is_directory=True)
    export_checkpoint(random_checkpoint, link, ["stub"], ["none"], [160])
    assert link.is_symlink() and os.readlink(link) == str(target)
    assert load_manifest(target)["streaming"][0]["chunk_ms"] == 160
    assert sorted(p.name for p in tmp_path.iterdir()) == ["current", "exports"]
    assert sorted(p.name for p in (tmp_path / "exports").iterdir()) == ["v1"]  # no stray .old-* or temp


@pytest.mark.parametrize("where", [".", "cwd", "parent", "home", "root"])
def test_2_out_dot_home_or_root_is_refused_before_any_work(stub_format, tmp_path, monkeypatch, where):
    work = tmp_path / "home" / "project"
    work.mkdir(parents=True)
    (work / "keep.txt").write_text("x")
    monkeypatch.chdir(work)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    out = {".": Path("."), "cwd": work, "parent": Path(".."), "home": tmp_path / "home", "root": Path("/")}[where]
    # The checkpoint does not exist: the refusal must come first, before anything is loaded.
    with pytest.raises(ExportError, match=r"--out .* is (the current folder|a parent of the current folder|your home "
                                          r"folder|the root folder); an export replaces its folder as a whole"):
        export_checkpoint(tmp_path / "missing.pt", out, ["stub"], ["none"], [320])
    assert sorted(p.name for p in (tmp_path / "home").iterdir()) == ["project"]
    assert sorted(p.name for p in work.iterdir()) == ["keep.txt"]


def _wait_for(pattern: str, folder: Path, proc: subprocess.Popen, timeout: float = 240.0) -> None:
    t0 = time.monotonic()
    while not list(folder.glob(pattern)):
        if proc.poll() is not None:
            raise AssertionError(f"finished before {pattern} appeared: {proc.communicate()}")
        if time.monotonic() - t0 > timeout:
            proc.kill()
            raise AssertionError(f"{pattern} never appeared in {folder}")
        time.sleep(0.05)


def _terminate(proc: subprocess.Popen, signum: int) -> tuple[int, str]:
    proc.send_signal(signum)
    _, err = proc.communicate(timeout=120)
    return proc.returncode, err


@pytest.mark.parametrize("signum", ["SIGTERM", "SIGHUP"])
def test_2_signal_during_export_removes_the_temp_folder(random_checkpoint, tmp_path, signum):
    sig = getattr(signal, signum)
    proc = subprocess.Popen([sys.executable, "-m", "dualasr.cli", "export", str(random_checkpoint), "--out",
                             str(tmp_path / "out"), "--formats", "onnx", "--quantize", "none,int8"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)
    _wait_for(".out.export-*", tmp_path, proc)
    rc, err = _terminate(proc, sig)
    assert rc == 128 + sig, err
    assert "Traceback" not in err and f"terminated by {signum}; its temporary files were removed" in err
    assert list(tmp_path.iterdir()) == []


@pytest.fixture(scope="module")
def onnx_export(random_checkpoint, tmp_path_factory) -> Path:
    """fp32 + int8, 160 and 320 ms chunks: enough graphs to swap one for another."""
    out = tmp_path_factory.mktemp("issue13") / "export"
    manifest = export_checkpoint(random_checkpoint, out, ["onnx"], ["none", "int8"], [160, 320])
    assert set(manifest["artifacts"]["onnx"]) == {"fp32", "int8"}, manifest["errors"]
    return out


@pytest.mark.parametrize("signum", ["SIGTERM", "SIGHUP"])
def test_2_signal_during_bench_removes_the_temp_folder(onnx_export, speech_wav, tmp_path, signum):
    sig = getattr(signal, signum)
    data = tmp_path / "data.jsonl"
    data.write_text(json.dumps({"audio": str(speech_wav), "text": "please enter your account number"}) + "\n")
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    proc = subprocess.Popen([sys.executable, "-m", "dualasr.cli", "bench", str(onnx_export), "--data", str(data),
                             "--json", str(tmp_path / "out.json"), "--backends", "onnxruntime", "--peers", "none",
                             "--threads", "1", "--precisions", "fp32", "--no-compute", "--repeat", "50"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**ENV, "TMPDIR": str(tmp)})
    _wait_for("dualasr-bench-*/cell-*.spec.json", tmp, proc)
    rc, err = _terminate(proc, sig)
    assert rc == 128 + sig, err
    assert "Traceback" not in err and f"terminated by {signum}" in err
    assert list(tmp.iterdir()) == [] and not (tmp_path / "out.json").exists()


# ----------------------------------------------------------------------------- helpers for 3-11

_MEASURE = (
    "import sys\n"
    "from dualasr.cli import main\n"
    "from dualasr.runtime.simulate import peak_rss_mb\n"
    "rc = main(sys.argv[2:])\n"
    "open(sys.argv[1], 'w').write(str(peak_rss_mb()))\n"
    "sys.exit(rc)\n"
)


def _measured(tmp_path: Path, *args: object, timeout: int = 600) -> tuple[subprocess.CompletedProcess, float | None]:
    """`dualasr ARGS` in a fresh process -> (result, its peak RSS in MiB)."""
    peak = tmp_path / f"peak-{time.monotonic_ns()}.txt"
    r = subprocess.run([sys.executable, "-c", _MEASURE, str(peak), *map(str, args)], capture_output=True, text=True,
                       timeout=timeout, env=ENV)
    return r, float(peak.read_text()) if peak.exists() else None


def _no_traceback(r: subprocess.CompletedProcess, command: str) -> None:
    assert "Traceback" not in r.stderr, r.stderr
    errors = [line for line in r.stderr.splitlines() if "error" in line]
    assert errors and all(line.startswith(f"dualasr {command}: ") for line in errors), r.stderr


@pytest.fixture(scope="module")
def speech(speech_wav) -> np.ndarray:
    """espeak speech without its leading digital silence."""
    from dualasr.audio import load_audio

    x = load_audio(speech_wav)
    return x[int(np.argmax(np.abs(x) > 1e-3)):]


@pytest.fixture(scope="module")
def default_export() -> Path:
    from dualasr.runtime.cli import default_export_dir

    return default_export_dir()


def _write_long(path: Path, speech: np.ndarray, seconds: float, rate: int = 16000, channels: int = 1) -> Path:
    """speech + 0.5 s of low noise, repeated for `seconds`, written block by block."""
    from scipy.signal import resample_poly

    g = np.gcd(rate, 16000)
    unit = np.concatenate([speech, 0.003 * np.random.default_rng(0).standard_normal(8000).astype(np.float32)])
    unit = resample_poly(unit, rate // g, 16000 // g).astype(np.float32)
    total = int(seconds * rate)
    with sf.SoundFile(str(path), "w", rate, channels, subtype="PCM_16") as f:
        written = 0
        while written < total:
            block = unit[: total - written]
            f.write(np.repeat(block[:, None], channels, axis=1) * np.linspace(1.0, 0.5, channels))
            written += block.size
    return path


# ----------------------------------------------------------------------------- 3. full mode on long audio


def test_3_windows_tile_the_audio_and_arrive_online_as_offline():
    from dualasr.runtime.windows import next_window, plan_windows, window_frames

    size, context = window_frames(30.0, 0.01, 4)
    assert (size, context) == (3000, 200)
    assert window_frames(30.0, 0.01, 4, graph_max_frames=600) == (600, 148)
    rng = np.random.default_rng(0)
    for total in [0, 3, 4, 2999, 3000, 3001, 3004, 5601, 5604, 7000, 100_003, *rng.integers(1, 40_000, 20)]:
        windows = plan_windows(int(total), size, context, 4)
        end = int(total) - int(total) % 4
        assert [w.keep_from for w in windows] == [0, *[w.keep_to for w in windows[:-1]]][:len(windows)]
        assert (windows[-1].keep_to if windows else 0) == end
        for w in windows:
            assert 0 <= w.start <= w.keep_from < w.keep_to <= w.stop <= end and w.stop - w.start <= size
            assert w.keep_from - w.start >= min(context, w.keep_from)  # left context, or the start
            assert w.stop - w.keep_to >= min(context, end - w.keep_to)  # right context, or the end
        if end <= size:
            assert [(w.start, w.stop) for w in windows] == ([(0, end)] if end else [])  # the whole utterance
        # Online: frames arrive in random pieces; the same windows come out.
        online, done, arrived = [], 0, 0
        while True:
            arrived = min(int(total), arrived + int(rng.integers(1, 900)))
            while (w := next_window(done, arrived, arrived == total, size, context, 4)) is not None:
                online.append(w)
                done = w.keep_to
            if arrived == total:
                break
        assert online == windows


def test_3_full_mode_on_long_audio_equals_torch_over_the_same_windows(onnx_export, random_checkpoint, speech):
    import torch

    from dualasr.checkpoint import load_model
    from dualasr.decoding import greedy_search
    from dualasr.runtime import Recognizer
    from dualasr.runtime.features import compute_features
    from dualasr.runtime.windows import plan_windows, window_frames

    x = np.tile(np.concatenate([speech, np.zeros(4000, np.float32)]), 40)[: 75 * 16000]
    rec = Recognizer(onnx_export, mode="full")
    got = rec.recognize(x, 16000)
    # Fed live in 100 ms pieces: the first windows are decoded while audio still arrives.
    s = rec.create_stream()
    partial_at_40s = None
    for i in range(0, x.size, 1600):
        s.accept_waveform(16000, x[i:i + 1600])
        while rec.is_ready(s):
            rec.decode(s)
        if i == 40 * 16000:
            partial_at_40s = len(s.result.token_ids)
    s.input_finished()
    rec.decode(s)
    assert partial_at_40s and s.result.token_ids == got.token_ids and s.result.timestamps == got.timestamps

    feats = compute_features(x, rec.features)
    windows = plan_windows(len(feats), *window_frames(30.0, 0.01, 4), 4)
    assert len(windows) == 3
    model = load_model(random_checkpoint)[0]
    with torch.no_grad():
        parts = [model.encoder(torch.from_numpy(feats[None, w.start:w.stop]), None, "full")[0]
                 [:, (w.keep_from - w.start) // 4:(w.keep_to - w.start) // 4] for w in windows]
        enc = torch.cat(parts, dim=1)
        want = greedy_search(model, enc, torch.tensor([enc.shape[1]]))[0]
    assert len(want.tokens) > 50 and got.token_ids == want.tokens


@pytest.fixture(scope="module")
def long_files(speech, tmp_path_factory) -> dict[int, Path]:
    """48 kHz stereo FLAC files of 1 and 8 minutes."""
    d = tmp_path_factory.mktemp("long")
    return {m: _write_long(d / f"{m}min.flac", speech, 60 * m, 48000, 2) for m in (1, 8)}


@pytest.mark.parametrize("mode", ["streaming", "full"])
def test_3_4_memory_does_not_grow_with_the_file(default_export, long_files, tmp_path, mode):
    """Items 3 and 4: full mode windows the encoder, both modes read and resample the file block by
    block. Before: the whole file was loaded and resampled (streaming: +0.5 GB for 8 min of 48 kHz
    stereo) and encoder_full ran on all of it (several GB)."""
    peaks = {}
    for minutes, path in long_files.items():
        r, peaks[minutes] = _measured(tmp_path, "transcribe", default_export, path, "--mode", mode, "--json")
        assert r.returncode == 0, r.stderr
        out = json.loads(r.stdout)["files"][0]
        assert abs(out["audio_s"] - 60 * minutes) < 0.1 and len(out["text"]) > 10 * minutes
    assert peaks[8] - peaks[1] < 40, peaks


def test_3_verify_long_audio_uses_the_windows(onnx_export, speech, tmp_path):
    long = _write_long(tmp_path / "long.wav", speech, 40)
    r = _cli("verify", onnx_export, "--audio", long, timeout=900)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "long.wav in 2 windows" in r.stdout and "PASSED" in r.stdout


# ----------------------------------------------------------------------------- 5. --threads


def test_5_threads_are_capped_at_the_cores(onnx_export, speech_wav, tmp_path):
    from dualasr.bench import parse_threads
    from dualasr.runtime import Recognizer
    from dualasr.runtime.backends import available_cores

    cores = available_cores()
    with pytest.warns(RuntimeWarning, match=f"threads 100000 is more than the {cores} cores"):
        rec = Recognizer(onnx_export, threads=100_000)
    assert rec.recognize(np.zeros(1600, np.float32), 16000).is_final
    with pytest.raises(ValueError, match="threads must be an integer >= 0"):
        Recognizer(onnx_export, threads=-1)
    assert parse_threads("1,1000") == list(dict.fromkeys([1, cores]))
    r = _cli("transcribe", onnx_export, speech_wav, "--threads", "100000", timeout=120)
    assert r.returncode == 0 and f"warning: --threads 100000 is more than the {cores} cores" in r.stderr, r.stderr
    r = _cli("transcribe", onnx_export, speech_wav, "--threads", "-3", timeout=120)
    assert r.returncode == 2 and "--threads must be an integer >= 0" in r.stderr
    _no_traceback(r, "transcribe")


# ----------------------------------------------------------------------------- 6. checkpoint config vs weights


@pytest.mark.parametrize("change", [{"d_model": 2048, "num_layers": 40}, {"d_model": 65536}, {"vocab_size": 4096}])
def test_6_config_that_does_not_fit_the_weights_is_refused_before_building(random_checkpoint, tmp_path, change):
    import torch

    from dualasr.checkpoint import CheckpointError, load_model

    payload = torch.load(random_checkpoint, weights_only=True)
    payload["config"]["model"].update(change)
    bad = tmp_path / "edited.pt"
    torch.save(payload, bad)
    with pytest.raises(CheckpointError, match="does not match its stored weights"):
        load_model(bad)
    r, peak = _measured(tmp_path, "export", bad, "--out", tmp_path / "out", "--formats", "onnx")
    assert r.returncode == 2 and "does not match its stored weights" in r.stderr, r.stderr
    _no_traceback(r, "export")
    assert peak < 1500 and not (tmp_path / "out").exists(), peak  # before: > 6 GB, or a traceback
    if "num_layers" in change:
        env = {**ENV, "XDG_CACHE_HOME": str(tmp_path / "cache")}
        r = _cli("demo", bad, "--limit", "1", env=env)
        assert r.returncode == 2 and "does not match its stored weights" in r.stderr, r.stderr


# ----------------------------------------------------------------------------- 7. the manifest is validated


def _edited(src: Path, dst: Path, edit, reseal: bool = True) -> Path:
    """A copy of the export whose manifest `edit` changed; reseal: update the manifest's own checksum
    as a careless tool would (then only validation can catch the edit)."""
    from dualasr.export.manifest import CHECKSUM_KEY, manifest_checksum

    shutil.copytree(src, dst)
    m = json.loads((dst / "manifest.json").read_text())
    edit(m)
    if reseal:
        m[CHECKSUM_KEY] = manifest_checksum(m)
    (dst / "manifest.json").write_text(json.dumps(m))
    return dst


def _set(path: str, value):
    def edit(m):
        *parents, last = path.split(".")
        d = m
        for p in parents:
            d = d[int(p)] if isinstance(d, list) else d[p]
        if value is KeyError:
            del d[last]
        else:
            d[last] = value
    return edit


MANIFEST_CASES = {
    "chunk_frames 0": (_set("streaming.0.chunk_frames", 0), r"streaming\[0\]\.chunk_frames is 0"),
    "chunk_frames 4e11": (_set("streaming.0.chunk_frames", 4e11), r"chunk_frames is 400000000000\.0, expected an integer"),
    "subsampling 0": (_set("subsampling", 0), r"subsampling is 0"),
    "subsampling 8": (_set("subsampling", 8), r"encoder_frames is 4|graphs\.encoder_streaming_160ms"),
    "missing sample_rate": (_set("features.sample_rate", KeyError), r"features\.sample_rate is missing"),
    "sample_rate 1": (_set("features.sample_rate", 1), r"features\.sample_rate is 1"),
    "frame_shift 0": (_set("frame_shift_ms", 0), r"frame_shift_ms is 0"),
    "tokenizer a string": (_set("tokenizer", "tokenizer.model"), r"tokenizer is 'tokenizer.model', expected an object"),
    "no joiner graph": (_set("graphs.joiner", KeyError), r"graphs\.joiner is missing"),
    "initial_context out of range": (_set("predictor.initial_context", [-1, 999]), r"predictor\.initial_context"),
    "blank_id 999": (_set("blank_id", 999), r"blank_id is 999"),
    "vocab_size 50": (_set("vocab_size", 50), r"graphs\.joiner\.outputs"),
    "state shape huge": (_set("streaming.0.states.0.shape", [100000, 100000, 1, 96]), r"at most \d+ elements"),
    "max_full_seconds 1e9": (_set("max_full_seconds", 1e9), r"max_full_seconds is 1000000000\.0"),
    "no probes": (_set("probes", KeyError), r"probes is missing"),
}


@pytest.mark.parametrize("case", list(MANIFEST_CASES))
def test_7_every_bad_manifest_value_is_refused_before_loading(case, onnx_export, tmp_path):
    from dualasr.export.manifest import ManifestError
    from dualasr.runtime import Recognizer

    edit, phrase = MANIFEST_CASES[case]
    bad = _edited(onnx_export, tmp_path / "export", edit)
    for mode in ("streaming", "full"):
        with pytest.raises(ManifestError, match=phrase):
            Recognizer(bad, mode=mode)


def test_7_edited_deep_or_nan_manifest_is_refused_by_the_cli(onnx_export, speech_wav, tmp_path):
    cases = {
        # The checksum catches what no schema can: a valid but wrong value (before: wrong text, exit 0).
        "sample_rate 8000, checksum not updated": (_edited(onnx_export, tmp_path / "a", _set("features.sample_rate", 8000),
                                                           reseal=False), "was modified after export"),
        # Before: an endless loop at 100% CPU.
        "chunk_frames 0": (_edited(onnx_export, tmp_path / "b", _set("streaming.0.chunk_frames", 0)), "chunk_frames is 0"),
    }
    deep = _edited(onnx_export, tmp_path / "c", lambda m: None)
    (deep / "manifest.json").write_text("[" * 200_000 + "]" * 200_000)
    cases["200k-deep JSON"] = (deep, "nests JSON too deeply")
    nan = _edited(onnx_export, tmp_path / "d", lambda m: None)
    (nan / "manifest.json").write_text((nan / "manifest.json").read_text().replace('"blank_id": 0', '"blank_id": NaN'))
    cases["NaN"] = (nan, "not valid JSON")
    for name, (bad, phrase) in cases.items():
        r = _cli("transcribe", bad, speech_wav, timeout=60)
        assert r.returncode == 2 and phrase in r.stderr, (name, r.stderr)
        _no_traceback(r, "transcribe")


def test_7_manifest_module_is_the_torch_free_contract():
    code = ("import sys, dualasr.runtime.recognizer, dualasr.export.manifest as m; "
            "assert 'torch' not in sys.modules; assert m.FORMAT_VERSION == 2")
    subprocess.run([sys.executable, "-c", code], check=True, env=ENV)


# ----------------------------------------------------------------------------- 8. a graph replaced by another


def _replaced(src: Path, dst: Path, change) -> Path:
    """A copy of the export with graph files changed by `change(dst)`, its manifest's file table and
    checksum then rewritten (as a tool that "fixes" checksums would), so only the graph checks remain."""
    from dualasr.export.manifest import write_manifest

    shutil.copytree(src, dst)
    change(dst)
    write_manifest(dst, json.loads((dst / "manifest.json").read_text()))
    return dst


def _swap_chunk_graphs(d: Path) -> None:
    a, b = d / "onnx/fp32/encoder_streaming_160ms.onnx", d / "onnx/fp32/encoder_streaming_320ms.onnx"
    data = a.read_bytes()
    a.write_bytes(b.read_bytes())
    b.write_bytes(data)


def _rename_joiner_output(d: Path) -> None:
    import onnx

    path = d / "onnx/fp32/joiner.onnx"
    model = onnx.load(str(path), load_external_data=False)
    for node in model.graph.node:
        node.output[:] = ["scores" if o == "logits" else o for o in node.output]
    model.graph.output[0].name = "scores"
    onnx.save(model, str(path))


def _nan_joiner(d: Path) -> None:
    import onnx
    from onnx import numpy_helper

    path = d / "onnx/fp32/joiner.onnx"
    model = onnx.load(str(path), load_external_data=True)  # weights from weights.bin, saved inline
    biggest = max(model.graph.initializer, key=lambda t: np.prod(t.dims))
    w = numpy_helper.to_array(biggest).copy()
    w.flat[::7] = np.nan
    biggest.CopyFrom(numpy_helper.from_array(w, biggest.name))
    onnx.save(model, str(path), save_as_external_data=False)


GRAPH_CASES = {
    "160/320 ms step graphs swapped": (_swap_chunk_graphs, "streaming", r"encoder_streaming_160ms input features is "
                                                                          r"float32 \[.*32, 80\], the manifest says"),
    "output renamed": (_rename_joiner_output, "streaming", r"graph joiner has outputs \['scores'\]"),
    "int8 encoder in the fp32 folder": (lambda d: shutil.copy(d / "onnx/int8/encoder_full.onnx", d / "onnx/fp32/encoder_full.onnx"),
                                        "full", r"graph encoder_full .* does not compute what was exported"),
    "joiner with NaN weights": (_nan_joiner, "streaming", r"graph joiner .* does not compute what was exported"),
}


@pytest.mark.parametrize("case", list(GRAPH_CASES))
def test_8_a_graph_replaced_by_another_valid_graph_is_refused(case, onnx_export, speech_wav, tmp_path):
    from dualasr.export.manifest import ManifestError
    from dualasr.runtime import Recognizer

    change, mode, phrase = GRAPH_CASES[case]
    bad = _replaced(onnx_export, tmp_path / "export", change)
    with pytest.raises(ManifestError, match=phrase):
        Recognizer(bad, mode=mode, chunk_ms=160)
    r = _cli("transcribe", bad, speech_wav, "--mode", mode, "--chunk-ms", "160", timeout=120)
    assert r.returncode == 2 and "does not compute" in r.stderr or "manifest" in r.stderr, r.stderr
    _no_traceback(r, "transcribe")


class _Spy:
    """A backend wrapper: NaN logits from the n-th joiner call on, or a pause inside the encoder."""

    def __init__(self, inner, nan_after: int | None = None):
        self.inner, self.nan_after, self.joiner_calls = inner, nan_after, 0
        self.name, self.precision, self.supports_batch, self.load_seconds = inner.name, inner.precision, True, 0.0
        self.entered, self.release = threading.Event(), threading.Event()
        self.pause = False

    def run(self, graph, inputs):
        out = self.inner.run(graph, inputs)
        if graph == "joiner":
            self.joiner_calls += 1
            if self.nan_after is not None and self.joiner_calls > self.nan_after:
                out = {k: np.full_like(v, np.nan) for k, v in out.items()}
        if graph.startswith("encoder") and self.pause:
            self.entered.set()
            assert self.release.wait(60)
        return out


def test_8_nan_from_any_graph_at_run_time_is_an_error(onnx_export, speech):
    from dualasr.runtime import Recognizer
    from dualasr.runtime.backends import OnnxRuntimeBackend
    from dualasr.runtime.recognizer import load_export_manifest

    inner = OnnxRuntimeBackend(onnx_export, load_export_manifest(onnx_export))
    rec = Recognizer(onnx_export, backend=_Spy(inner, nan_after=10))
    with pytest.raises(FloatingPointError, match="graph joiner returned NaN/Inf"):
        rec.recognize(speech, 16000)


# ----------------------------------------------------------------------------- 9. one stream, two users


def test_9_stream_listed_twice_or_used_by_two_threads_is_an_error(onnx_export, speech):
    from dualasr.runtime import Recognizer
    from dualasr.runtime.backends import OnnxRuntimeBackend
    from dualasr.runtime.recognizer import load_export_manifest

    spy = _Spy(OnnxRuntimeBackend(onnx_export, load_export_manifest(onnx_export)))
    rec = Recognizer(onnx_export, backend=spy)
    s, other = rec.create_stream("mic-1"), rec.create_stream("mic-2")
    s.accept_waveform(16000, speech)
    with pytest.raises(RuntimeError, match="mic-1 is listed twice in decode_streams"):
        rec.decode_streams([s, other, s])
    assert s.result.token_ids == []  # nothing was decoded

    spy.pause = True
    worker = threading.Thread(target=rec.decode, args=(s,))
    worker.start()
    assert spy.entered.wait(60)  # the worker is inside decode(s)
    for action in (lambda: s.accept_waveform(16000, speech[:1600]), lambda: rec.decode(s), lambda: rec.reset(s),
                   s.input_finished):
        with pytest.raises(RuntimeError, match="mic-1: .* while another thread is using this stream"):
            action()
    rec.decode(other)  # other streams stay usable meanwhile
    spy.pause = False
    spy.release.set()
    worker.join(60)
    s.input_finished()
    rec.decode(s)
    assert s.result.token_ids == rec.recognize(speech, 16000).token_ids  # the refused calls changed nothing


# ----------------------------------------------------------------------------- 10. unchecked arguments


def test_10_bad_arguments_are_one_line_errors(onnx_export, random_checkpoint, speech_wav, tmp_path, capsys):
    from dualasr.cli import main

    data = tmp_path / "data.jsonl"
    data.write_text(json.dumps({"audio": str(speech_wav), "text": "x"}) + "\n")
    bench = ["bench", str(onnx_export), "--data", str(data), "--backends", "onnxruntime", "--peers", "none"]
    cases = {
        "export --chunk-ms -40": (["export", str(random_checkpoint), "--out", str(tmp_path / "o"), "--chunk-ms", "-40"],
                                  "--chunk-ms must be positive"),
        "train --set model.d_model=abc": (["train", "--set", "model.d_model=abc", "--out", str(tmp_path / "t")],
                                          "model.d_model must be int, got 'abc'"),
        "train --set model.num_heads=0": (["train", "--set", "model.num_heads=0", "--out", str(tmp_path / "t")],
                                          "model.num_heads must be >= 1"),
        "train --device tpu": (["train", "--device", "tpu", "--out", str(tmp_path / "t"), "--set", "data.train=/nonexistent"],
                               "--device 'tpu' is not a device name torch knows"),
        "train --config /etc/passwd": (["train", "--config", "/etc/passwd"], "/etc/passwd is not a JSON config file"),
        "bench --feed-ms -100": ([*bench, "--feed-ms", "-100"], "--feed-ms must be in (0, 10000]"),
        "bench --repeat 0": ([*bench, "--repeat", "0"], "--repeat >= 1"),
        "bench --rounds 0": ([*bench, "--rounds", "0"], "--rounds >= 1"),
        "demo --limit -5": (["demo", "--limit", "-5"], "--limit must be >= 0"),
    }
    for name, (argv, phrase) in cases.items():
        assert main(argv) == 2, name
        err = capsys.readouterr().err
        assert err.startswith(f"dualasr {argv[0]}: error:") and phrase in err and err.count("\n") == 1, (name, err)
    assert not (tmp_path / "o").exists() and not (tmp_path / "t").exists()


# ----------------------------------------------------------------------------- 11. smaller


def test_11_wav_header_understating_its_data_is_reported(speech, tmp_path):
    from dualasr.audio import AudioError, load_audio

    good = tmp_path / "good.wav"
    sf.write(str(good), speech, 16000, subtype="PCM_16")
    data = bytearray(good.read_bytes())
    at = data.index(b"data") + 4
    data[at:at + 4] = (1000).to_bytes(4, "little")  # 31 ms declared, seconds present
    bad = tmp_path / "understated.wav"
    bad.write_bytes(bytes(data))
    with pytest.raises(AudioError, match=r"understated\.wav: the WAV header declares 1000 data bytes but \d+ bytes "
                                         r"of audio follow it \(0\.031 s of .* s\).*ffmpeg -ignore_length 1"):
        load_audio(bad)
    # Chunks after the data (metadata) are fine.
    tagged = tmp_path / "tagged.wav"
    tagged.write_bytes(good.read_bytes() + b"LIST" + (10).to_bytes(4, "little") + b"INFOISFT\x00\x00")
    assert np.array_equal(load_audio(tagged), load_audio(good))


@pytest.mark.parametrize("mode", ["streaming", "full"])
def test_11_digital_silence_decodes_to_nothing(default_export, tmp_path, mode):
    """Before: "paym" (streaming) / "re" (full) from the built-in model. The search starts at the
    first frame that is not digital silence (README, "The torch-free runtime")."""
    from dualasr.runtime import Recognizer

    rec = Recognizer(default_export, mode=mode)
    for seconds in (2, 10):
        for x in (np.zeros(seconds * 16000, np.int16), np.full(seconds * 16000, 0.25, np.float32)):  # zeros, DC
            assert rec.recognize(x, 16000).text == ""
    path = tmp_path / "silence.wav"
    sf.write(str(path), np.zeros(2 * 16000, np.int16), 16000)
    r = _cli("transcribe", path, "--mode", mode, timeout=120)
    assert r.returncode == 0 and r.stdout.splitlines()[0] == f"{path}: ", r.stdout


def test_11_stdin_and_pipes_are_read(default_export, speech_wav, tmp_path):
    expected = _cli("transcribe", speech_wav, timeout=120).stdout.splitlines()[0].split(": ", 1)[1]
    audio = speech_wav.read_bytes()
    r = subprocess.run([sys.executable, "-m", "dualasr.cli", "transcribe", "-"], input=audio, capture_output=True,
                       timeout=120, env=ENV)
    assert r.returncode == 0 and r.stdout.decode().splitlines()[0] == f"-: {expected}", r.stderr
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    writer = threading.Thread(target=lambda: fifo.write_bytes(audio))
    writer.start()
    r = _cli("transcribe", fifo, timeout=120)
    writer.join(10)
    assert r.returncode == 0 and r.stdout.splitlines()[0] == f"{fifo}: {expected}", r.stderr


def test_11_odd_file_names_keep_one_line_per_file(speech_wav, tmp_path):
    newline = tmp_path / "two\nlines.wav"
    latin1 = Path(os.fsdecode(bytes(tmp_path) + b"/caf\xe9.wav"))  # not UTF-8
    for p in (newline, latin1):
        shutil.copy(speech_wav, p)
    r = subprocess.run([sys.executable, "-m", "dualasr.cli", "transcribe", os.fsencode(newline), os.fsencode(latin1),
                        str(tmp_path / "missing\n.wav")], capture_output=True, timeout=120, env=ENV)
    out = r.stdout.decode().splitlines()
    assert r.returncode == 1, r.stderr
    assert len(out) == 3 and out[0].startswith(f"{tmp_path}/two\\nlines.wav: ") and out[1].startswith(f"{tmp_path}/caf\\xe9.wav: ")
    assert out[0].split(": ", 1)[1] == out[1].split(": ", 1)[1] != ""
    err = r.stderr.decode()
    assert "Traceback" not in err and err.count("\n") == 1 and "missing\\n.wav: no such file" in err


# ----------------------------------------------------------------------------- ExecuTorch (slow)


@pytest.fixture(scope="module")
def et_export(builtin_et_export) -> Path:
    return builtin_et_export


@pytest.mark.slow
def test_3_8_executorch_long_full_mode_and_swapped_graphs(et_export, speech, tmp_path):
    """ExecuTorch's 30 s encoder_full limit is now the window (before: audio > 30 s was refused),
    and its programs' real I/O is checked too."""
    from dualasr.export.manifest import ManifestError
    from dualasr.runtime import Recognizer
    from dualasr.runtime.cli import default_export_dir

    x = np.tile(np.concatenate([speech, np.zeros(4000, np.float32)]), 40)[: 75 * 16000]
    got = Recognizer(et_export, backend="executorch", mode="full").recognize(x, 16000)
    # The shipped ONNX export: same weights, same windows.
    want = Recognizer(default_export_dir(), mode="full").recognize(x, 16000)
    assert len(want.token_ids) > 50 and got.token_ids == want.token_ids

    def swap(d: Path) -> None:
        a, b = d / "executorch/fp32/encoder_streaming_160ms.pte", d / "executorch/fp32/encoder_streaming_320ms.pte"
        data = a.read_bytes()
        a.write_bytes(b.read_bytes())
        b.write_bytes(data)

    bad = _replaced(et_export, tmp_path / "export", swap)
    with pytest.raises(ManifestError, match=r"encoder_streaming_160ms input features is float32 \[1, 32, 80\]"):
        Recognizer(bad, backend="executorch", chunk_ms=160)
