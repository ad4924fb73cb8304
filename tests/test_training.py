"""The slice's trainers on the tiny generator: a few real optimizer steps each."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pocketgan.models.registry import generator_config
from pocketgan.training.trainer import PairSet, TrainConfig, train_base, train_concept


@pytest.fixture(scope="module")
def pairs():
    rng = np.random.default_rng(0)
    photos = rng.integers(0, 256, (4, 64, 64, 3), dtype=np.uint8)
    return {"invert": PairSet(photos, 255 - photos), "same": PairSet(photos, photos.copy())}


def test_train_base_and_concept(pairs):
    config = generator_config("tiny")
    train = TrainConfig(steps=4, batch_size=2, crop=32, progress=False)
    base, tokens, record = train_base(config, pairs, train)
    assert set(tokens) == {"invert", "same"} and tokens["invert"].shape == (config.token_count, config.token_dim)
    assert record["steps"] == 4 and np.isfinite(record["final_l1"])
    assert not base.training
    ranks = {"ds.conv": 2, "up2.conv": 1, "transformer.self_attn.to_q": 1}
    before = {k: v.clone() for k, v in base.state_dict().items()}
    concept = train_concept(base, "inverted", pairs["invert"], ranks, train, init_tokens=tokens["invert"])
    assert concept.ranks == ranks
    lora_b = [v for k, v in concept.lora.items() if "lora_B" in k]
    assert any(v.abs().sum() > 0 for v in lora_b), "B starts at zero; training must move it"
    assert 0 < concept.training["trainable_parameters"] < 0.05 * concept.training["base_parameters"]
    # the base itself was not touched by concept training (it trains a copy)
    after = base.state_dict()
    assert set(after) == set(before) and all(torch.equal(before[k], after[k]) for k in before)


def test_training_sees_the_unclamped_edit():
    """The clamp to [-1, 1] has zero gradient outside the range; training uses clamp=False."""
    from pocketgan.models import build_generator

    g = build_generator("tiny")
    x = torch.rand(1, 3, 32, 32) * 2 - 1
    tokens = torch.zeros(4, 32)
    with torch.no_grad():
        g.up2.conv.bias.fill_(5.0)  # push every pixel far above the range
    raw, clamped = g(x, tokens, clamp=False), g(x, tokens)
    assert raw.max() > 1.5 and clamped.max() <= 1.0
    raw.sum().backward()
    assert g.up2.conv.bias.grad.abs().sum() > 0


# ------------------------------------------------------------------ losses on, checkpoints, resume


def _tiny_pairs(n=4, side=48, seed=0):
    rng = np.random.default_rng(seed)
    photos = rng.integers(0, 256, (n, side, side, 3), dtype=np.uint8)
    return PairSet(photos, 255 - photos)


class _Stop(Exception):
    pass


def _stop_at(step_to_stop):
    """An evaluation hook that 'kills' the run when it reaches a step (before that step's checkpoint)."""

    def hook(generator, tokens):
        hook.calls += 1
        if hook.calls > 1 and hook.step_guess >= step_to_stop:
            raise _Stop
        hook.step_guess += 2
        return {"psnr_db": 0.0, "ssim": 0.0}

    hook.calls, hook.step_guess = 0, 0
    return hook


@pytest.mark.parametrize("loss_name", ["l1", "recipe"])
def test_resume_continues_exactly(tmp_path, loss_name):
    from pocketgan.models import build_generator
    from pocketgan.training.trainer import LossConfig

    torch.manual_seed(0)
    base = build_generator("tiny").eval()
    loss = LossConfig.recipe() if loss_name == "recipe" else LossConfig()
    if loss_name == "recipe":
        from dataclasses import replace

        loss = replace(loss, r1_interval=2)  # R1 inside the short run
    ranks = {"ds.conv": 2, "up2.conv": 1, "transformer.mlp.fc1": 1}
    pairs = _tiny_pairs()

    def run(ckpt, resume=False, evaluate=None):
        cfg = TrainConfig(
            steps=6,
            batch_size=2,
            crop=32,
            progress=False,
            checkpoint_dir=ckpt,
            checkpoint_every=2,
            resume=resume,
            eval_every=2 if evaluate else 0,
        )
        return train_concept(base, "c", pairs, ranks, cfg, loss=loss, evaluate=evaluate)

    straight = run(tmp_path / "straight")
    with pytest.raises(_Stop):
        run(tmp_path / "killed", evaluate=_stop_at(4))  # dies at step 4, last checkpoint at step 2
    from pocketgan.training.checkpoint import load_checkpoint

    assert load_checkpoint(tmp_path / "killed")[1]["step"] == 2
    resumed = run(tmp_path / "killed", resume=True)
    for key in straight.lora:
        assert torch.equal(straight.lora[key], resumed.lora[key]), key
    assert torch.equal(straight.tokens, resumed.tokens)
    assert resumed.training["final_l1"] == straight.training["final_l1"]


def test_resume_refuses_another_runs_checkpoint(tmp_path):
    from pocketgan.models import build_generator
    from pocketgan.training.checkpoint import CheckpointError

    base = build_generator("tiny").eval()
    pairs = _tiny_pairs()
    cfg = TrainConfig(
        steps=2, batch_size=2, crop=32, progress=False, checkpoint_dir=tmp_path / "ck", checkpoint_every=1
    )
    train_concept(base, "c", pairs, {"ds.conv": 1}, cfg)
    other = TrainConfig(
        steps=2, batch_size=2, crop=32, lr=1e-3, progress=False, checkpoint_dir=tmp_path / "ck", resume=True
    )
    with pytest.raises(CheckpointError, match="different run"):
        train_concept(base, "c", pairs, {"ds.conv": 1}, other)


def test_corrupt_checkpoint_is_refused(tmp_path):
    from pocketgan.training.checkpoint import CheckpointError, load_checkpoint, save_checkpoint

    save_checkpoint(tmp_path / "ck", {"w": torch.ones(3)}, {"step": 1})
    tensors, meta = load_checkpoint(tmp_path / "ck")
    assert meta["step"] == 1 and torch.equal(tensors["w"], torch.ones(3))
    data = bytearray((tmp_path / "ck" / "state.safetensors").read_bytes())
    data[-1] ^= 0xFF
    (tmp_path / "ck" / "state.safetensors").write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="sha256"):
        load_checkpoint(tmp_path / "ck")
    with pytest.raises(CheckpointError, match="no checkpoint"):
        load_checkpoint(tmp_path / "missing")


def test_optimizer_state_round_trips_without_pickle():
    from pocketgan.training.checkpoint import flatten_optimizer, unflatten_optimizer

    w = torch.nn.Parameter(torch.randn(4))
    opt = torch.optim.Adam([w], lr=0.1, betas=(0.5, 0.99))
    w.sum().backward()
    opt.step()
    tensors, meta = flatten_optimizer("opt", opt.state_dict())
    import json

    meta = json.loads(json.dumps(meta))  # what the checkpoint stores
    restored = unflatten_optimizer("opt", tensors, meta)
    opt2 = torch.optim.Adam([torch.nn.Parameter(w.detach().clone())], lr=0.1)
    opt2.load_state_dict(restored)
    for k, v in opt.state_dict()["state"][0].items():
        assert torch.equal(v, opt2.state_dict()["state"][0][k])
    assert opt2.param_groups[0]["betas"][0] == 0.5


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(l1=0.0), "at least one"),
        (dict(r1_gamma=1.0), "need the GAN"),
        (dict(mix_and_match=True), "need the GAN"),
        (dict(perceptual=-1.0), "non-negative"),
        (dict(gan=0.1, r1_interval=0), "positive"),
    ],
)
def test_loss_config_validation(kwargs, message):
    from pocketgan.training.trainer import LossConfig

    with pytest.raises(ValueError, match=message):
        LossConfig(**kwargs)


def test_each_loss_part_changes_training():
    """Switching a part on changes the result (so the ablation measures something)."""
    from dataclasses import replace

    from pocketgan.models import build_generator
    from pocketgan.training.trainer import LossConfig

    torch.manual_seed(0)
    base = build_generator("tiny").eval()
    pairs = _tiny_pairs()
    cfg = TrainConfig(steps=3, batch_size=2, crop=32, progress=False)
    l1 = LossConfig()
    variants = {
        "l1": l1,
        "perc": replace(l1, perceptual=4.0),
        "gan": replace(l1, gan=0.5),
        "r1": replace(l1, gan=0.5, r1_gamma=10.0, r1_interval=1),
        "mm": replace(l1, gan=0.5, r1_gamma=10.0, r1_interval=1, mix_and_match=True),
    }
    results = {
        k: train_concept(base, "c", pairs, {"ds.conv": 1, "up2.conv": 1}, cfg, loss=v) for k, v in variants.items()
    }
    names = list(results)
    for a, b in zip(names, names[1:]):
        key = "up2.conv.lora_B.weight"
        assert not torch.equal(results[a].lora[key], results[b].lora[key]), f"{b} trained exactly like {a}"


def test_full_finetune_trains_every_weight_of_a_copy():
    from pocketgan.models import build_generator
    from pocketgan.training.trainer import train_full_finetune

    base = build_generator("tiny").eval()
    before = {k: v.clone() for k, v in base.state_dict().items()}
    g, tokens, record = train_full_finetune(
        base, "c", _tiny_pairs(), TrainConfig(steps=2, batch_size=2, crop=32, progress=False)
    )
    assert record["trainable_parameters"] == sum(p.numel() for p in base.parameters()) + tokens.numel()
    assert all(torch.equal(before[k], v) for k, v in base.state_dict().items())
    assert not torch.equal(g.state_dict()["ds.conv.weight"], before["ds.conv.weight"])


def test_evaluation_hook_history_is_recorded():
    from pocketgan.models import build_generator

    base = build_generator("tiny").eval()
    seen = []

    def hook(generator, tokens):
        assert not generator.training and tokens.shape[0] == 1
        seen.append(1)
        return {"psnr_db": float(len(seen)), "ssim": 0.5}

    cfg = TrainConfig(steps=4, batch_size=2, crop=32, progress=False, eval_every=2)
    concept = train_concept(base, "c", _tiny_pairs(), {"ds.conv": 1}, cfg, evaluate=hook)
    assert [e["step"] for e in concept.training["evals"]] == [0, 2, 4]
    assert all(e["seconds"] >= 0 for e in concept.training["evals"])
