"""Core ML export: all graphs as functions of ONE multifunction `.mlpackage` (weights stored once).

Layout written under export_dir:
  coreml/<precision>/model.mlpackage   functions encoder_full, encoder_streaming_<C>ms, predictor,
                                       joiner; ML program, minimum deployment target iOS18, batch 1

Precisions:
  fp16  converted with compute_precision FLOAT16 (Core ML's native float; I/O stays float32)
  int8  the fp16 functions + `linear_quantize_weights` (symmetric per-channel int8, weights with
        >= 2048 elements; activations stay fp16). Weight-only, so `calibration` is not needed.
  pal4  optional (not exported by default): 4-bit k-means palettization (`palettize_weights`,
        per grouped channel, group 16).

Conversion: torch.export (+ `run_decompositions()`, which turns nn.LSTM into matmuls the Core ML
frontend knows) -> `ct.convert`. Two frontend workarounds, both for coremltools 9.0 on torch 2.13:
  * `aten.alias` nodes (torch.export emits one for FrameStacking's full-length slice on a static
    shape) are removed: the ExIR frontend rejects them ("Unsupported fx node alias").
  * the `floordiv` converter casts int // int to fp32, so FrameStacking's `x[:, : T // 4 * 4]` on a
    symbolic T fails ("Tensors in 'values' of the concat op should share the same data type"). It is
    overridden to keep integer floor division integer (float inputs unchanged).
encoder_full takes a flexible T (`ct.RangeDim(12, 3000)`, 30 s at 10 ms frames); longer audio goes
through the streaming function. int64 tensors (processed_lens, context) are int32 in Core ML (it has
no int64 I/O): the entry lists them under "io_dtype_casts"; callers cast.

Dedup: each graph is converted on its own and `ct.utils.save_multifunction` writes one weight.bin
in which equal constants are stored once. The entry reports the weight bytes the separate packages
would take beside the shared package's.

What is NOT validated on Linux: Core ML prediction needs macOS (the Core ML framework). Here the
package is checked as far as files allow (`validate_coreml_package`: spec loads, function names,
input/output names, shapes and dtypes; `compare_weights`: the constants in weight.bin equal the
PyTorch weights within fp16 / quantization tolerance). On macOS, `write` also runs every function
once and compares with PyTorch. The entry says which happened: "predict_validated" and "reason".
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

PRECISIONS = ("fp16", "int8")
OPTIONAL_PRECISIONS = ("pal4",)
DEPLOYMENT_TARGET = "iOS18"
PACKAGE_NAME = "model.mlpackage"
ENCODER_FULL_MIN_FRAMES = 12  # 4x stacking: >= 3 encoder frames; a multiple of 4
ENCODER_FULL_MAX_FRAMES = 3000  # 30 s at 10 ms per frame
ENCODER_FULL_DEFAULT_FRAMES = 64
_BATCH_DIM_NAMES = ("B", "batch", "N")
_NOT_ON_THIS_OS = "Core ML predict needs macOS (the Core ML framework); this is {platform}"

__all__ = [
    "DEPLOYMENT_TARGET",
    "CoreMLExportError",
    "PRECISIONS",
    "compare_weights",
    "convert_graph",
    "expected_graph_specs",
    "graph_io_names",
    "package_functions",
    "validate_coreml_package",
    "write",
]


class CoreMLExportError(RuntimeError):
    """A graph could not be converted/saved as Core ML; the message names the graph and stage."""


# ----------------------------------------------------------------------------- graph I/O


def graph_io_names(name: str, module: nn.Module) -> tuple[list[str], list[str]]:
    """Manifest input/output names of a wrappers.graphs_for graph."""
    if name == "encoder_full":
        return ["features"], ["encoder_out"]
    if name.startswith("encoder_streaming_"):
        states = list(module.state_names)
        return ["features", *states], ["encoder_out", *(f"new_{s}" for s in states)]
    if name == "predictor":
        states = list(module.state_names())
        return ["context", *states], ["predictor_out", *(f"new_{s}" for s in states)]
    if name == "joiner":
        return ["encoder_out", "predictor_out"], ["logits"]
    raise ValueError(f"unknown graph {name!r}; expected encoder_full, encoder_streaming_<ms>ms, predictor, joiner")


def _dtype_name(t: torch.Tensor) -> str:
    return str(t.dtype).removeprefix("torch.")


def expected_graph_specs(graphs: dict[str, nn.Module], example_inputs: dict[str, tuple]) -> dict[str, dict]:
    """Manifest-style {"inputs": [...], "outputs": [...]} per graph, from the example I/O (batch 1);
    encoder_full's time axes are named "T" / "T_out"."""
    specs: dict[str, dict] = {}
    for name, module in graphs.items():
        ins, outs = graph_io_names(name, module)
        example = tuple(example_inputs[name])
        with torch.no_grad():
            res = module(*example)
        res = res if isinstance(res, tuple) else (res,)
        ispec = [{"name": n, "shape": list(x.shape), "dtype": _dtype_name(x)} for n, x in zip(ins, example)]
        ospec = [{"name": n, "shape": list(y.shape), "dtype": _dtype_name(y)} for n, y in zip(outs, res)]
        if name == "encoder_full":
            ispec[0]["shape"][1] = "T"
            ospec[0]["shape"][1] = "T_out"
        specs[name] = {"inputs": ispec, "outputs": ospec}
    return specs


# ----------------------------------------------------------------------------- conversion


_FIXES_REGISTERED = False


def _register_frontend_fixes() -> None:
    """Override coremltools' `floordiv` converter so int // int stays int (see module docstring)."""
    global _FIXES_REGISTERED
    if _FIXES_REGISTERED:
        return
    from coremltools.converters.mil import Builder as mb
    from coremltools.converters.mil.frontend.torch.ops import _get_inputs, promote_input_dtypes
    from coremltools.converters.mil.frontend.torch.torch_op_registry import register_torch_op
    from coremltools.converters.mil.mil import types

    @register_torch_op(override=True)
    def floordiv(context, node):  # noqa: ANN001  (coremltools converter signature)
        x, y = promote_input_dtypes(_get_inputs(context, node, expected=2))
        if types.is_int(x.dtype) and types.is_int(y.dtype):
            res = mb.floor_div(x=x, y=y, name=node.name)
        else:  # upstream behaviour for floats: torch.floor_divide on floats -> fp32
            res = mb.cast(x=mb.floor_div(x=x, y=y), dtype="fp32", name=node.name)
        context.add(res)

    _FIXES_REGISTERED = True


def _exported_for_coreml(name: str, module: nn.Module, example: tuple) -> torch.export.ExportedProgram:
    dynamic = None
    if name == "encoder_full":
        t = torch.export.Dim.DYNAMIC(min=ENCODER_FULL_MIN_FRAMES, max=ENCODER_FULL_MAX_FRAMES)
        dynamic = ({1: t},)
    with torch.no_grad():
        ep = torch.export.export(module, example, dynamic_shapes=dynamic).run_decompositions()
    graph = ep.graph
    for node in list(graph.nodes):
        if node.op == "call_function" and node.target == torch.ops.aten.alias.default:
            node.replace_all_uses_with(node.args[0])
            graph.erase_node(node)
    ep.graph_module.recompile()
    return ep


def _np_io_dtype(t: torch.Tensor) -> type:
    if t.dtype in (torch.int64, torch.int32):
        return np.int32  # Core ML has no int64 tensors
    if t.dtype == torch.bool:
        return np.bool_
    return np.float32


def convert_graph(name: str, module: nn.Module, example: tuple):
    """One graph -> fp16 ML program (ct.models.MLModel) with the manifest's I/O names.

    Raises:
        CoreMLExportError: with the failing stage.
    """
    import coremltools as ct

    _register_frontend_fixes()
    ins, outs = graph_io_names(name, module)
    stage = "torch.export"
    try:
        ep = _exported_for_coreml(name, module, example)
        with torch.no_grad():
            res = module(*example)
        res = res if isinstance(res, tuple) else (res,)
        inputs = []
        for n, x in zip(ins, example):
            shape: Any = tuple(x.shape)
            if name == "encoder_full":
                shape = (x.shape[0], ct.RangeDim(ENCODER_FULL_MIN_FRAMES, ENCODER_FULL_MAX_FRAMES,
                                                 default=ENCODER_FULL_DEFAULT_FRAMES), x.shape[2])
            inputs.append(ct.TensorType(name=n, shape=shape, dtype=_np_io_dtype(x)))
        # Explicit output dtypes: with fp16 compute the default would be fp16 outputs.
        outputs = [ct.TensorType(name=n, dtype=_np_io_dtype(y)) for n, y in zip(outs, res)]
        stage = "ct.convert"
        return ct.convert(
            ep,
            inputs=inputs,
            outputs=outputs,
            convert_to="mlprogram",
            minimum_deployment_target=getattr(ct.target, DEPLOYMENT_TARGET),
            compute_precision=ct.precision.FLOAT16,
            skip_model_load=True,  # loading needs macOS; validation below reads the files
        )
    except Exception as e:
        raise CoreMLExportError(f"coreml {name}: {stage} failed: {type(e).__name__}: {e}") from e


# fp16 conversions are the slow part; int8/pal4 are compressed from them. Cached by content so a
# second precision in the same process does not convert again, and a changed model never hits.
_FP16_CACHE: dict[str, dict[str, Any]] = {}


def _fingerprint(graphs: dict[str, nn.Module], example_inputs: dict[str, tuple]) -> str:
    h = hashlib.sha256()
    for name, module in graphs.items():
        h.update(name.encode())
        for k, v in module.state_dict().items():
            h.update(k.encode())
            h.update(str(tuple(v.shape)).encode() + str(v.dtype).encode())
            h.update(v.detach().contiguous().cpu().numpy().tobytes())
        for x in example_inputs[name]:
            h.update(str((tuple(x.shape), x.dtype)).encode())
    return h.hexdigest()


def _fp16_models(graphs: dict[str, nn.Module], example_inputs: dict[str, tuple]) -> tuple[dict[str, Any], dict[str, float]]:
    key = _fingerprint(graphs, example_inputs)
    if key in _FP16_CACHE:
        return _FP16_CACHE[key], {}
    models, seconds = {}, {}
    for name, module in graphs.items():
        t0 = time.perf_counter()
        models[name] = convert_graph(name, module.eval(), tuple(example_inputs[name]))
        seconds[name] = round(time.perf_counter() - t0, 2)
    _FP16_CACHE.clear()  # keep one model's worth in memory
    _FP16_CACHE[key] = models
    return models, seconds


def _compress(model, precision: str):
    import coremltools as ct

    opt = ct.optimize.coreml
    if precision == "fp16":
        return model
    if precision == "int8":
        cfg = opt.OpLinearQuantizerConfig(mode="linear_symmetric", dtype="int8", granularity="per_channel")
        return opt.linear_quantize_weights(model, config=opt.OptimizationConfig(global_config=cfg))
    if precision == "pal4":
        cfg = opt.OpPalettizerConfig(mode="kmeans", nbits=4, granularity="per_grouped_channel", group_size=16)
        return opt.palettize_weights(model, config=opt.OptimizationConfig(global_config=cfg))
    raise ValueError(f"coreml precision must be one of {PRECISIONS + OPTIONAL_PRECISIONS}, got {precision!r}")


_COMPRESSION_INFO = {
    "int8": {"method": "linear_quantize_weights", "dtype": "int8", "mode": "linear_symmetric",
             "granularity": "per_channel", "weight_threshold": 2048, "activations": "fp16"},
    "pal4": {"method": "palettize_weights", "nbits": 4, "mode": "kmeans",
             "granularity": "per_grouped_channel", "group_size": 16, "weight_threshold": 2048},
}


# ----------------------------------------------------------------------------- package files


def _weights_file(package: Path) -> Path:
    return Path(package) / "Data" / "com.apple.CoreML" / "weights" / "weight.bin"


def _weights_bytes(package: Path) -> int:
    w = _weights_file(package)
    return w.stat().st_size if w.is_file() else 0


def _replace_dir(src: Path, dst: Path) -> None:
    """Move a finished package into place; a reader sees the old or the new package, never half."""
    old = None
    if dst.exists():
        old = dst.with_name(f".{dst.name}.old-{os.getpid()}")
        shutil.rmtree(old, ignore_errors=True)
        os.replace(dst, old)
    os.replace(src, dst)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _load_spec(package: Path):
    import coremltools as ct

    return ct.utils.load_spec(str(package))


def package_functions(package: str | os.PathLike) -> list[str]:
    """Function names of a multifunction package (from its spec; works on any OS)."""
    spec = _load_spec(Path(package))
    return [f.name for f in spec.description.functions]


def _mil_program(package: Path):
    """The package's MIL program with weight values read from weight.bin (pure Python)."""
    from coremltools.converters.mil.frontend.milproto.load import load as milproto_load

    spec = _load_spec(package)
    return milproto_load(spec, specification_version=spec.specificationVersion,
                         file_weights_dir=str(_weights_file(package).parent))


# ----------------------------------------------------------------------------- validation


def _array_dtype_name(code: int) -> str:
    from coremltools.proto import FeatureTypes_pb2

    name = FeatureTypes_pb2.ArrayFeatureType.ArrayDataType.Name(code)  # e.g. "FLOAT32"
    return {"DOUBLE": "float64"}.get(name, name.lower())


_MANIFEST_TO_COREML = {"float32": "float32", "float16": "float16", "int64": "int32", "int32": "int32"}


def _feature_info(feature) -> dict:
    """Name, dtype, default shape and flexible ranges of a Core ML feature description."""
    arr = feature.type.multiArrayType
    info: dict[str, Any] = {
        "name": feature.name,
        "dtype": _array_dtype_name(arr.dataType),
        "shape": [int(d) for d in arr.shape],
    }
    if arr.HasField("shapeRange"):
        info["ranges"] = [[int(r.lowerBound), int(r.upperBound)] for r in arr.shapeRange.sizeRanges]
    elif arr.HasField("enumeratedShapes"):
        info["enumerated"] = [[int(d) for d in s.shape] for s in arr.enumeratedShapes.shapes]
    return info


def _check_tensor(fn: str, kind: str, want: dict, got: dict, problems: list[str]) -> None:
    if want["name"] != got["name"]:
        problems.append(f"{fn}: {kind} {got['name']!r} where the manifest has {want['name']!r}")
        return
    expect_dtype = _MANIFEST_TO_COREML.get(want["dtype"], want["dtype"])
    if got["dtype"] != expect_dtype:
        problems.append(f"{fn}.{want['name']}: dtype {got['dtype']}, expected {expect_dtype} (manifest {want['dtype']})")
    shape = want.get("shape")
    if not shape or not got["shape"]:
        return  # Core ML may leave output shapes unspecified (flexible inputs)
    if len(shape) != len(got["shape"]):
        problems.append(f"{fn}.{want['name']}: rank {len(got['shape'])}, manifest shape {shape}")
        return
    for axis, d in enumerate(shape):
        if isinstance(d, int):
            fixed = got["shape"][axis] if "ranges" not in got else got["ranges"][axis]
            if fixed != d and fixed != [d, d]:
                problems.append(f"{fn}.{want['name']}: axis {axis} is {fixed}, manifest {d}")
        elif d not in _BATCH_DIM_NAMES and kind == "input":
            r = got.get("ranges", [None] * len(shape))[axis]
            if r is None and "enumerated" not in got:
                problems.append(f"{fn}.{want['name']}: axis {axis} ({d}) is fixed at {got['shape'][axis]}, "
                                "the manifest needs a flexible size")


def validate_coreml_package(path: str | os.PathLike, manifest: dict) -> dict:
    """Check a saved package against manifest["graphs"] without running it (any OS).

    Checks: the spec loads; every function the manifest lists for this package exists (or every
    manifest graph when no "functions" list is given); input/output names in manifest order,
    dtypes (manifest int64 -> Core ML int32), fixed sizes, and a flexible range on named dynamic
    input axes (e.g. encoder_full's T).

    Returns {"ok": bool, "problems": [...], "functions": [...], "io": {function: {"inputs": [...],
    "outputs": [...]}}, "weights_bytes": int, "predict_validated": False, "reason": str}.
    """
    path = Path(path)
    result: dict[str, Any] = {"ok": False, "problems": [], "functions": [], "io": {},
                              "predict_validated": False,
                              "reason": _NOT_ON_THIS_OS.format(platform=sys.platform)
                              + " (validate_coreml_package never runs the model)"}
    problems: list[str] = result["problems"]
    if not path.is_dir():
        problems.append(f"{path} is not a .mlpackage directory")
        return result
    try:
        spec = _load_spec(path)
    except Exception as e:
        problems.append(f"{path}: spec does not load: {type(e).__name__}: {e}")
        return result
    functions = {f.name: f for f in spec.description.functions}
    result["functions"] = list(functions)
    result["default_function"] = spec.description.defaultFunctionName
    result["weights_bytes"] = _weights_bytes(path)
    graphs = manifest.get("graphs", {})
    wanted = manifest.get("functions") or list(graphs)
    for fn in wanted:
        if fn not in functions:
            problems.append(f"function {fn!r} missing from {path.name} (has {sorted(functions)})")
            continue
        desc = functions[fn]
        got_in = [_feature_info(f) for f in desc.input]
        got_out = [_feature_info(f) for f in desc.output]
        result["io"][fn] = {"inputs": got_in, "outputs": got_out}
        want = graphs.get(fn)
        if want is None:
            problems.append(f"function {fn!r} has no I/O spec in the manifest's graphs")
            continue
        for kind, w_list, g_list in (("input", want["inputs"], got_in), ("output", want["outputs"], got_out)):
            if [t["name"] for t in w_list] != [t["name"] for t in g_list]:
                problems.append(f"{fn}: {kind}s {[t['name'] for t in g_list]}, manifest {[t['name'] for t in w_list]}")
                continue
            for w, g in zip(w_list, g_list):
                _check_tensor(fn, kind, w, g, problems)
    result["ok"] = not problems
    return result


def _const_values(package: Path) -> dict[str, list[np.ndarray]]:
    """function -> float arrays of its weight constants (const ops and decompressed constexpr ops)."""
    prog = _mil_program(package)
    out: dict[str, list[np.ndarray]] = {}
    for fname, func in prog.functions.items():
        vals = []
        for op in func.operations:
            if op.op_type == "const":
                v = op.outputs[0].val
            elif op.op_type.startswith("constexpr_") and hasattr(op, "materialized_val_inference"):
                v = op.materialized_val_inference()
                v = v[0] if isinstance(v, tuple) else v
            else:
                continue
            if isinstance(v, np.ndarray) and v.dtype.kind == "f" and v.size > 1:
                vals.append(v.astype(np.float32))
        out[fname] = vals
    return out


def compare_weights(package: str | os.PathLike, params: dict[str, torch.Tensor], rtol: float = 2e-3,
                    qtol: float | None = None) -> dict:
    """Find every PyTorch weight among the package's constants.

    A parameter matches a constant of the same shape when max|w - c| <= tol, with
    tol = rtol * max|w| (+ qtol * max|w| for quantized packages: symmetric int8 per channel keeps
    each value within half a step, max|w_row| / 127 / 2). Small tensors (< 2 elements) are skipped.

    Returns {"matched": [...], "unmatched": [...], "max_abs_diff": float, "total": int}.
    """
    consts = _const_values(Path(package))
    by_shape: dict[tuple, list[np.ndarray]] = {}
    for vals in consts.values():
        for v in vals:
            by_shape.setdefault(tuple(v.shape), []).append(v)
    matched, unmatched, worst = [], [], 0.0
    for name, p in params.items():
        w = p.detach().float().cpu().numpy()
        if w.size < 2:
            continue
        scale = float(np.abs(w).max()) or 1.0
        tol = rtol * scale + (qtol or 0.0) * scale
        best = min((float(np.abs(c - w).max()) for c in by_shape.get(tuple(w.shape), [])), default=None)
        if best is not None and best <= tol:
            matched.append(name)
            worst = max(worst, best)
        else:
            unmatched.append(name)
    return {"matched": matched, "unmatched": unmatched, "max_abs_diff": worst, "total": len(matched) + len(unmatched)}


def _predict_check(package: Path, graphs: dict[str, nn.Module], example_inputs: dict[str, tuple]) -> dict:
    """macOS only: run each function once on its example inputs, max abs diff vs PyTorch."""
    import coremltools as ct

    diffs = {}
    for name, module in graphs.items():
        ins, outs = graph_io_names(name, module)
        example = tuple(example_inputs[name])
        model = ct.models.MLModel(str(package), function_name=name, compute_units=ct.ComputeUnit.CPU_ONLY)
        feed = {n: x.numpy().astype(_np_io_dtype(x)) for n, x in zip(ins, example)}
        got = model.predict(feed)
        with torch.no_grad():
            ref = module(*example)
        ref = ref if isinstance(ref, tuple) else (ref,)
        diffs[name] = max(float(np.abs(np.asarray(got[n], dtype=np.float64) - r.double().numpy()).max())
                          for n, r in zip(outs, ref))
    return diffs


# ----------------------------------------------------------------------------- the plug-in


def write(
    graphs: dict[str, nn.Module],
    example_inputs: dict[str, tuple],
    export_dir: Path,
    precision: str,
    calibration: list[dict] | None,
    model: nn.Module | None = None,
) -> dict:
    """Convert every graph and save them as functions of coreml/<precision>/model.mlpackage.

    calibration is unused (weight-only compression). Returns the manifest artifacts entry:
    {"package": "coreml/fp16/model.mlpackage", "functions": [...], "compute_precision": "float16",
     "deployment_target": "iOS18", "io_dtype_casts": {...}, "weight_sharing": {...},
     "weights_check": {...}, "io_check": {...}, "predict_validated": bool, "reason": str, ...}
    Raises CoreMLExportError when a graph does not convert or the saved package fails its checks.
    """
    import coremltools as ct

    if precision not in PRECISIONS + OPTIONAL_PRECISIONS:
        raise ValueError(f"coreml precision must be one of {PRECISIONS + OPTIONAL_PRECISIONS}, got {precision!r}")
    export_dir = Path(export_dir)
    rel = f"coreml/{precision}/{PACKAGE_NAME}"
    dst = export_dir / rel
    dst.parent.mkdir(parents=True, exist_ok=True)

    models, convert_seconds = _fp16_models(graphs, example_inputs)
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(dir=dst.parent, prefix=".coreml-") as tmp:
        tmp = Path(tmp)
        desc = ct.utils.MultiFunctionDescriptor()
        separate = 0
        for name, model in models.items():
            try:
                single = tmp / f"{name}.mlpackage"
                _compress(model, precision).save(str(single))
            except Exception as e:
                raise CoreMLExportError(f"coreml {precision} {name}: compress/save failed: {type(e).__name__}: {e}") from e
            separate += _weights_bytes(single)
            desc.add_function(str(single), src_function_name="main", target_function_name=name)
        desc.default_function_name = next(iter(models))
        staged = tmp / PACKAGE_NAME
        try:
            ct.utils.save_multifunction(desc, str(staged))
        except Exception as e:
            raise CoreMLExportError(f"coreml {precision}: save_multifunction failed: {type(e).__name__}: {e}") from e
        _replace_dir(staged, dst)
    save_seconds = round(time.perf_counter() - t0, 2)

    specs = expected_graph_specs(graphs, example_inputs)
    io_check = validate_coreml_package(dst, {"graphs": specs, "functions": list(graphs)})
    if not io_check["ok"]:
        raise CoreMLExportError(f"coreml {precision}: saved package fails its I/O check: {io_check['problems']}")
    params = {}
    for module in graphs.values():
        params.update({k: v for k, v in module.named_parameters()})
    qtol = {"fp16": None, "int8": 1.0 / 127, "pal4": 1.0 / 4}[precision]
    wcheck = compare_weights(dst, params, qtol=qtol)

    casts = {}
    for name, spec in specs.items():
        for t in spec["inputs"] + spec["outputs"]:
            if t["dtype"] == "int64":
                casts[t["name"]] = "int32"
    entry: dict[str, Any] = {
        "package": rel,
        "functions": list(graphs),
        "default_function": next(iter(graphs)),
        "compute_precision": "float16",
        "deployment_target": DEPLOYMENT_TARGET,
        "batch": 1,
        "flexible_shapes": {"encoder_full": {"T": [ENCODER_FULL_MIN_FRAMES, ENCODER_FULL_MAX_FRAMES]}},
        "io_dtype_casts": casts,  # manifest int64 tensors are int32 in Core ML
        # weight.bin bytes: the separately saved single-function packages vs the multifunction one.
        "weight_sharing": {"separate_bytes": separate, "shared_bytes": _weights_bytes(dst)},
        "weights_check": {"matched": len(wcheck["matched"]), "total": wcheck["total"],
                          "unmatched": wcheck["unmatched"], "max_abs_diff": float(f"{wcheck['max_abs_diff']:.3g}")},
        "convert_seconds": convert_seconds,
        "save_seconds": save_seconds,
    }
    if precision in _COMPRESSION_INFO:
        entry["compression"] = _COMPRESSION_INFO[precision]
    if sys.platform == "darwin":
        try:
            entry["predict_max_abs_diff"] = _predict_check(dst, graphs, example_inputs)
            entry["predict_validated"] = True
            entry["reason"] = "ran every function once on macOS (CPU_ONLY) against PyTorch"
        except Exception as e:  # a failed check is reported, the export stays usable for inspection
            entry["predict_validated"] = False
            entry["reason"] = f"Core ML predict failed: {type(e).__name__}: {e}"
    else:
        entry["predict_validated"] = False
        entry["reason"] = _NOT_ON_THIS_OS.format(platform=sys.platform) + \
            "; validated instead: spec, function names, I/O names/shapes/dtypes, weights vs PyTorch"
    return entry
