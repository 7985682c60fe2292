"""ONNX writer: every graph of one precision in export_dir/onnx/<precision>/, all sharing ONE
external weights file (weights.bin).

Each graph is exported on its own (the full encoder, one streaming step per chunk size, predictor,
joiner), so each .onnx would normally carry its own copy of the encoder weights. Instead every
initializer of >= 1 KiB is hashed by content and written once into weights.bin at an aligned
offset; each graph's TensorProto just points at (offset, length). Small tensors (shape constants,
biases of tiny layers) stay inline, where they cost less than an external-data record.

fp32: torch.onnx.export, opset 17, with the shape arithmetic of fixed sizes folded into constants
in graphs whose only free axis is the batch (fold_static_shapes). int8: onnxruntime dynamic
quantization of MatMul/Gemm weights (uint8, per output channel: see INT8_RECIPE for why not int8);
activations are quantized at run time, so no calibration is needed.
Conv stays float on purpose: onnxruntime's ConvInteger is slower than float Conv on CPU.
"""

from __future__ import annotations

import copy
import hashlib
import io
import logging
import os
import tempfile
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch
from onnx import TensorProto, numpy_helper
from torch import Tensor, nn

from dualasr.fileio import atomic_write

from .exporter import ExportError, graph_io
from .wrappers import use_unfolded_depthwise_convs

__all__ = ["OPSET", "PRECISIONS", "WEIGHTS_FILE", "export_graph", "share_weights", "write"]

OPSET = 17
PRECISIONS = ("fp32", "int8")
WEIGHTS_FILE = "weights.bin"
INLINE_LIMIT = 1024  # bytes: smaller tensors stay inside the .onnx
ALIGN = 64  # offset alignment of every tensor (SIMD/cache line)
PAGE_ALIGN = 4096  # large tensors start on a page so onnxruntime can mmap them
PAGE_ALIGN_FROM = 64 * 1024
FP32_TOLERANCE = 1e-3  # writer self-check only; `dualasr verify` checks 1e-4 on real features


# ----------------------------------------------------------------------------- torch -> onnx


def _dynamic_axes(spec: dict) -> dict[str, dict[int, str]]:
    """Manifest I/O spec -> torch.onnx dynamic_axes (batch axis "B", string dims as named)."""
    axes: dict[str, dict[int, str]] = {}
    for t in spec["inputs"] + spec["outputs"]:
        a = {i: d for i, d in enumerate(t["shape"]) if isinstance(d, str)}
        if "batch_dim" in t:
            a[t["batch_dim"]] = "B"
        if a:
            axes[t["name"]] = a
    return axes


def _export_legacy(module: nn.Module, example: tuple[Tensor, ...], spec: dict) -> bytes:
    buf = io.BytesIO()
    with warnings.catch_warnings():
        # The TorchScript exporter is deprecated in favour of dynamo=True, but it is ~5x faster here,
        # handles the varargs state signature with plain dynamic_axes and gives identical numerics.
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module, example, buf,
            input_names=[t["name"] for t in spec["inputs"]],
            output_names=[t["name"] for t in spec["outputs"]],
            dynamic_axes=_dynamic_axes(spec),
            opset_version=OPSET, do_constant_folding=True, dynamo=False,
        )
    return buf.getvalue()


def _export_dynamo(module: nn.Module, example: tuple[Tensor, ...], spec: dict) -> bytes:
    """Fallback for torch builds without the TorchScript exporter."""
    from torch.export import Dim

    batch = Dim("B", min=1, max=1024)
    time_dim = Dim("T", min=12, max=3000)
    shapes = []
    for t in spec["inputs"]:
        d = {i: time_dim for i, s in enumerate(t["shape"]) if s == "T"}
        if "batch_dim" in t:
            d[t["batch_dim"]] = batch
        shapes.append(d or None)
    # forward(first, *state): torch.export wants the varargs grouped as one tuple.
    import inspect

    params = list(inspect.signature(module.forward).parameters.values())
    if any(p.kind is p.VAR_POSITIONAL for p in params):
        shapes = [shapes[0], tuple(shapes[1:])]
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "g.onnx"
        program = torch.onnx.export(
            module, example, input_names=[t["name"] for t in spec["inputs"]],
            output_names=[t["name"] for t in spec["outputs"]], dynamic_shapes=tuple(shapes),
            opset_version=max(OPSET, 18), dynamo=True, verbose=False,
        )
        program.save(str(path), external_data=False)
        return path.read_bytes()


def export_graph(module: nn.Module, example: tuple[Tensor, ...], spec: dict,
                 fold_shapes: bool = True) -> onnx.ModelProto:
    """One graph -> an in-memory ModelProto with inline weights and the manifest's I/O names.
    fold_shapes: fold_static_shapes where only the batch axis is free (off: as the exporter wrote it,
    for benchmarks/onnx_shape_folding.py)."""
    try:
        data = _export_legacy(module, example, spec)
    except Exception as legacy_error:  # e.g. a torch without the TorchScript exporter
        try:
            data = _export_dynamo(module, example, spec)
        except Exception as e:
            raise ExportError(
                f"torch.onnx.export failed with both exporters: TorchScript: {type(legacy_error).__name__}: "
                f"{legacy_error}; dynamo: {type(e).__name__}: {e}"
            ) from e
    model = onnx.load_from_string(data)
    only_batch_free = all(isinstance(d, int) or i == t.get("batch_dim")
                          for t in spec["inputs"] for i, d in enumerate(t["shape"]))
    if fold_shapes and only_batch_free:
        fold_static_shapes(model)
    return model


def fold_static_shapes(model: onnx.ModelProto) -> int:
    """Turn the shape arithmetic of dimensions the graph fixes into constants, in place; returns how
    many nodes were rewritten. For graphs whose only free input axis is the batch.

    Why: the TorchScript exporter records every `x.shape[i]` as Shape -> Gather -> ... evaluated on
    each call, even where the size is fixed (a streaming step's chunk and caches): a conformer-s step
    carried ~700 such nodes beside ~1,100 that compute, each one kernel dispatch per chunk. With
    shapes inferred symbolically (onnxruntime's SymbolicShapeInference, no merging of unknown dims),
    Gather(Shape(x), i) of a fixed dim becomes a constant, a Reshape whose output has one free dim
    gets a constant target with -1 there, and nodes nothing reads any more are dropped; onnxruntime
    folds the rest when it loads the graph. Values are unchanged (tests/test_export_onnx.py). A graph
    the inference cannot handle stays as exported.
    """
    from onnxruntime.tools.symbolic_shape_infer import SymbolicShapeInference

    try:
        inferred = SymbolicShapeInference.infer_shapes(model, auto_merge=False)
    except Exception as e:  # an op it does not know: the graph is correct as is, just not folded
        logging.getLogger(__name__).warning("shape folding skipped: %s: %s", type(e).__name__, e)
        return 0
    dims: dict[str, list[int | None]] = {}
    for v in [*inferred.graph.value_info, *inferred.graph.input, *inferred.graph.output]:
        if v.type.tensor_type.HasField("shape"):
            dims[v.name] = [d.dim_value if d.HasField("dim_value") else None for d in v.type.tensor_type.shape.dim]
    shape_values: dict[str, list[int | None]] = {}  # output of a Shape node -> the dims it reads
    for n in model.graph.node:
        if n.op_type == "Shape" and n.input[0] in dims:
            a = {x.name: x.i for x in n.attribute}
            d = dims[n.input[0]]
            shape_values[n.output[0]] = d[a.get("start", 0):a.get("end", len(d))]
    # The indices of Gathers that read a shape (not every weight: those are megabytes).
    indices = {n.input[1] for n in model.graph.node if n.op_type == "Gather" and n.input[0] in shape_values}
    constants = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer if t.name in indices}
    constants.update((n.output[0], numpy_helper.to_array(n.attribute[0].t)) for n in model.graph.node
                     if n.op_type == "Constant" and n.output[0] in indices and n.attribute
                     and n.attribute[0].name == "value")

    def to_constant(i: int, value: np.ndarray) -> None:
        n = model.graph.node[i]
        model.graph.node[i].CopyFrom(onnx.helper.make_node(
            "Constant", [], [n.output[0]], name=n.name, value=numpy_helper.from_array(value)))

    rewritten = 0
    for i, n in enumerate(model.graph.node):
        if n.op_type == "Shape" and None not in shape_values.get(n.output[0], [None]):
            to_constant(i, np.array(shape_values[n.output[0]], dtype=np.int64))
        elif n.op_type == "Gather" and n.input[0] in shape_values and n.input[1] in constants:
            index = constants[n.input[1]]
            picked = [shape_values[n.input[0]][int(j)] for j in np.atleast_1d(index)]
            if None in picked:
                continue
            to_constant(i, np.array(picked, dtype=np.int64).reshape(index.shape))
        elif n.op_type == "Reshape" and n.output[0] in dims:
            if any(a.name == "allowzero" and a.i for a in n.attribute):
                continue
            out = dims[n.output[0]]
            if out.count(None) != 1 or 0 in out:  # 0 would mean "copy that input dim" in a target
                continue
            target = numpy_helper.from_array(np.array([-1 if d is None else d for d in out], dtype=np.int64),
                                             f"{n.output[0]}_fixed_shape")
            model.graph.initializer.append(target)
            n.input[1] = target.name
        else:
            continue
        rewritten += 1
    _drop_unread_nodes(model.graph)
    return rewritten


def _names_read(graph: onnx.GraphProto) -> set[str]:
    """Every value a node reads, subgraphs (If/Loop bodies read outer values) included."""
    read = {name for n in graph.node for name in n.input} | {o.name for o in graph.output}
    for n in graph.node:
        for a in n.attribute:
            for sub in [a.g] if a.type == onnx.AttributeProto.GRAPH else list(a.graphs):
                read |= _names_read(sub)
    return read


def _drop_unread_nodes(graph: onnx.GraphProto) -> None:
    while True:
        read = _names_read(graph)
        keep = [n for n in graph.node if any(o in read for o in n.output)]
        if len(keep) == len(graph.node):
            return
        del graph.node[:]
        graph.node.extend(keep)


def declare_io_shapes(model: onnx.ModelProto, spec: dict) -> None:
    """Write the manifest's shapes onto the graph's inputs/outputs: the exporter leaves many output
    dims unnamed-dynamic; declaring them (fixed sizes, "B" for the batch axis, "T"/"T_out" for time)
    lets onnxruntime plan memory and lets anyone read the contract off the .onnx itself."""
    for declared, specs in ((model.graph.input, spec["inputs"]), (model.graph.output, spec["outputs"])):
        by_name = {s["name"]: s for s in specs}
        for v in declared:
            s = by_name.get(v.name)
            if s is None:
                continue
            dims = v.type.tensor_type.shape.dim
            if len(dims) != len(s["shape"]):
                raise ExportError(f"graph {v.name}: rank {len(dims)} differs from the manifest shape {s['shape']}")
            for i, (d, want) in enumerate(zip(dims, s["shape"])):
                if i == s.get("batch_dim"):
                    d.dim_param = "B"
                elif isinstance(want, str):
                    d.dim_param = want
                else:
                    d.dim_value = int(want)


# ----------------------------------------------------------------------------- int8


# Dynamic int8 recipes (keyword arguments of onnxruntime's quantize_dynamic; "first_matmul_float"
# keeps each graph's first weight MatMul, the one reading the normalized input, in float). Every
# recipe: 8-bit weights per output channel, uint8 activations quantized per tensor at run time.
# The exporter uses INT8_RECIPE: u8 x s8 products saturate in onnxruntime's AVX2 kernel on x86
# CPUs without VNNI (10% encoder error instead of 2%); u8 x u8 never does, on any CPU. Measured
# by benchmarks/onnx_int8_accuracy.py, see the README's "ONNX int8" section.
INT8_RECIPES: dict[str, dict[str, Any]] = {
    "u8s8": {"weight_type": "QInt8", "reduce_range": False},
    "u8s8_reduce_range": {"weight_type": "QInt8", "reduce_range": True},
    "u8u8": {"weight_type": "QUInt8", "reduce_range": False},
    "u8s8_reduce_range_first_float": {"weight_type": "QInt8", "reduce_range": True, "first_matmul_float": True},
    # onnxruntime's MatMulNBits: weights in blocks of `block` input channels with a scale each,
    # activations quantized to int8 per row (per token) at run time (accuracy_level 4). Measured,
    # not the default (README, "ONNX int8"). Not quantize_dynamic's kwargs.
    "nbits8_block32": {"nbits": 8, "block": 32},
    "nbits4_block32": {"nbits": 4, "block": 32},
}
INT8_RECIPE = "u8u8"


def weight_matmuls(model: onnx.ModelProto) -> list[onnx.NodeProto]:
    """The MatMul/Gemm nodes whose second input is a weight (an initializer), in graph order: what
    the int8 recipes quantize."""
    inits = {t.name for t in model.graph.initializer}
    return [n for n in model.graph.node if n.op_type in ("MatMul", "Gemm") and len(n.input) > 1 and n.input[1] in inits]


def int8_description(recipe: str = INT8_RECIPE) -> str:
    """The manifest's one-line description of an int8 recipe."""
    options = INT8_RECIPES[recipe]
    if "nbits" in options:
        return (f"MatMulNBits ({recipe}): MatMul weights {options['nbits']}-bit in blocks of {options['block']} "
                "input channels, activations int8 per row at run time")
    bits = "7-bit range" if options["reduce_range"] else "full range"
    weights = {"QInt8": "int8", "QUInt8": "uint8"}[options["weight_type"]]
    keep = "; the first MatMul stays float" if options.get("first_matmul_float") else ""
    return (f"dynamic int8 ({recipe}): MatMul/Gemm weights {weights} per output channel ({bits}), "
            f"activations uint8 per tensor at run time{keep}")


def quantize_int8(model: onnx.ModelProto, recipe: str = INT8_RECIPE, keep_float: list[str] = (),
                  only: list[str] | None = None) -> onnx.ModelProto:
    """Dynamic int8 by `recipe` (INT8_RECIPES): MatMul/Gemm weights 8-bit per output channel (the
    nbits recipes: MatMulNBits blocks instead), activations quantized at run time; convs,
    embeddings and activation x activation MatMuls stay float. keep_float: node names that stay float too (a layer that breaks accuracy, see
    benchmarks/int8_sensitivity.py); only: quantize just these nodes."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    options = dict(INT8_RECIPES[recipe])
    exclude = [n.name for n in weight_matmuls(model)[:1]] if options.pop("first_matmul_float", False) else []
    exclude = [*exclude, *keep_float]
    if "nbits" in options:
        return _quantize_nbits(model, options["nbits"], options["block"], exclude, only)
    with tempfile.TemporaryDirectory() as d:
        out = Path(d) / "q.onnx"
        # The quantizer logs a root-logger warning suggesting its pre-processing pass (symbolic
        # shape inference + ORT-specific fusions); we keep the graph portable and skip it.
        logging.disable(logging.WARNING)
        try:
            quantize_dynamic(
                model, out, op_types_to_quantize=["MatMul", "Gemm"], per_channel=True,
                weight_type=QuantType[options["weight_type"]], reduce_range=options["reduce_range"],
                nodes_to_exclude=exclude, nodes_to_quantize=list(only) if only else None,
                extra_options={"MatMulConstBOnly": True},
            )
        finally:
            logging.disable(logging.NOTSET)
        return onnx.load(str(out))


def _quantize_nbits(model: onnx.ModelProto, bits: int, block: int, exclude: list[str],
                    only: list[str] | None) -> onnx.ModelProto:
    """Weight MatMuls -> MatMulNBits (symmetric blocks, int8 compute: accuracy_level 4)."""
    from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer

    model = copy.deepcopy(model)  # the quantizer rewrites the graph in place
    logging.disable(logging.WARNING)
    try:
        q = MatMulNBitsQuantizer(model, bits=bits, block_size=block, is_symmetric=True, accuracy_level=4,
                                 nodes_to_exclude=exclude, nodes_to_include=list(only) if only else None)
        q.process()
    finally:
        logging.disable(logging.NOTSET)
    return q.model.model


# ----------------------------------------------------------------------------- shared weights


def _large_constants_to_initializers(graph: onnx.GraphProto) -> None:
    """Constant nodes holding >= INLINE_LIMIT bytes become initializers so they can go external."""
    keep = []
    for node in graph.node:
        if node.op_type == "Constant" and len(node.attribute) == 1 and node.attribute[0].name == "value":
            t = node.attribute[0].t
            if t.data_type != TensorProto.STRING and numpy_helper.to_array(t).nbytes >= INLINE_LIMIT:
                init = numpy_helper.from_array(numpy_helper.to_array(t), node.output[0])
                graph.initializer.append(init)
                continue
        keep.append(node)
    if len(keep) != len(graph.node):
        del graph.node[:]
        graph.node.extend(keep)


def _all_initializers(graph: onnx.GraphProto):
    """Initializers of a graph and of every subgraph (If/Loop/Scan bodies)."""
    yield from graph.initializer
    for node in graph.node:
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.GRAPH:
                yield from _all_initializers(attr.g)
            elif attr.type == onnx.AttributeProto.GRAPHS:
                for g in attr.graphs:
                    yield from _all_initializers(g)


def _raw_bytes(t: TensorProto) -> bytes:
    if t.HasField("raw_data"):
        return t.raw_data
    # Typed fields (float_data, int32_data, ...) -> canonical little-endian raw bytes.
    arr = numpy_helper.to_array(t)
    fresh = numpy_helper.from_array(arr, t.name)
    t.CopyFrom(fresh)
    return t.raw_data


def share_weights(models: dict[str, onnx.ModelProto], out_dir: Path, weights_name: str = WEIGHTS_FILE) -> dict[str, Any]:
    """Write each model to out_dir/<name>.onnx with all large tensors in ONE out_dir/weights_name,
    each distinct tensor (by content) stored once.

    Returns:
        {"shared_bytes": size of the weights file, "graph_bytes": {name: external bytes the graph
         references}, "separate_bytes": full + first streaming + predictor + joiner each with
         their own copy, "all_graphs_separate_bytes": every graph with its own copy, "tensors",
         "unique_tensors"}.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=out_dir, prefix=f".{weights_name}.", suffix=".tmp")
    where: dict[str, tuple[int, int]] = {}  # sha256 -> (offset, length)
    graph_bytes: dict[str, int] = {}
    n_tensors = 0
    serialized: dict[str, bytes] = {}
    try:
        with os.fdopen(fd, "wb") as f:
            pos = 0
            for name, model in models.items():
                _large_constants_to_initializers(model.graph)
                referenced = 0
                for t in _all_initializers(model.graph):
                    if t.data_location == TensorProto.EXTERNAL:
                        raise ExportError(f"graph {name}: tensor {t.name} is already external; pass models with inline weights")
                    if t.data_type == TensorProto.STRING:
                        continue
                    data = _raw_bytes(t)
                    if len(data) < INLINE_LIMIT:
                        continue
                    key = hashlib.sha256(data).hexdigest()
                    if key not in where:
                        align = PAGE_ALIGN if len(data) >= PAGE_ALIGN_FROM else ALIGN
                        pad = (-pos) % align
                        f.write(b"\0" * pad)
                        where[key] = (pos + pad, len(data))
                        f.write(data)
                        pos += pad + len(data)
                    offset, length = where[key]
                    t.ClearField("raw_data")
                    t.data_location = TensorProto.EXTERNAL
                    del t.external_data[:]
                    for k, v in (("location", weights_name), ("offset", str(offset)), ("length", str(length))):
                        entry = t.external_data.add()
                        entry.key, entry.value = k, v
                    referenced += length
                    n_tensors += 1
                graph_bytes[name] = referenced
                serialized[name] = model.SerializeToString()
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, out_dir / weights_name)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    for name, data in serialized.items():
        atomic_write(out_dir / f"{name}.onnx", data)

    streaming = [n for n in graph_bytes if n.startswith("encoder_streaming_")]
    dual_pair = ["encoder_full", *streaming[:1], "predictor", "joiner"]
    return {
        "shared_bytes": (out_dir / weights_name).stat().st_size,
        "separate_bytes": sum(graph_bytes.get(n, 0) for n in dual_pair),
        "all_graphs_separate_bytes": sum(graph_bytes.values()),
        "graph_bytes": graph_bytes,
        "tensors": n_tensors,
        "unique_tensors": len(where),
    }


# ----------------------------------------------------------------------------- checks


def _ort_session(path: Path):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    opts.intra_op_num_threads = 1
    return ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])


def check_against_torch(path: Path, module: nn.Module, example: tuple[Tensor, ...], inputs: list[str],
                        outputs: list[str] | None, precision: str, tolerance: float = FP32_TOLERANCE) -> float:
    """onnx.checker (external data resolved beside the model) + one onnxruntime run of the file at
    `path` on `example` (fed as `inputs`, in order), compared output by output with `module`
    (`outputs`: names to fetch, None for all in graph order). Used by the ONNX and sherpa-onnx writers.

    Returns the max abs difference to torch (fp32 must stay within `tolerance`; int8 must be
    finite and shaped right).
    """
    try:
        onnx.checker.check_model(str(path), full_check=True)
    except onnx.checker.ValidationError as e:
        raise ExportError(f"{path} fails onnx.checker: {e}") from None
    sess = _ort_session(path)
    outs = sess.run(outputs, {name: x.numpy() for name, x in zip(inputs, example)})
    names = outputs or [o.name for o in sess.get_outputs()]
    with torch.no_grad():
        ref = module(*example)
    ref = ref if isinstance(ref, tuple) else (ref,)
    worst = 0.0
    for name, got, want in zip(names, outs, ref):
        want = want.numpy()
        if got.shape != want.shape:
            raise ExportError(f"{path}: output {name} has shape {got.shape}, torch gives {want.shape}")
        if got.dtype.kind == "f":
            if not np.isfinite(got).all():
                raise ExportError(f"{path}: output {name} has NaN/Inf on the example input")
            worst = max(worst, float(np.abs(got.astype(np.float64) - want).max(initial=0.0)))
        elif not np.array_equal(got, want):
            raise ExportError(f"{path}: integer output {name} differs from torch")
    if precision == "fp32" and worst > tolerance:
        raise ExportError(f"{path}: fp32 output differs from torch by {worst:.2e} (> {tolerance:g}); the export is wrong")
    return worst


def _check(path: Path, module: nn.Module, example: tuple[Tensor, ...], spec: dict, precision: str) -> float:
    """check_against_torch with the graph's manifest spec."""
    return check_against_torch(path, module, example, [t["name"] for t in spec["inputs"]],
                               [t["name"] for t in spec["outputs"]], precision)


# ----------------------------------------------------------------------------- plug-in entry


def write(
    graphs: dict[str, nn.Module],
    example_inputs: dict[str, tuple[Tensor, ...]],
    export_dir: Path,
    precision: str,
    calibration: list[dict] | None = None,
    model: nn.Module | None = None,
) -> dict:
    """Write onnx/<precision>/{<graph>.onnx, weights.bin} under export_dir.

    calibration is not used: ONNX int8 is dynamic quantization (weights only are calibrated).

    Returns:
        The manifest artifacts entry {"graphs": {name: path}, "weights": path, "opset", "quantization",
        "example_max_abs_diff": {name: float}, "weight_sharing": {...}} (paths relative to export_dir).
    """
    if precision not in PRECISIONS:
        raise ExportError(f"onnx precision must be one of {PRECISIONS}, got {precision!r}")
    export_dir = Path(export_dir)
    specs = graph_io(graphs, example_inputs)
    # The step graphs' depthwise convs and the predictor's conv as window products (faster in
    # onnxruntime), on a copy: the caller's modules go on to other writers.
    graphs = copy.deepcopy(graphs)
    for module in graphs.values():
        use_unfolded_depthwise_convs(module)
    models = {name: export_graph(m, example_inputs[name], specs[name]) for name, m in graphs.items()}
    if precision == "int8":
        models = {name: quantize_int8(m) for name, m in models.items()}
    for name, m in models.items():
        declare_io_shapes(m, specs[name])
    rel = f"onnx/{precision}"
    sharing = share_weights(models, export_dir / rel)
    diffs = {
        name: _check(export_dir / rel / f"{name}.onnx", graphs[name], example_inputs[name], specs[name], precision)
        for name in graphs
    }
    opset = max((o.version for o in next(iter(models.values())).opset_import if o.domain in ("", "ai.onnx")), default=OPSET)
    return {
        "graphs": {name: f"{rel}/{name}.onnx" for name in graphs},
        "weights": f"{rel}/{WEIGHTS_FILE}",
        "opset": opset,
        "quantization": None if precision == "fp32" else int8_description(),
        "example_max_abs_diff": diffs,
        "weight_sharing": sharing,
    }
