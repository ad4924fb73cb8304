"""The training study end to end at toy scale: every run, the report, the plots, resume."""

from __future__ import annotations

import json

import pytest


@pytest.fixture(scope="module")
def tiny_study(tmp_path_factory):
    from pocketgan.training.study import StudyConfig, run_study

    out = tmp_path_factory.mktemp("study") / "report.md"
    config = StudyConfig(
        pairs=8,
        scratch_steps=4,
        concept_steps=2,
        eval_every=2,
        pair_counts=(2, 4),
        random_counts=(2,),
        rank_seeds=(1,),
        probe_steps=2,
        batch_size=2,
        crop=64,
    )
    results = run_study(config, out, progress=False)
    return config, out, results


def test_every_run_and_the_report(tiny_study):
    config, out, results = tiny_study
    runs = results["runs"]
    expected = {
        "scratch",
        "full_finetune",
        "lora_uniform_r1",
        "lora_uniform_r2",
        "lora_searched",
        "lora_uniform_r2_seed1",
        "lora_searched_seed1",
        "pairs_cluster_2",
        "pairs_cluster_4",
        "pairs_random_2",
        "loss_1",
        "loss_2",
        "loss_3",
        "loss_4",
    }
    assert set(runs) == expected
    assert runs["lora_uniform_r1"]["trainable_parameters"] < 0.01 * runs["lora_uniform_r1"]["base_parameters"]
    assert runs["lora_searched"]["trainable_parameters"] <= runs["lora_uniform_r2"]["trainable_parameters"] + 5
    assert len(runs["pairs_cluster_2"]["indices"]) == 2
    assert "GAN" in runs["loss_2"]["loss"] and "mix-and-match" in runs["loss_4"]["loss"]
    text = out.read_text()
    for heading in (
        "## Claims",
        "(d) LoRA searched",
        "## Quality against the number of pairs",
        "## Loss ablation",
        "Uniform vs searched over training seeds",
    ):
        assert heading in text
    plots = out.parent / out.stem
    for png in ("psnr_vs_time.png", "psnr_vs_pairs.png", "loss_ablation.png"):
        assert (plots / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    saved = json.loads((plots / "results.json").read_text())
    assert set(saved["runs"]) == expected


def test_rerun_keeps_finished_runs_and_adds_new_ones(tiny_study, capsys):
    from dataclasses import replace

    from pocketgan.training.study import run_study

    config, out, results = tiny_study
    before = json.loads((out.parent / out.stem / "results.json").read_text())
    again = run_study(replace(config, pair_counts=(2, 4, 6)), out, progress=False)
    printed = capsys.readouterr().out
    assert "scratch: done earlier" in printed and "pairs_cluster_6" in printed
    assert again["runs"]["scratch"] == before["runs"]["scratch"]
    assert "pairs_cluster_6" in again["runs"]


def test_claims_read_the_results():
    from pocketgan.training.study import claims

    def run(psnr, params=100, evals=None, **kw):
        return {
            "psnr_db": psnr,
            "trainable_parameters": params,
            "seconds": 100.0,
            "evals": evals or [{"step": 0, "seconds": 0.0, "psnr_db": psnr}],
            **kw,
        }

    runs = {
        "scratch": run(17.0, 600_000, seconds=500.0),
        "lora_uniform_r1": run(
            17.3,
            5_000,
            base_parameters=594_000,
            evals=[
                {"step": 0, "seconds": 0.0, "psnr_db": 13.0},
                {"step": 50, "seconds": 20.0, "psnr_db": 17.1},
                {"step": 100, "seconds": 40.0, "psnr_db": 17.3},
            ],
        ),
        "lora_uniform_r2": run(17.4, 9_600),
        "lora_searched": run(17.9, 9_500),
        "lora_uniform_r2_seed1": run(17.5, 9_600),
        "lora_searched_seed1": run(18.0, 9_500),
        "pairs_cluster_4": run(16.0),
        "pairs_cluster_8": run(17.0),
    }
    runs["scratch"]["seconds"] = 500.0
    cfg = {"budget_rank": 2, "pair_counts": [4, 8], "pairs": 16, "rank_seeds": [1]}
    out = claims({"runs": runs, "config": cfg})
    assert [c["met"] for c in out] == [True, True, True]
    assert "20 s" in out[0]["measured"] and "0.040x" in out[0]["measured"]
    assert out[2]["measured"].startswith("8 pairs")
    runs["lora_searched"]["psnr_db"] = 17.3  # 17.65 ± 0.35 vs 17.45: inside the spread, not a win
    assert claims({"runs": runs, "config": cfg})[1]["met"] is False
