"""LoRA on the generator's crucial layers, through PEFT.

Every adapter here uses ``lora_alpha == r`` per layer (PEFT scaling 1), so zero-padding a
concept to a larger rank leaves its output unchanged: padding adds zero rows to A and
zero columns to B, and the product B @ A is the same.
"""

from __future__ import annotations

import torch
from torch import nn

ADAPTER_NAME = "default"


def _peft():
    # peft pulls in transformers/torchao, whose import-time warnings and log lines are noise
    # here; filter those known messages only (pocketgan/_quiet.py says why each is harmless).
    from pocketgan._quiet import library_warnings_filtered, quiet_library_logs

    quiet_library_logs()
    with library_warnings_filtered():
        import peft
    return peft


def lora_config(ranks: dict[str, int]):
    """A PEFT ``LoraConfig`` with one explicit rank per target module (scaling 1)."""
    if not ranks:
        raise ValueError("a LoRA needs at least one target module")
    bad = {name: r for name, r in ranks.items() if not isinstance(r, int) or r <= 0}
    if bad:
        raise ValueError(f"LoRA ranks must be positive integers, got {bad}")
    peft = _peft()
    default = max(ranks.values())
    return peft.LoraConfig(
        r=default,
        lora_alpha=default,
        target_modules=sorted(ranks),
        rank_pattern={name: r for name, r in ranks.items()},
        alpha_pattern={name: r for name, r in ranks.items()},
        lora_dropout=0.0,
        bias="none",
    )


def inject_lora(model: nn.Module, ranks: dict[str, int]) -> nn.Module:
    """Wrap ``model``'s target layers with LoRA layers in place (B initialised to zero)."""
    missing = sorted(set(ranks) - {name for name, _ in model.named_modules()})
    if missing:
        raise ValueError(f"LoRA targets not in the model: {missing}")
    return _peft().inject_adapter_in_model(lora_config(ranks), model, adapter_name=ADAPTER_NAME)


MIX_ADAPTER_NAME = "mix"


def inject_mix_slot(model: nn.Module, ranks: dict[str, int]) -> nn.Module:
    """Add a second, zero LoRA (adapter ``mix``) next to the injected one, both active: the
    extra rank a strength or blend needs (``pocketgan.runtime.concept_mix``), which the
    separate ONNX graph takes as inputs of their own so the concepts' adapters keep their rank."""
    import warnings

    peft = _peft()
    with warnings.catch_warnings():
        # a second adapter on the same model is the point here, not a mistake
        warnings.filterwarnings("ignore", "Already found a `peft_config` attribute", UserWarning)
        peft.inject_adapter_in_model(lora_config(ranks), model, adapter_name=MIX_ADAPTER_NAME)
    with torch.no_grad():
        for layer in lora_layers(model).values():
            layer.lora_B[MIX_ADAPTER_NAME].weight.zero_()
            layer.set_adapter([ADAPTER_NAME, MIX_ADAPTER_NAME])
    return model


def lora_layers(model: nn.Module) -> dict[str, nn.Module]:
    """The PEFT LoRA layers of ``model`` by qualified name."""
    from peft.tuners.lora import LoraLayer

    return {name: m for name, m in model.named_modules() if isinstance(m, LoraLayer)}


def lora_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """LoRA weights keyed ``<module>.lora_A.weight`` / ``<module>.lora_B.weight``."""
    out = {}
    for name, layer in lora_layers(model).items():
        out[f"{name}.lora_A.weight"] = layer.lora_A[ADAPTER_NAME].weight.detach().clone()
        out[f"{name}.lora_B.weight"] = layer.lora_B[ADAPTER_NAME].weight.detach().clone()
    return out


def load_lora_state_dict(model: nn.Module, weights: dict[str, torch.Tensor]) -> None:
    """Copy weights from :func:`lora_state_dict`'s layout into an injected model."""
    layers = lora_layers(model)
    expected = {f"{n}.lora_{ab}.weight" for n in layers for ab in "AB"}
    if set(weights) != expected:
        raise ValueError(
            f"LoRA weights do not match the model: missing {sorted(expected - set(weights))}, "
            f"unexpected {sorted(set(weights) - expected)}"
        )
    with torch.no_grad():
        for name, layer in layers.items():
            for ab, modules in (("A", layer.lora_A), ("B", layer.lora_B)):
                target = modules[ADAPTER_NAME].weight
                source = weights[f"{name}.lora_{ab}.weight"]
                if source.shape != target.shape:
                    raise ValueError(f"{name}.lora_{ab}: shape {tuple(source.shape)} != model {tuple(target.shape)}")
                target.copy_(source)


def ranks_of(weights: dict[str, torch.Tensor]) -> dict[str, int]:
    """Per-module rank of LoRA weights in :func:`lora_state_dict`'s layout.

    Raises ``ValueError`` unless every layer has both an A and a B of matching rank and
    no other keys are present.
    """
    suffix_a, suffix_b = ".lora_A.weight", ".lora_B.weight"
    stray = sorted(k for k in weights if not k.endswith((suffix_a, suffix_b)))
    if stray:
        raise ValueError(f"LoRA weights have keys that are not <layer>.lora_A/B.weight: {stray[:3]}")
    layers_a = {k[: -len(suffix_a)] for k in weights if k.endswith(suffix_a)}
    layers_b = {k[: -len(suffix_b)] for k in weights if k.endswith(suffix_b)}
    if layers_a != layers_b:
        raise ValueError(f"LoRA layers without both A and B: {sorted(layers_a ^ layers_b)[:3]}")
    ranks = {}
    for layer in sorted(layers_a):
        a, b = weights[layer + suffix_a], weights[layer + suffix_b]
        if a.dim() < 2 or b.dim() < 2 or b.shape[1] != a.shape[0]:
            raise ValueError(f"LoRA {layer}: A {tuple(a.shape)} and B {tuple(b.shape)} do not share a rank")
        ranks[layer] = int(a.shape[0])
    return ranks


def pad_lora(weights: dict[str, torch.Tensor], ranks: dict[str, int]) -> dict[str, torch.Tensor]:
    """Zero-pad LoRA weights to ``ranks`` (each >= the current rank); output unchanged."""
    current = ranks_of(weights)
    if set(current) != set(ranks):
        raise ValueError(f"rank pattern covers {sorted(ranks)}, adapter covers {sorted(current)}")
    out = {}
    for name, target in ranks.items():
        a, b = weights[f"{name}.lora_A.weight"], weights[f"{name}.lora_B.weight"]
        r = a.shape[0]
        if target < r:
            raise ValueError(f"cannot pad {name} from rank {r} down to {target}")
        a_pad = torch.zeros((target, *a.shape[1:]), dtype=a.dtype)
        a_pad[:r] = a
        b_pad = torch.zeros((b.shape[0], target, *b.shape[2:]), dtype=b.dtype)
        b_pad[:, :r] = b
        out[f"{name}.lora_A.weight"], out[f"{name}.lora_B.weight"] = a_pad, b_pad
    return out


def merge_lora(model: nn.Module) -> nn.Module:
    """Fold every LoRA layer into its base layer and unwrap it (in place)."""
    for name, layer in list(lora_layers(model).items()):
        layer.merge(safe_merge=True)
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child, layer.get_base_layer())
    return model
