"""Bundles on the torch side: save/load round trip, manifest, rank pattern, atomic writes."""

from __future__ import annotations

import json
import os
import stat

import jsonschema
import pytest
import torch

import pocketgan.atomic as atomic
from helpers import CONCEPT_NAMES, make_concepts, read_manifest, staging_leftovers, tree_digest
from pocketgan.bundle import BASE_WEIGHTS, Bundle, load_bundle, rank_pattern_of, save_bundle
from pocketgan.runtime import UnknownConceptError, load_manifest, verify_bundle
from pocketgan.runtime.manifest import BASE_FORMAT_VERSION, manifest_schema, sha256_file


def test_round_trip(source_bundle, tiny_bundle):
    loaded = load_bundle(source_bundle)
    assert loaded.path == source_bundle
    assert loaded.size == "tiny"
    assert loaded.config == tiny_bundle.config
    assert loaded.concept_names == list(CONCEPT_NAMES)
    assert loaded.rank_pattern == tiny_bundle.rank_pattern
    assert set(loaded.base_state) == set(tiny_bundle.base_state)
    for k, v in tiny_bundle.base_state.items():
        assert torch.equal(loaded.base_state[k], v), k
    for want, got in zip(tiny_bundle.concepts, loaded.concepts, strict=True):
        assert (got.name, got.description, got.teacher, got.training) == (
            want.name,
            want.description,
            want.teacher,
            want.training,
        )
        assert set(got.lora) == set(want.lora)
        assert all(torch.equal(got.lora[k], want.lora[k]) for k in want.lora)
        assert torch.equal(got.tokens, want.tokens)


def test_round_trip_models_agree(source_bundle, tiny_bundle):
    loaded = load_bundle(source_bundle)
    x = torch.rand(1, 3, 64, 64) * 2 - 1
    for name in CONCEPT_NAMES:
        with torch.no_grad():
            assert torch.equal(loaded.model_for(name)(x), tiny_bundle.model_for(name)(x))


def test_manifest_follows_the_schema(source_bundle):
    manifest = read_manifest(source_bundle)
    jsonschema.Draft202012Validator.check_schema(manifest_schema())
    jsonschema.Draft202012Validator(manifest_schema()).validate(manifest)
    assert load_manifest(source_bundle) == manifest
    assert manifest["format"] == "pocketgan-bundle" and manifest["format_version"] == BASE_FORMAT_VERSION  # no neutral
    assert manifest["targets"] == {}
    assert [c["name"] for c in manifest["concepts"]] == list(CONCEPT_NAMES)


def test_manifest_content(source_bundle, tiny_bundle):
    m = read_manifest(source_bundle)
    gen = m["generator"]
    assert gen["size"] == "tiny" and gen["family"] == "e2gan"
    assert gen["config"] == tiny_bundle.config.to_dict()
    assert gen["parameters"] == sum(v.numel() for v in tiny_bundle.base_state.values())
    assert gen["macs"] > gen["parameters"]
    s = tiny_bundle.config.image_size
    assert m["io"]["input"]["shape"] == m["io"]["output"]["shape"] == [1, 3, s, s]
    assert m["base"] == {"weights": BASE_WEIGHTS, "sha256": sha256_file(source_bundle / BASE_WEIGHTS)}
    for entry, c in zip(m["concepts"], tiny_bundle.concepts, strict=True):
        assert entry["ranks"] == c.ranks
        assert entry["parameters"] == c.num_parameters()
        assert entry["training"] == c.training


def test_artifacts_list_every_file_with_its_checksum(source_bundle):
    m = read_manifest(source_bundle)
    on_disk = {k: v for k, v in tree_digest(source_bundle).items() if k != "manifest.json"}
    assert set(m["artifacts"]) == set(on_disk), "every file is listed, nothing extra (no temp files)"
    for rel, entry in m["artifacts"].items():
        assert entry["sha256"] == on_disk[rel]
        assert entry["bytes"] == (source_bundle / rel).stat().st_size
    assert verify_bundle(source_bundle) == m


def test_save_returns_the_written_manifest(tmp_path, tiny_bundle):
    manifest = save_bundle(tiny_bundle, tmp_path / "b")
    assert json.loads(json.dumps(manifest)) == read_manifest(tmp_path / "b")


def test_rank_pattern_is_the_per_layer_max(tiny_bundle, tiny_concepts):
    layers = set(tiny_concepts[0].ranks)
    want = {layer: max(c.ranks[layer] for c in tiny_concepts) for layer in layers}
    assert tiny_bundle.rank_pattern == want == rank_pattern_of(tiny_concepts)
    assert _all_rank_patterns_differ(tiny_concepts), "fixture sanity: concepts have different ranks"
    assert max(want.values()) == 3 and min(want.values()) == 1


def _all_rank_patterns_differ(concepts) -> bool:
    return len({tuple(sorted(c.ranks.items())) for c in concepts}) == len(concepts)


def test_rank_pattern_of_a_single_concept(tiny_concepts):
    assert rank_pattern_of([tiny_concepts[1]]) == tiny_concepts[1].ranks


def test_rank_pattern_rejects_different_layers(tiny_generator, tiny_concepts):
    from pocketgan.concepts import Concept

    c = tiny_concepts[0]
    fewer = {k: v for k, v in c.lora.items() if not k.startswith("ds.conv.")}
    other = Concept("other", fewer, c.tokens)
    with pytest.raises(ValueError, match="different layers"):
        rank_pattern_of([c, other])
    with pytest.raises(ValueError, match="different layers"):
        Bundle.from_parts("tiny", tiny_generator, [c, other])


def test_bundle_needs_a_concept(tiny_generator):
    with pytest.raises(ValueError, match="at least one concept"):
        Bundle.from_parts("tiny", tiny_generator, [])


def test_unknown_concept(tiny_bundle):
    with pytest.raises(UnknownConceptError, match="nope"):
        tiny_bundle.concept("nope")
    with pytest.raises(UnknownConceptError):
        tiny_bundle.model_for("nope")


def test_custom_config_is_recorded_as_custom(tmp_path, tiny_generator, tiny_concepts):
    import dataclasses

    b = Bundle.from_parts("tiny", tiny_generator, tiny_concepts[:1])
    b.config = dataclasses.replace(b.config, image_size=64)
    m = save_bundle(b, tmp_path / "b")
    assert m["generator"]["size"] == "custom"
    assert m["io"]["input"]["shape"] == [1, 3, 64, 64]
    assert load_bundle(tmp_path / "b").config.image_size == 64


def test_load_bundle_verifies_checksums(tmp_path, source_bundle):
    import shutil

    from pocketgan.runtime import ChecksumError

    copy = tmp_path / "copy"
    shutil.copytree(source_bundle, copy)
    p = copy / "concepts" / "beta-2" / "adapter_model.safetensors"
    data = bytearray(p.read_bytes())
    data[-1] ^= 0x01
    p.write_bytes(bytes(data))
    with pytest.raises(ChecksumError, match="adapter_model.safetensors"):
        load_bundle(copy)


# --- atomic replacement -----------------------------------------------------------------


class Boom(RuntimeError):
    pass


def _raise_boom(staging):
    (staging / "onnx").mkdir()
    (staging / "onnx" / "half-written.onnx").write_bytes(b"\0" * 1000)
    raise Boom("writer failed mid-way")


def _raise_interrupt(staging):
    (staging / "onnx").mkdir()
    raise KeyboardInterrupt


@pytest.fixture(params=["renameat2", "rename-aside"])
def exchange_mode(request, monkeypatch):
    """Both replacement strategies: Linux RENAME_EXCHANGE and the rename-aside fallback."""
    if request.param == "rename-aside":
        monkeypatch.setattr(atomic, "_exchange", lambda a, b: False)
    return request.param


@pytest.fixture()
def existing(tmp_path, tiny_generator):
    """A bundle already on disk, with one concept (so an overwrite is visible)."""
    dest = tmp_path / "bundle"
    save_bundle(Bundle.from_parts("tiny", tiny_generator, make_concepts(tiny_generator, names=("old",), seed=7)), dest)
    return dest


@pytest.mark.parametrize("writer, error", [(_raise_boom, Boom), (_raise_interrupt, KeyboardInterrupt)])
def test_failed_write_leaves_the_old_bundle(existing, tiny_bundle, exchange_mode, writer, error):
    before = tree_digest(existing)
    with pytest.raises(error):
        save_bundle(tiny_bundle, existing, targets={"onnx": writer})
    assert tree_digest(existing) == before
    assert staging_leftovers(existing.parent) == []
    assert load_bundle(existing).concept_names == ["old"]


def test_failed_first_write_leaves_nothing(tmp_path, tiny_bundle):
    dest = tmp_path / "new"
    with pytest.raises(Boom):
        save_bundle(tiny_bundle, dest, targets={"onnx": _raise_boom})
    assert not dest.exists()
    assert staging_leftovers(tmp_path) == []


def test_successful_overwrite_replaces(existing, tiny_bundle, exchange_mode):
    old_files = set(tree_digest(existing))
    save_bundle(tiny_bundle, existing)
    assert load_bundle(existing).concept_names == list(CONCEPT_NAMES)
    new_files = set(tree_digest(existing))
    assert "concepts/old/adapter_model.safetensors" in old_files
    assert not [f for f in new_files if f.startswith("concepts/old/")], "no stale files of the old bundle"
    assert staging_leftovers(existing.parent) == []
    verify_bundle(existing)


def test_target_writer_entries_land_in_the_manifest(tmp_path, tiny_bundle):
    """A writer's files are checksummed; a writer's entry must follow the schema."""
    from pocketgan.runtime import ManifestError

    def bogus(staging):
        (staging / "onnx").mkdir()
        (staging / "onnx" / "x.onnx").write_bytes(b"x")
        return {"precision": "fp64"}  # not a valid targets.onnx entry

    with pytest.raises(ManifestError, match="targets"):
        save_bundle(tiny_bundle, tmp_path / "b", targets={"onnx": bogus})
    assert not (tmp_path / "b").exists()
    assert staging_leftovers(tmp_path) == []


def test_bundle_directory_mode_follows_umask(tmp_path, tiny_bundle):
    old = os.umask(0o022)
    try:
        save_bundle(tiny_bundle, tmp_path / "b")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "b").stat().st_mode) == 0o755
    assert stat.S_IMODE((tmp_path / "b" / "manifest.json").stat().st_mode) == 0o644


def test_write_over_a_file_fails_cleanly(tmp_path, tiny_bundle):
    dest = tmp_path / "bundle"
    dest.write_text("not a directory")
    with pytest.raises(NotADirectoryError):
        save_bundle(tiny_bundle, dest)
    assert dest.read_text() == "not a directory"
    assert staging_leftovers(tmp_path) == []


@pytest.mark.parametrize("content", [b"", b"new bytes", bytes(range(256)) * 100])
def test_atomic_write_bytes(tmp_path, content):
    p = tmp_path / "sub" / "f.bin"
    atomic.atomic_write_bytes(p, b"old")
    atomic.atomic_write_bytes(p, content)
    assert p.read_bytes() == content
    assert [q.name for q in p.parent.iterdir()] == ["f.bin"], "no temporary file left"


def test_atomic_write_bytes_failure_keeps_old(tmp_path, monkeypatch):
    p = tmp_path / "f.bin"
    atomic.atomic_write_bytes(p, b"old")

    def fail(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(atomic.os, "replace", fail)
    with pytest.raises(OSError, match="disk full"):
        atomic.atomic_write_bytes(p, b"new")
    assert p.read_bytes() == b"old"
    assert [q.name for q in tmp_path.iterdir()] == ["f.bin"]


def test_duplicate_concept_names_are_refused(tmp_path, tiny_generator, tiny_concepts):
    from pocketgan.runtime import ManifestError

    twice = [tiny_concepts[0], tiny_concepts[0]]
    with pytest.raises(ManifestError, match="duplicate concept names"):
        save_bundle(Bundle.from_parts("tiny", tiny_generator, twice), tmp_path / "b")
    assert not (tmp_path / "b").exists() and staging_leftovers(tmp_path) == []


def _misfit(kind, concept, config):
    from pocketgan.concepts import Concept

    if kind == "token-dim":
        return Concept("misfit", concept.lora, torch.zeros(config.token_count, config.token_dim + 1))
    lora = dict(concept.lora)
    a = lora["ds.conv.lora_A.weight"]
    lora["ds.conv.lora_A.weight"] = torch.zeros(a.shape[0], a.shape[1] + 1, *a.shape[2:])
    return Concept("misfit", lora, concept.tokens)


@pytest.mark.parametrize("kind", ["token-dim", "lora-shape"])
def test_concepts_that_do_not_fit_the_generator_are_refused(tmp_path, tiny_generator, tiny_concepts, kind):
    bad = _misfit(kind, tiny_concepts[0], tiny_generator.config)
    with pytest.raises(ValueError):
        save_bundle(Bundle.from_parts("tiny", tiny_generator, [bad]), tmp_path / "b")
