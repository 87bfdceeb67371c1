"""PathWeave's Adapter-in-Adapter (AnA) modules, placed in the LLM as MERA's appendix C.3 compares it.

PathWeave (Yu et al., NeurIPS 2024, "LLMs Can Evolve Continually on Modality for X-Modal Reasoning",
code: github.com/JiazuoYu/PathWeave, `lavis/models/blip2_models/{Qformer,adapter}.py` and
`blip2_vicuna_xinstruct.py`) learns modality after modality with only that modality's data. Around a
frozen linear W (y = W x) of the host network, after modalities m₁ … mₙ (n = stage index):

    uni-modal adapter   A_j(x) = s_j · U_j D_j x              (D_j: in → r, U_j: r → out, s_j a learnable
                                                            scalar; no non-linearity, no dropout, no norm)
    cross-modal adapter Â_j(x) = s_j · U_j F_j D_j x  (j < n) (F_j: r → r, the "in-adapter", inserted
                                                            *inside* the frozen A_j of a former modality)
    gate                g(x) = softmax(x W_g + ε · (softplus(x W_noise) + 0.01)),  ε ~ N(0, I) in training
    output              y = W x + Σ_{j<n} g_j(x) Â_j(x) + g_n(x) A_n(x)          (y = W x + A_1(x) at n = 1)

One gate row per token; the gates of a token sum to 1 (PathWeave's "noisy top-k" with k = number of
experts, i.e. a dense noisy softmax). At stage n the newest uni-modal adapter A_n, every in-adapter
F_1 … F_{n-1} and the stage's gate (W_g, W_noise: in × n, zero-initialised, created afresh: each stage
of the original defines only its own `<modality>_gate_adapter_*`) train; every former A_j and the host
network stay frozen (the original's `requires_grad` rules: "adapter" trains, "adapter_list.<j>" for
former j is frozen, "in_adapter" trains again). Initialisation as the original: D_j Kaiming-uniform,
U_j and both biases zero, s_j = 1 (`init_option="lora"`, `adapter_scalar="learnable_scalar"`); F_j
torch's default `nn.Linear` init. A new A_n therefore adds nothing at first, but adding a modality
from stage 2 on does change the model: the fresh zero gate weighs the experts uniformly (1/n) and
each former A_j gets a random in-adapter — as in PathWeave.

Routing: the forward needs no modality label. In PathWeave's code each modality has its own
Q-Former, built with `current_modality` = that modality, so modality m's inputs pass its own gate and
the experts up to its own (`Qformer.py`: `if self.current_modality in "audio": … audio_gate_adapter_*`),
and the original removes later modules when it tests a former modality. MERA's appendix C.3 keeps
every module for every modality so that cross-modal inputs work; here, accordingly, every input — any
modality, batches mixing several (the cross-modal set), text only, each generation step — takes the
one path of the newest configuration (the last entry of `llm_adapters["modalities"]`).

Deviations from the original (and why):
1. Host network: the LLM, not the Q-Former (MERA appendix C.3, for a fair comparison). PathWeave
   adapts the Q-Former's self- and cross-attention query / key / value and the attention output
   `dense`; an LLM has no cross-attention, so the default targets are the attention projections
   q_proj, k_proj, v_proj, o_proj (`target_modules`; LoRA in the other baselines covers every linear
   of the LLM). Only `nn.Linear` modules can be targets (not GPT-2's `Conv1D`).
2. Rank r = the LoRA rank of the other baselines (`training.instruction_tuning.lora_r`, 128 in the
   paper; MERA appendix C.3) instead of PathWeave's bottleneck 8.
3. Nothing is removed at test time: former modalities are evaluated through the newest path (all
   adapters, the newest gate) instead of switching back to their own stage's path (C.3: removing them
   rules out cross-modal inputs). Their outputs can therefore change after later stages (the gate and
   the in-adapters their tokens pass through keep training); that is the forgetting MERA measures.
4. As in PathWeave, the first modality has no adapter: PathWeave starts from an image-tuned
   X-InstructBLIP and adds adapters for new modalities only. Our LLM knows no modality, so the
   method's stage 1 instruction-tunes the LLM on the first modality like every method's stage 1
   (the expert; `trainers/methods/pathweave.py`), and the adapters start at the second modality.
5. Connectors: each modality's own connector (MLP or Q-Former) is pre-trained and instruction-tuned
   at its stage, as for every method in MERA's comparison; PathWeave instead reuses a frozen Q-Former
   and LLM projection and trains adapter branches on the projection (`llmProj_adapter_list`), which
   have no counterpart here.
6. In-adapters follow the code, not the paper's notation {F^m_i}: one F_j per former modality j,
   created when j becomes a former modality and trained again at every later stage (the paper's
   notation suggests a fresh set per new modality m).
7. Modules grow on demand and are keyed by modality name (the original preallocates 4 adapters and
   3 in-adapters in lists indexed by a fixed order video, audio, depth, pc), so any number and order
   of modalities works.
8. Gating is computed densely, Σ_j g_j(x) · expert_j(x); the original's `SparseDispatcher` sends each
   token only to experts with a non-zero gate, which with k = number of experts is every expert unless
   a softmax weight underflows to exactly 0. Gates are computed in float32 and the adapter output is
   cast to the linear's output dtype (the original's `combine` returns float32). The noise is on when
   the module is in training mode (the original reads an `Evaluate_stage` config flag). No
   load-balancing loss, as in the original.
9. Two slips of the original are not reproduced: for point clouds its cross-attention value path adds
   the value experts' output to the *key*, and its self-attention value path inserts the *key*
   in-adapters; here each linear uses its own modules.
10. Training hyper-parameters are MERA's Table 9 instruction-tuning ones (adapters and gates at the
    LLM learning rate 2e-4, connector 2e-5, batch 16, one epoch), the same for every baseline (C.3),
    not PathWeave's (lr 1e-5, 40 epochs).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .llm_adapters import LLMAdapterType, register_llm_adapter

DEFAULT_TARGET_MODULES = ("q_proj", "k_proj", "v_proj", "o_proj")
NOISE_EPSILON = 1e-2  # PathWeave's `noisy_top_k_gating(noise_epsilon=1e-2)`


class UniModalAdapter(nn.Module):
    """A_j(x) = s_j · U_j D_j x, or the cross-modal Â_j(x) = s_j · U_j F_j D_j x given an in-adapter F_j."""

    def __init__(self, in_features: int, out_features: int, rank: int, device=None, dtype=None):
        super().__init__()
        factory = {"device": device, "dtype": dtype}
        self.down = nn.Linear(in_features, rank, **factory)
        self.up = nn.Linear(rank, out_features, **factory)
        self.scale = nn.Parameter(torch.ones(1, **factory))
        with torch.no_grad():  # PathWeave's init_option="lora"
            nn.init.kaiming_uniform_(self.down.weight, a=math.sqrt(5))
            nn.init.zeros_(self.down.bias)
            nn.init.zeros_(self.up.weight)
            nn.init.zeros_(self.up.bias)

    def forward(self, x: torch.Tensor, in_adapter: nn.Module | None = None) -> torch.Tensor:
        # Inputs are cast to each part's dtype: a trainer keeps the trainable parts in float32.
        hidden = self.down(x.to(self.down.weight.dtype))
        if in_adapter is not None:
            hidden = in_adapter(hidden.to(in_adapter.weight.dtype))
        return self.up(hidden.to(self.up.weight.dtype)) * self.scale


class AnA(nn.Module):
    """The Adapter-in-Adapter module of one linear: its delta Σ_j g_j(x) · expert_j(x) (module docstring).

    `uni[m]` is modality m's uni-modal adapter, `cross[m]` the in-adapter inside it once m is a former
    modality, `gate` / `noise` the newest stage's gate weights (`in_features × n`, absent while n = 1).
    """

    def __init__(self, in_features: int, out_features: int, rank: int):
        super().__init__()
        self.in_features, self.out_features, self.rank = in_features, out_features, rank
        self.uni = nn.ModuleDict()
        self.cross = nn.ModuleDict()
        self.register_parameter("gate", None)
        self.register_parameter("noise", None)

    @property
    def modalities(self) -> list[str]:
        return list(self.uni)

    def add_modality(self, name: str, device=None, dtype=None) -> None:
        """Grow by modality `name`: the former newest adapter gets an in-adapter, a fresh gate over all."""
        if name in self.uni:
            raise ValueError(f"PathWeave: modality {name!r} already has its adapters.")
        factory = {"device": device, "dtype": dtype}
        if self.uni:
            self.cross[self.modalities[-1]] = nn.Linear(self.rank, self.rank, **factory)
        self.uni[name] = UniModalAdapter(self.in_features, self.out_features, self.rank, **factory)
        n = len(self.uni)
        if n > 1:
            self.gate = nn.Parameter(torch.zeros(self.in_features, n, **factory))
            self.noise = nn.Parameter(torch.zeros(self.in_features, n, **factory))

    def gates(self, x: torch.Tensor) -> torch.Tensor:
        """`[..., n]` expert weights per token, each row summing to 1 (noisy while training)."""
        x = x.float()
        logits = x @ self.gate.float()
        if self.training:
            std = F.softplus(x @ self.noise.float()) + NOISE_EPSILON
            logits = logits + torch.randn_like(logits) * std
        return logits.softmax(dim=-1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        names = self.modalities
        if len(names) == 1:
            return self.uni[names[0]](x)
        gates = self.gates(x)
        delta = 0
        for j, name in enumerate(names):
            expert = self.uni[name](x, self.cross[name] if name in self.cross else None)
            delta = delta + gates[..., j : j + 1] * expert
        return delta


def _add_ana_output(linear: nn.Linear, args: tuple, output: torch.Tensor) -> torch.Tensor:
    """Forward hook of a target linear: y = W x + AnA(x). A plain function, so copies and pickles work."""
    return output + linear.ana(args[0]).to(output.dtype)


def _check_names(value: Any, field: str) -> list[str]:
    if isinstance(value, str) or not isinstance(value, Sequence) or not value:
        raise ValueError(f"llm_adapters.{field}: a non-empty list of names, got {value!r}.")
    names = list(value)
    if not all(isinstance(n, str) and n for n in names) or len(set(names)) != len(names):
        raise ValueError(f"llm_adapters.{field}: names must be distinct non-empty strings, got {names}.")
    return names


@register_llm_adapter("pathweave")
class PathWeaveAdapters(LLMAdapterType):
    """`llm_adapters = {"type": "pathweave", "rank": r, "modalities": [m₁, …], "target_modules": [...]}`:
    an `AnA` module in every `nn.Linear` of the LLM whose name ends in one of `target_modules`
    (default `DEFAULT_TARGET_MODULES`), with one expert per modality, in learning order."""

    fields = ("type", "rank", "modalities", "target_modules")

    @classmethod
    def normalize(cls, spec: dict[str, Any], modalities: Sequence[str]) -> dict[str, Any]:
        unknown = sorted(set(spec) - set(cls.fields))
        if unknown:
            raise ValueError(
                f"llm_adapters: unknown field(s) {unknown} for 'pathweave'; known: {cls.fields}."
            )
        rank = spec.get("rank")
        if isinstance(rank, bool) or not isinstance(rank, int) or rank < 1:
            raise ValueError(f"llm_adapters.rank: a positive int (the LoRA rank), got {rank!r}.")
        names = _check_names(spec.get("modalities"), "modalities")
        missing = [n for n in names if n not in modalities]
        if missing:
            raise ValueError(
                f"llm_adapters.modalities: {missing} are not modalities of this model ({list(modalities)})."
            )
        targets = _check_names(spec.get("target_modules", list(DEFAULT_TARGET_MODULES)), "target_modules")
        return {"rank": rank, "modalities": names, "target_modules": targets}

    @classmethod
    def apply(cls, language_model: nn.Module, spec: dict[str, Any]) -> list[nn.Module]:
        targets, rank, wanted = set(spec["target_modules"]), spec["rank"], spec["modalities"]
        linears = {
            name: module
            for name, module in language_model.named_modules()
            if isinstance(module, nn.Linear) and ".ana." not in f".{name}."
        }
        chosen = {name: m for name, m in linears.items() if name.rsplit(".", 1)[-1] in targets}
        if not chosen:
            leaves = sorted({name.rsplit(".", 1)[-1] for name in linears})
            raise ValueError(
                f"llm_adapters.target_modules: {sorted(targets)} match no linear of the LLM {leaves}."
            )
        stray = sorted(n for n, m in linears.items() if n not in chosen and "ana" in m._modules)
        if stray:
            raise ValueError(
                f"llm_adapters.target_modules: cannot move existing adapters away from {stray[:3]}."
            )
        grown = []
        for linear in chosen.values():
            ana = linear._modules.get("ana")
            if ana is None:
                ana = linear.ana = AnA(linear.in_features, linear.out_features, rank)
                linear.register_forward_hook(_add_ana_output)
            if ana.rank != rank or ana.modalities != wanted[: len(ana.modalities)]:
                raise ValueError(
                    f"llm_adapters: the model has PathWeave adapters of rank {ana.rank} for {ana.modalities}; "
                    f"they can only grow by appending modalities (asked: rank {rank}, {wanted})."
                )
            if len(ana.modalities) < len(wanted):
                for name in wanted[len(ana.modalities) :]:
                    ana.add_modality(name, device=linear.weight.device, dtype=linear.weight.dtype)
                grown.append(ana)
        return grown


# ---- helpers for the method (trainers/methods/pathweave.py) and tests ----------------------------
def ana_modules(model: nn.Module) -> dict[str, AnA]:
    """Every AnA module of `model`, by module path."""
    return {name: module for name, module in model.named_modules() if isinstance(module, AnA)}


def add_pathweave_modality(
    model, modality: str, rank: int, target_modules: Sequence[str] = DEFAULT_TARGET_MODULES
) -> dict[str, Any]:
    """Give `model` (an `AnyModalityLlava`) PathWeave adapters for `modality`: the first ones, or one
    more expert in every AnA. Returns the model's new `config.llm_adapters`."""
    spec = model.config.llm_adapters
    if spec is None:
        spec = {"type": "pathweave", "rank": rank, "modalities": [], "target_modules": list(target_modules)}
    elif spec["type"] != "pathweave":
        raise ValueError(f"PathWeave: the model already has LLM adapters of type {spec['type']!r}.")
    # `rank` is passed on, so asking an existing set of adapters for another rank is refused.
    return model.set_llm_adapters({**spec, "rank": rank, "modalities": [*spec["modalities"], modality]})


def stage_parameters(model: nn.Module) -> dict[str, nn.Parameter]:
    """What PathWeave trains at the stage of the newest modality, by name: its uni-modal adapters,
    every in-adapter and the gate weights. The former uni-modal adapters are not in it."""
    params = {}
    for path, ana in ana_modules(model).items():
        newest = ana.modalities[-1]
        for name, param in ana.named_parameters():
            if not name.startswith("uni.") or name.startswith(f"uni.{newest}."):
                params[f"{path}.{name}"] = param
    return params


__all__ = [
    "AnA",
    "DEFAULT_TARGET_MODULES",
    "PathWeaveAdapters",
    "UniModalAdapter",
    "add_pathweave_modality",
    "ana_modules",
    "stage_parameters",
]
