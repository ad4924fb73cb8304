"""distill-data: paired datasets on disk, resumable after a kill, shardable over ranks."""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pocketgan.cli.training import add_distill_data_parser
from pocketgan.training.distill_data import (
    DistillDataConfig,
    crop_photo,
    generate_pairs,
    item_seed,
    load_pairs,
    main,
    plan_items,
    read_index,
)
from pocketgan.training.teachers import procedural_teacher

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    """Three real photos (scikit-image), reduced and saved as PNG; one in a subfolder."""
    import skimage.data

    folder = tmp_path_factory.mktemp("photos")
    (folder / "more").mkdir()
    for name, rel in (("astronaut", "astronaut.png"), ("chelsea", "chelsea.png"), ("coffee", "more/coffee.png")):
        im = Image.fromarray(getattr(skimage.data, name)()[..., :3])
        im.thumbnail((128, 128))
        im.save(folder / rel)
    return folder


def config(photos: Path, out: Path, **kw) -> DistillDataConfig:
    kw = {"teacher": "cartoon", "size": 64, "crops_per_photo": 2, "progress": False, **kw}
    return DistillDataConfig(photos=photos, out=out, **kw)


def index_lines(out: Path) -> list[str]:
    return [line for p in sorted(out.glob("index-rank*.jsonl")) for line in p.read_text().splitlines()]


def image_files(out: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted((out / "images").iterdir())}


def test_generates_pairs_and_resume_is_a_no_op(photos, tmp_path):
    out = tmp_path / "ds"
    summary = generate_pairs(config(photos, out))  # rank / world size from accelerate: one plain process
    assert (summary["rank"], summary["world_size"]) == (0, 1)
    assert summary["items"] == summary["assigned"] == summary["written"] == 6 and summary["skipped"] == 0
    entries = read_index(out)
    keys = [e["key"] for e in entries]
    assert keys == sorted(set(keys)) and len(keys) == 6
    assert {e["photo"] for e in entries} == {"astronaut.png", "chelsea.png", "more/coffee.png"}
    cartoon = procedural_teacher("cartoon")
    for e in entries:
        assert set(e) == {"key", "input", "target", "photo", "crop", "seed", "teacher"}
        assert e["teacher"] == "procedural:opencv.cartoon" and e["seed"] == item_seed(0, e["key"])
        assert e["key"].endswith(f"-{e['crop']:03d}") and all(c.isalnum() or c in "-_" for c in e["key"])
        x = np.asarray(Image.open(out / e["input"]))
        y = np.asarray(Image.open(out / e["target"]))
        assert x.shape == y.shape == (64, 64, 3)
        assert np.array_equal(y, cartoon(x)), "PNG is lossless: the target is exactly the teacher's edit"
    # crop 0 is the centre square of the photo
    astro = next(e for e in entries if e["photo"] == "astronaut.png" and e["crop"] == 0)
    photo = np.asarray(Image.open(photos / "astronaut.png"))
    assert np.array_equal(
        np.asarray(Image.open(out / astro["input"])),
        np.asarray(Image.fromarray(photo).resize((64, 64), Image.Resampling.BICUBIC)),
    )
    record = json.loads((out / "dataset.json").read_text())
    assert record["teacher"] == "procedural:opencv.cartoon" and record["size"] == 64 and record["seed"] == 0
    assert record["crops_per_photo"] == 2 and record["prompt"] is None

    pairs = load_pairs(out)
    assert pairs.inputs.shape == pairs.targets.shape == (6, 64, 64, 3) and pairs.inputs.dtype == np.uint8
    sub = load_pairs(out, keys=[keys[3], keys[1]])
    assert np.array_equal(sub.inputs, pairs.inputs[[1, 3]])

    before_index, before_images = index_lines(out), image_files(out)
    again = generate_pairs(config(photos, out), rank=0, world_size=1)
    assert again["written"] == 0 and again["skipped"] == 6
    assert index_lines(out) == before_index and image_files(out) == before_images

    with pytest.raises(KeyError, match="not finished"):
        load_pairs(out, keys=["nope"])
    (out / astro["target"]).unlink()
    with pytest.raises(FileNotFoundError, match="missing"):
        load_pairs(out)


def test_load_pairs_refuses_index_paths_that_leave_the_dataset(photos, tmp_path):
    from pocketgan.runtime.errors import PocketganError
    from pocketgan.training.pairs import DatasetPathError

    out = tmp_path / "ds"
    generate_pairs(config(photos, out, crops_per_photo=1, size=32))
    (index,) = sorted(out.glob("index-rank*.jsonl"))
    good = index.read_text()
    first = json.loads(good.splitlines()[0])
    outside = tmp_path / "outside.png"  # a valid PNG of the right size: only the path is wrong
    outside.write_bytes((out / first["target"]).read_bytes())
    (out / "images" / "inner.png").symlink_to(out / first["target"])  # a symlink that stays inside: fine
    (out / "images" / "escape.png").symlink_to(outside)

    def with_target(target) -> None:
        lines = good.splitlines()
        lines[0] = json.dumps({**first, "target": target})
        index.write_text("\n".join(lines) + "\n")

    with_target("images/inner.png")
    assert load_pairs(out).inputs.shape == (3, 32, 32, 3)
    for bad in ("../outside.png", str(outside), "images/escape.png", "images/../../outside.png", ".", 7):
        with_target(bad)
        with pytest.raises(DatasetPathError, match=r"index-rank\*\.jsonl: pair .* 'target'") as caught:
            load_pairs(out)
        assert isinstance(caught.value, PocketganError), bad
    index.write_text(good)
    assert load_pairs(out).inputs.shape == (3, 32, 32, 3)


def test_crops_are_deterministic_per_key(photos):
    photo = np.asarray(Image.open(photos / "chelsea.png"))
    a = crop_photo(photo, 32, 3, seed=7, key="k-003")
    assert a.shape == (32, 32, 3) and a.dtype == np.uint8
    assert np.array_equal(a, crop_photo(photo, 32, 3, seed=7, key="k-003"))
    assert not np.array_equal(a, crop_photo(photo, 32, 4, seed=7, key="k-004"))
    assert not np.array_equal(a, crop_photo(photo, 32, 3, seed=8, key="k-003"))
    # the plan does not depend on which other photos exist
    c = config(photos, photos.parent / "unused", crops_per_photo=3)
    keys = [it.key for it in plan_items(c)]
    assert len(keys) == len(set(keys)) == 9
    assert [it.key for it in plan_items(config(photos, photos.parent / "unused", crops_per_photo=3, limit=1))] == keys[
        :3
    ]


def _cli_args(photos: Path, out: Path) -> list[str]:
    return [
        "--photos",
        str(photos),
        "--out",
        str(out),
        "--teacher",
        "stylize",
        "--size",
        "64",
        "--crops-per-photo",
        "20",
        "--seed",
        "3",
        "--no-progress",
    ]


def test_kill_mid_run_then_resume_matches_an_uninterrupted_run(photos, tmp_path):
    out, ref = tmp_path / "killed", tmp_path / "reference"
    total = 3 * 20
    proc = subprocess.Popen(
        [sys.executable, "-m", "pocketgan.training.distill_data", *_cli_args(photos, out)],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    index = out / "index-rank0.jsonl"
    deadline = time.monotonic() + 60
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            if index.exists() and index.read_bytes().count(b"\n") >= 2:
                os.kill(proc.pid, signal.SIGKILL)
                break
            time.sleep(0.002)
    finally:
        if proc.poll() is None:
            proc.kill()
        stderr = proc.communicate()[1].decode(errors="replace")
    assert proc.returncode == -signal.SIGKILL, (
        f"the run must be killed mid-way (rc {proc.returncode}): {stderr[-2000:]}"
    )
    done_before = len(read_index(out))
    assert 2 <= done_before < total

    assert main(_cli_args(photos, out)) == 0  # the same command again resumes
    assert main(_cli_args(photos, ref)) == 0  # an uninterrupted run elsewhere

    lines = index_lines(out)
    keys = [json.loads(line)["key"] for line in lines]
    assert len(keys) == len(set(keys)) == total, "every key exactly once"
    assert [json.loads(line) for line in lines] == [json.loads(line) for line in index_lines(ref)]
    assert not [p for p in (out / "images").iterdir() if p.name.endswith(".tmp")], "stale temp files are cleaned"
    got, want = image_files(out), image_files(ref)
    assert got.keys() == want.keys() and len(got) == 2 * total
    for name in want:
        Image.open(out / "images" / name).load()  # decodable
        assert got[name] == want[name], f"{name} differs from the uninterrupted run"


def test_torn_last_index_line_is_repaired(photos, tmp_path):
    out = tmp_path / "ds"
    generate_pairs(config(photos, out), rank=0, world_size=1)
    index = out / "index-rank0.jsonl"
    good = index.read_bytes()
    images = image_files(out)
    # a crash mid-append: the last line lost its end (and its newline)
    index.write_bytes(good[: good.rstrip(b"\n").rfind(b"\n") + 1] + good.splitlines()[-1][:25])
    assert len(read_index(out)) == 5, "the torn line is not a finished pair"
    summary = generate_pairs(config(photos, out), rank=0, world_size=1)
    assert summary["written"] == 1 and summary["skipped"] == 5
    assert index.read_bytes() == good and image_files(out) == images
    # a torn line of garbage with a newline at the very end is cut as well
    index.write_bytes(good + b'{"key": "x", "inp\n')
    assert generate_pairs(config(photos, out), rank=0, world_size=1)["written"] == 0
    assert index.read_bytes() == good
    # corruption before the last line is not guessed at
    lines = good.splitlines(keepends=True)
    index.write_bytes(b"".join(lines[:2]) + b"garbage\n" + b"".join(lines[2:]))
    with pytest.raises(ValueError, match="corrupt index line"):
        read_index(out)


def test_shards_cover_all_items_disjointly(photos, tmp_path):
    out = tmp_path / "ds"
    s0 = generate_pairs(config(photos, out, crops_per_photo=3), rank=0, world_size=2)
    s1 = generate_pairs(config(photos, out, crops_per_photo=3), rank=1, world_size=2)
    assert (s0["assigned"], s1["assigned"]) == (5, 4) and s0["items"] == 9
    k0 = {json.loads(line)["key"] for line in (out / "index-rank0.jsonl").read_text().splitlines()}
    k1 = {json.loads(line)["key"] for line in (out / "index-rank1.jsonl").read_text().splitlines()}
    assert not k0 & k1 and k0 | k1 == {it.key for it in plan_items(config(photos, out, crops_per_photo=3))}
    assert load_pairs(out).inputs.shape == (9, 64, 64, 3)
    # a single process resuming a half-done sharded run does only the other shard's items
    half = tmp_path / "half"
    generate_pairs(config(photos, half, crops_per_photo=3), rank=1, world_size=2)
    rest = generate_pairs(config(photos, half, crops_per_photo=3), rank=0, world_size=1)
    assert (rest["skipped"], rest["written"]) == (4, 5)
    assert image_files(half) == image_files(out)
    with pytest.raises(ValueError, match="rank"):
        generate_pairs(config(photos, out), rank=2, world_size=2)


def test_launched_processes_shard_through_accelerate(photos, tmp_path):
    """torchrun (what `accelerate launch --multi_gpu` runs) with 2 CPU processes: accelerate's
    PartialState gives each its rank, so the work is split, not done twice."""
    out = tmp_path / "ds"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc_per_node",
            "2",
            "-m",
            "pocketgan.training.distill_data",
            "--photos",
            str(photos),
            "--out",
            str(out),
            "--teacher",
            "cartoon",
            "--size",
            "32",
            "--crops-per-photo",
            "2",
            "--no-progress",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "rank 0/2" in result.stderr and "rank 1/2" in result.stderr
    lines = index_lines(out)
    assert len(lines) == len({json.loads(line)["key"] for line in lines}) == 6
    assert {p.name for p in out.glob("index-rank*.jsonl")} == {"index-rank0.jsonl", "index-rank1.jsonl"}


def test_resume_with_another_config_fails(photos, tmp_path, capsys):
    out = tmp_path / "ds"
    generate_pairs(config(photos, out, limit=1), rank=0, world_size=1)
    for change in ({"seed": 1}, {"size": 32}, {"teacher": "stylize"}, {"crops_per_photo": 3}):
        with pytest.raises(ValueError, match="different configuration"):
            generate_pairs(config(photos, out, limit=1, **change), rank=0, world_size=1)
    # a larger limit is the same dataset, extended
    assert generate_pairs(config(photos, out, limit=2), rank=0, world_size=1)["written"] == 2
    args = ["--photos", str(photos), "--out", str(out), "--teacher", "cartoon", "--size", "32", "--no-progress"]
    assert main(args) == 2 and "different configuration" in capsys.readouterr().err
    assert main(["--photos", str(photos), "--out", str(tmp_path / "x"), "--teacher", "nope"]) == 2
    assert "unknown teacher" in capsys.readouterr().err
    with pytest.raises(ValueError, match="multiple of 8"):
        config(photos, out, size=60)


def test_cli_parser(capsys):
    parser = argparse.ArgumentParser(prog="pocketgan")
    add_distill_data_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(
        [
            "distill-data",
            "--photos",
            "p",
            "--out",
            "o",
            "--teacher",
            "instruct-pix2pix:m",
            "--prompt",
            "make it snow",
            "--steps",
            "2",
            "--rank",
            "1",
            "--world-size",
            "2",
        ]
    )
    assert args.func.__name__ == "run_from_args" and args.steps == 2 and args.rank == 1 and args.size == 256
    with pytest.raises(SystemExit) as exit_:
        main(["--help"])
    assert exit_.value.code == 0
    help_text = capsys.readouterr().out
    for option in (
        "--photos",
        "--out",
        "--teacher",
        "--prompt",
        "--size",
        "--crops-per-photo",
        "--seed",
        "--limit",
        "--no-progress",
        "--steps",
        "--batch-size",
        "--rank",
        "--world-size",
        "accelerate launch",
    ):
        assert option in help_text


def test_diffusion_teacher_end_to_end(photos, tmp_path):
    from pocketgan.training.diffusers_teacher import DiffusersTeacher
    from test_diffusers_teacher import tiny_pipeline

    pipe = tiny_pipeline("instruct-pix2pix", tmp_path)
    pipe.save_pretrained(tmp_path / "ip2p")
    # the real loading path: a spec naming a local pipeline directory
    cfg = config(
        photos,
        tmp_path / "ds",
        teacher=f"instruct-pix2pix:{tmp_path / 'ip2p'}",
        prompt="make it snow",
        size=32,
        crops_per_photo=1,
        limit=2,
        teacher_options={"steps": 2, "batch_size": 2, "device": "cpu"},
    )
    summary = generate_pairs(cfg, rank=0, world_size=1)
    assert summary["written"] == 2
    record = json.loads((cfg.out / "dataset.json").read_text())
    assert record["teacher"] == f"diffusers:instruct-pix2pix:{tmp_path / 'ip2p'}:make it snow"
    assert record["teacher_settings"] == {"steps": 2, "guidance_scale": 7.5, "image_guidance_scale": 1.5}
    pairs = load_pairs(cfg.out)
    assert pairs.targets.shape == (2, 32, 32, 3) and not np.array_equal(pairs.inputs, pairs.targets)
    # the same edits from an in-memory pipeline with the recorded per-pair seeds
    entries = read_index(cfg.out)
    teacher = DiffusersTeacher(
        kind="instruct-pix2pix",
        model=str(tmp_path / "ip2p"),
        prompt="make it snow",
        steps=2,
        device="cpu",
        pipeline=pipe,
    )
    again = teacher.edit(list(pairs.inputs), [e["seed"] for e in entries])
    assert all(np.abs(a.astype(int) - b.astype(int)).max() <= 1 for a, b in zip(again, pairs.targets))
    assert generate_pairs(cfg, rank=0, world_size=1)["skipped"] == 2
    with pytest.raises(ValueError, match="different configuration"):
        generate_pairs(
            DistillDataConfig(**{**cfg.__dict__, "teacher_options": {"steps": 3, "device": "cpu"}}),
            rank=0,
            world_size=1,
        )
