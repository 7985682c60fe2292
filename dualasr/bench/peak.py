"""Matmul throughput of this machine: the hardware limit the cells' achieved FLOP/s are measured
against (a worker of its own, per thread count)."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any, Callable

from .schema import clean

__all__ = ["peak_worker"]


def _best_rate(fn: Callable[[], Any], work: float, min_batch_s: float = 0.05, batches: int = 5) -> float:
    """Best observed work/second of fn over a few timed batches (after a warm-up call)."""
    fn()
    t0 = time.perf_counter()
    fn()
    one = max(time.perf_counter() - t0, 1e-7)
    n = max(1, int(min_batch_s / one))
    best = 0.0
    for _ in range(batches):
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        best = max(best, n * work / (time.perf_counter() - t0))
    return best


def peak_worker(spec: dict) -> dict:
    """Matmul throughput of this machine at spec["threads"] threads (GFLOP/s; int8: Gop/s).

    numpy fp32 (its BLAS), onnxruntime fp32 MatMul and onnxruntime dynamic-int8 MatMul
    (quantize_dynamic, the same scheme as the int8 export) on an N x N x N product, plus onnxruntime
    fp32 on the encoder's per-chunk feed-forward shape (the ceiling a chunk's small GEMMs can reach).
    """
    import numpy as np

    threads = int(spec["threads"])
    n = int(spec.get("n", 1024))
    out: dict[str, Any] = {"threads": threads, "n": n}
    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n), dtype=np.float32)
    b = rng.standard_normal((n, n), dtype=np.float32)
    out["numpy_fp32_gflops"] = _best_rate(lambda: a @ b, 2.0 * n**3) / 1e9
    try:
        import onnx
        import onnxruntime as ort
        from onnx import TensorProto, helper, numpy_helper

        def model(m: int, k: int, nn: int) -> bytes:
            w = numpy_helper.from_array(rng.standard_normal((k, nn), dtype=np.float32) * 0.05, "W")
            g = helper.make_graph([helper.make_node("MatMul", ["A", "W"], ["Y"])], "mm",
                                  [helper.make_tensor_value_info("A", TensorProto.FLOAT, [m, k])],
                                  [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [m, nn])], [w])
            mp = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
            mp.ir_version = 8
            return mp.SerializeToString()

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        opts.log_severity_level = 3

        def rate(blob: bytes, m: int, k: int, nn: int) -> float:
            sess = ort.InferenceSession(blob, sess_options=opts, providers=["CPUExecutionProvider"])
            x = rng.standard_normal((m, k), dtype=np.float32)
            return _best_rate(lambda: sess.run(None, {"A": x}), 2.0 * m * k * nn) / 1e9

        out["onnxruntime_fp32_gflops"] = rate(model(n, n, n), n, n, n)
        from onnxruntime.quantization import QuantType, quantize_dynamic

        with tempfile.TemporaryDirectory() as d:
            src, dst = Path(d) / "mm.onnx", Path(d) / "mm_int8.onnx"
            src.write_bytes(model(n, n, n))
            quantize_dynamic(str(src), str(dst), weight_type=QuantType.QInt8, op_types_to_quantize=["MatMul"])
            out["onnxruntime_int8_gops"] = rate(dst.read_bytes(), n, n, n)
        m, k, nn = (int(v) for v in spec.get("small_shape") or (8, 256, 1024))
        out["small_shape"] = [m, k, nn]
        out["onnxruntime_fp32_small_gflops"] = rate(model(m, k, nn), m, k, nn)
        del onnx
    except Exception as e:  # onnx/quantization tools missing on some platforms: numpy still counts
        out["onnxruntime_error"] = f"{type(e).__name__}: {e}"
    return clean(out)
