"""The tensor arithmetic of every stage merge: pure functions of tensors, float32 math, cast back.

    interpolate(p, v, c)     p + c · (v − p)      MERA, full fine-tuning (c = 1/i; c = 1 gives v)
    add_scaled(p, d, c)      p + c · d            MERA's LoRA fold (d = ΔWᵢ), the task-vector and LPM
                                                  folds (θ₀ + λ · combine(τ), θ₀ + ΔW)

Memory speed. A merge reads two tensors and writes one; `p + c * (v - p)` as three whole-tensor torch
ops makes three passes over memory and allocates two temporaries (0.12× of a plain copy's bandwidth
through the old state-dict path on a SmolLM2-135M-shaped model). Here the same three ops run block by
block (`BLOCK` elements, 1 MiB per float32 input: a block stays in cache between the ops), into
`out`, which may be one of the inputs' own storage (`v`'s, when it is the caller's to overwrite):
one read of each input and one write, no temporary. The ops and their order are the reference's
(`torch.sub`, then `mul` by c, then `add` p; c rounded to float32 as torch does for a Python scalar),
so the result is bitwise the reference's `p + c * (v - p)` (`tests/test_merging_fused.py`); a fused
multiply-add (`torch.lerp`, `torch.add(alpha=)`) would be faster but rounds differently.

Validation stays, without a second pass over memory: each block's float32 sum is taken while the block
is in cache (a NaN / inf anywhere makes it non-finite); only a block whose sum is not finite is checked
element by element (an overflowing sum of finite values is not an error). The check runs on the float32
result, before the cast, as the reference did. Each raises a `ValueError` naming the key.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

# Elements per block: 1 MiB per float32 input stays in cache between the three ops, and few enough
# blocks that the per-op thread fork/join does not dominate (64 Ki elements was 7x slower on a loaded
# 2-core machine); bench/bench_merge_speed.py sweeps the choice.
BLOCK = 1 << 18


def _overlaps(a: torch.Tensor, b: torch.Tensor) -> bool:
    return a.untyped_storage().data_ptr() == b.untyped_storage().data_ptr()


def _output(out: torch.Tensor | None, like: torch.Tensor, inputs: tuple[torch.Tensor, ...]) -> torch.Tensor:
    """`out` if it can take the result in place (contiguous, `like`'s shape and dtype, and not the
    storage of an input other than the one written first); else a new tensor."""
    if (
        out is None
        or out.shape != like.shape
        or out.dtype != like.dtype
        or not out.is_contiguous()
        or any(_overlaps(out, t) for t in inputs[1:])
    ):
        return torch.empty(like.shape, dtype=like.dtype, device=like.device)
    return out


def _blocked(
    out: torch.Tensor,
    inputs: tuple[torch.Tensor, ...],
    step: Callable[..., None],
    what: str,
    key: str,
) -> torch.Tensor:
    """Run `step(o, *input_blocks)` (o: a float32 block to write) block by block into `out`."""
    for tensor in inputs:
        if tensor.shape != out.shape:
            raise ValueError(f"shape mismatch for key {key!r}: {tuple(out.shape)} and {tuple(tensor.shape)}")
    flat_out = out.view(-1)
    flats = [t.to(device=out.device).reshape(-1) for t in inputs]
    n = flat_out.numel()
    direct = out.dtype == torch.float32
    scratch = None if direct else torch.empty(min(BLOCK, n), dtype=torch.float32, device=out.device)
    starts = range(0, n, BLOCK)
    sums = torch.empty(len(starts), dtype=torch.float32, device=out.device)

    for j, start in enumerate(starts):
        stop = min(start + BLOCK, n)
        o = flat_out[start:stop] if direct else scratch[: stop - start]
        step(o, *(f[start:stop] for f in flats))
        if direct:
            torch.sum(o, dim=0, out=sums[j])  # while the block is in cache
        else:  # a cast: check the float32 block now (the inputs may be the output's storage)
            if not bool(torch.isfinite(o).all()):
                raise ValueError(f"{what} produced NaN/inf for key {key!r}")
            flat_out[start:stop].copy_(o)
    if direct and not bool(torch.isfinite(sums).all()):
        for j in torch.nonzero(~torch.isfinite(sums)).flatten().tolist():
            if not bool(torch.isfinite(flat_out[starts[j] : starts[j] + BLOCK]).all()):
                raise ValueError(f"{what} produced NaN/inf for key {key!r}")
    return out


@torch.no_grad()
def interpolate(
    prev: torch.Tensor,
    new: torch.Tensor,
    coefficient: float,
    *,
    key: str,
    out: torch.Tensor | None = None,
) -> torch.Tensor:
    """p + c · (v − p) in float32, cast to `prev`'s dtype; exactly `new` at c = 1.

    The delta form keeps p bit for bit where v == p (frozen weights). `out`: where to write (e.g. `new`
    itself, when the caller may overwrite it); None, or one that cannot take it, allocates.
    """
    out = _output(out, prev, (new, prev))
    c = float(coefficient)
    fp32 = prev.dtype == torch.float32 and new.dtype == torch.float32

    def step(o: torch.Tensor, p: torch.Tensor, v: torch.Tensor) -> None:
        if c == 1:
            # θ_prev + (θ_new − θ_prev) can be off by an ulp; "keep the new model" should be exact.
            if o.data_ptr() != v.data_ptr():
                o.copy_(v)
            return
        if fp32:
            torch.sub(v, p, out=o)
        else:  # widen first: the difference is taken in float32, as the reference did
            o.copy_(v)
            o.sub_(p)
        o.mul_(c)
        o.add_(p)

    return _blocked(out, (prev, new), step, "merging", key)


@torch.no_grad()
def add_scaled(
    prev: torch.Tensor,
    delta: torch.Tensor,
    coefficient: float,
    *,
    key: str,
    out: torch.Tensor | None = None,
) -> torch.Tensor:
    """p + c · d in float32 (so a small c · d is not rounded away in bf16 first), cast to `prev`'s dtype.

    `out`: where to write (θᵢ,vanilla's tensor, or `delta` itself when it is the caller's); None allocates.
    """
    out = _output(out, prev, (delta, prev))
    c = float(coefficient)
    fp32 = delta.dtype == torch.float32

    def step(o: torch.Tensor, p: torch.Tensor, d: torch.Tensor) -> None:
        if fp32:
            torch.mul(d, c, out=o)
        else:
            o.copy_(d)
            o.mul_(c)
        o.add_(p)

    return _blocked(out, (prev, delta), step, "folding ΔW (or a merged delta)", key)


def interpolate_reference(prev: torch.Tensor, new: torch.Tensor, coefficient: float) -> torch.Tensor:
    """The arithmetic `interpolate` must equal bit for bit: whole-tensor ops, as the pipeline always did."""
    p, v = prev.float(), new.to(device=prev.device, dtype=torch.float32)
    return (v.clone() if coefficient == 1 else p + coefficient * (v - p)).to(prev.dtype)


def add_scaled_reference(prev: torch.Tensor, delta: torch.Tensor, coefficient: float) -> torch.Tensor:
    """The arithmetic `add_scaled` must equal bit for bit."""
    return (prev.float() + coefficient * delta.to(device=prev.device, dtype=torch.float32)).to(prev.dtype)


__all__ = ["BLOCK", "add_scaled", "add_scaled_reference", "interpolate", "interpolate_reference"]
