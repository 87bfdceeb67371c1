"""MAny's two merges (Gao et al., "MAny: Merge Anything for Multimodal Continual Instruction Tuning"):
LPM, Low-rank Parameter Merging, as recursive least squares, and CPM, Cross-modal Projection Merging,
as prototype-weighted mixing of connector versions.

MAny has no public code and only its abstract was available to us. The abstract says: LPM "recursively
merg[es] low-rank weight matrices", "leveraging recursive least squares" for "a closed-form solution";
CPM "adaptively merg[es] cross-modal visual representations via visual-prototype guidance"; both are
training-free CPU algebra. Everything in `lpm.py` and `cpm.py` is therefore OUR derivation of those
sentences, not the paper's equations; the assumptions are listed at the end.

One file per concept: `lpm.py` holds LPM (the least-squares derivation, the ridge, MERA as its
identity-Gram case; `LPMState`, `lpm_merge_state_dict`, `lpm_fold`, `input_grams`), `cpm.py` holds CPM
(`pool`, `prototype`, `cpm_weights`, `cpm_mix`, `PrototypeMixedConnector`). This module re-exports both,
so `from hf_mera.merging.many import ...` keeps working.

Assumptions (ours, none confirmed by the paper):
1. LPM's objective is RegMean's layer-output least squares over the stages so far, and "recursive least
   squares" is the exact recursion in `lpm.py`; ΔW is merged as the full product B·A·scaling (as MERA's exact
   LoRA path does), so the merge is in general not of rank r. Whether MAny re-factorises it is unknown.
2. G_k is taken on stage k's own model (θ₀ + ΔW_k) with stage k's data, i.e. the inputs that stage's
   outputs were produced from; `input_grams` computes it for whichever model it is given.
3. The ridge is per stage and toward the stage's own delta (our choice; see `lpm.py`).
4. CPM mixes connector outputs per sample (for a linear connector this equals mixing its parameters with
   the same weights, since Σ_k w_k = 1); pooling is the mean over tokens; prototypes are means of
   L2-normalised pooled features; the similarity is cosine and the weights a softmax with temperature τ.
"""

from .cpm import DEFAULT_TEMPERATURE, PrototypeMixedConnector, cpm_mix, cpm_weights, pool, prototype
from .lpm import DEFAULT_RIDGE, LPMState, input_grams, lpm_fold, lpm_merge_state_dict

__all__ = [
    "DEFAULT_RIDGE",
    "DEFAULT_TEMPERATURE",
    "LPMState",
    "PrototypeMixedConnector",
    "cpm_mix",
    "cpm_weights",
    "input_grams",
    "lpm_fold",
    "lpm_merge_state_dict",
    "pool",
    "prototype",
]
