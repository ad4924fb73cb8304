"""The learned full-resolution stage, in torch for training: the same math as the runtime's
:class:`pocketgan.runtime.upsampling.GuidedUpsampling` (numpy), which apps run.

At the model's resolution a guided filter fits the edit as ``A * photo + b`` per channel in
every window; a small per-pixel MLP (Deep Guided Filter's learned refinement, Wu et al. 2018)
corrects ``A``, so a concept can add detail the plain fit would smooth away (``detail_enhance``
amplifies the photo's fine texture). ``A`` and ``b`` are then sampled bilinearly at the photo's
own resolution and applied to the full-resolution photo. One MLP per concept, a few hundred
parameters; the generator is frozen while it trains.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from pocketgan.runtime.upsampling import FEATURES, UPSAMPLER_KIND


@dataclass(frozen=True)
class GuidedUpsamplerConfig:
    """Hyper-parameters of :class:`GuidedUpsampler` (the manifest's ``upsampler`` entry)."""

    radius: int = field(default=2, metadata={"help": "Box window half-width, pixels at the model's size."})
    hidden: int = field(default=16, metadata={"help": "Channels of the two hidden layers of the MLP."})

    def __post_init__(self) -> None:
        for name in ("radius", "hidden"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 64:
                raise ValueError(f"GuidedUpsamplerConfig.{name} must be an int in 1..64, got {value!r}")

    def manifest_entry(self) -> dict:
        return {"kind": UPSAMPLER_KIND, **asdict(self)}


def box_mean(x: torch.Tensor, radius: int) -> torch.Tensor:
    """(B, C, H, W) -> window means over (2r+1)^2, borders replicated."""
    return F.avg_pool2d(F.pad(x, (radius,) * 4, mode="replicate"), 2 * radius + 1, stride=1)


class GuidedUpsampler(nn.Module):
    """Low-resolution fit + full-resolution application.

    ``coefficients(low_photo, low_edit)``: (B, 3, h, w) each, values 0..1 -> (B, 6, h, w), ``A``
    then ``b``. ``forward(low_photo, low_edit, photo, top, left, height, width)``: the edit of
    the ``height`` x ``width`` window at (``top``, ``left``) of ``photo`` ((B, 3, H, W), 0..1),
    values nominally 0..1 (unclamped, for the loss).
    """

    def __init__(self, config: GuidedUpsamplerConfig = GuidedUpsamplerConfig(), eps: float = 1e-3) -> None:
        super().__init__()
        self.config = config
        self.log_eps = nn.Parameter(torch.tensor([math.log(eps)]))
        h = config.hidden
        self.mlp = nn.ModuleList([nn.Linear(FEATURES, h), nn.Linear(h, h), nn.Linear(h, 3)])
        # the last layer starts at zero: training starts from the plain guided filter
        nn.init.zeros_(self.mlp[2].weight)
        nn.init.zeros_(self.mlp[2].bias)

    def coefficients(self, low_photo: torch.Tensor, low_edit: torch.Tensor) -> torch.Tensor:
        r = self.config.radius
        mean_x, mean_y = box_mean(low_photo, r), box_mean(low_edit, r)
        cov = box_mean(low_photo * low_edit, r) - mean_x * mean_y
        var = box_mean(low_photo * low_photo, r) - mean_x * mean_x
        a = cov / (var + self.log_eps.exp())
        features = torch.cat([mean_x, mean_y, var.clamp_min(0).sqrt() * 4, cov * 16], 1).permute(0, 2, 3, 1)
        h = features
        for i, layer in enumerate(self.mlp):
            h = layer(h)
            h = torch.relu(h) if i < len(self.mlp) - 1 else h
        a = a + h.permute(0, 3, 1, 2)
        b = mean_y - a * mean_x
        return torch.cat([box_mean(a, r), box_mean(b, r)], 1)

    def forward(self, low_photo, low_edit, photo, top: int, left: int, height: int, width: int) -> torch.Tensor:
        coefficients = self.coefficients(low_photo, low_edit)
        full_h, full_w = photo.shape[-2:]
        # the sample positions of a whole-image bilinear resize (align_corners=False), clamped
        ys = (torch.arange(top, top + height, dtype=torch.float32) + 0.5) / full_h * 2 - 1
        xs = (torch.arange(left, left + width, dtype=torch.float32) + 0.5) / full_w * 2 - 1
        grid = torch.stack(torch.meshgrid(ys, xs, indexing="ij")[::-1], -1)[None].expand(photo.shape[0], -1, -1, -1)
        lifted = F.grid_sample(coefficients, grid, mode="bilinear", padding_mode="border", align_corners=False)
        window = photo[:, :, top : top + height, left : left + width]
        return lifted[:, :3] * window + lifted[:, 3:]

    def tensors(self) -> dict[str, torch.Tensor]:
        """The weights as the runtime reads them (``runtime.upsampling.tensor_shapes``)."""
        out = {"log_eps": self.log_eps.detach().clone()}
        for i, layer in enumerate(self.mlp):
            out[f"mlp.{i}.weight"] = layer.weight.detach().clone().contiguous()
            out[f"mlp.{i}.bias"] = layer.bias.detach().clone().contiguous()
        return out

    def load_tensors(self, tensors: dict[str, torch.Tensor]) -> GuidedUpsampler:
        with torch.no_grad():
            self.log_eps.copy_(tensors["log_eps"])
            for i, layer in enumerate(self.mlp):
                layer.weight.copy_(tensors[f"mlp.{i}.weight"])
                layer.bias.copy_(tensors[f"mlp.{i}.bias"])
        return self
