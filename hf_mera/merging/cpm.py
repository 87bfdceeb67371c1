"""CPM, MAny's Cross-modal Projection Merging, as prototype-weighted mixing of connector versions (Gao et
al., "MAny: Merge Anything for Multimodal Continual Instruction Tuning"; the overview, the abstract's wording
and the assumptions are in `many.py`). MAny has no public code: this is OUR reading of its abstract.

CPM: prototype-weighted connector mixing
----------------------------------------
Stage k left a version φ^(k) of a connector and a prototype p_k = mean_j f_j / ||f_j|| over stage k's
inputs, where f = mean over tokens of the connector's input features. For an input x with pooled
feature f:

    w_k(x) = softmax_k( cos(f, p_k) / τ ),      φ(x) = Σ_k w_k(x) φ^(k)(x)

Symbols → arguments: f `features` (pooled, [B, D]), p_k `prototypes` [K, D], τ `temperature`, w
`cpm_weights(...)` [B, K], φ^(k)(x) `outputs[k]` of `cpm_mix` / `connectors[k]` of
`PrototypeMixedConnector`. τ defaults to 0.1, the usual temperature of cosine-similarity softmaxes
(MoCo, SimCLR-style; CLIP learns ≈ 0.01–0.07): a cosine gap of 0.2 between two prototypes gives weights
e² ≈ 7 : 1, a gap of 0.05 only 1.6 : 1, so near-duplicate tasks share and distinct ones route.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

DEFAULT_TEMPERATURE = 0.1


def pool(features: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Mean over the token dim, [B, T, D] → [B, D], over the tokens where `mask` [B, T] is nonzero.

    [B, D] is returned as is (already pooled).
    """
    if features.dim() == 2:
        return features
    if features.dim() != 3:
        raise ValueError(f"CPM: features must be [B, D] or [B, T, D], got shape {tuple(features.shape)}")
    if mask is None:
        return features.mean(dim=1)
    if mask.shape != features.shape[:2]:
        raise ValueError(
            f"CPM: mask shape {tuple(mask.shape)} does not match features {tuple(features.shape)}"
        )
    weights = mask.to(features.dtype).unsqueeze(-1)
    # clamp: a row with no token pools to 0 instead of NaN (its cosine is then 0 to every prototype).
    return (features * weights).sum(dim=1) / weights.sum(dim=1).clamp_min(1)


def prototype(features: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """p = mean_j f_j / ||f_j|| over one stage's inputs: [N, D] pooled (or [N, T, D], pooled here) → [D].

    Each sample is normalised first so that a few large-norm samples do not set the direction; p itself is
    not renormalised (`cpm_weights` uses cosines, which ignore its norm).
    """
    pooled = pool(features, mask).float()
    if pooled.shape[0] == 0:
        raise ValueError("CPM: prototype of zero samples")
    return nn.functional.normalize(pooled, dim=-1).mean(dim=0)


def cpm_weights(
    features: torch.Tensor, prototypes: torch.Tensor, temperature: float = DEFAULT_TEMPERATURE
) -> torch.Tensor:
    """w = softmax_k(cos(f, p_k) / τ): features [B, D] (pooled) × prototypes [K, D] → [B, K], float32."""
    if not temperature > 0:
        raise ValueError(f"CPM: temperature must be > 0, got {temperature}")
    if features.dim() != 2 or prototypes.dim() != 2 or features.shape[1] != prototypes.shape[1]:
        raise ValueError(
            f"CPM: expected features [B, D] and prototypes [K, D], got {tuple(features.shape)} and "
            f"{tuple(prototypes.shape)}"
        )
    if prototypes.shape[0] == 0:
        raise ValueError("CPM: no prototypes")
    f = nn.functional.normalize(features.float(), dim=-1)
    p = nn.functional.normalize(prototypes.to(device=features.device, dtype=torch.float32), dim=-1)
    return torch.softmax(f @ p.T / temperature, dim=-1)


def cpm_mix(outputs: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Σ_k w[b, k] · outputs[k, b, ...]: outputs [K, B, T, H] (any trailing dims), weights [B, K] → [B, T, H].

    Summed in float32 (K bf16 products would round at every step), returned in `outputs`' dtype.
    """
    if (
        outputs.dim() < 2
        or weights.dim() != 2
        or tuple(weights.shape) != (outputs.shape[1], outputs.shape[0])
    ):
        raise ValueError(
            f"CPM: expected outputs [K, B, ...] and weights [B, K], got {tuple(outputs.shape)} and "
            f"{tuple(weights.shape)}"
        )
    w = weights.T.to(device=outputs.device, dtype=torch.float32)
    w = w.reshape(*w.shape, *([1] * (outputs.dim() - 2)))
    return (w * outputs.float()).sum(dim=0).to(outputs.dtype)


class PrototypeMixedConnector(nn.Module):
    """φ(x) = Σ_k w_k(x) φ^(k)(x), w = `cpm_weights(pool(x), prototypes, temperature)`.

    Args:
        connectors: φ^(1) … φ^(K), each mapping features [B, T, D] to the same output shape.
        prototypes: [K, D], one per connector (`prototype`), kept as a buffer (saved in the state dict).
        temperature: τ > 0.
    """

    def __init__(
        self,
        connectors: Sequence[nn.Module],
        prototypes: torch.Tensor,
        temperature: float = DEFAULT_TEMPERATURE,
    ) -> None:
        super().__init__()
        if len(connectors) == 0:
            raise ValueError("CPM: PrototypeMixedConnector needs at least one connector")
        if prototypes.dim() != 2 or prototypes.shape[0] != len(connectors):
            raise ValueError(
                f"CPM: prototypes must be [K, D] with K = {len(connectors)} connectors, "
                f"got shape {tuple(prototypes.shape)}"
            )
        if not temperature > 0:
            raise ValueError(f"CPM: temperature must be > 0, got {temperature}")
        self.connectors = nn.ModuleList(connectors)
        self.register_buffer("prototypes", prototypes.detach().float().clone())
        self.temperature = float(temperature)

    def mixing_weights(self, features: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """w [B, K] for features [B, T, D]."""
        return cpm_weights(pool(features, mask), self.prototypes, self.temperature)

    def forward(self, features: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        weights = self.mixing_weights(features, mask)
        outputs = [connector(features) for connector in self.connectors]
        shapes = {tuple(out.shape) for out in outputs}
        if len(shapes) != 1:
            raise ValueError(f"CPM: connector versions produce different output shapes {sorted(shapes)}")
        return cpm_mix(torch.stack(outputs), weights)


__all__ = ["DEFAULT_TEMPERATURE", "PrototypeMixedConnector", "cpm_mix", "cpm_weights", "pool", "prototype"]
