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
