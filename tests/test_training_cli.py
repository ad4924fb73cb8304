"""The training commands end to end on real files: distill-data -> train-base ->
train-concept (rank search, pair selection) -> export -> runtime; and a SIGKILL during
train-concept that --resume recovers exactly."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pocketgan.cli import main

REPO = Path(__file__).resolve().parents[1]
FAST = ["--batch-size", "2", "--crop", "32", "--no-progress", "--threads", "1"]


@pytest.fixture(scope="module")
def datasets(tmp_path_factory) -> dict[str, Path]:
    """Two distill-data datasets (procedural teachers) of real photos, 64 px pairs."""
    import skimage.data

    root = tmp_path_factory.mktemp("training-cli")
    photos = root / "photos"
    photos.mkdir()
    for name in ("astronaut", "chelsea", "coffee", "rocket"):
        im = Image.fromarray(getattr(skimage.data, name)()[..., :3])
        im.thumbnail((128, 128))
        im.save(photos / f"{name}.png")
    out = {}
    for teacher in ("stylize", "cartoon"):
        out[teacher] = root / teacher
        assert (
            main(
                [
                    "distill-data",
                    "--photos",
                    str(photos),
                    "--out",
                    str(out[teacher]),
                    "--teacher",
                    teacher,
                    "--size",
                    "64",
                    "--crops-per-photo",
                    "2",
                    "--no-progress",
                ]
            )
            == 0
        )
    return out


def test_train_base_then_concept_then_export(datasets, tmp_path):
    from pocketgan.bundle import load_bundle
    from pocketgan.runtime import open_bundle

    base = tmp_path / "base"
    assert (
        main(
            [
                "train-base",
                "--data",
                f"stylize={datasets['stylize']}",
                "--out",
                str(base),
                "--size",
                "tiny",
                "--steps",
                "3",
                "--loss",
                "l1",
                *FAST,
            ]
        )
        == 0
    )
    source = load_bundle(base)
    assert source.concept_names == ["stylize"] and source.size == "tiny"
    assert not (tmp_path / "base.ckpt").exists(), "a finished run removes its checkpoints"
    # token-only concept: all-zero LoRA, so it changes nothing beyond its tokens
    assert all(float(v.abs().sum()) == 0 for v in source.concept("stylize").lora.values())

    bundle = tmp_path / "with-cartoon"
    assert (
        main(
            [
                "train-concept",
                str(base),
                "--data",
                str(datasets["cartoon"]),
                "--name",
                "cartoon",
                "--out",
                str(bundle),
                "--rank",
                "search",
                "--rank-budget",
                "1",
                "--probe-rank",
                "2",
                "--probe-steps",
                "2",
                "--pairs",
                "4",
                "--steps",
                "3",
                *FAST,
            ]
        )
        == 0
    )
    trained = load_bundle(bundle)
    assert trained.concept_names == ["stylize", "cartoon"]
    record = trained.concept("cartoon").training
    assert record["rank_search"]["parameters"] <= record["rank_search"]["budget_parameters"]
    assert len(record["selected_pairs"]) == 4 and record["selection"] == "cluster"
    assert "GAN" in record["loss"] and "perceptual" in record["loss"]  # the default recipe is the full one
    assert trained.concept("cartoon").teacher.endswith("cartoon")

    exported = tmp_path / "exported"
    assert main(["export", str(bundle), "--targets", "onnx", "--out", str(exported), "--image-size", "64"]) == 0
    rt = open_bundle(exported)
    assert rt.concepts == ("stylize", "cartoon")
    photo = np.asarray(
        Image.open(datasets["cartoon"] / "images" / sorted(os.listdir(datasets["cartoon"] / "images"))[0])
    )
    assert rt.edit(photo, concept="cartoon").shape == photo.shape


def test_train_concept_refuses_bad_input(datasets, tmp_path, source_bundle, capsys):
    existing = __import__("pocketgan.bundle", fromlist=["load_bundle"]).load_bundle(source_bundle).concept_names[0]
    cases = [
        (tmp_path, "x", "not a distill-data dataset"),
        (datasets["cartoon"], existing, "already has a concept"),
        (datasets["cartoon"], "Bad Name", "invalid concept name"),
    ]
    for data, name, message in cases:
        args = ["train-concept", str(source_bundle), "--data", str(data), "--name", name]
        assert main([*args, "--out", str(tmp_path / "o"), *FAST]) == 2, name
        assert message in capsys.readouterr().err


def _train_concept_cmd(bundle: Path, data: Path, out: Path, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "pocketgan",
        "train-concept",
        str(bundle),
        "--data",
        str(data),
        "--name",
        "cartoon",
        "--out",
        str(out),
        "--steps",
        "300",
        "--checkpoint-every",
        "5",
        "--loss",
        "l1",
        *FAST,
        *extra,
    ]


def test_sigkill_during_training_then_resume_matches_an_uninterrupted_run(datasets, source_bundle, tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    straight = tmp_path / "straight"
    subprocess.run(
        _train_concept_cmd(source_bundle, datasets["cartoon"], straight),
        check=True,
        env=env,
        capture_output=True,
        timeout=600,
    )

    killed = tmp_path / "killed"
    state = tmp_path / "killed.ckpt" / "train" / "state.json"
    proc = subprocess.Popen(
        _train_concept_cmd(source_bundle, datasets["cartoon"], killed),
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 300
    while not state.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    assert not killed.exists()  # the bundle is only written at the end
    import json

    assert 0 < json.loads(state.read_text())["step"] < 300

    # without --resume the half-done checkpoint is not silently thrown away
    again = subprocess.run(
        _train_concept_cmd(source_bundle, datasets["cartoon"], killed),
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert again.returncode == 2 and "--resume" in again.stderr
    subprocess.run(
        _train_concept_cmd(source_bundle, datasets["cartoon"], killed, "--resume"),
        check=True,
        env=env,
        capture_output=True,
        timeout=600,
    )
    for name in ("adapter_model.safetensors", "concept_embedding.safetensors"):
        a = (straight / "concepts" / "cartoon" / name).read_bytes()
        b = (killed / "concepts" / "cartoon" / name).read_bytes()
        assert a == b, f"{name} differs after kill + resume"
