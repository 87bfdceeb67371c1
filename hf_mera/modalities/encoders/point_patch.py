"""`"point_patch"` encoder: Point-BERT's point tokenizer stage, built in (transformers has no point encoder).

Points `[n, P, 3 | 6]` → `num_tokens` centres by farthest-point sampling → the `group_size` nearest
neighbours of each centre, re-centred on it → a mini-PointNet (shared MLP, max-pool, concatenated with
the group's global feature, second shared MLP, max-pool) → plus a positional MLP of the centre.

This is the grouping + mini-PointNet embedding that feeds Point-BERT's transformer, not the pretrained
Point-BERT-v1.2 model of the paper (its weights are not on PyPI). LayerNorm-free MLPs replace Point-BERT's
BatchNorm so an item's features never depend on the rest of its batch; weights are initialised from a
seed, so every process builds the same encoder.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..point_cloud import farthest_point_sample
from .base import ModalityEncoder, register_encoder, seeded

__all__ = ["PointPatchEncoder"]


def _mlp(sizes: list[int]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for index, (width_in, width_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(width_in, width_out))
        if index < len(sizes) - 2:
            layers.append(nn.GELU())
    return nn.Sequential(*layers)


def group_points(values: torch.Tensor, num_groups: int, group_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Centres `[n, G, 3]` (farthest-point samples) and neighbourhoods `[n, G, k, C]` with xyz re-centred."""
    xyz = values[..., :3]
    batch = torch.arange(values.shape[0], device=values.device)[:, None]
    centres = xyz[batch, farthest_point_sample(xyz, num_groups)]
    neighbours = torch.cdist(centres, xyz).topk(group_size, dim=-1, largest=False).indices  # [n, G, k]
    groups = values[batch[:, :, None], neighbours]
    local_xyz = groups[..., :3] - centres[:, :, None, :]
    return centres, torch.cat([local_xyz, groups[..., 3:]], dim=-1)


@register_encoder("point_patch")
class PointPatchEncoder(ModalityEncoder):
    """Point-BERT-style patch tokens. Defaults: 32 tokens of 256 from groups of 32 neighbours, xyz input
    (`in_channels=6` for xyz + RGB)."""

    default_config = {"num_tokens": 32, "group_size": 32, "hidden_size": 256, "in_channels": 3, "seed": 0}

    def __init__(self, config: dict[str, Any]) -> None:
        super().__init__(config)
        for key in ("num_tokens", "group_size", "hidden_size"):
            value = config[key]
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"point_patch: {key} must be a positive int, got {value!r}.")
        if config["in_channels"] not in (3, 6):
            raise ValueError(
                f"point_patch: in_channels must be 3 (xyz) or 6 (xyz + rgb), got {config['in_channels']!r}."
            )
        self.num_tokens, self.group_size = config["num_tokens"], config["group_size"]
        self.hidden_size, self.in_channels = config["hidden_size"], config["in_channels"]
        with seeded(int(config["seed"])):
            self.first_mlp = _mlp([self.in_channels, 128, 256])
            self.second_mlp = _mlp([512, 512, self.hidden_size])
            self.position_mlp = _mlp([3, 128, self.hidden_size])

    def forward(self, values: torch.Tensor) -> torch.Tensor:
        needed = max(self.num_tokens, self.group_size)
        if values.ndim != 3 or values.shape[-1] != self.in_channels or values.shape[1] < needed:
            raise ValueError(
                f"point_patch expects [n, points >= {needed}, {self.in_channels}] inputs, got {list(values.shape)}."
            )
        values = values.to(device=self.first_mlp[0].weight.device, dtype=self.first_mlp[0].weight.dtype)
        centres, groups = group_points(values, self.num_tokens, self.group_size)
        local = self.first_mlp(groups)  # [n, G, k, 256]
        pooled = local.max(dim=2, keepdim=True).values.expand_as(local)
        tokens = self.second_mlp(torch.cat([pooled, local], dim=-1)).max(dim=2).values
        return tokens + self.position_mlp(centres)
