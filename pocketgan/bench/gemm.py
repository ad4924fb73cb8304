"""This machine's GEMM peak: the yardstick for "share of the limit" a backend reaches.

fp32: ``torch.matmul`` (oneDNN/MKL), NumPy's BLAS (OpenBLAS) and ONNX Runtime's
``MatMul`` (MLAS, constant B pre-packed as in a model). int8: ``torch._int_mm``
(int8 x int8 -> int32) and ONNX Runtime's ``MatMulInteger`` (uint8 x int8 -> int32, the
VNNI path the quantized convolutions use). Square matrices at several sides, the same
thread count as the benchmarks; each (implementation, side) reports the median of
repeated calls; the peak is the best of them. A GEMM does 2·M·N·K operations (one
multiply and one add per MAC), so GFLOP/s (fp32) and GOP/s (int8) count the same way
as the generator's FLOPs (``pocketgan.bench.flops``: 2 x MACs).
"""

from __future__ import annotations

import contextlib
import time
from typing import Callable, Sequence

import numpy as np


def _median_seconds(fn: Callable[[], object], min_time: float, min_calls: int = 3, warmup: int = 2) -> float:
    for _ in range(warmup):
        fn()
    samples = []
    start = time.perf_counter()
    while len(samples) < min_calls or time.perf_counter() - start < min_time:
        t0 = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t0)
        if len(samples) >= 1000:
            break
    samples.sort()
    return samples[len(samples) // 2]


def _ort_session(op: str, n: int, threads: int):
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    from pocketgan.runtime.backends.onnx import session_options

    rng = np.random.default_rng(0)
    if op == "MatMul":
        b = rng.standard_normal((n, n)).astype(np.float32)
        a_type, out_type = TensorProto.FLOAT, TensorProto.FLOAT
    else:
        b = rng.integers(-128, 128, (n, n), dtype=np.int8)
        a_type, out_type = TensorProto.UINT8, TensorProto.INT32
    graph = helper.make_graph(
        [helper.make_node(op, ["A", "B"], ["Y"])],
        "gemm",
        [helper.make_tensor_value_info("A", a_type, [n, n])],
        [helper.make_tensor_value_info("Y", out_type, [n, n])],
        [numpy_helper.from_array(b, "B")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 9
    return ort.InferenceSession(model.SerializeToString(), session_options(threads), providers=["CPUExecutionProvider"])


def _fp32_impls(n: int, threads: int) -> dict[str, Callable[[], object]]:
    impls: dict[str, Callable[[], object]] = {}
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((n, n)).astype(np.float32), rng.standard_normal((n, n)).astype(np.float32)
    try:
        import torch

        ta, tb = torch.from_numpy(a), torch.from_numpy(b)
        impls["torch.matmul"] = lambda: torch.matmul(ta, tb)
    except ImportError:
        pass
    impls["numpy.matmul"] = lambda: a @ b
    try:
        session = _ort_session("MatMul", n, threads)
        impls["onnxruntime MatMul"] = lambda: session.run(None, {"A": a})
    except ImportError:
        pass
    return impls


def _int8_impls(n: int, threads: int) -> dict[str, Callable[[], object]]:
    impls: dict[str, Callable[[], object]] = {}
    rng = np.random.default_rng(0)
    try:
        import torch

        ta = torch.randint(-128, 128, (n, n), dtype=torch.int8)
        tb = torch.randint(-128, 128, (n, n), dtype=torch.int8)
        torch._int_mm(ta[:32, :32].contiguous(), tb[:32, :32].contiguous())  # raises where the CPU kernel is missing
        impls["torch._int_mm"] = lambda: torch._int_mm(ta, tb)
    except (ImportError, RuntimeError, AttributeError):
        pass
    try:
        a = rng.integers(0, 256, (n, n), dtype=np.uint8)
        session = _ort_session("MatMulInteger", n, threads)
        impls["onnxruntime MatMulInteger"] = lambda: session.run(None, {"A": a})
    except ImportError:
        pass
    return impls


@contextlib.contextmanager
def _threads(threads: int):
    """Pin torch's and NumPy's BLAS thread pools for the duration."""
    try:
        import torch

        before = torch.get_num_threads()
        torch.set_num_threads(threads)
    except ImportError:
        torch, before = None, None
    try:
        from threadpoolctl import threadpool_limits

        limiter = threadpool_limits(threads, user_api="blas")
    except ImportError:
        limiter = contextlib.nullcontext()
    try:
        with limiter:
            yield
    finally:
        if torch is not None:
            torch.set_num_threads(before)


def gemm_peak(
    threads: int,
    sizes: Sequence[int] = (256, 512, 1024, 2048),
    *,
    min_time: float = 0.3,
    precisions: Sequence[str] = ("fp32", "int8"),
    progress: Callable[[str], None] | None = None,
) -> dict:
    """Measure GEMM throughput; return the results schema's ``gemm`` object:

    ``{"threads", "fp32": {"peak_gops", "best": {impl, n}, "samples": [{impl, n, seconds, gops}]}, "int8": {...}}``
    (``gops`` is GFLOP/s for fp32 and GOP/s for int8: 2·n³ operations per call).
    """
    out: dict = {
        "threads": threads,
        "sizes": list(sizes),
        "method": "median of repeated square GEMMs, best over sizes and libraries",
    }
    with _threads(threads):
        for precision in precisions:
            samples = []
            for n in sizes:
                impls = _fp32_impls(n, threads) if precision == "fp32" else _int8_impls(n, threads)
                for name, fn in impls.items():
                    if progress:
                        progress(f"GEMM {precision} {name} {n}³")
                    seconds = _median_seconds(fn, min_time)
                    samples.append({"impl": name, "n": n, "seconds": seconds, "gops": 2 * n**3 / seconds / 1e9})
            best = max(samples, key=lambda s: s["gops"]) if samples else None
            out[precision] = {
                "peak_gops": best["gops"] if best else None,
                "best": {"impl": best["impl"], "n": best["n"]} if best else None,
                "samples": samples,
            }
    return out
