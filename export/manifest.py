"""The export manifest (export_dir/manifest.json): the contract between the exporter and every runtime.

Torch-free on purpose: the on-device harness (`dualasr.runtime`) loads and checks exports with it,
and the exporter writes them with it. This module is the one home of that contract: the layout,
its validation (`validate_manifest`), the check of a loaded graph's real I/O against it
(`check_graph_io`) and the known-answer probes (`probe_inputs`, `probe_error`).

Layout (schema version 2; see the exporter for how each entry is filled):
  format_version, dualasr_version, created, model, features, frame_shift_ms, subsampling, blank_id,
  vocab_size, encoder_dim, tokenizer, predictor, streaming, graphs, artifacts, checkpoint,
  max_full_seconds (longest audio one encoder_full call may see; longer audio is windowed),
  probes {graph: {"output", "projection", "rms"}} (see probe_inputs),
  files {relative posix path: {sha256, size}}  (every file of the export except manifest.json),
  tools, export_seconds, sizes, weight_sharing, errors,
  manifest_sha256 (sha256 of the canonical JSON of everything else, see manifest_checksum).
Version 1 (no max_full_seconds, probes or manifest_sha256) is still read: max_full_seconds is then
DEFAULT_MAX_FULL_SECONDS and the checks that need the missing fields are skipped.

Every path inside a manifest is relative to the export folder, uses "/" and may not leave the folder
(no absolute paths, no "..", no symlink pointing outside): a manifest is input from disk, possibly
copied from elsewhere, so it is never trusted to name arbitrary files, and every value is checked
(type, range, agreement with the graphs table) before a runtime uses it.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from dataclasses import asdict, dataclass, fields
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any, get_type_hints

from dualasr.fileio import atomic_write

__all__ = [
    "CHECKSUM_KEY",
    "DEFAULT_MAX_FULL_SECONDS",
    "FEATURE_TYPES",
    "FbankConfig",
    "FORMAT_VERSION",
    "MANIFEST_NAME",
    "ManifestError",
    "artifact_path",
    "check_graph_io",
    "check_relative_path",
    "file_entry",
    "load_manifest",
    "manifest_checksum",
    "max_full_seconds",
    "probe_error",
    "probe_fingerprint",
    "probe_inputs",
    "probe_tolerance",
    "sha256_file",
    "validate_manifest",
    "write_manifest",
]

FORMAT_VERSION = 2
MANIFEST_NAME = "manifest.json"
CHECKSUM_KEY = "manifest_sha256"
# encoder_full windows (seconds of audio per call). 30 s: the longest an encoder with a 30 s
# absolute-position table can take, and what ExecuTorch's dynamic shape allows (3000 frames).
DEFAULT_MAX_FULL_SECONDS = 30.0
_MAX_MANIFEST_BYTES = 16 << 20  # real manifests are ~20 KB; never read a huge file into memory
_HASH_BLOCK = 1 << 20
_MAX_STATE_ELEMENTS = 1 << 26  # per state tensor (256 MB of float32): a bad shape must not allocate GBs
_DTYPES = ("float32", "float16", "int64", "int32")


# manifest["features"]: FbankConfig.to_dict(), the options the training features used and the runtime
# sets its filterbank from; the defaults are every model's features (the 10 ms frame shift included).
@dataclass
class FbankConfig:
    """Filterbank options, named and defaulted as in kaldi / sherpa-onnx.

    high_freq follows kaldi semantics: > 0 is an absolute frequency, <= 0 means nyquist + high_freq.
    The default -400 is what sherpa-onnx (our runtime) and lhotse/icefall pass; note that
    kaldi_native_fbank.MelBanksOptions itself defaults to 0 (= nyquist), so code that builds
    knf options by hand must set high_freq explicitly.
    """

    sample_rate: int = 16000
    num_mel_bins: int = 80
    frame_length_ms: float = 25.0
    frame_shift_ms: float = 10.0
    dither: float = 0.0
    snip_edges: bool = False
    preemph_coeff: float = 0.97
    remove_dc_offset: bool = True
    window_type: str = "povey"
    low_freq: float = 20.0
    high_freq: float = -400.0
    use_energy: bool = False
    energy_floor: float = 0.0
    use_log_fbank: bool = True
    use_power: bool = True

    @property
    def feature_dim(self) -> int:
        return self.num_mel_bins + int(self.use_energy)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "FbankConfig":
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown FbankConfig keys {sorted(unknown)}; valid keys are {sorted(known)}")
        return cls(**d)


FEATURE_TYPES: dict[str, type] = get_type_hints(FbankConfig)  # key -> type, checked by validate_manifest


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


# ----------------------------------------------------------------------------- schema


def manifest_checksum(data: dict[str, Any]) -> str:
    """sha256 of the manifest without CHECKSUM_KEY, as canonical JSON (sorted keys, no spaces,
    ASCII): any edit to any value changes it."""
    body = {k: v for k, v in data.items() if k != CHECKSUM_KEY}
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True,
                                     allow_nan=False).encode("ascii")).hexdigest()


def max_full_seconds(manifest: dict[str, Any]) -> float:
    """Longest audio one encoder_full call may see (version 1 manifests: the default)."""
    return float(manifest.get("max_full_seconds", DEFAULT_MAX_FULL_SECONDS))


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _kind_ok(value: Any, kind: type) -> bool:
    if kind is bool:
        return isinstance(value, bool)
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if kind is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    return isinstance(value, kind)


_KIND_NAMES = {bool: "true/false", int: "an integer", float: "a finite number", str: "a string",
               dict: "an object", list: "a list"}


class _Check:
    """Typed access to manifest fields; every failure names the field and its value."""

    def __init__(self, path: Path):
        self.path = path

    def fail(self, where: str, value: Any, expected: str) -> ManifestError:
        return ManifestError(
            f"{self.path}: {where} is {_show(value)}, expected {expected}; the manifest is damaged or was "
            "edited, re-export"
        )

    def get(self, d: dict, key: str, where: str, kind: type, lo: float | None = None, hi: float | None = None) -> Any:
        if key not in d:
            raise ManifestError(f"{self.path}: {where}{key} is missing; the manifest is incomplete or was edited, re-export")
        value = d[key]
        if not _kind_ok(value, kind):
            raise self.fail(where + key, value, _KIND_NAMES[kind])
        if (lo is not None and value < lo) or (hi is not None and value > hi):
            raise self.fail(where + key, value, f"{_KIND_NAMES[kind]} in [{lo}, {hi}]")
        return value

    def tensor(self, spec: Any, where: str, state: bool = False) -> dict:
        """A graph I/O or state spec: name, shape (ints; strings for dynamic axes unless a state),
        dtype, optional batch_dim (required for states), init "zeros" (states)."""
        if not isinstance(spec, dict):
            raise self.fail(where, spec, "an object {name, shape, dtype}")
        self.get(spec, "name", where + ".", str)
        shape = self.get(spec, "shape", where + ".", list)
        if len(shape) > 8 or any(not (_kind_ok(d, int) and 0 <= d < 1 << 31) and (state or not _kind_ok(d, str))
                                 for d in shape):
            raise self.fail(where + ".shape", shape, "up to 8 sizes (integers >= 0" + ("" if state else " or axis names") + ")")
        if state and math.prod(shape) > _MAX_STATE_ELEMENTS:
            raise self.fail(where + ".shape", shape, f"at most {_MAX_STATE_ELEMENTS} elements")
        if spec.get("dtype") not in _DTYPES:
            raise self.fail(where + ".dtype", spec.get("dtype"), f"one of {_DTYPES}")
        if state or "batch_dim" in spec:
            self.get(spec, "batch_dim", where + ".", int, 0, max(0, len(shape) - 1))
        if state and spec.get("init", "zeros") != "zeros":
            raise self.fail(where + ".init", spec.get("init"), "'zeros'")
        return spec


def _io(name: str, shape: list, dtype: str = "float32", batch_dim: int | None = 0) -> dict:
    d: dict[str, Any] = {"name": name, "shape": shape, "dtype": dtype}
    if batch_dim is not None:
        d["batch_dim"] = batch_dim
    return d


def _state_io(states: list[dict], prefix: str = "") -> list[dict]:
    return [_io(prefix + s["name"], s["shape"], s["dtype"], s["batch_dim"]) for s in states]


def _same_io(c: _Check, graphs: dict, graph: str, inputs: list[dict], outputs: list[dict]) -> None:
    """The graphs table entry of `graph` must be exactly the I/O the other fields imply."""
    if graph not in graphs:
        raise ManifestError(f"{c.path}: graphs.{graph} is missing; the manifest is incomplete or was edited, re-export")
    for kind, want in (("inputs", inputs), ("outputs", outputs)):
        have = [{k: t.get(k) for k in ("name", "shape", "dtype", "batch_dim") if k in t} for t in graphs[graph][kind]]
        if have != want:
            raise ManifestError(
                f"{c.path}: graphs.{graph}.{kind} is {_show(have)} but the other fields imply {_show(want)}; "
                "the manifest is inconsistent (edited?), re-export"
            )


def validate_manifest(data: dict[str, Any], path: str | os.PathLike[str] = MANIFEST_NAME) -> None:
    """Check every field a runtime uses: types, ranges, and agreement between the scalar fields,
    the streaming/predictor entries and the graphs table (what each graph takes and returns).

    Raises:
        ManifestError: naming the first bad field and its value.
    """
    c = _Check(Path(path))
    version = c.get(data, "format_version", "", int, 1, FORMAT_VERSION)
    feats = _check_features(c, data)
    vocab = c.get(data, "vocab_size", "", int, 2, 1 << 20)
    c.get(data, "blank_id", "", int, 0, vocab - 1)
    tok = c.get(data, "tokenizer", "", dict)
    c.get(tok, "file", "tokenizer.", str)
    c.get(tok, "tokens_txt", "tokenizer.", str)
    if version >= 2:
        c.get(data, "max_full_seconds", "", float, 1.0, 3600.0)
    graphs = _check_graphs(c, data, feats, vocab)
    _check_streaming(c, data, graphs, feats)
    _check_artifacts(c, data)
    if version >= 2:
        _check_probes(c, data, graphs)


def _check_features(c: _Check, data: dict[str, Any]) -> dict[str, Any]:
    """features and the top-level frame_shift_ms that must repeat it -> the features object."""
    from dualasr.audio import MAX_SAMPLE_RATE, MIN_SAMPLE_RATE

    feats = c.get(data, "features", "", dict)
    for key, kind in FEATURE_TYPES.items():
        c.get(feats, key, "features.", kind)
    if set(feats) - set(FEATURE_TYPES):
        raise c.fail("features", sorted(set(feats) - set(FEATURE_TYPES)), f"only the keys {sorted(FEATURE_TYPES)}")
    c.get(feats, "sample_rate", "features.", int, MIN_SAMPLE_RATE, MAX_SAMPLE_RATE)
    c.get(feats, "num_mel_bins", "features.", int, 1, 1024)
    shift = c.get(feats, "frame_shift_ms", "features.", float, 1.0, 1000.0)
    c.get(feats, "frame_length_ms", "features.", float, shift, 1000.0)
    c.get(feats, "dither", "features.", float, 0.0, 1.0)
    c.get(feats, "preemph_coeff", "features.", float, 0.0, 1.0)
    c.get(feats, "energy_floor", "features.", float, 0.0, None)
    c.get(feats, "low_freq", "features.", float, 0.0, feats["sample_rate"] / 2)
    if c.get(data, "frame_shift_ms", "", float, 1.0, 1000.0) != shift:
        raise c.fail("frame_shift_ms", data["frame_shift_ms"], f"features.frame_shift_ms ({shift})")
    return feats


def _check_graphs(c: _Check, data: dict[str, Any], feats: dict[str, Any], vocab: int) -> dict[str, Any]:
    """The graphs table, and the full-context encoder, predictor and joiner entries against the
    scalar fields and the predictor object -> the graphs table."""
    dim = c.get(data, "encoder_dim", "", int, 1, 1 << 16)
    pred = c.get(data, "predictor", "", dict)
    c.get(pred, "type", "predictor.", str)
    k = c.get(pred, "context_size", "predictor.", int, 1, 64)
    ctx = c.get(pred, "initial_context", "predictor.", list)
    if len(ctx) != k or not all(_kind_ok(t, int) and -1 <= t < vocab for t in ctx):
        raise c.fail("predictor.initial_context", ctx, f"{k} token ids in [-1, {vocab - 1}]")
    pred_states = [c.tensor(s, f"predictor.states[{i}]", state=True)
                   for i, s in enumerate(c.get(pred, "states", "predictor.", list))]

    graphs = c.get(data, "graphs", "", dict)
    for name, g in graphs.items():
        if not isinstance(g, dict):
            raise c.fail(f"graphs.{name}", g, "an object {inputs, outputs}")
        for kind in ("inputs", "outputs"):
            specs = c.get(g, kind, f"graphs.{name}.", list)
            for i, t in enumerate(specs):
                c.tensor(t, f"graphs.{name}.{kind}[{i}]")
            if len({t["name"] for t in specs}) != len(specs) or not specs:
                raise c.fail(f"graphs.{name}.{kind}", [t["name"] for t in specs], "distinct names, at least one")
    feat_dim = feats["num_mel_bins"] + int(feats["use_energy"])
    _same_io(c, graphs, "encoder_full", [_io("features", [1, "T", feat_dim], batch_dim=None)],
             [_io("encoder_out", [1, "T_out", dim], batch_dim=None)])
    pred_out = graphs.get("predictor", {}).get("outputs", [{}])[0].get("shape", [None, None])
    if not (isinstance(pred_out, list) and len(pred_out) == 2 and _kind_ok(pred_out[1], int) and pred_out[1] > 0):
        raise c.fail("graphs.predictor.outputs[0].shape", pred_out, "[1, P]")
    p = pred_out[1]
    _same_io(c, graphs, "predictor", [_io("context", [1, k], "int64"), *_state_io(pred_states)],
             [_io("predictor_out", [1, p]), *_state_io(pred_states, "new_")])
    _same_io(c, graphs, "joiner", [_io("encoder_out", [1, dim]), _io("predictor_out", [1, p])],
             [_io("logits", [1, vocab])])
    return graphs


def _check_streaming(c: _Check, data: dict[str, Any], graphs: dict[str, Any], feats: dict[str, Any]) -> None:
    """Each streaming entry: its chunk in frames and ms, its states, and its graph's I/O."""
    sub = c.get(data, "subsampling", "", int, 1, 64)
    shift, dim = feats["frame_shift_ms"], data["encoder_dim"]
    feat_dim = feats["num_mel_bins"] + int(feats["use_energy"])
    chunks = set()
    for i, e in enumerate(c.get(data, "streaming", "", list)):
        where = f"streaming[{i}]."
        if not isinstance(e, dict):
            raise c.fail(where[:-1], e, "an object")
        ms = c.get(e, "chunk_ms", where, int, 1, 60_000)
        frames = c.get(e, "chunk_frames", where, int, sub, 6000)
        if frames * shift != ms or frames % sub:
            raise c.fail(where + "chunk_frames", frames, f"chunk_ms / frame_shift_ms ({ms} / {shift}), a multiple of subsampling {sub}")
        c.get(e, "encoder_frames", where, int, frames // sub, frames // sub)
        graph = c.get(e, "graph", where, str)
        if ms in chunks:
            raise c.fail(where + "chunk_ms", ms, "a chunk size listed once")
        chunks.add(ms)
        states = [c.tensor(s, f"{where}states[{j}]", state=True) for j, s in enumerate(c.get(e, "states", where, list))]
        _same_io(c, graphs, graph, [_io("features", [1, frames, feat_dim]), *_state_io(states)],
                 [_io("encoder_out", [1, frames // sub, dim]), *_state_io(states, "new_")])


def _check_artifacts(c: _Check, data: dict[str, Any]) -> None:
    """artifacts.FORMAT.PRECISION: graph paths, and the full-context graph's frame range if any."""
    for fmt, by_precision in c.get(data, "artifacts", "", dict).items():
        if not isinstance(by_precision, dict):
            raise c.fail(f"artifacts.{fmt}", by_precision, "an object {precision: entry}")
        for precision, art in by_precision.items():
            where = f"artifacts.{fmt}.{precision}"
            if not isinstance(art, dict):
                raise c.fail(where, art, "an object")
            paths = art.get("graphs", {})
            if not isinstance(paths, dict) or not all(isinstance(v, str) for v in paths.values()):
                raise c.fail(where + ".graphs", paths, "an object {graph: relative path}")
            for key in ("dynamic_axes", "flexible_shapes"):
                rng = ((art.get(key) or {}).get("encoder_full") or {}).get("T")
                if rng is not None and not (isinstance(rng, list) and len(rng) == 2 and _kind_ok(rng[0], int)
                                            and 1 <= rng[0] and (rng[1] is None or (_kind_ok(rng[1], int) and rng[1] >= rng[0]))):
                    raise c.fail(f"{where}.{key}.encoder_full.T", rng, "[min frames >= 1, max frames or null]")


def _check_probes(c: _Check, data: dict[str, Any], graphs: dict[str, Any]) -> None:
    """probes.GRAPH for every graph (format 2): an output of that graph, its projection and rms."""
    probes = c.get(data, "probes", "", dict)
    for name in graphs:
        probe = c.get(probes, name, "probes.", dict)
        out = c.get(probe, "output", f"probes.{name}.", str)
        if out not in [t["name"] for t in graphs[name]["outputs"]]:
            raise c.fail(f"probes.{name}.output", out, f"an output of graph {name}")
        proj = c.get(probe, "projection", f"probes.{name}.", list)
        if len(proj) != PROBE_DIMS or not all(_kind_ok(v, float) for v in proj):
            raise c.fail(f"probes.{name}.projection", proj, f"{PROBE_DIMS} finite numbers")
        c.get(probe, "rms", f"probes.{name}.", float, 0.0, None)


def check_graph_io(manifest: dict[str, Any], graph: str, inputs: list[tuple], outputs: list[tuple], where: str) -> None:
    """A loaded graph's real I/O against the manifest's graphs table.

    Args:
        inputs, outputs: (name, dtype name or None if unknown, shape) per tensor in the graph's
            order, as the runtime reports them; a dim of None (or a string) is dynamic there.
        where: the file, for the message.

    Names and order must match, dtypes where known, and every size the manifest fixes (the batch
    axis and named axes excepted) must be that size or dynamic in the graph.

    Raises:
        ManifestError: naming the graph file, the tensor and both values.
    """
    spec = manifest["graphs"][graph]
    for kind, real in (("inputs", inputs), ("outputs", outputs)):
        want = spec[kind]
        names = [t[0] for t in real]
        if names != [t["name"] for t in want]:
            raise ManifestError(
                f"{where}: graph {graph} has {kind} {names} but the manifest lists {[t['name'] for t in want]}; "
                "the file was replaced by another graph, re-export"
            )
        for (name, dtype, shape), t in zip(real, want):
            fixed = [d if isinstance(d, int) and i != t.get("batch_dim") else None for i, d in enumerate(t["shape"])]
            dims = [d if isinstance(d, int) else None for d in shape]
            if (dtype is not None and dtype != t["dtype"]) or len(dims) != len(fixed) or any(
                    f is not None and d is not None and d != f for d, f in zip(dims, fixed)):
                raise ManifestError(
                    f"{where}: graph {graph} {kind[:-1]} {name} is {dtype} {list(shape)}, the manifest says "
                    f"{t['dtype']} {t['shape']}; the file was replaced by another graph (another chunk size or "
                    "model?), re-export"
                )


# ----------------------------------------------------------------------------- probes

# Known-answer test: the exporter runs every graph on a fixed input and records PROBE_DIMS fixed
# +-1 projections of its main output; a runtime runs the same input through the graph it loaded
# and compares. A graph replaced by another one with the same I/O (an int8 graph in the fp32
# folder, NaN weights, another model) fails it. The inputs are a portable integer hash (no
# random generator), so a C++ or Swift runtime can reproduce them exactly.
PROBE_DIMS = 16
PROBE_FRAMES = 64  # the length of named (dynamic) axes, e.g. encoder_full's T
_PROBE_TOLERANCE = {"fp32": 1e-3, "fp16": 3e-2, "int8": 0.25}  # relative L2 error; int8 measured ~0.03


def _hash_uniform(n: int, salt: int):
    """[n] float64 in [0, 1): splitmix64 of (index + salt * golden ratio), exact in uint64
    arithmetic, so any language reproduces it bit for bit."""
    import numpy as np

    with np.errstate(over="ignore"):
        z = np.arange(n, dtype=np.uint64) + np.uint64(salt) * np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    return (z >> np.uint64(11)).astype(np.float64) / float(1 << 53)


def probe_inputs(manifest: dict[str, Any], graph: str) -> dict[str, Any]:
    """The probe input of one graph: {name: numpy array} at batch 1, named axes PROBE_FRAMES long.
    Recurrent states (inputs X with an output new_X) are zeros, token ids lie in [1, vocab),
    "features" in [-10, -2) (log-mel scale), other floats in [-1, 1)."""
    import numpy as np

    spec = manifest["graphs"][graph]
    outputs = {t["name"] for t in spec["outputs"]}
    feeds = {}
    for salt, t in enumerate(spec["inputs"]):
        shape = [PROBE_FRAMES if isinstance(d, str) else d for d in t["shape"]]
        u = _hash_uniform(math.prod(shape), salt).reshape(shape)
        if "new_" + t["name"] in outputs:
            x = np.zeros(shape)
        elif t["dtype"] in ("int64", "int32"):
            x = 1 + np.floor(u * (manifest["vocab_size"] - 1))
        elif t["name"] == "features":
            x = -10.0 + 8.0 * u
        else:
            x = 2.0 * u - 1.0
        feeds[t["name"]] = x.astype(t["dtype"])
    return feeds


def _projection(y) -> Any:
    import numpy as np

    y = np.asarray(y, dtype=np.float64).reshape(-1)
    signs = np.where(_hash_uniform(y.size * PROBE_DIMS, 7).reshape(PROBE_DIMS, y.size) < 0.5, -1.0, 1.0)
    return signs @ y / math.sqrt(max(1, y.size))


def probe_fingerprint(output_name: str, y) -> dict[str, Any]:
    """The manifest's probes entry for a graph whose probe output `output_name` is y."""
    import numpy as np

    y = np.asarray(y, dtype=np.float64)
    return {"output": output_name, "projection": [float(v) for v in _projection(y)],
            "rms": float(np.sqrt(np.mean(y * y))) if y.size else 0.0}


def probe_error(probe: dict[str, Any], y) -> float:
    """Relative L2 error of output y against the recorded probe (inf for NaN/Inf or wrong size)."""
    import numpy as np

    y = np.asarray(y, dtype=np.float64)
    if not np.isfinite(y).all():
        return math.inf
    ref = np.asarray(probe["projection"], dtype=np.float64)
    scale = max(float(np.linalg.norm(ref)), probe["rms"] * 1e-3, 1e-12)
    return float(np.linalg.norm(_projection(y) - ref)) / scale


def probe_tolerance(precision: str) -> float:
    return _PROBE_TOLERANCE.get(precision, _PROBE_TOLERANCE["int8"])


# ----------------------------------------------------------------------------- write / load


def write_manifest(export_dir: str | os.PathLike[str], manifest: dict[str, Any]) -> dict[str, Any]:
    """Fill manifest["files"] (sha256 + size of every file in export_dir but manifest.json), set
    format_version, validate, add the manifest's own checksum and write export_dir/manifest.json
    atomically.

    Returns:
        The manifest as written (a new dict; the argument is not modified).

    Raises:
        ManifestError: the folder is missing or holds a symlink, or the manifest is invalid.
    """
    root = Path(export_dir)
    if not root.is_dir():
        raise ManifestError(f"cannot write a manifest: export folder {root} does not exist")
    out = {k: v for k, v in manifest.items() if k != CHECKSUM_KEY}
    out["format_version"] = FORMAT_VERSION
    out["files"] = {rel: file_entry(root / rel) for rel in _list_files(root)}
    validate_manifest(out, root / MANIFEST_NAME)
    out[CHECKSUM_KEY] = manifest_checksum(out)
    atomic_write(root / MANIFEST_NAME, json.dumps(out, indent=1, allow_nan=False) + "\n")
    return out


def _refuse_constant(name: str):
    raise json.JSONDecodeError(f"{name} is not a JSON number", name, 0)


def _read_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        where = path.parent
        raise ManifestError(
            f"{where} has no {MANIFEST_NAME}: it is not a dualasr export or the export did not finish; "
            "create it with `dualasr export CHECKPOINT --out DIR`"
        )
    size = path.stat().st_size
    if size > _MAX_MANIFEST_BYTES:
        raise ManifestError(f"{path} is {size} bytes, far more than a manifest (< {_MAX_MANIFEST_BYTES} bytes); it is not one, re-export")
    try:
        data = json.loads(path.read_text(encoding="utf-8"), parse_constant=_refuse_constant)
    except json.JSONDecodeError as e:
        raise ManifestError(f"{path} is not valid JSON (line {e.lineno}, column {e.colno}: {e.msg}); re-export") from None
    except UnicodeDecodeError:
        raise ManifestError(f"{path} is not UTF-8 text; it is corrupt, re-export") from None
    except RecursionError:
        raise ManifestError(f"{path} nests JSON too deeply to be a manifest; it is corrupt, re-export") from None
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
    def table(value: Any) -> dict:
        return value if isinstance(value, dict) else {}  # validate_manifest reports the wrong type

    refs: list[str] = []
    for by_precision in table(data.get("artifacts")).values():
        for art in table(by_precision).values():
            refs.extend(v for v in table(table(art).get("graphs")).values() if isinstance(v, str))
            refs.extend(art[k] for k in ("weights", "package") if isinstance(table(art).get(k), str))
    tok = table(data.get("tokenizer"))
    refs.extend(tok[k] for k in ("file", "tokens_txt") if isinstance(tok.get(k), str))
    if isinstance(data.get("checkpoint"), str):
        refs.append(data["checkpoint"])
    return refs


def load_manifest(export_dir: str | os.PathLike[str], verify_checksums: bool = True) -> dict[str, Any]:
    """Read and check export_dir/manifest.json.

    Always checks, in this order: JSON (size and depth bounded), format_version (refuses newer),
    every listed or referenced path is relative, stays in the folder and is listed, the manifest's
    own checksum (version >= 2), every value (validate_manifest), and every listed file exists with
    the listed size (catches truncation). With verify_checksums (default) also the sha256 of each
    file (reads the whole export once).

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
        check_relative_path(root, rel)
        if not isinstance(entry, dict) or not _kind_ok(entry.get("size"), int) or not isinstance(entry.get("sha256"), str):
            raise ManifestError(f"{path}: entry for {rel!r} must be {{'sha256': str, 'size': int}}, got {entry!r}")
    for rel in _referenced_paths(data):
        check_relative_path(root, rel)
        if rel not in files and not any(f.startswith(rel + "/") for f in files):
            raise ManifestError(f"{path}: {rel!r} is referenced but not listed in 'files'; the manifest is inconsistent, re-export")
    if data["format_version"] >= 2 and data.get(CHECKSUM_KEY) != manifest_checksum(data):
        raise ManifestError(
            f"{path} was modified after export (its {CHECKSUM_KEY} does not match its contents); "
            "copy the export again or re-export"
        )
    validate_manifest(data, path)

    for rel, entry in files.items():
        file = check_relative_path(root, rel)
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
