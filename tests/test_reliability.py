"""Issue 13, "what a hostile-but-realistic user broke": one section per item, each test failing
before its fix. Nothing here may print a Python traceback.

Fast: the export-folder tests use a stub format writer (no tracing); the runtime tests share one
ONNX fp32 export of the random-weight tiny checkpoint.
"""

from __future__ import annotations

import os
import subprocess
import sys
import types
from pathlib import Path

import pytest

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


def _stub_write(graphs, example_inputs, export_dir, precision, calibration):
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
    def int8_fails(graphs, example_inputs, export_dir, precision, calibration):
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
    import time

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
    import signal

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
    out = tmp_path_factory.mktemp("issue13") / "export"
    manifest = export_checkpoint(random_checkpoint, out, ["onnx"], ["none"], [320])
    assert "fp32" in manifest["artifacts"]["onnx"], manifest["errors"]
    return out


@pytest.mark.parametrize("signum", ["SIGTERM", "SIGHUP"])
def test_2_signal_during_bench_removes_the_temp_folder(onnx_export, speech_wav, tmp_path, signum):
    import json
    import signal

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
