"""The PyTorch eager backend: the export's checkpoint run through the very graph modules the exporter
traces (dualasr.export.wrappers), behind the same run(graph, inputs) protocol as the other backends.

So `Recognizer(export_dir, backend="torch")` is the reference the exported graphs are held to,
with the runtime's own audio front end, chunking and search: only the graphs differ. Building a
TorchBackend imports torch and the model code; importing this module does not.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .backends import BackendError, _graph_specs, _resolve, _wanted_graphs

if TYPE_CHECKING:
    from torch import nn

__all__ = ["TorchBackend"]


class TorchBackend:
    """The checkpoint named in manifest["checkpoint"], one eval-mode wrapper module per graph, fp32.

    Args:
        threads: torch intra-op threads, process-wide (0: torch's default).
        graphs: which graphs to build (default all in the manifest).
        model: the Transducer already loaded from that checkpoint (`dualasr verify` has it), so it
            is not read again.
    """

    name = "torch"
    supports_batch = True

    def __init__(
        self,
        export_dir: str | os.PathLike,
        manifest: dict,
        precision: str = "fp32",
        threads: int = 0,
        graphs: list[str] | None = None,
        model: nn.Module | None = None,
    ):
        import torch

        from dualasr.checkpoint import CheckpointError, load_model
        from dualasr.export.wrappers import graphs_for

        if precision != "fp32":
            raise BackendError(f"the torch backend runs the checkpoint in float32 only, not {precision}; "
                               "use --precision fp32, or another backend for the quantized graphs")
        if model is None and not manifest.get("checkpoint"):
            raise BackendError("this export holds no checkpoint, which the torch backend runs; re-export it "
                               "with `dualasr export` (the exporter copies the checkpoint in)")
        self.precision = precision
        self.export_dir = Path(export_dir)
        if threads:
            torch.set_num_threads(int(threads))
        t0 = time.perf_counter()
        if model is None:
            try:
                model, _config, _tokenizer = load_model(_resolve(self.export_dir, manifest, manifest["checkpoint"]))
            except CheckpointError as e:
                raise BackendError(str(e)) from None
        modules = graphs_for(model, [int(e["chunk_ms"]) for e in manifest["streaming"]])
        for entry in manifest["streaming"]:
            modules[entry["graph"]] = _step_module(model, modules[entry["graph"]], entry)
        wanted = _wanted_graphs(manifest, "torch", precision, list(modules), graphs)
        self._modules = {g: modules[g] for g in wanted}
        self._io = {g: _graph_specs(manifest, g) for g in wanted}  # the modules keep no per-call state
        self.load_seconds = time.perf_counter() - t0

    def run(self, graph_name: str, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        import torch  # loaded by __init__ already: a dictionary lookup

        in_names, out_names = self._io[graph_name]
        with torch.inference_mode():
            result = self._modules[graph_name](*[torch.from_numpy(np.ascontiguousarray(inputs[n])) for n in in_names])
        result = result if isinstance(result, tuple) else (result,)
        return {n: t.numpy() for n, t in zip(out_names, result)}


def _step_module(model: nn.Module, step: nn.Module, entry: dict) -> nn.Module:
    """The module computing a manifest streaming entry: the exporter's step, or the older layout's."""
    from dualasr.export.wrappers import InputCacheStreamingStep

    names = [st["name"] for st in entry["states"]]
    if names == list(model.encoder.state_names):
        return step
    if names == InputCacheStreamingStep.STATE_NAMES and hasattr(model.encoder, "forward_chunk_input_cache"):
        return InputCacheStreamingStep(model.encoder).eval()
    raise BackendError(f"{entry['graph']}: streaming state {names} is not a layout this dualasr runs for a "
                       f"{model.cfg.encoder} encoder ({list(model.encoder.state_names)}); re-export the checkpoint")
