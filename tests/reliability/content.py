"""Artifact content mutations, plain (the checksum must catch them) and re-hashed (the
manifest's sha256 and size rewritten to agree, so only semantic validation can).

Re-hashed mutations that make a bundle invalid by construction: truncated or emptied
files; ``.onnx_adapter`` files, written with onnxruntime's ``AdapterFormat``, whose tensors
no longer match ``concept_inputs`` (dropped, renamed, reshaped, retyped, extra, none);
ONNX models whose inputs or outputs no longer match ``io``; ``.pte`` programs with a broken
magic or header, a renamed method, or cut short. Random re-hashed bit flips and appended
bytes are ``either``: a flip in weight data is just another weight, so the mutator cannot
tell; they still must never crash, hang or raise an untyped error.
"""

from __future__ import annotations

import io
import random
import struct
import tempfile
from pathlib import Path

import numpy as np

from .cases import ACCEPT, EITHER, REJECT, Case, Source


def _raw_op(data: bytes, op: str, rng: random.Random) -> bytes:
    if op == "truncate":
        return data[: rng.randrange(len(data))]
    if op == "empty":
        return b""
    if op == "append":
        return data + bytes(rng.getrandbits(8) for _ in range(rng.randrange(1, 64)))
    flipped = bytearray(data)
    for _ in range(rng.choice([1, 1, 2, 8])):
        flipped[rng.randrange(len(flipped))] ^= 1 << rng.randrange(8)
    return bytes(flipped)


def plain(src: Source, rng: random.Random) -> Case:
    """Truncated, bit-flipped, emptied or extended file, manifest untouched: a checksum error."""
    rel = rng.choice(src.used + src.artifacts)
    op = rng.choice(["truncate", "bitflip", "empty", "append"])
    case = Case("content.plain", expect=REJECT if rel in src.used else EITHER)
    case.put(src, rel, _raw_op((src.path / rel).read_bytes(), op, rng), rehash=False)
    case.detail = f"{op} {rel}"
    return case


def rehashed(src: Source, rng: random.Random) -> Case:
    """The same damage to a file the backend reads, with its checksum rewritten to agree."""
    rel = rng.choice(src.used)
    op = rng.choice(["truncate", "empty", "bitflip", "append"])
    case = Case("content.rehashed")
    case.put(src, rel, _raw_op((src.path / rel).read_bytes(), op, rng), rehash=True)
    if op in ("bitflip", "append"):
        case.expect, case.static = EITHER, False
    else:
        # adapters and stage weights are checked without a model; models and programs need loading
        case.static = rel.endswith(".onnx_adapter") or rel.startswith("upsampler/")
    case.detail = f"{op} {rel} (re-hashed)"
    return case


def read_adapter(path: Path) -> dict[str, np.ndarray]:
    import onnxruntime as ort

    fmt = ort.AdapterFormat.read_adapter(str(path))
    # copy: numpy() views memory the AdapterFormat owns and frees with it
    return {k: np.array(v.numpy(), copy=True) for k, v in fmt.get_parameters().items()}


def adapter_bytes(params: dict[str, np.ndarray]) -> bytes:
    """A valid ``.onnx_adapter`` file holding ``params`` (name -> array), via AdapterFormat."""
    import onnxruntime as ort

    fmt = ort.AdapterFormat()
    fmt.set_adapter_version(1)
    fmt.set_model_version(1)
    fmt.set_parameters({k: ort.OrtValue.ortvalue_from_numpy(np.ascontiguousarray(v)) for k, v in params.items()})
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "a.onnx_adapter"
        fmt.export_adapter(str(out))
        return out.read_bytes()


def _adapter_edit(params: dict, op: str, rng: random.Random) -> tuple[dict, str]:
    names = sorted(params)
    name = rng.choice(names)
    if op == "drop":
        del params[name]
    elif op == "drop_all":
        params.clear()
    elif op == "rename":
        params[name + "_"] = params.pop(name)
    elif op == "reshape":
        params[name] = params[name].reshape(-1) if params[name].ndim > 1 else params[name].reshape(1, -1)
    elif op == "grow":
        params[name] = np.concatenate([params[name], params[name]], axis=0)
    elif op == "retype":
        dtype = rng.choice([np.float16, np.float64, np.int32, np.int8])
        params[name] = params[name].astype(dtype)
    elif op == "extra":
        params["extra.lora_A.weight"] = np.zeros((1, 8), np.float32)
    elif op == "perturb":  # valid: other weights of the same shapes
        params[name] = params[name] + np.float32(rng.uniform(-0.1, 0.1))
    elif op == "reorder":  # valid: the same tensors in another order
        params = {k: params[k] for k in rng.sample(names, len(names))}
    return params, name


def adapter(src: Source, rng: random.Random) -> Case:
    """A well-formed .onnx_adapter whose tensors disagree with concept_inputs (re-hashed)."""
    concept = rng.choice(src.concepts)
    rel = src.fresh()["targets"]["onnx"]["adapters"][concept]
    op = rng.choice(["drop", "drop_all", "rename", "reshape", "grow", "retype", "extra", "perturb", "reorder"])
    params, name = _adapter_edit(read_adapter(src.path / rel), op, rng)
    case = Case("content.adapter", concept=concept, expect=REJECT if src.name == "onnx" else EITHER)
    if op in ("perturb", "reorder"):
        case.cls, case.expect, case.same_output = "valid.adapter", ACCEPT, op == "reorder"
    case.put(src, rel, adapter_bytes(params), rehash=True)
    case.detail = f"{op} {name} in {rel} (re-hashed)"
    return case


def adapter_dtype(src: Source, rng: random.Random) -> Case:
    """Adapters and concept_input_dtype agree on float16, but the model's inputs are float32."""
    case = Case("content.adapter_fp16", static=False, expect=REJECT if src.name == "onnx" else EITHER)
    target = case.m(src)["targets"]["onnx"]
    target["concept_input_dtype"] = "float16"
    for rel in target["adapters"].values():
        params = {k: v.astype(np.float16) for k, v in read_adapter(src.path / rel).items()}
        case.put(src, rel, adapter_bytes(params), rehash=True)
    case.detail = "every adapter float16 and concept_input_dtype float16; the model takes float32 (re-hashed)"
    return case


def onnx_model(src: Source, rng: random.Random) -> Case:
    """The ONNX model's own inputs/outputs no longer match io or concept_inputs (re-hashed)."""
    import onnx

    rel = src.fresh()["targets"]["onnx"]["model"]
    model = onnx.load_from_string((src.path / rel).read_bytes())
    graph = model.graph
    op = rng.choice(["input_name", "output_name", "input_dim", "output_dim", "input_type", "concept_input"])
    if op == "input_name":
        graph.input[0].name = "img"
        for node in graph.node:
            node.input[:] = ["img" if n == "image" else n for n in node.input]
    elif op == "output_name":
        old = graph.output[0].name
        graph.output[0].name = "out"
        for node in graph.node:
            node.output[:] = ["out" if n == old else n for n in node.output]
    elif op in ("input_dim", "output_dim"):
        value = graph.input[0] if op == "input_dim" else graph.output[0]
        value.type.tensor_type.shape.dim[rng.choice([2, 3])].dim_value = rng.choice([128, 255, 512])
    elif op == "input_type":
        graph.input[0].type.tensor_type.elem_type = onnx.TensorProto.FLOAT16
    else:  # a concept tensor becomes a constant: an adapter can no longer set it
        i = rng.randrange(1, len(graph.input))
        case_detail = graph.input[i].name
        del graph.input[i]
        op += f" ({case_detail})"
    buf = io.BytesIO()
    onnx.save_model(model, buf)
    case = Case("content.onnx_model", static=False, expect=REJECT if src.name == "onnx" else EITHER)
    case.put(src, rel, buf.getvalue(), rehash=True)
    case.detail = f"{op} in {rel} (re-hashed)"
    return case


def pte(src: Source, rng: random.Random) -> Case:
    """A .pte with a broken magic or header, a renamed method or cut short (re-hashed);
    random flips in the program or its delegate segments are ``either``."""
    rel = src.fresh()["targets"]["executorch"]["program"]
    data = bytearray((src.path / rel).read_bytes())
    _, program_size, segment_base, _ = struct.unpack_from("<IQQQ", data, 12)
    op = rng.choice(["magic", "header", "method", "truncate", "truncate_segment", "flip_program", "flip_segment"])
    case = Case("content.pte", static=False)
    if op == "magic":
        data[rng.randrange(4, 8)] ^= 1 << rng.randrange(8)
    elif op == "header":
        at = rng.choice([16, 24, 32])  # program_size, segment_base_offset, segment_data_size
        struct.pack_into("<Q", data, at, rng.choice([0, 1, 2**40, len(data) + 8]))
        case.expect = REJECT if at != 32 else EITHER  # a reader may ignore the data size
        op += f"@{at}"
    elif op == "method":
        name = rng.choice(src.concepts).encode()
        at = data.find(name, 0, program_size)
        data[at] = ord("X") if data[at] != ord("X") else ord("Y")
        op += f" {name.decode()}"
    elif op == "truncate":
        data = data[: rng.randrange(len(data))]
    elif op == "truncate_segment":
        data = data[: rng.randrange(segment_base, len(data))]
    else:
        lo, hi = (8, program_size) if op == "flip_program" else (segment_base, len(data))
        data[rng.randrange(lo, hi)] ^= 1 << rng.randrange(8)
        case.expect = EITHER
    case.put(src, rel, bytes(data), rehash=True)
    case.detail = f"{op} in {rel} (re-hashed)"
    return case


def _upsampler_edit(tensors: dict[str, np.ndarray], rng: random.Random) -> tuple[dict, str]:
    name = rng.choice(sorted(tensors))
    op = rng.choice(["drop", "extra", "reshape", "nan", "inf", "eps"])
    out = dict(tensors)
    if op == "drop":
        del out[name]
    elif op == "extra":
        out["mlp.3.weight"] = np.zeros((3, 3), np.float32)
    elif op == "reshape":
        out[name] = np.zeros(tensors[name].size + rng.randrange(1, 5), np.float32)
    elif op == "eps":  # exp(log_eps) must stay in (1e-8, 1)
        name, out["log_eps"] = "log_eps", np.array([rng.choice([0.5, 30.0, -40.0])], np.float32)
    else:
        out[name] = tensors[name].copy()
        out[name].flat[rng.randrange(tensors[name].size)] = np.nan if op == "nan" else np.inf
    return out, f"{op} {name}"


def upsampler(src: Source, rng: random.Random) -> Case:
    """A concept's full-resolution stage weights, re-hashed, no longer what ``upsampler`` calls for:
    a tensor dropped, added or reshaped, a non-finite value, an eps out of range, another dtype."""
    from safetensors.numpy import load, save

    case = Case("content.upsampler")
    files = upsampler_files_of(src)
    if not files:  # a bundle made before the stage: nothing to mutate
        return plain(src, rng)
    rel = rng.choice(files)
    tensors = load((src.path / rel).read_bytes())
    if rng.random() < 0.15:
        new, what = {k: v.astype(np.float16) for k, v in tensors.items()}, "float16"
    else:
        new, what = _upsampler_edit(tensors, rng)
    case.put(src, rel, save(new), rehash=True)
    case.detail = f"{rel}: {what} (re-hashed)"
    return case


def upsampler_files_of(src: Source) -> list[str]:
    return [rel for rel in src.used if rel.startswith("upsampler/")]
