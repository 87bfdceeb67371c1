"""The tensor arithmetic of every stage merge: pure functions of tensors, float32 math, cast back.

    interpolate(p, v, c)     p + c · (v − p)      MERA, full fine-tuning (c = 1/i; c = 1 gives v)
    add_scaled(p, d, c)      p + c · d            MERA's LoRA fold (d = ΔWᵢ), the task-vector and LPM
                                                  folds (θ₀ + λ · combine(τ), θ₀ + ΔW)

Each raises a `ValueError` naming the key when the result holds NaN / inf.
"""

from __future__ import annotations

import torch


def _check_finite(out: torch.Tensor, what: str, key: str) -> None:
    if not torch.isfinite(out).all():
        raise ValueError(f"{what} produced NaN/inf for key {key!r}")


def interpolate(prev: torch.Tensor, new: torch.Tensor, coefficient: float, *, key: str) -> torch.Tensor:
    """p + c · (v − p) in float32, cast to `prev`'s dtype; exactly `new` at c = 1.

    The delta form keeps p bit for bit where v == p (frozen weights).
    """
    p, v = prev.float(), new.to(device=prev.device, dtype=torch.float32)
    # θ_prev + (θ_new − θ_prev) can be off by an ulp; "keep the new model" should be exact.
    out = v.clone() if coefficient == 1 else p + coefficient * (v - p)
    _check_finite(out, "merging", key)
    return out.to(prev.dtype)


def add_scaled(prev: torch.Tensor, delta: torch.Tensor, coefficient: float, *, key: str) -> torch.Tensor:
    """p + c · d in float32 (so a small c · d is not rounded away in bf16 first), cast to `prev`'s dtype."""
    out = prev.float() + coefficient * delta.to(device=prev.device, dtype=torch.float32)
    _check_finite(out, "folding ΔW (or a merged delta)", key)
    return out.to(prev.dtype)


__all__ = ["add_scaled", "interpolate"]
