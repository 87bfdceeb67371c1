"""MERA, "Merge then Realign" (paper section 4): after instruction tuning stage i, merge the LLM
θᵢ = θᵢ₋₁ + (θᵢ,vanilla − θᵢ₋₁)/i (`hf_mera.merging.mera`), then realign the connectors of every seen
modality on r % replay of D₁…Dᵢ (`trainers.realign`; r = the method's `replay_ratio`)."""

from __future__ import annotations

from model_cards.writer import MERA_CITATION

from ..merge_and_realign import MergeAndRealignTrainer
from . import register_method


@register_method("mera")
class MERA(MergeAndRealignTrainer):
    merge_method = "mera"
    realign = True
    summary = (
        "Fine-Tuning's stage, then merge θᵢ = θᵢ₋₁ + ΔWᵢ/i and realign the seen connectors on r % replay"
    )
    description = (
        "MERA, Merge then Realign: after instruction tuning stage i, only the LLM is merged as "
        "θᵢ = θᵢ₋₁ + (θᵢ,vanilla − θᵢ₋₁)/i, then the connectors of every modality seen so far are "
        "realigned (encoders and LLM frozen) on r % replay of their training data."
    )
    paper = {
        "title": "Merge then Realign: Simple and Effective Modality-Incremental Continual Learning for "
        "Multimodal LLMs",
        "id": "2503.07663",
        "citation": MERA_CITATION,
    }
