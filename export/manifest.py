"""The export manifest (export_dir/manifest.json): the contract between the exporter and every runtime.

Torch-free on purpose: the on-device harness (`dualasr.runtime`) loads and checks exports with it.

Layout (schema version 1, see the exporter for how each entry is filled):
  format_version, dualasr_version, created, model, features, frame_shift_ms, subsampling, blank_id,
  vocab_size, encoder_dim, tokenizer, predictor, streaming, graphs, artifacts, checkpoint,
  files {relative posix path: {sha256, size}}  (every file of the export except manifest.json),
  tools, export_seconds, sizes, weight_sharing, errors.

Every path inside a manifest is relative to the export folder, uses "/" and may not leave the folder
(no absolute paths, no "..", no symlink pointing outside): a manifest is input from disk, possibly
copied from elsewhere, so it is never trusted to name arbitrary files.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any

from dualasr.fileio import atomic_write

__all__ = [
    "FORMAT_VERSION",
    "MANIFEST_NAME",
    "ManifestError",
    "artifact_path",
    "check_relative_path",
    "file_entry",
    "load_manifest",
    "sha256_file",
    "write_manifest",
]

FORMAT_VERSION = 1
MANIFEST_NAME = "manifest.json"
_HASH_BLOCK = 1 << 20


class ManifestError(ValueError):
    """The export folder or its manifest is missing, malformed, tampered with or too new.
    The message names the file and says what to do."""


# ----------------------------------------------------------------------------- helpers


def sha256_file(path: str | os.PathLike[str]) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(_HASH_BLOCK):
            h.update(block)
    return h.hexdigest()


def file_entry(path: str | os.PathLike[str]) -> dict[str, Any]:
    """{"sha256": hex digest, "size": bytes} of one file."""
    return {"sha256": sha256_file(path), "size": os.path.getsize(path)}


def check_relative_path(export_dir: str | os.PathLike[str], rel: str) -> Path:
    """Validate a manifest path and return the real file path inside export_dir.

    Raises:
        ManifestError: rel is not a string, is absolute (POSIX or Windows style), contains "..",
            backslashes or empty parts, or resolves (through a symlink) outside export_dir.
    """
    root = Path(export_dir)
    if not isinstance(rel, str) or not rel:
        raise ManifestError(f"{root / MANIFEST_NAME}: a listed path is {rel!r}, expected a non-empty relative path")
    if PurePosixPath(rel).is_absolute() or PureWindowsPath(rel).is_absolute() or PureWindowsPath(rel).drive:
        raise ManifestError(
            f"{root / MANIFEST_NAME}: path {rel!r} is absolute; exports may only refer to files inside "
            "their own folder (the manifest was edited or is corrupt: re-export)"
        )
    parts = rel.split("/")
    if "\\" in rel or any(p in ("", ".", "..") for p in parts):
        raise ManifestError(
            f"{root / MANIFEST_NAME}: path {rel!r} is not a plain relative path ('..', '.', '\\' or empty "
            "parts); it could escape the export folder, so the export is refused (re-export)"
        )
    path = root.joinpath(*parts)
    real_root = root.resolve()
    real = path.resolve()
    if real != real_root and real_root not in real.parents:
        raise ManifestError(
            f"{root / MANIFEST_NAME}: path {rel!r} leads outside the export folder (to {real}) through a "
            "symlink; copy the real files into the export instead of linking them"
        )
    return path


def _list_files(export_dir: Path) -> list[str]:
    """Every regular file under export_dir (posix relative paths, sorted), manifest.json excluded."""
    out = []
    for dirpath, dirnames, filenames in os.walk(export_dir):
        d = Path(dirpath)
        for name in dirnames + filenames:
            if (d / name).is_symlink():
                raise ManifestError(
                    f"{d / name} is a symlink; an export must hold real files so it can be copied and "
                    "checksummed (replace the link with the file)"
                )
        for name in filenames:
            rel = (d / name).relative_to(export_dir).as_posix()
            if rel != MANIFEST_NAME:
                out.append(rel)
    return sorted(out)


# ----------------------------------------------------------------------------- write / load


def write_manifest(export_dir: str | os.PathLike[str], manifest: dict[str, Any]) -> dict[str, Any]:
    """Fill manifest["files"] (sha256 + size of every file in export_dir but manifest.json), set
    format_version if absent, and write export_dir/manifest.json atomically.

    Returns:
        The manifest as written (a new dict; the argument is not modified).
    """
    root = Path(export_dir)
    if not root.is_dir():
        raise ManifestError(f"cannot write a manifest: export folder {root} does not exist")
    out = dict(manifest)
    out.setdefault("format_version", FORMAT_VERSION)
    out["files"] = {rel: file_entry(root / rel) for rel in _list_files(root)}
    atomic_write(root / MANIFEST_NAME, json.dumps(out, indent=1) + "\n")
    return out


def _read_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        where = path.parent
        raise ManifestError(
            f"{where} has no {MANIFEST_NAME}: it is not a dualasr export or the export did not finish; "
            "create it with `dualasr export CHECKPOINT --out DIR`"
        )
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise ManifestError(f"{path} is not valid JSON (line {e.lineno}, column {e.colno}: {e.msg}); re-export") from None
    except UnicodeDecodeError:
        raise ManifestError(f"{path} is not UTF-8 text; it is corrupt, re-export") from None
    if not isinstance(data, dict):
        raise ManifestError(f"{path} must hold a JSON object, got {type(data).__name__}; re-export")
    return data


def _check_version(path: Path, data: dict[str, Any]) -> None:
    version = data.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise ManifestError(f"{path}: format_version is {version!r}, expected a positive integer; re-export")
    if version > FORMAT_VERSION:
        raise ManifestError(
            f"{path} has manifest format {version}, newer than this dualasr reads (up to {FORMAT_VERSION}); "
            "upgrade dualasr (pip install -U dualasr) or re-export with this version"
        )


def _referenced_paths(data: dict[str, Any]) -> list[str]:
    """Paths the manifest points at outside "files": artifacts, tokenizer, checkpoint."""
    refs: list[str] = []
    for by_precision in (data.get("artifacts") or {}).values():
        for art in (by_precision or {}).values():
            if not isinstance(art, dict):
                continue
            refs.extend(v for v in (art.get("graphs") or {}).values() if isinstance(v, str))
            refs.extend(art[k] for k in ("weights", "package") if isinstance(art.get(k), str))
    tok = data.get("tokenizer") or {}
    refs.extend(tok[k] for k in ("file", "tokens_txt") if isinstance(tok.get(k), str))
    if isinstance(data.get("checkpoint"), str):
        refs.append(data["checkpoint"])
    return refs


def load_manifest(export_dir: str | os.PathLike[str], verify_checksums: bool = True) -> dict[str, Any]:
    """Read and check export_dir/manifest.json.

    Always checks: JSON, format_version (refuses newer), every listed path is relative and stays in
    the folder, every listed file exists with the listed size (catches truncation), and every path
    the artifacts/tokenizer/checkpoint entries name is listed. With verify_checksums (default) also
    the sha256 of each file (reads the whole export once).

    Raises:
        ManifestError: with a message naming the file and the problem.
    """
    root = Path(export_dir)
    path = root / MANIFEST_NAME
    if not root.is_dir():
        raise ManifestError(f"export folder {root} does not exist; create it with `dualasr export CHECKPOINT --out {root}`")
    data = _read_json(path)
    _check_version(path, data)
    files = data.get("files")
    if not isinstance(files, dict):
        raise ManifestError(f"{path} has no 'files' table (checksums); it is incomplete, re-export")

    for rel, entry in files.items():
        file = check_relative_path(root, rel)
        if not isinstance(entry, dict) or not isinstance(entry.get("size"), int) or not isinstance(entry.get("sha256"), str):
            raise ManifestError(f"{path}: entry for {rel!r} must be {{'sha256': str, 'size': int}}, got {entry!r}")
        if not file.is_file():
            raise ManifestError(
                f"{root}: file {rel} listed in the manifest is missing; the export is incomplete "
                "(copy the whole folder again or re-export)"
            )
        size = file.stat().st_size
        if size != entry["size"]:
            raise ManifestError(
                f"{root}: {rel} is {size} bytes but the manifest says {entry['size']} (truncated or replaced "
                "during copy?); copy the export again or re-export"
            )
        if verify_checksums:
            digest = sha256_file(file)
            if digest != entry["sha256"]:
                raise ManifestError(
                    f"{root}: {rel} has sha256 {digest[:16]}..., the manifest says {entry['sha256'][:16]}... "
                    "(modified or corrupted); copy the export again or re-export"
                )

    for rel in _referenced_paths(data):
        check_relative_path(root, rel)
        if rel not in files and not any(f.startswith(rel + "/") for f in files):
            raise ManifestError(f"{path}: {rel!r} is referenced but not listed in 'files'; the manifest is inconsistent, re-export")
    return data


def artifact_path(manifest: dict[str, Any], export_dir: str | os.PathLike[str], rel: str) -> Path:
    """A manifest-relative path -> the real path inside export_dir.

    rel must be listed in manifest["files"] (or be a folder holding listed files, e.g. an
    .mlpackage) and must stay inside export_dir.

    Raises:
        ManifestError: unsafe or unlisted path.
    """
    path = check_relative_path(export_dir, rel)
    files = manifest.get("files") or {}
    if rel not in files and not any(f.startswith(rel + "/") for f in files):
        raise ManifestError(
            f"{Path(export_dir) / MANIFEST_NAME}: {rel!r} is not listed in the manifest's files; "
            "the export is inconsistent, re-export"
        )
    return path
