"""ExecuTorch export: one XNNPACK-delegated `.pte` per graph, all weights in ONE shared `.ptd`.

Layout written under export_dir (precision is "fp32" or "int8"):
  executorch/<precision>/<graph>.pte    program; its only method is "forward", batch 1
  executorch/<precision>/weights.ptd    every constant of every graph, stored once

How the weights end up in one file:
  * delegated constants (XNNPACK) carry a `delegate_constant_tag` (what executorch's
    `delegate_external_constants_pass_unlifted` sets, here set on the lifted placeholders, see
    `_tag_delegate_constants`); the XNNPACK backend names each blob by the sha256 of its bytes, so
    equal weights get equal keys in every program;
  * the few non-delegated constants (the relative-position bias table, the predictor embedding)
    go out through `ExecutorchBackendConfig(external_constants=...)`, keyed by
    their fully qualified parameter name, which is the same in every graph because all graphs wrap
    the same Transducer. Graph-specific folded constants (no parameter name) stay in their `.pte`
    so two programs can never claim one key for different bytes.
  Each program is lowered on its own, then the per-program `.ptd` payloads are merged key by key
  (`NamedDataStore` dedups equal keys and equal bytes) and serialized once. Every program resolves
  its keys in the merged file at load time. The merge refuses a key that two programs map to
  different bytes, so a collision is an export error, never a silently wrong weight.

Dynamic length: encoder_full takes features [1, T, 80] with ENCODER_FULL_MIN_FRAMES <= T <=
ENCODER_FULL_MAX_FRAMES (torch.export `Dim.DYNAMIC`; FrameStacking's `T // 4 * 4` slice and the
reshape export symbolically, any T in range works, not only multiples of 4). Memory is planned for
the upper bound (about 57 MB of activations for the 4-layer tiny model at 3000 frames; the entry's
"planned_memory_bytes"), so the max is a deliberate 30 s cap; longer audio must go through the
streaming graph (which has no length limit). Every nn.LayerNorm is exported as
wrappers.StableLayerNorm (mean, then the variance of the centered values): ExecuTorch's own
layer_norm kernel computes E[x^2] - E[x]^2, which goes negative on constant frames (digital
silence: -15.94 in every fbank bin) and returned NaN. Its means are products with a 1/D vector,
which XNNPACK delegates whatever the shape, and attention's products are 3-D with reshapes that
infer the time axis (`wrappers.use_batch1_attention`), so neither splits the delegate. XNNPACK
also takes no split of the fused q/k/v projection (attention slices it), no conv whose weight
is computed (each streaming conv's kernel is a constant, `wrappers.use_constant_streaming_kernels`;
a portable conv is a reference loop) and no gather (a step's relative-position biases are constants,
`wrappers.use_constant_chunk_biases`; the streaming mask is computed once per chunk, not per
layer). What still runs as portable ops: the mask, the state's per-layer slices, encoder_full's
bias lookup and the frame-stacking slice (manifest "delegate_partitions" counts the XNNPACK
subgraphs per graph).

Lowering cache: ExecuTorch's lowering re-traces every partition through about 17 XNNPACK passes and
costs minutes on 2 cores, while the same weights are often exported again (more formats, CI jobs,
the demo's lazy export). `LoweringCache` keeps lowered programs under the sha256 of the exported
program (graph, constants, precision, versions, this file); a hit skips the lowering, and the
self-check still runs the written program against PyTorch (manifest "lowered_from_cache").

int8: PT2E dynamic quantization (XNNPACKQuantizer, symmetric per-channel int8 weights, int8
activations quantized at run time) of the Linear layers; everything else stays fp32. Dynamic
quantization needs no activation statistics, but the prepared graph is still run on the example
(and calibration) inputs so the weight observers see the weights. Upstream's scalar-to-tensor
transform would turn integer arithmetic float (see `_quantize_int8`); after writing, every program
is run once with the ExecuTorch runtime against PyTorch and integer outputs (processed_lens) must
come back int64 and exact.

Python runtime: `run_executorch_graph` runs a program with the ExecuTorch pybindings (which import
torch; the on-device C++/Swift/Kotlin runtime has no such dependency). Always pass the .ptd:
executorch 1.5.1 segfaults in load_method when a program with external weights is loaded without it.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch import nn

from dualasr.fileio import atomic_write, user_cache_dir
from dualasr.export.wrappers import (
    StreamingEncoderStep,
    use_batch1_attention,
    use_constant_chunk_biases,
    use_constant_streaming_kernels,
    use_stable_layer_norms,
)

PRECISIONS = ("fp32", "int8")
WEIGHTS_TAG = "weights"  # the .ptd file stem every program's external data is tagged with
METHOD = "forward"
# 4x frame stacking: >= 3 output frames keeps every symbolic guard torch.export emits true
# (T // 4 >= 2); 12 is the smallest multiple of 4 with margin. 3000 frames = 30 s at 10 ms.
ENCODER_FULL_MIN_FRAMES = 12
ENCODER_FULL_MAX_FRAMES = 3000

__all__ = [
    "ENCODER_FULL_MAX_FRAMES",
    "ENCODER_FULL_MIN_FRAMES",
    "ExecuTorchExportError",
    "Lowered",
    "LoweringCache",
    "PRECISIONS",
    "execute",
    "export_program",
    "load_program",
    "lower_graph",
    "lower_program",
    "merge_ptd",
    "program_key",
    "prepared_graphs",
    "ptd_keys",
    "run_executorch_graph",
    "write",
]


class ExecuTorchExportError(RuntimeError):
    """A graph could not be exported/lowered to ExecuTorch; the message names the graph and stage."""


# ----------------------------------------------------------------------------- export + lowering


def dynamic_shapes_for(name: str) -> tuple | None:
    """torch.export dynamic_shapes of a graph: only encoder_full has a dynamic (time) axis."""
    if name != "encoder_full":
        return None
    t = torch.export.Dim.DYNAMIC(min=ENCODER_FULL_MIN_FRAMES, max=ENCODER_FULL_MAX_FRAMES)
    return ({1: t},)


def _quantize_int8(gm: nn.Module, calib_inputs: Sequence[tuple]) -> nn.Module:
    """PT2E dynamic int8 quantization of the linear layers (per-channel symmetric weights)."""
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (
        XNNPACKQuantizer,
        get_symmetric_quantization_config,
    )
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    class _IntSafeQuantizer(XNNPACKQuantizer):
        # Upstream's transform_for_annotation turns EVERY scalar operand of add/mul into a float
        # tensor constant, so `rel.clamp(..) + max_rel_pos` (embedding indices) and
        # `processed_lens + C` (int64 state) silently become float. Scalar->attr conversion only
        # matters for static add/mul quantization, which we do not use: skip it.
        def transform_for_annotation(self, model: torch.fx.GraphModule) -> torch.fx.GraphModule:
            return model

    config = get_symmetric_quantization_config(is_per_channel=True, is_dynamic=True)
    # The model's nn.Linear layers only: the depthwise convs are a small share of the weights and
    # stay fp32, and so do the means StableLayerNorm writes as a product with a 1/D vector.
    quantizer = _IntSafeQuantizer().set_module_type(nn.Linear, config)
    prepared = prepare_pt2e(gm, quantizer)
    with torch.no_grad():
        for inputs in calib_inputs:
            prepared(*inputs)
    return convert_pt2e(prepared)


def _tag_delegate_constants(ep: torch.export.ExportedProgram) -> None:
    """Mark every constant input (parameters, buffers, folded/quantized constants) so the XNNPACK
    backend stores its bytes in the external file instead of the delegate blob.

    Done on the lifted placeholders: executorch's `delegate_external_constants_pass_unlifted` tags
    get_attr nodes, but after PT2E the re-export drops the tag of the `_frozen_param` (int8 weight)
    nodes, which then land inside the .pte. XNNPACK's PropagateCustomMetaPass carries the tag from
    the placeholder to its dequantize node.
    """
    sig = ep.graph_signature
    consts = set(sig.inputs_to_parameters) | set(sig.inputs_to_buffers) | set(sig.inputs_to_lifted_tensor_constants)
    for node in ep.graph.nodes:
        if node.op == "placeholder" and node.name in consts:
            node.meta.setdefault("custom", {})["delegate_constant_tag"] = WEIGHTS_TAG


def _param_tagger(ep: torch.export.ExportedProgram) -> Callable[[torch.fx.Node], str | None]:
    """external_constants tag fn: parameters/buffers (keyed by FQN, same in every graph) go to the
    shared file; anonymous folded constants stay inside the .pte (their names are per-program)."""
    sig = ep.graph_signature
    named = set(sig.inputs_to_parameters) | set(sig.inputs_to_buffers)

    def tag(node: torch.fx.Node) -> str | None:
        return WEIGHTS_TAG if node.name in named else None

    return tag


@contextlib.contextmanager
def _stage(stage: str):
    """An exception inside becomes ExecuTorchExportError naming the stage."""
    try:
        yield
    except ExecuTorchExportError:
        raise
    except Exception as e:
        raise ExecuTorchExportError(f"{stage} failed: {type(e).__name__}: {e}") from e


def export_program(
    module: nn.Module,
    example: tuple,
    dynamic_shapes: tuple | None,
    precision: str,
    calib_inputs: Sequence[tuple] = (),
) -> torch.export.ExportedProgram:
    """nn.Module -> the ExportedProgram that gets lowered (int8: after PT2E quantization).

    Raises:
        ExecuTorchExportError: with the failing stage.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"executorch precision must be one of {PRECISIONS}, got {precision!r}")
    with torch.no_grad():
        with _stage("torch.export"):
            ep = torch.export.export(module, example, dynamic_shapes=dynamic_shapes)
        if precision == "int8":
            with _stage("PT2E int8 quantization"):
                gm = _quantize_int8(ep.module(), [example, *calib_inputs])
            with _stage("torch.export (quantized)"):
                ep = torch.export.export(gm, example, dynamic_shapes=dynamic_shapes)
    return ep


def lower_program(ep: torch.export.ExportedProgram):
    """ExportedProgram -> ExecutorchProgramManager (XNNPACK-delegated, constants tagged external).

    Raises:
        ExecuTorchExportError: with the failing stage.
    """
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import EdgeCompileConfig, ExecutorchBackendConfig, to_edge_transform_and_lower

    with _stage("to_edge_transform_and_lower (XNNPACK)"):
        _tag_delegate_constants(ep)
        # The edge-dialect IR verifier is one more walk over every node; what it would catch
        # fails to_executorch or the runtime self-check in write() instead.
        edge = to_edge_transform_and_lower(ep, partitioner=[XnnpackPartitioner()],
                                           compile_config=EdgeCompileConfig(_check_ir_validity=False))
    with _stage("to_executorch"):
        tagger = _param_tagger(edge.exported_program())
        return edge.to_executorch(ExecutorchBackendConfig(external_constants=tagger))


def lower_graph(
    module: nn.Module,
    example: tuple,
    dynamic_shapes: tuple | None,
    precision: str,
    calib_inputs: Sequence[tuple] = (),
):
    """nn.Module -> ExecutorchProgramManager: `export_program`, then `lower_program`."""
    return lower_program(export_program(module, example, dynamic_shapes, precision, calib_inputs))


def prepared_graphs(graphs: dict[str, nn.Module], example_inputs: dict[str, tuple]) -> dict[str, nn.Module]:
    """The graphs as this writer exports them, on a copy (one deepcopy of the dict, so the graphs
    keep sharing parameters): the caller's modules stay untouched.

    ExecuTorch's layer_norm kernel computes E[x^2] - E[x]^2 and returns NaN on constant frames
    (digital silence), so the two-pass StableLayerNorm replaces it. Attention's batch-1 products,
    and the streaming convs' kernels and position biases as constants, are what XNNPACK delegates
    whole.
    """
    graphs = copy.deepcopy(graphs)
    for name, module in graphs.items():
        use_stable_layer_norms(module)
        use_batch1_attention(module)
        use_constant_streaming_kernels(module)
        if isinstance(module, StreamingEncoderStep):
            use_constant_chunk_biases(module, tuple(example_inputs[name]))
    return graphs


# ----------------------------------------------------------------------------- lowering cache


@dataclass
class Lowered:
    """What the writer keeps of one lowered program."""

    pte: bytes  # the program
    ptd: bytes | None  # its external weights (merged into the shared file), None if it has none
    planned_memory_bytes: int  # activation memory planned ahead of time
    delegate_partitions: int  # XNNPACK subgraphs; each boundary hands tensors to portable ops

    @classmethod
    def of(cls, prog) -> "Lowered":
        graph = prog.exported_program().graph
        return cls(
            pte=bytes(prog.buffer),
            ptd=_program_ptd(prog),
            planned_memory_bytes=int(sum(prog.executorch_program.execution_plan[0].non_const_buffer_sizes)),
            delegate_partitions=sum(1 for n in graph.nodes if n.op == "call_function"
                                    and getattr(n.target, "__name__", "") == "executorch_call_delegate"),
        )


def program_key(ep: torch.export.ExportedProgram, precision: str) -> str:
    """sha256 of everything the lowering of `ep` depends on: the graph, its signature and shape
    ranges, every constant's bytes, the precision, torch and executorch versions and this file."""
    from importlib.metadata import version

    h = hashlib.sha256()
    for part in (precision, torch.__version__, version("executorch"), Path(__file__).read_text(),
                 ep.graph_module.code, str(ep.graph_signature), str(ep.range_constraints)):
        h.update(part.encode() + b"\0")
    for name, t in sorted({**ep.state_dict, **ep.constants}.items()):
        if isinstance(t, torch.Tensor):
            t = t.detach().cpu().contiguous()
            h.update(f"{name} {t.dtype} {tuple(t.shape)}".encode() + b"\0")
            h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
        else:
            h.update(f"{name} {t!r}".encode() + b"\0")
    return h.hexdigest()


class LoweringCache:
    """Lowered programs by `program_key`, so exporting the same weights again (more formats, a CI
    job, the demo's lazy export) skips ExecuTorch's lowering, which is minutes on 2 cores.

    One folder per key: program.pte, weights.ptd (if any), info.json; written to a temp folder and
    renamed, so a reader never sees half an entry. Bounded: after each store the least recently
    used entries (never the one just stored) go until the rest is under `max_bytes`. An
    unreadable entry is a miss and is stored anew. The written program is still run against
    PyTorch by the writer's self-check, hit or miss.
    Root: $DUALASR_LOWERING_CACHE, else <user cache>/executorch-lowered; "off" disables it.
    """

    def __init__(self, root: Path | None, max_bytes: int = 2 << 30):
        self.root, self.max_bytes = root, max_bytes

    @classmethod
    def from_env(cls) -> "LoweringCache":
        setting = os.environ.get("DUALASR_LOWERING_CACHE", "")
        if setting == "off":
            return cls(None)
        return cls(Path(setting) if setting else user_cache_dir() / "executorch-lowered")

    def get(self, key: str) -> Lowered | None:
        if self.root is None:
            return None
        entry = self.root / key
        if not entry.is_dir():
            return None
        try:  # entries appear whole (renamed into place), so anything missing or unreadable is broken
            info = json.loads((entry / "info.json").read_text())
            ptd = entry / "weights.ptd"
            lowered = Lowered(pte=(entry / "program.pte").read_bytes(),
                              ptd=ptd.read_bytes() if ptd.is_file() else None, **info)
            os.utime(entry / "info.json")  # recently used
            return lowered
        except (OSError, ValueError, TypeError):
            shutil.rmtree(entry, ignore_errors=True)  # broken (a full disk, an old layout): store anew
            return None

    def put(self, key: str, lowered: Lowered) -> None:
        if self.root is None:
            return
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=self.root))
            try:
                (tmp / "program.pte").write_bytes(lowered.pte)
                if lowered.ptd is not None:
                    (tmp / "weights.ptd").write_bytes(lowered.ptd)
                (tmp / "info.json").write_text(json.dumps({
                    "planned_memory_bytes": lowered.planned_memory_bytes,
                    "delegate_partitions": lowered.delegate_partitions}))
                os.rename(tmp, self.root / key)  # fails if another export stored it meanwhile: keep theirs
            except OSError:
                shutil.rmtree(tmp, ignore_errors=True)
            self._prune(keep=key)
        except OSError:
            pass  # a cache that cannot be written only costs time

    def _prune(self, keep: str) -> None:
        entries = []
        for entry in self.root.iterdir():
            if entry.name.startswith(".tmp-") or entry.name == keep or not (entry / "info.json").is_file():
                continue
            size = sum(f.stat().st_size for f in entry.iterdir())
            entries.append(((entry / "info.json").stat().st_mtime, size, entry))
        total = sum(size for _, size, _ in entries)
        for _, size, entry in sorted(entries):  # oldest use first
            if total <= self.max_bytes:
                break
            shutil.rmtree(entry, ignore_errors=True)
            total -= size


# ----------------------------------------------------------------------------- shared weights file


def _program_ptd(prog) -> bytes | None:
    """The serialized external data (.ptd) of one lowered program, None if it has none."""
    with tempfile.TemporaryDirectory() as d:
        prog.write_tensor_data_to_file(d)
        files = sorted(Path(d).glob("*.ptd"))
        unexpected = [f.name for f in files if f.stem != WEIGHTS_TAG]
        if unexpected:
            raise ExecuTorchExportError(f"lowering wrote unexpected data files {unexpected}")
        return files[0].read_bytes() if files else None


def merge_ptd(blobs: Sequence[bytes]) -> tuple[bytes, int]:
    """Merge several .ptd payloads into one, storing each distinct key/blob once.

    Returns (merged .ptd bytes, number of keys).
    Raises:
        ValueError: two payloads map one key to different bytes.
    """
    from executorch.exir._serialize._named_data_store import NamedDataStore
    from executorch.exir._serialize.data_serializer import DataPayload
    from executorch.extension.flat_tensor.serialize.serialize import FlatTensorSerializer

    ser = FlatTensorSerializer()  # default config: segment alignment as to_executorch writes it
    store = NamedDataStore()
    for blob in blobs:
        store.merge_named_data_store(ser.deserialize_to_named_data_store_output(blob, WEIGHTS_TAG))
    out = store.get_named_data_store_output()
    named = out.external_data.get(WEIGHTS_TAG, {})
    return bytes(ser.serialize(DataPayload(buffers=out.buffers, named_data=named))), len(named)


def ptd_keys(blob: bytes) -> dict[str, int]:
    """key -> byte size of each entry of a .ptd payload (for inspection and tests)."""
    from executorch.exir._serialize._cord import Cord
    from executorch.extension.flat_tensor.serialize.serialize import FlatTensorSerializer

    payload = FlatTensorSerializer().deserialize(Cord(blob))
    return {k: len(payload.buffers[e.buffer_index]) for k, e in payload.named_data.items()}


# ----------------------------------------------------------------------------- runtime


def load_program(path_pte: str | os.PathLike, path_ptd: str | os.PathLike):
    """An ExecuTorch runtime Program (pybindings) with its shared weights file.

    The .ptd is required: executorch 1.5.1's pybindings crash the process (SIGSEGV in
    load_method) when a program whose weights are external is loaded without its data file,
    instead of raising. A wrong .ptd is reported cleanly ("Failed to get constant data for key").
    """
    from executorch.runtime import Runtime

    if path_ptd is None:
        raise ValueError(
            f"{path_pte}: an ExecuTorch program from this exporter needs its weights .ptd "
            "(manifest artifacts.executorch.<precision>.weights); loading without it crashes the runtime"
        )
    for p in (path_pte, path_ptd):
        if not Path(p).is_file():
            raise FileNotFoundError(f"ExecuTorch artifact {p} does not exist; re-export with --formats executorch")
    return Runtime.get().load_program(Path(path_pte), data_path=str(path_ptd))


def run_executorch_graph(
    path_pte: str | os.PathLike, path_ptd: str | os.PathLike, inputs: Sequence[Any]
) -> list[np.ndarray]:
    """Run a program's "forward" once with the ExecuTorch Python runtime.

    inputs: arrays/tensors in the manifest's input order (batch 1). Returns outputs in the manifest's
    output order as numpy arrays (dtypes as the program produces them: int64 stays int64).
    """
    method = load_program(path_pte, path_ptd).load_method(METHOD)
    return execute(method, inputs)


def execute(method, inputs: Sequence[Any]) -> list[np.ndarray]:
    """One call of a loaded method (reuse it across streaming chunks: loading costs more)."""
    args = [x if isinstance(x, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(x)) for x in inputs]
    outs = method.execute([a.contiguous() for a in args])
    return [o.detach().cpu().numpy() if isinstance(o, torch.Tensor) else np.asarray(o) for o in outs]


# ----------------------------------------------------------------------------- the plug-in


def _calib_for(name: str, calibration: list[dict] | None) -> list[tuple]:
    """calibration: a list of {graph name: input tuple}; returns this graph's tuples."""
    return [tuple(c[name]) for c in (calibration or []) if name in c]


def _self_check(name: str, pte: Path, ptd: Path, module: nn.Module, example: tuple) -> float:
    """Run the written program on its example inputs with the ExecuTorch runtime and compare to
    PyTorch. Integer outputs (processed_lens) must come back int64 and exact: PT2E or a lowering
    pass turning integer state arithmetic into float would break the streaming contract.

    Returns the max abs difference over float outputs.
    """
    with torch.no_grad():
        ref = module(*example)
    ref = ref if isinstance(ref, tuple) else (ref,)
    got = run_executorch_graph(pte, ptd, example)
    if len(got) != len(ref):
        raise ExecuTorchExportError(f"{name}: program returns {len(got)} outputs, PyTorch {len(ref)}")
    diff = 0.0
    for i, (r, g) in enumerate(zip(ref, got)):
        r = r.numpy()
        if r.shape != g.shape:
            raise ExecuTorchExportError(f"{name}: output {i} has shape {g.shape}, PyTorch {r.shape}")
        if np.issubdtype(r.dtype, np.integer):
            if g.dtype != r.dtype or not np.array_equal(r, g):
                raise ExecuTorchExportError(
                    f"{name}: integer output {i} is {g.dtype} {g.tolist()}, PyTorch {r.dtype} {r.tolist()}; "
                    "integer state must stay exact int64"
                )
        elif r.size:
            diff = max(diff, float(np.abs(r - g).max()))
    return diff


def write(
    graphs: dict[str, nn.Module],
    example_inputs: dict[str, tuple],
    export_dir: Path,
    precision: str,
    calibration: list[dict] | None,
    model: nn.Module | None = None,
) -> dict:
    """Export every graph to executorch/<precision>/ and return the manifest artifacts entry.

    Returns e.g. {"graphs": {"encoder_full": "executorch/fp32/encoder_full.pte", ...},
    "weights": "executorch/fp32/weights.ptd", "method": "forward", "delegate": "xnnpack",
    "dynamic_axes": {"encoder_full": {"T": [12, 3000]}}, "weight_sharing": {...}, ...}
    with paths relative to export_dir.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"executorch precision must be one of {PRECISIONS}, got {precision!r}")
    export_dir = Path(export_dir)
    graphs = prepared_graphs(graphs, example_inputs)
    rel_dir = f"executorch/{precision}"
    out_dir = export_dir / rel_dir
    out_dir.mkdir(parents=True, exist_ok=True)

    cache = LoweringCache.from_env()
    lowered: dict[str, Lowered] = {}
    seconds: dict[str, float] = {}
    from_cache: list[str] = []
    for name, module in graphs.items():
        t0 = time.perf_counter()
        try:
            ep = export_program(module.eval(), tuple(example_inputs[name]), dynamic_shapes_for(name), precision,
                                _calib_for(name, calibration))
            key = program_key(ep, precision)
            hit = cache.get(key)
            if hit is None:
                hit = Lowered.of(lower_program(ep))
                cache.put(key, hit)
            else:
                from_cache.append(name)
        except ExecuTorchExportError as e:
            raise ExecuTorchExportError(f"executorch {precision} {name}: {e}") from e
        lowered[name] = hit
        seconds[name] = round(time.perf_counter() - t0, 2)

    present = [lo.ptd for lo in lowered.values() if lo.ptd is not None]
    merged, n_keys = merge_ptd(present)

    entry_graphs: dict[str, str] = {}
    for name, lo in lowered.items():
        atomic_write(out_dir / f"{name}.pte", lo.pte)
        entry_graphs[name] = f"{rel_dir}/{name}.pte"
    ptd_path = out_dir / f"{WEIGHTS_TAG}.ptd"
    atomic_write(ptd_path, lambda f: f.write(merged))
    # Load every program against the one shared file: proves each finds all its keys in it.
    check = {name: _self_check(name, out_dir / f"{name}.pte", ptd_path, graphs[name],
                               tuple(example_inputs[name])) for name in lowered}

    entry: dict[str, Any] = {
        "graphs": entry_graphs,
        "weights": f"{rel_dir}/{WEIGHTS_TAG}.ptd",
        "method": METHOD,
        "delegate": "xnnpack",
        "batch": 1,
        "dynamic_axes": {"encoder_full": {"T": [ENCODER_FULL_MIN_FRAMES, ENCODER_FULL_MAX_FRAMES]}},
        "weight_sharing": {
            # Evidence the .ptd is one copy: what per-graph data files would have weighed.
            "separate_bytes": sum(len(b) for b in present),
            "shared_bytes": len(merged),
            "shared_keys": n_keys,
        },
        "lower_seconds": seconds,
        "lowered_from_cache": from_cache,
        "delegate_partitions": {n: lo.delegate_partitions for n, lo in lowered.items()},
        # Activation memory planned ahead of time (encoder_full: for ENCODER_FULL_MAX_FRAMES).
        "planned_memory_bytes": {n: lo.planned_memory_bytes for n, lo in lowered.items()},
        "self_check_max_abs_diff": {k: float(f"{v:.3g}") for k, v in check.items()},
    }
    if precision == "int8":
        entry["quantization"] = {
            "method": "pt2e_dynamic",
            "quantizer": "XNNPACKQuantizer",
            "weights": "int8 symmetric per-channel",
            "activations": "int8 dynamic (per token, at run time)",
            "ops": "linear",
        }
    return entry
