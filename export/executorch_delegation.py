"""Which ops of an ExecuTorch program XNNPACK runs, and the checks the export makes on it.

The generator's heavy ops (convolution, linear/addmm/mm, bmm/matmul) must run inside
XNNPACK: ExecuTorch's portable kernels are reference implementations, 10-100x slower.
With int8, the quantized weights must be inside XNNPACK too. The summary
(:func:`delegation_summary`) is recorded in the manifest (``targets.executorch.delegation``).
"""

from __future__ import annotations

import operator
from collections import Counter

import torch

from pocketgan.runtime.errors import PocketganError

BACKEND_ID = "XnnpackBackend"
# Ops whose cost dominates the generator; the export fails if any of them runs outside
# XNNPACK (ExecuTorch's portable kernels are reference implementations, 10-100x slower).
HEAVY_OPS = frozenset({"convolution", "linear", "addmm", "mm", "bmm", "matmul", "baddbmm"})
# Quantize/dequantize ops of PT2E; with int8 they must sit inside the XNNPACK subgraphs.
_QDQ_OPS = ("quantize_per_tensor", "dequantize_per_tensor", "quantize_per_channel", "dequantize_per_channel")


class DelegationError(PocketganError):
    """A heavy op of the generator was not delegated to XNNPACK."""


def check_int8_delegation(summary: dict, where: str) -> None:
    """int8: the quantized weights (per-channel dequantize) must be inside XNNPACK and no
    quantize/dequantize op may be left to the portable kernels."""
    delegated = {_base_op(op) for op in summary["_delegated"]}
    if "dequantize_per_channel" not in delegated:
        raise DelegationError(f"{where}: no per-channel int8 weight was delegated to XNNPACK; nothing was written")
    stray = {op: n for op, n in summary["non_delegated"].items() if _base_op(op) in _QDQ_OPS}
    if stray:
        raise DelegationError(f"{where}: int8 (de)quantize ops left outside XNNPACK: {stray}; nothing was written")


def _op_name(target) -> str:
    return getattr(target, "__name__", str(target))


def _base_op(name: str) -> str:
    """``aten.convolution.default`` -> ``convolution``."""
    parts = name.split(".")
    return parts[1] if len(parts) >= 2 else name


def delegation_summary(graph_module: torch.fx.GraphModule) -> dict:
    """What XNNPACK runs and what stays on ExecuTorch's portable kernels, for one method.

    The same count as ``executorch.devtools.backend_debug.get_delegation_info`` (which
    needs pandas), minus the ``getitem`` nodes that only unpack tuples.
    """
    delegated: Counter = Counter()
    non_delegated: Counter = Counter()
    subgraphs = 0
    for node in graph_module.graph.nodes:
        if node.op == "get_attr" and node.name.startswith("lowered_module_"):
            lowered = getattr(graph_module, node.name)
            if lowered.backend_id != BACKEND_ID:
                continue
            subgraphs += 1
            for inner in lowered.original_module.graph.nodes:
                if inner.op == "call_function" and inner.target is not operator.getitem:
                    delegated[_op_name(inner.target)] += 1
        elif node.op == "call_function" and node.target is not operator.getitem:
            name = _op_name(node.target)
            if name != "executorch_call_delegate":
                non_delegated[name] += 1
    return {
        "backend": BACKEND_ID,
        "delegated_subgraphs": subgraphs,
        "delegated_ops": sum(delegated.values()),
        "non_delegated_ops": sum(non_delegated.values()),
        "non_delegated": dict(sorted(non_delegated.items())),
        "_delegated": dict(delegated),
    }


def check_delegation(summary: dict, where: str) -> None:
    """Raise :class:`DelegationError` unless every heavy op runs in XNNPACK."""
    stray = {op: n for op, n in summary["non_delegated"].items() if _base_op(op) in HEAVY_OPS}
    if stray:
        raise DelegationError(
            f"{where}: heavy ops not delegated to XNNPACK: {stray}; they would run on ExecuTorch's "
            "portable kernels (slow). Nothing was written."
        )
    if not any(_base_op(op) == "convolution" for op in summary["_delegated"]):
        raise DelegationError(f"{where}: no convolution was delegated to XNNPACK; nothing was written")


def program_delegation(edge, methods: list[str], where: str, precision: str = "fp32", check: bool = True) -> dict:
    """Every method's summary (checked unless ``check`` is false: :func:`check_delegation`, and
    :func:`check_int8_delegation` for int8); returns the (shared) per-method summary for the manifest."""
    summaries = {}
    for method in methods:
        summary = delegation_summary(edge.exported_program(method).graph_module)
        if check:
            check_delegation(summary, f"{where} method {method!r}")
        if check and precision == "int8":
            check_int8_delegation(summary, f"{where} method {method!r}")
        summaries[method] = summary
    first = summaries[methods[0]]
    public = {k: v for k, v in first.items() if not k.startswith("_")}
    for summary in summaries.values():
        if {k: v for k, v in summary.items() if not k.startswith("_")} != public:
            # Different graphs per method (should not happen: one rank pattern): report totals.
            public = _sum_summaries(summaries.values())
            break
    return public


def _sum_summaries(summaries) -> dict:
    total: dict = {"backend": BACKEND_ID, "delegated_subgraphs": 0, "delegated_ops": 0, "non_delegated_ops": 0}
    counts: Counter = Counter()
    for s in summaries:
        for key in ("delegated_subgraphs", "delegated_ops", "non_delegated_ops"):
            total[key] += s[key]
        counts.update(s["non_delegated"])
    total["non_delegated"] = dict(sorted(counts.items()))
    return total
