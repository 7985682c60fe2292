"""The export manifest: round trip, and every way a copied or edited export must be refused.

Torch-free on purpose (the manifest module is what the torch-free runtime loads)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from dualasr.export.manifest import (
    FORMAT_VERSION,
    ManifestError,
    artifact_path,
    load_manifest,
    write_manifest,
)


SHIPPED = Path(__file__).resolve().parents[1] / "dualasr" / "assets" / "default" / "export" / "manifest.json"


def model_fields() -> dict:
    """A real manifest's model, features and graphs fields (the built-in model's export), with the
    version-2 fields; the test exports below add their own files and artifacts."""
    m = json.loads(SHIPPED.read_text())
    for key in ("files", "artifacts", "manifest_sha256"):
        m.pop(key, None)
    m["max_full_seconds"] = 30.0
    m["probes"] = {g: {"output": spec["outputs"][0]["name"], "projection": [0.0] * 16, "rms": 0.0}
                   for g, spec in m["graphs"].items()}
    return m


@pytest.fixture()
def export(tmp_path: Path) -> Path:
    """A small fake export: two graphs sharing one weights file, a tokenizer, a checkpoint."""
    d = tmp_path / "export"
    (d / "onnx" / "fp32").mkdir(parents=True)
    (d / "onnx" / "fp32" / "encoder_full.onnx").write_bytes(b"graph-full" * 10)
    (d / "onnx" / "fp32" / "joiner.onnx").write_bytes(b"graph-joiner" * 10)
    (d / "onnx" / "fp32" / "weights.bin").write_bytes(os.urandom(4096))
    (d / "tokenizer.model").write_bytes(b"sp")
    (d / "tokens.txt").write_text("<blk> 0\n")
    (d / "checkpoint.pt").write_bytes(b"ckpt")
    write_manifest(d, {
        **model_fields(),
        "model": {"d_model": 8},
        "tokenizer": {"file": "tokenizer.model", "tokens_txt": "tokens.txt"},
        "checkpoint": "checkpoint.pt",
        "artifacts": {"onnx": {"fp32": {
            "graphs": {"encoder_full": "onnx/fp32/encoder_full.onnx", "joiner": "onnx/fp32/joiner.onnx"},
            "weights": "onnx/fp32/weights.bin"}}},
    })
    return d


def _edit(d: Path, fn) -> None:
    """Apply fn to the parsed manifest and write it back as is (no checksum refresh)."""
    m = json.loads((d / "manifest.json").read_text())
    fn(m)
    (d / "manifest.json").write_text(json.dumps(m))


def test_round_trip(export: Path):
    m = load_manifest(export)
    assert m["format_version"] == FORMAT_VERSION
    assert sorted(m["files"]) == ["checkpoint.pt", "onnx/fp32/encoder_full.onnx", "onnx/fp32/joiner.onnx",
                                  "onnx/fp32/weights.bin", "tokenizer.model", "tokens.txt"]
    assert m["files"]["onnx/fp32/weights.bin"]["size"] == 4096
    assert len(m["files"]["tokens.txt"]["sha256"]) == 64
    assert m["model"] == {"d_model": 8}
    p = artifact_path(m, export, m["artifacts"]["onnx"]["fp32"]["weights"])
    assert p == export / "onnx" / "fp32" / "weights.bin"
    assert artifact_path(m, export, "onnx/fp32") == export / "onnx" / "fp32"  # a folder of listed files
    # Rewriting an unchanged export gives the same files table.
    assert write_manifest(export, m)["files"] == m["files"]


def test_sha_mismatch_same_size(export: Path):
    p = export / "onnx" / "fp32" / "weights.bin"
    data = bytearray(p.read_bytes())
    data[100] ^= 0xFF
    p.write_bytes(bytes(data))
    with pytest.raises(ManifestError, match=r"weights\.bin has sha256 .*modified or corrupted"):
        load_manifest(export)
    load_manifest(export, verify_checksums=False)  # size-only check cannot see it, by design


def test_missing_file(export: Path):
    (export / "onnx" / "fp32" / "joiner.onnx").unlink()
    with pytest.raises(ManifestError, match=r"joiner\.onnx listed in the manifest is missing"):
        load_manifest(export, verify_checksums=False)


def test_truncated_weights(export: Path):
    p = export / "onnx" / "fp32" / "weights.bin"
    p.write_bytes(p.read_bytes()[:1000])
    for verify in (True, False):
        with pytest.raises(ManifestError, match=r"weights\.bin is 1000 bytes but the manifest says 4096.*truncated"):
            load_manifest(export, verify_checksums=verify)


def test_newer_version(export: Path):
    _edit(export, lambda m: m.update(format_version=FORMAT_VERSION + 1))
    with pytest.raises(ManifestError, match=r"newer than this dualasr reads.*upgrade"):
        load_manifest(export)


@pytest.mark.parametrize("bad", ["x", None, 0, True])
def test_bad_version(export: Path, bad):
    _edit(export, lambda m: m.update(format_version=bad))
    with pytest.raises(ManifestError, match="format_version"):
        load_manifest(export)


def test_path_escaping_with_dotdot(export: Path, tmp_path: Path):
    (tmp_path / "secret.txt").write_text("outside")
    _edit(export, lambda m: m["files"].update({"../secret.txt": {"sha256": "0" * 64, "size": 7}}))
    with pytest.raises(ManifestError, match=r"'\.\./secret\.txt'.*escape the export folder"):
        load_manifest(export)


def test_path_escaping_through_symlink(export: Path, tmp_path: Path):
    outside = tmp_path / "outside.bin"
    outside.write_bytes(b"x" * 10)
    (export / "link.bin").symlink_to(outside)
    _edit(export, lambda m: m["files"].update({"link.bin": {"sha256": "0" * 64, "size": 10}}))
    with pytest.raises(ManifestError, match=r"link\.bin.*leads outside the export folder.*symlink"):
        load_manifest(export)
    # The writer never lists a symlink in the first place.
    with pytest.raises(ManifestError, match="is a symlink"):
        write_manifest(export, {})


@pytest.mark.parametrize("bad", ["/etc/passwd", "C:/Windows/win.ini", "C:\\evil.bin"])
def test_absolute_path(export: Path, bad: str):
    _edit(export, lambda m: m["files"].update({bad: {"sha256": "0" * 64, "size": 1}}))
    with pytest.raises(ManifestError, match="is absolute"):
        load_manifest(export)


def test_artifact_reference_must_be_safe_and_listed(export: Path):
    _edit(export, lambda m: m["artifacts"]["onnx"]["fp32"].update(weights="/tmp/weights.bin"))
    with pytest.raises(ManifestError, match="is absolute"):
        load_manifest(export)
    _edit(export, lambda m: m["artifacts"]["onnx"]["fp32"].update(weights="onnx/fp32/other.bin"))
    with pytest.raises(ManifestError, match=r"other\.bin' is referenced but not listed"):
        load_manifest(export)
    m = json.loads((export / "manifest.json").read_text())
    with pytest.raises(ManifestError, match="not listed in the manifest"):
        artifact_path(m, export, "onnx/fp32/other.bin")
    with pytest.raises(ManifestError, match="escape"):
        artifact_path(m, export, "onnx/../../x")


def test_missing_manifest_and_bad_json(tmp_path: Path, export: Path):
    with pytest.raises(ManifestError, match="does not exist"):
        load_manifest(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ManifestError, match=r"has no manifest\.json.*dualasr export"):
        load_manifest(tmp_path / "empty")
    (export / "manifest.json").write_text('{"format_version": 1, ')
    with pytest.raises(ManifestError, match=r"not valid JSON \(line 1"):
        load_manifest(export)
    (export / "manifest.json").write_text("[1, 2]")
    with pytest.raises(ManifestError, match="JSON object"):
        load_manifest(export)


def test_manifest_written_atomically_and_readable(export: Path):
    leftovers = [p.name for p in export.iterdir() if p.name.endswith(".tmp")]
    assert leftovers == []
    umask = os.umask(0)
    os.umask(umask)
    assert (export / "manifest.json").stat().st_mode & 0o777 == 0o666 & ~umask  # not mkstemp's 0600


def test_import_is_torch_free():
    code = ("import sys; import dualasr.export.manifest; "
            "bad = [m for m in ('torch', 'onnx', 'numpy') if m in sys.modules]; "
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True)
