"""Short names for a converted Core ML program: ``v0``, ``v1``, ... (the interface names stay).

The converter names every variable after PyTorch parameters and passes; those names were
about a third of each function's program text. :func:`compact_names` renames them after
compression, one-to-one within each function, so the graph is unchanged.
"""

from __future__ import annotations

import sys


def _interface_names(spec) -> set[str]:
    """Names the model description refers to (inputs, outputs, states, predicted features),
    over the single function and every function of a multifunction model."""
    desc = spec.description
    names = {desc.predictedFeatureName, desc.predictedProbabilitiesName}
    for d in [desc, *desc.functions]:
        names |= {f.name for f in (*d.input, *d.output, *d.state)}
        names |= {d.predictedFeatureName, d.predictedProbabilitiesName}
    return names - {""}


def compact_program(program, keep: set[str] = frozenset()) -> dict[str, dict[str, str]]:
    """Rename, in place, every internal variable and op of an ML program (``MIL_pb2.Program``)
    to a short name (``v0``, ``v1``, ... per function), like the ONNX exporter's ``_compact``.

    The converter names variables after PyTorch parameters and passes
    (``p_generator_down2_conv_base_layer_weight_to_fp16_quantized``), and each name is
    stored three times (op output, every argument that reads it, the op's ``name``
    attribute): over a third of the program text (tiny: 72 -> 46 KB). Names are not part of
    the model's interface. Left as they are: function input names, the outputs of each
    function's top-level block, and ``keep`` (what the model description refers to). The
    renaming is one-to-one within a function, applied to every definition (op outputs,
    nested block inputs) and every reference (argument bindings, block outputs), so the
    graph is unchanged; an op's ``name`` attribute becomes its first output's new name.
    Constant values, blob offsets and types are not touched. Returns ``{function: {old: new}}``.
    """
    return {fname: _compact_function(function, keep) for fname, function in program.functions.items()}


def _compact_function(function, keep: set[str]) -> dict[str, str]:
    """:func:`compact_program` on one function (``MIL_pb2.Function``), in place: ``{old: new}``."""
    fixed = set(keep) | {i.name for i in function.inputs}
    for block in function.block_specializations.values():
        fixed |= set(block.outputs)
    rename: dict[str, str] = {}
    counter = iter(range(sys.maxsize))

    def fresh() -> str:
        new = f"v{next(counter)}"
        while new in fixed:
            new = f"v{next(counter)}"
        return new

    def short(name: str) -> str:
        if name in fixed:
            return name
        if name not in rename:
            rename[name] = fresh()
        return rename[name]

    def walk(block) -> None:
        for value in block.inputs:
            value.name = short(value.name)
        for op in block.operations:
            for argument in op.inputs.values():
                for binding in argument.arguments:
                    if binding.WhichOneof("binding") == "name":
                        binding.name = short(binding.name)
            for value in op.outputs:
                value.name = short(value.name)
            for nested in op.blocks:
                walk(nested)
            if "name" in op.attributes:
                strings = op.attributes["name"].immediateValue.tensor.strings.values
                if len(strings) == 1:
                    strings[0] = op.outputs[0].name if len(op.outputs) else fresh()
        block.outputs[:] = [short(n) for n in block.outputs]

    for block in function.block_specializations.values():
        walk(block)
    return rename


def compact_names(mlmodel):
    """:func:`compact_program` on a converted ML program -> a new ``MLModel`` (not loaded)
    over the same weights; the model description is unchanged."""
    import coremltools as ct  # already imported (quietly) by the converter that made ``mlmodel``

    spec = mlmodel.get_spec()
    compact_program(spec.mlProgram, _interface_names(spec))
    return ct.models.MLModel(spec, weights_dir=mlmodel.weights_dir, skip_model_load=True)
