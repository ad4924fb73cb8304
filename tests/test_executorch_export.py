"""ExecuTorch target: .pte with one XNNPACK-delegated method per concept, and its backend.

The default run lowers ONE separate-mode program (tiny generator, two concepts) and
checks everything against it; merged mode, the 1-vs-K size measurement and the shared
``.ptd`` layout each need more lowerings and are marked ``slow``.
"""

from __future__ import annotations

import copy
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from helpers import backend_manifest

torch = pytest.importorskip("torch")
pytest.importorskip("executorch.runtime")

from safetensors.torch import save as save_safetensors  # noqa: E402

torch.set_num_threads(1)

THRESHOLD_DB = 35.0
CONCEPTS = ("alpha", "beta-2")
HEAVY = ("convolution", "linear", "addmm", "mm", "bmm", "matmul", "baddbmm")


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean(((a.astype(np.float64) - b.astype(np.float64)) / 2.0) ** 2))
    return float("inf") if mse == 0 else 10.0 * np.log10(1.0 / mse)


def _make_bundle(names=CONCEPTS, seed: int = 0):
    """A tiny bundle: random base, concepts with different ranks and nonzero LoRA B."""
    from pocketgan.bundle import Bundle
    from pocketgan.concepts import Concept, inject_lora, lora_state_dict
    from pocketgan.models import build_generator

    torch.manual_seed(seed)
    generator = build_generator("tiny").eval()
    targets = generator.lora_target_modules()
    cfg = generator.config
    concepts = []
    for i, name in enumerate(names):
        ranks = {layer: 1 + (i * (j % 2)) for j, layer in enumerate(targets)}  # concept i: ranks 1 or 1+i
        adapted = inject_lora(copy.deepcopy(generator), ranks)
        g = torch.Generator().manual_seed(seed + 10 + i)
        with torch.no_grad():
            for pname, p in adapted.named_parameters():
                if "lora_B" in pname:
                    p.copy_(torch.randn(p.shape, generator=g) * 0.05)
        tokens = torch.randn(cfg.token_count, cfg.token_dim, generator=g)
        concepts.append(Concept(name, lora_state_dict(adapted), tokens, description=f"test {name}", teacher="random"))
    return Bundle.from_parts("tiny", generator, concepts)


def _staging(path: Path, bundle) -> Path:
    from pocketgan.bundle import BASE_WEIGHTS

    (path / "base").mkdir(parents=True, exist_ok=True)
    (path / BASE_WEIGHTS).write_bytes(save_safetensors({k: v.contiguous() for k, v in bundle.base_state.items()}))
    return path


def _manifest(bundle_dir: Path, bundle, entry: dict) -> dict:
    return backend_manifest(bundle_dir, bundle, "executorch", entry)


def _photos():
    from pocketgan.photos import sample_photo_paths

    return sample_photo_paths()


@pytest.fixture(scope="module")
def bundle():
    return _make_bundle()


@pytest.fixture(scope="module")
def exported(tmp_path_factory, bundle):
    """(staging dir, targets.executorch entry) of the separate-mode export."""
    from pocketgan.export.executorch_target import write_executorch_target

    staging = _staging(tmp_path_factory.mktemp("et") / "bundle", bundle)
    entry = write_executorch_target(
        bundle, staging, concept_mode="separate", photos=_photos(), threshold_db=THRESHOLD_DB
    )
    return staging, entry


@pytest.fixture(scope="module")
def inputs(bundle):
    from pocketgan.export.parity import parity_inputs

    return parity_inputs(_photos(), bundle.config.image_size)


def _load_program(path: Path):
    from executorch.runtime import Runtime

    return Runtime.get().load_program(path.read_bytes())


# --- the export -----------------------------------------------------------------------------


def test_entry_fields(exported, bundle):
    staging, entry = exported
    from pocketgan.runtime.manifest import sha256_file

    assert entry["precision"] == "fp32" and entry["concept_mode"] == "separate"
    assert entry["source_base_sha256"] == sha256_file(staging / "base/generator.safetensors")
    assert entry["program"] == "executorch/generator.pte" and (staging / entry["program"]).is_file()
    assert "merged_program" not in entry and "external_data" not in entry
    assert sorted(entry["parity"]["photos"]) == sorted(p.name for p in _photos())
    json.dumps(entry)  # JSON-serialisable as it is


def test_methods_are_named_after_concepts(exported, bundle):
    staging, entry = exported
    assert entry["methods"] == {n: n for n in bundle.concept_names}
    program = _load_program(staging / entry["program"])
    assert program.method_names == set(bundle.concept_names)


def test_every_method_matches_pytorch_on_photos(exported, bundle, inputs):
    staging, entry = exported
    recorded = entry["parity"]["psnr_db"]["separate"]
    assert set(recorded) == set(bundle.concept_names)
    assert all(db >= THRESHOLD_DB for db in recorded.values()), recorded
    # independent of the exporter's own gate: run each method, compare with PyTorch
    program = _load_program(staging / entry["program"])
    for name in bundle.concept_names:
        method = program.load_method(entry["methods"][name])
        model = bundle.model_for(name, "separate")
        for x in inputs:
            got = method.execute([torch.from_numpy(x)])[0].numpy()
            with torch.no_grad():
                want = model(torch.from_numpy(x)).numpy()
            assert _psnr(want, got) >= THRESHOLD_DB, name


def test_heavy_ops_are_delegated(exported):
    _, entry = exported
    d = entry["delegation"]["separate"]
    assert d["backend"] == "XnnpackBackend"
    # the generator is built from ops XNNPACK has (bilinear resize, plain-op layer norm,
    # 3-D bmm attention): the whole method is one delegated subgraph, nothing portable
    assert d["delegated_subgraphs"] == 1, d
    assert d["non_delegated_ops"] == 0 and d["non_delegated"] == {}, d["non_delegated"]
    assert d["delegated_ops"] > 50


def test_identity_muls_are_dropped(bundle):
    """PEFT's LoRA scaling (1.0 here) is not exported as a multiplication; other scalar
    multiplications (the attention scale) and a graph output computed as ``x * 1`` stay."""
    from pocketgan.export.executorch_target import MUL_OPS, drop_identity_muls, export_aten

    def scalar_muls(ep):
        return [
            n.args[1]
            for n in ep.graph.nodes
            if n.op == "call_function" and n.target in MUL_OPS and not isinstance(n.args[1], torch.fx.Node)
        ]

    model = bundle.model_for(CONCEPTS[0], "separate")
    example = bundle.example_inputs()
    raw = torch.export.export(model, example, strict=False)
    assert scalar_muls(raw).count(1.0) >= len(bundle.rank_pattern)  # one per LoRA layer before
    ep = export_aten(model, example)
    assert 1.0 not in scalar_muls(ep) and scalar_muls(ep)  # the attention scale stays
    with torch.no_grad():
        np.testing.assert_array_equal(ep.module()(*example).numpy(), model(*example).numpy())

    class Tail(torch.nn.Module):
        def forward(self, x):
            return (x + 1) * 1.0

    tail = drop_identity_muls(torch.export.export(Tail(), (torch.ones(2),)))
    assert scalar_muls(tail) == [1.0]  # a graph output is left alone


def test_check_delegation_rejects_undelegated_heavy_ops():
    from pocketgan.export.executorch_delegation import DelegationError, check_delegation

    ok = {"non_delegated": {"aten.native_layer_norm.default": 3}, "_delegated": {"aten.convolution.default": 9}}
    check_delegation(ok, "ok")
    for op in (
        "aten.convolution.default",
        "aten.linear.default",
        "aten.addmm.default",
        "aten.bmm.default",
        "aten.mm.default",
    ):
        with pytest.raises(DelegationError, match="not delegated"):
            check_delegation({"non_delegated": {op: 1}, "_delegated": {"aten.convolution.default": 1}}, "bad")
    with pytest.raises(DelegationError, match="no convolution"):
        check_delegation({"non_delegated": {}, "_delegated": {"aten.relu.default": 1}}, "none")


def test_base_weights_are_stored_once(exported, bundle):
    """K methods share the base: the program is far below K copies of the base weights."""
    staging, entry = exported
    base_bytes = sum(t.numel() * 4 for t in bundle.base_state.values())
    pte_bytes = (staging / entry["program"]).stat().st_size
    k = len(bundle.concept_names)
    assert k >= 2
    assert pte_bytes < 1.5 * base_bytes, (pte_bytes, base_bytes)  # duplicated: >= k * base_bytes


def test_parity_failure_writes_nothing(tmp_path, bundle, exported, monkeypatch):
    """A program that differs from PyTorch fails the export before any file is written."""
    from pocketgan.export import executorch_target as et
    from pocketgan.export.parity import ParityError

    staging, entry = exported
    pte = (staging / entry["program"]).read_bytes()
    monkeypatch.setattr(
        et,
        "build_program",
        lambda b, mode, names, progress=None, **_: (
            pte,
            entry["delegation"]["separate"],
            {n: b.model_for(n, mode) for n in names},
        ),
    )
    real_run = et.run_methods
    monkeypatch.setattr(
        et, "run_methods", lambda *a, **k: {m: [y + 0.2 for y in ys] for m, ys in real_run(*a, **k).items()}
    )
    fresh = _staging(tmp_path / "b", bundle)
    with pytest.raises(ParityError, match="below the 35.0 dB gate"):
        et.write_executorch_target(bundle, fresh, concept_mode="separate", photos=_photos(), threshold_db=THRESHOLD_DB)
    assert not (fresh / "executorch").exists() or not any((fresh / "executorch").rglob("*.pte"))


def test_bad_arguments(bundle, tmp_path):
    from pocketgan.export.executorch_target import write_executorch_target

    with pytest.raises(ValueError, match="concept_mode"):
        write_executorch_target(bundle, tmp_path, concept_mode="fused", photos=_photos(), threshold_db=35.0)
    with pytest.raises(ValueError, match="layout"):
        write_executorch_target(
            bundle, tmp_path, concept_mode="separate", photos=_photos(), threshold_db=35.0, layout="pte"
        )
    with pytest.raises(ValueError, match="separate"):
        write_executorch_target(
            bundle, tmp_path, concept_mode="merged", photos=_photos(), threshold_db=35.0, layout="ptd"
        )


# --- the backend ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def backend(exported, bundle):
    from pocketgan.runtime.backends.executorch import ExecuTorchBackend

    staging, entry = exported
    return ExecuTorchBackend(staging, _manifest(staging, bundle, entry), threads=1, concept_mode="auto")


def test_backend_runs_every_concept(backend, bundle, inputs):
    assert backend.name == "executorch" and backend.concept_mode == "separate"
    outs = {}
    for name in bundle.concept_names:
        backend.activate(name)
        y = backend.run(inputs[0], name)
        assert isinstance(y, np.ndarray) and y.dtype == np.float32 and y.shape == inputs[0].shape
        with torch.no_grad():
            want = bundle.model_for(name, "separate")(torch.from_numpy(inputs[0])).numpy()
        assert _psnr(want, y) >= THRESHOLD_DB
        outs[name] = y
    a, b = (outs[n] for n in bundle.concept_names[:2])
    assert np.abs(a - b).max() > 1e-3, "different concepts must give different outputs"
    # swapping back gives the same result (methods keep no state between runs)
    np.testing.assert_array_equal(backend.run(inputs[0], bundle.concept_names[0]), a)


def test_backend_unknown_concept(backend):
    from pocketgan.runtime.errors import BundleError

    with pytest.raises(BundleError, match="no ExecuTorch method"):
        backend.activate("nope")


def test_corrupted_program_is_rejected(tmp_path, exported, bundle):
    from pocketgan.runtime.backends.executorch import ExecuTorchBackend
    from pocketgan.runtime.errors import ChecksumError

    staging, entry = exported
    manifest = _manifest(staging, bundle, entry)
    copy_dir = tmp_path / "copy"
    shutil.copytree(staging, copy_dir)
    pte = copy_dir / entry["program"]
    data = bytearray(pte.read_bytes())
    data[len(data) // 2] ^= 0xFF
    pte.write_bytes(bytes(data))
    with pytest.raises(ChecksumError, match="generator.pte"):
        ExecuTorchBackend(copy_dir, manifest, threads=1, concept_mode="auto")


def test_backend_reports_missing_target_and_mode(exported, bundle):
    from pocketgan.runtime.backends.executorch import ExecuTorchBackend
    from pocketgan.runtime.errors import TargetNotFoundError

    staging, entry = exported
    manifest = _manifest(staging, bundle, entry)
    with pytest.raises(TargetNotFoundError, match="merged"):
        ExecuTorchBackend(staging, manifest, threads=None, concept_mode="merged")
    del manifest["targets"]["executorch"]
    with pytest.raises(TargetNotFoundError, match="--targets executorch"):
        ExecuTorchBackend(staging, manifest, threads=None, concept_mode="auto")


def test_backend_without_executorch(monkeypatch, exported, bundle):
    from pocketgan.runtime.backends.executorch import ExecuTorchBackend
    from pocketgan.runtime.errors import BackendUnavailableError

    staging, entry = exported
    monkeypatch.setitem(sys.modules, "executorch.runtime", None)  # import fails as if not installed
    with pytest.raises(BackendUnavailableError, match="pip install"):
        ExecuTorchBackend(staging, _manifest(staging, bundle, entry), threads=None, concept_mode="auto")


def test_runtime_import_stays_torch_free():
    code = (
        "import sys, pocketgan.runtime, pocketgan.runtime.backends.executorch\n"
        "assert 'torch' not in sys.modules and 'executorch' not in sys.modules, 'imported eagerly'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_save_bundle_and_runtime(tmp_path, exported, bundle):
    """The target as a save_bundle writer: the manifest validates and the runtime opens it.

    Skipped until the schema has ``targets.executorch`` and ``create_backend`` knows it.
    """
    from pocketgan.bundle import save_bundle
    from pocketgan.runtime.manifest import manifest_schema, sha256_file

    if "executorch" not in manifest_schema()["properties"]["targets"]["properties"]:
        pytest.skip("manifest.schema.json has no targets.executorch yet")
    staging, entry = exported

    def writer(dest: Path) -> dict:  # reuse the fixture's files instead of lowering again
        shutil.copytree(staging / "executorch", dest / "executorch")
        return dict(entry, source_base_sha256=sha256_file(dest / "base/generator.safetensors"))

    manifest = save_bundle(bundle, tmp_path / "out", {"executorch": writer})
    assert manifest["targets"]["executorch"]["program"] in manifest["artifacts"]
    from pocketgan.runtime import open_bundle
    from pocketgan.runtime.errors import BackendUnavailableError

    try:
        rt = open_bundle(tmp_path / "out", backend="executorch", threads=1)
    except BackendUnavailableError as e:
        pytest.skip(f"create_backend does not know executorch yet: {e}")
    x = np.zeros((1, 3, bundle.config.image_size, bundle.config.image_size), np.float32)
    outs = [rt.run_tensor(x, concept=n) for n in bundle.concept_names]
    assert np.abs(outs[0] - outs[1]).max() > 1e-3


# --- slow: more lowerings ----------------------------------------------------------------------


@pytest.mark.slow
def test_merged_program(tmp_path, bundle, exported):
    from pocketgan.export.executorch_target import write_executorch_target
    from pocketgan.runtime.backends.executorch import ExecuTorchBackend

    staging = _staging(tmp_path / "merged", bundle)
    entry = write_executorch_target(bundle, staging, concept_mode="merged", photos=_photos(), threshold_db=THRESHOLD_DB)
    assert entry["merged_program"] == "executorch/merged.pte" and "program" not in entry
    assert all(db >= THRESHOLD_DB for db in entry["parity"]["psnr_db"]["merged"].values())
    d = entry["delegation"]["merged"]
    assert not [op for op in d["non_delegated"] if op.split(".")[1] in HEAVY]
    assert _load_program(staging / entry["merged_program"]).method_names == set(bundle.concept_names)
    # merged weights differ per concept: bigger than the separate program
    assert (staging / entry["merged_program"]).stat().st_size > (exported[0] / exported[1]["program"]).stat().st_size
    backend = ExecuTorchBackend(staging, _manifest(staging, bundle, entry), threads=1, concept_mode="auto")
    assert backend.concept_mode == "merged"
    x = np.zeros((1, 3, 256, 256), np.float32)
    assert np.abs(backend.run(x, CONCEPTS[0]) - backend.run(x, CONCEPTS[1])).max() > 1e-3


@pytest.mark.slow
def test_one_method_vs_k_methods_size(bundle, exported):
    """Measured dedup: adding concepts to a separate-mode program adds far less than a base."""
    from pocketgan.export.executorch_target import build_program

    staging, entry = exported
    single, _, _ = build_program(bundle, "separate", bundle.concept_names[:1])
    k = len(bundle.concept_names)
    multi = (staging / entry["program"]).stat().st_size
    base_bytes = sum(t.numel() * 4 for t in bundle.base_state.values())
    assert multi < 0.75 * k * len(single)
    assert multi - len(single) < 0.5 * base_bytes * (k - 1)


@pytest.mark.slow
def test_external_data_layout(tmp_path, bundle, inputs):
    from pocketgan.export.executorch_target import write_executorch_target
    from pocketgan.runtime.backends.executorch import ExecuTorchBackend

    staging = _staging(tmp_path / "ptd", bundle)
    entry = write_executorch_target(
        bundle, staging, concept_mode="separate", photos=_photos(), threshold_db=THRESHOLD_DB, layout="ptd"
    )
    assert "program" not in entry and "methods" not in entry
    ext = entry["external_data"]
    base_bytes = sum(t.numel() * 4 for t in bundle.base_state.values())
    assert (staging / ext["data"]).stat().st_size >= base_bytes * 0.9
    for name, rel in ext["programs"].items():
        assert (staging / rel).stat().st_size < 0.5 * base_bytes, name  # the base is not inside
    assert all(db >= THRESHOLD_DB for db in entry["parity"]["psnr_db"]["separate_ptd"].values())
    manifest = _manifest(staging, bundle, entry)
    backend = ExecuTorchBackend(staging, manifest, threads=1, concept_mode="separate")
    for name in bundle.concept_names:
        with torch.no_grad():
            want = bundle.model_for(name, "separate")(torch.from_numpy(inputs[0])).numpy()
        assert _psnr(want, backend.run(inputs[0], name)) >= THRESHOLD_DB
    # a concept program without its base .ptd does not load
    from executorch.runtime import Runtime

    with pytest.raises(RuntimeError):
        Runtime.get().load_program((staging / ext["programs"][CONCEPTS[0]]).read_bytes()).load_method("forward")
