"""ONNX int8: static QDQ quantization that keeps the concept inputs overridable.

Every model is quantized after export with ONNX Runtime's static QDQ quantizer (int8
per-channel weights, uint8 activations calibrated on real photos held out from the parity
photos, see ``pocketgan.export.calibration``). In the separate mode the nodes that consume
a concept tensor (the LoRA A/B convolutions and matmuls, the transposes of the Linear LoRA
weights, the cross-attention key/value path of the concept tokens) stay float
(:func:`concept_nodes`), so every concept tensor is still an overridable graph input with
its zero initializer and every ``.onnx_adapter`` applies; :func:`half_concept_inputs` then
stores those inputs as float16. Details and measurements: ``docs/quantization.md``.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from pocketgan.runtime.errors import PocketganError


class QuantizationError(PocketganError):
    """Quantizing a model broke one of the export's guarantees (nothing was written)."""


def onnx_float() -> int:
    from onnx import TensorProto

    return TensorProto.FLOAT


def _initializer_names(proto) -> set[str]:
    return {i.name for i in proto.graph.initializer}


def concept_nodes(proto, concept_inputs: list[str] | set[str]) -> list[str]:
    """Names of the nodes that must stay float so the concept inputs stay overridable.

    A tensor is *concept-derived* when it is computed from concept inputs and constants
    only (the transposed Linear LoRA weights, the expanded tokens and their key/value
    projections); every node that consumes a concept-derived tensor is returned: the
    LoRA A/B Conv and MatMul nodes, the Transposes of the Linear LoRA weights, and the
    cross-attention path of the tokens up to the attention matmuls. Nodes are visited
    in graph (topological) order.
    """
    concept = set(concept_inputs)
    constants = _initializer_names(proto) - concept
    constants |= {o for n in proto.graph.node if n.op_type == "Constant" for o in n.output}
    derived = set(concept)
    for node in proto.graph.node:
        ins = [i for i in node.input if i]
        if ins and any(i in derived for i in ins) and all(i in derived or i in constants for i in ins):
            derived.update(node.output)
    return [n.name for n in proto.graph.node if any(i in derived for i in n.input)]


# Ops between an attention matmul and the q/k/v projections (bias, head split, scale).
_ATTENTION_GLUE = frozenset({"Add", "Mul", "Div", "Reshape", "Transpose", "Squeeze", "Unsqueeze"})
_DATA_MOVEMENT = frozenset({"Concat", "Resize", "Upsample"})
MIN_INT8_CONV_CHANNELS = 8


def float_nodes(proto) -> list[str]:
    """Nodes left float because int8 makes them slower (and less accurate) on ORT's CPU
    kernels, measured on the small generator (``docs/quantization.md``):

    - the attention core: ``Softmax`` (``QLinearSoftmax`` over 4x1024x1024 scores ran 6x
      slower than the float one), the matmuls of two activations (q·kᵀ, weights·v) and
      the reshapes/transposes/scale/bias between them and the q/k/v projections. The
      projections themselves (constant weights) are quantized.
    - convolutions with fewer than ``MIN_INT8_CONV_CHANNELS`` output channels (the
      full-resolution RGB output conv: no faster in int8, and its error lands directly
      in the image), and the ``Concat``/``Resize`` that only feed float nodes.
    """
    graph = proto.graph
    constants = _initializer_names(proto) | {o for n in graph.node if n.op_type == "Constant" for o in n.output}
    inits = {i.name: i for i in graph.initializer}
    producer = {o: n for n in graph.node for o in n.output}
    consumers: dict[str, list] = {}
    for n in graph.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    keep: set[str] = set()
    for node in graph.node:
        if node.op_type == "Softmax":
            keep.add(node.name)
        elif node.op_type == "MatMul" and not any(i in constants for i in node.input):
            keep.add(node.name)
            stack = list(node.input)
            while stack:
                p = producer.get(stack.pop())
                if p is not None and p.op_type in _ATTENTION_GLUE and p.name not in keep:
                    keep.add(p.name)
                    stack.extend(p.input)
        elif (
            node.op_type == "Conv" and node.input[1] in inits and inits[node.input[1]].dims[0] < MIN_INT8_CONV_CHANNELS
        ):
            keep.add(node.name)
    for node in reversed(graph.node):  # movement ops whose every consumer stays float
        users = [c for o in node.output for c in consumers.get(o, [])]
        if node.op_type in _DATA_MOVEMENT and users and all(c.name in keep for c in users):
            keep.add(node.name)
    return [n.name for n in graph.node if n.name in keep]


class _Feeds:
    """``onnxruntime.quantization.CalibrationDataReader`` over a list of feed dicts."""

    def __init__(self, feeds: list[dict[str, np.ndarray]]) -> None:
        self._feeds = feeds
        self._it = iter(feeds)

    def get_next(self):
        return next(self._it, None)

    def rewind(self) -> None:
        self._it = iter(self._feeds)

    def __len__(self) -> int:
        return len(self._feeds)


class _quiet:
    """Silence the quantizer's root-logger warnings (advice to pre-process), the
    percentile calibrator's prints and ORT's native warnings about initializers that
    are graph inputs (they are meant to be)."""

    def __enter__(self):
        import contextlib
        import io
        import logging

        import onnxruntime as ort

        self._disabled = logging.root.manager.disable
        logging.disable(logging.WARNING)
        ort.set_default_logger_severity(3)
        self._stdout = contextlib.redirect_stdout(io.StringIO())
        self._stdout.__enter__()
        return self

    def __exit__(self, *exc):
        import logging

        import onnxruntime as ort

        self._stdout.__exit__(*exc)
        logging.disable(self._disabled)
        ort.set_default_logger_severity(2)
        return False


def _weight_only_int8(proto, nodes: set[str], keep: set[str], min_elements: int = 1024) -> int:
    """Store the large constant MatMul weights of the float ``nodes`` as int8 (symmetric,
    per output channel) behind a ``DequantizeLinear``: their activations stay float, the
    file shrinks. Returns how many weights were converted."""
    from onnx import helper, numpy_helper

    inits = {i.name: i for i in proto.graph.initializer}
    new_nodes, done = [], 0
    for node in proto.graph.node:
        if node.name in nodes and node.op_type == "MatMul" and len(node.input) == 2:
            name = node.input[1]
            init = inits.get(name)
            if init is None or name in keep or init.data_type != onnx_float():
                continue
            w = numpy_helper.to_array(init)
            if w.ndim != 2 or w.size < min_elements:
                continue
            scale = (np.abs(w).max(axis=0) / 127.0).astype(np.float32)
            scale[scale == 0] = 1.0
            q = np.clip(np.rint(w / scale), -127, 127).astype(np.int8)
            proto.graph.initializer.remove(init)
            proto.graph.initializer.extend(
                [
                    numpy_helper.from_array(q, f"{name}_q8"),
                    numpy_helper.from_array(scale, f"{name}_q8_scale"),
                ]
            )
            new_nodes.append(
                helper.make_node(
                    "DequantizeLinear", [f"{name}_q8", f"{name}_q8_scale"], [name], name=f"{name}_q8_dq", axis=1
                )
            )
            done += 1
    # DequantizeLinear nodes have only initializer inputs: prepending keeps topological order
    for i, n in enumerate(new_nodes):
        proto.graph.node.insert(i, n)
    return done


def _compact(proto, keep: set[str]) -> None:
    """Drop what ORT does not need from a quantized model: the value_info shape
    annotations, and the long names the quantizer gives its tensors and nodes
    (``model.generator.down1.conv.weight_DequantizeLinear_Output`` becomes ``t17``). The
    graph's inputs, outputs and the ``keep`` names are left as they are."""
    graph = proto.graph
    del graph.value_info[:]
    fixed = {i.name for i in graph.input} | {o.name for o in graph.output} | set(keep) | {""}
    rename: dict[str, str] = {}

    def short(name: str) -> str:
        if name in fixed:
            return name
        if name not in rename:
            rename[name] = f"t{len(rename)}"
        return rename[name]

    for init in graph.initializer:
        init.name = short(init.name)
    for i, node in enumerate(graph.node):
        node.name = f"n{i}"
        node.input[:] = [short(x) for x in node.input]
        node.output[:] = [short(x) for x in node.output]
        node.doc_string = ""


CALIBRATION_METHODS = ("percentile", "minmax")


def quantize_int8(
    proto, calibration: list[dict[str, np.ndarray]], *, float_inputs: list[str] = (), method: str = "percentile"
):
    """Static QDQ int8 of an exported model; returns the quantized ``ModelProto``.

    Weights int8 symmetric per output channel, activations uint8 (asymmetric, ranges
    observed on ``calibration``, a list of feed dicts: ``percentile`` clips each range
    to its 99.999th percentile, ``minmax`` keeps the extremes; percentile was 1-2 dB
    closer to fp32 on the small generator, at 5-9x the calibration time). ``float_inputs`` (the
    separate mode's concept inputs) stay overridable float inputs: every node that
    consumes them is excluded from quantization (:func:`concept_nodes`); so are the
    nodes int8 would slow down (:func:`float_nodes`). Raises
    :class:`QuantizationError` if an input lost its initializer or stopped being an input.
    """
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    if method not in CALIBRATION_METHODS:
        raise ValueError(f"calibration method must be one of {list(CALIBRATION_METHODS)}, got {method!r}")
    float_inputs = list(float_inputs)
    lora = concept_nodes(proto, float_inputs) if float_inputs else []
    exclude = list(dict.fromkeys(lora + float_nodes(proto)))
    with tempfile.TemporaryDirectory() as tmp, _quiet():
        # from a file: given a ModelProto, the quantizer moves its weights to external data in place
        src, out = Path(tmp) / "fp32.onnx", Path(tmp) / "int8.onnx"
        src.write_bytes(proto.SerializeToString())
        quantize_static(
            src,
            out,
            _Feeds(calibration),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            reduce_range=False,
            nodes_to_exclude=exclude,
            calibrate_method=CalibrationMethod.Percentile if method == "percentile" else CalibrationMethod.MinMax,
        )
        quantized = onnx.load(str(out))
    _weight_only_int8(quantized, set(lora), set(float_inputs))
    _compact(quantized, set(float_inputs))
    check_float_inputs(quantized, float_inputs)
    onnx.checker.check_model(quantized)
    return quantized


def check_float_inputs(proto, names: list[str], dtype: str = "float32") -> None:
    """Every concept input must still be a float graph input (``dtype``: ``float32``, or
    ``float16`` after :func:`half_concept_inputs`) with a same-named initializer of that
    type, consumed by float nodes only (never by a QuantizeLinear)."""
    from onnx import TensorProto

    inputs = {i.name: i for i in proto.graph.input}
    inits = {i.name: i for i in proto.graph.initializer}
    float_type = {"float32": TensorProto.FLOAT, "float16": TensorProto.FLOAT16}[dtype]
    for name in names:
        if name not in inputs or inputs[name].type.tensor_type.elem_type != float_type:
            raise QuantizationError(
                f"int8 ONNX: concept input {name!r} is no longer a {dtype} graph input; "
                "its adapters could not apply. Nothing was written."
            )
        if name not in inits or inits[name].data_type != float_type:
            raise QuantizationError(
                f"int8 ONNX: concept input {name!r} lost its {dtype} default initializer. Nothing was written."
            )
        quantizers = [
            n.name for n in proto.graph.node if name in n.input and n.op_type in ("QuantizeLinear", "DequantizeLinear")
        ]
        if quantizers:
            raise QuantizationError(
                f"int8 ONNX: concept input {name!r} is quantized by {quantizers}. Nothing was written."
            )


def half_concept_inputs(proto, names: list[str]) -> None:
    """Store every concept input as float16: the graph input, its zero default and so
    every adapter (half the bytes), with one ``Cast`` to float per input where the graph
    reads it. Used for int8, where the LoRA weights' rounding to fp16 is far below the
    int8 activations' error; ORT never constant-folds the cast of an overridable input."""
    from onnx import TensorProto, helper, numpy_helper

    names = list(names)
    wanted = set(names)
    rename = {n: f"{n}.f32" for n in names}
    for node in proto.graph.node:
        node.input[:] = [rename.get(i, i) for i in node.input]
    for inp in proto.graph.input:
        if inp.name in wanted:
            inp.type.tensor_type.elem_type = TensorProto.FLOAT16
    for init in proto.graph.initializer:
        if init.name in wanted:
            init.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(init).astype(np.float16), init.name))
    # the casts read graph inputs only: prepending keeps topological order
    for i, name in enumerate(names):
        proto.graph.node.insert(
            i, helper.make_node("Cast", [name], [rename[name]], name=f"{name}.cast", to=TensorProto.FLOAT)
        )
