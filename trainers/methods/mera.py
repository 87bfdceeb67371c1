"""MERA, "Merge then Realign" (paper section 4): after instruction tuning stage i, merge the LLM
θᵢ = θᵢ₋₁ + (θᵢ,vanilla − θᵢ₋₁)/i (`hf_mera.merging.mera`), then realign the connectors of every seen
modality on r % replay of D₁…Dᵢ (`trainers.realign`; r = the method's `replay_ratio`)."""

from __future__ import annotations

from ..merge_and_realign import MergeAndRealignTrainer
from . import register_method


@register_method("mera")
class MERA(MergeAndRealignTrainer):
    merge_method = "mera"
    realign = True
