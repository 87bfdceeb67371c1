"""Per-GPU memory of each phase of the paper configs (`paper-sequential.yaml`: Llama-3-8B-Instruct in
bf16, LoRA r = 128 on every linear of the LLM, CLIP-ViT-L/14-336, Whisper-large-v3 + 32-query
Q-Former, the point-patch encoder), per engine, on paper: nothing is trained or downloaded.

Parameter counts are exact: each architecture is built from its published hyper-parameters on the
meta device (no weights), with the library's own connectors and PathWeave adapters. Bytes per
parameter follow what the trainers do (`trainers/_common.py`): frozen weights stay in the config's
bf16 (2 B); trainable ones are upcast to float32 (4 B), with a float32 gradient (4 B) and AdamW's two
float32 moments (8 B): 16 B per trainable parameter. Engines shard over N GPUs:

- DDP: nothing sharded;
- ZeRO-2: gradients and optimizer moments sharded (trainable float32 weights and frozen weights
  replicated);
- ZeRO-3 and FSDP2 (`fully_shard`): everything sharded; one wrapped unit (a decoder layer, or the
  embeddings / lm_head) is all-gathered at a time, plus one prefetched.

Activations are left out (they scale with batch × sequence length and activation checkpointing), as is
the CUDA context (~0.5-1 GB) and allocator fragmentation.

    python bench/memory_on_paper.py [--gpus 8]      # prints the markdown table of docs/sharding.md
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

GB = 1e9
FROZEN, TRAINABLE = 2, 16  # bytes per parameter: bf16 weight; fp32 weight + fp32 grad + 2 fp32 moments


def count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def paper_parts() -> dict[str, int]:
    """Exact parameter counts of the paper configs' parts."""
    from transformers import CLIPVisionConfig, CLIPVisionModel, LlamaConfig, LlamaForCausalLM, WhisperConfig
    from transformers.models.whisper.modeling_whisper import WhisperEncoder

    from hf_mera.modalities.encoders import build_encoder
    from hf_mera.models.anymodality_llava.connectors import build_connector
    from hf_mera.models.anymodality_llava.pathweave import DEFAULT_TARGET_MODULES, AnA

    with torch.device("meta"):
        llama = LlamaForCausalLM(
            LlamaConfig(
                hidden_size=4096,
                intermediate_size=14336,
                num_hidden_layers=32,
                num_attention_heads=32,
                num_key_value_heads=8,
                vocab_size=128256,
                tie_word_embeddings=False,
            )
        )
        clip = CLIPVisionModel(
            CLIPVisionConfig(
                hidden_size=1024,
                intermediate_size=4096,
                num_hidden_layers=24,
                num_attention_heads=16,
                image_size=336,
                patch_size=14,
                projection_dim=768,
            )
        )
        whisper = WhisperEncoder(
            WhisperConfig(
                d_model=1280,
                encoder_layers=32,
                encoder_attention_heads=20,
                encoder_ffn_dim=5120,
                num_mel_bins=128,
                max_source_positions=1500,
            )
        )
        points = build_encoder(
            "point_patch", {"num_tokens": 32, "group_size": 32, "hidden_size": 384, "in_channels": 6}
        )
        mlp_image = build_connector("mlp2x_gelu", 1024, 4096)
        qformer_audio = build_connector(
            "qformer",
            1280,
            4096,
            {"num_query_tokens": 32, "hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12},
        )
        mlp_points = build_connector("mlp2x_gelu", 384, 4096)
        # LoRA r = 128 on every linear of the LLM: r · (in + out) per linear.
        layer = llama.model.layers[0]
        linears = [m for m in layer.modules() if isinstance(m, torch.nn.Linear)]
        lora_per_layer = sum(128 * (m.in_features + m.out_features) for m in linears)
        # PathWeave: one AnA expert per modality on q/k/v/o (rank 128); at stage 4, 4 experts.
        targets = [getattr(layer.self_attn, name) for name in DEFAULT_TARGET_MODULES]
        expert = 0
        stage4 = 0
        for linear in targets:
            ana = AnA(linear.in_features, linear.out_features, 128)
            ana.add_modality("m1")
            expert += count(ana)
            for name in ("m2", "m3", "m4"):
                ana.add_modality(name)
            stage4 += count(ana)
    n_layers = llama.config.num_hidden_layers
    decoder_layer = count(layer)
    return {
        "llm": count(llama),
        "embed": llama.model.embed_tokens.weight.numel(),
        "lm_head": llama.lm_head.weight.numel(),
        "decoder_layer": decoder_layer,
        "llm_linears": sum(m.weight.numel() for m in linears) * n_layers,
        "clip": count(clip),
        "whisper": count(whisper),
        "points": count(points),
        "mlp_image": count(mlp_image),
        "qformer_audio": count(qformer_audio),
        "mlp_points": count(mlp_points),
        "lora": lora_per_layer * n_layers,
        "pathweave_expert": expert * n_layers,
        "pathweave_stage4": stage4 * n_layers,
    }


def rows(p: dict[str, int], n: int) -> list[tuple[str, str, dict[str, float], str]]:
    """(phase, what trains, {engine: GB per GPU}, whole weights needed?) for N = n GPUs."""
    encoders = p["clip"] + p["whisper"] + p["points"]  # every encoder, frozen, in the model
    # stage 4 holds four connectors (video's has image's shape)
    connectors = 2 * p["mlp_image"] + p["qformer_audio"] + p["mlp_points"]
    model = p["llm"] + encoders + connectors  # every parameter of the stage-4 model
    unit = 2 * max(p["decoder_layer"], p["embed"])  # two gathered units (current + prefetch)

    def engines(trainable: int, extra: int = 0, unit_bytes: float = unit * FROZEN) -> dict[str, float]:
        """GB per GPU, `trainable` of the model's (+ `extra` adapter) parameters in fp32 + AdamW, the
        rest frozen in bf16."""
        frozen = model + extra - trainable
        return {
            "DDP": (FROZEN * frozen + TRAINABLE * trainable) / GB,
            "ZeRO-2": (FROZEN * frozen + 4 * trainable + (TRAINABLE - 4) * trainable / n) / GB,
            "ZeRO-3 / FSDP2": ((FROZEN * frozen + TRAINABLE * trainable) / n + unit_bytes) / GB,
        }

    def gathered(trainable: int, extra: int = 0) -> str:
        """The whole trained model that ZeRO-3 / FSDP2 gather on every GPU after training."""
        whole = FROZEN * (model + extra - trainable) + 4 * trainable
        return f"after training, on every GPU (ZeRO-3 / FSDP2): + {whole / GB:.1f}"

    audio = p["qformer_audio"]
    lora = p["lora"] + audio
    # EWC's state (Σ F in float32 + the anchor θᵢ in bf16) over every LoRA'd weight matrix, whole on
    # every process (not sharded), on top of LoRA instruction tuning.
    ewc = (4 + 2) * p["llm_linears"] / GB
    whole = FROZEN * model / GB
    return [
        (
            "connector pre-training (audio's Q-Former, the largest)",
            f"{audio / 1e6:.0f} M",
            engines(audio),
            gathered(audio),
        ),
        (
            "LoRA instruction tuning (r 128)",
            f"LoRA {p['lora'] / 1e6:.0f} M + connector",
            engines(lora, p["lora"]),
            gathered(lora, p["lora"]),
        ),
        (
            "full instruction tuning",
            f"LLM {p['llm'] / 1e9:.2f} B + connector",
            engines(p["llm"] + audio, 0, unit * 4),
            gathered(p["llm"] + audio),
        ),
        (
            "EWC instruction tuning (LoRA)",
            f"as LoRA; + Σ F, θᵢ over {p['llm_linears'] / 1e9:.2f} B weights",
            {k: v + ewc for k, v in engines(lora, p["lora"]).items()},
            f"Σ F and θᵢ whole on every GPU ({ewc:.1f}); the penalty all-gathers each covered LoRA factor; {gathered(lora, p['lora'])}",
        ),
        (
            "PathWeave instruction tuning (stage 4)",
            f"newest expert {p['pathweave_expert'] / 1e6:.0f} M (+ in-adapters, gate) + connector",
            engines(p["pathweave_expert"] + audio, p["pathweave_stage4"]),
            gathered(p["pathweave_expert"] + audio, p["pathweave_stage4"]),
        ),
        (
            "realignment (stage 4: four connectors)",
            f"{connectors / 1e6:.0f} M",
            engines(connectors),
            gathered(connectors),
        ),
        (
            "merge (MERA, task vectors, LPM)",
            "nothing; on CPU",
            dict.fromkeys(("DDP", "ZeRO-2", "ZeRO-3 / FSDP2"), 0.0),
            f"whole checkpoints, host RAM of every process: θᵢ,vanilla + θᵢ₋₁ + θᵢ ≈ 3 × {whole:.1f}",
        ),
        (
            "evaluation with generation (main process)",
            "nothing",
            dict.fromkeys(("DDP", "ZeRO-2", "ZeRO-3 / FSDP2"), whole),
            "the whole model on one GPU, + KV cache (131 kB per token)",
        ),
        (
            "stage publishing (safetensors, card)",
            "nothing",
            dict.fromkeys(("DDP", "ZeRO-2", "ZeRO-3 / FSDP2"), 0.0),
            "no (hard links to the phase checkpoint on disk)",
        ),
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--gpus", type=int, default=8, help="N, the GPUs the engines shard over")
    args = parser.parse_args(argv)
    p = paper_parts()
    print("Parameter counts (exact, built on the meta device):\n")
    for name, value in p.items():
        print(f"- {name}: {value:,}")
    print(f"\nPer-GPU memory of weights, gradients and AdamW state, N = {args.gpus} GPUs (GB = 1e9 bytes)\n")
    print("| phase | trains | DDP | ZeRO-2 | ZeRO-3 / FSDP2 | whole (gathered) weights needed |")
    print("|---|---|---:|---:|---:|---|")
    for phase, trains, gb, gathered in rows(p, args.gpus):
        cells = " | ".join(f"{gb[e]:.1f}" for e in ("DDP", "ZeRO-2", "ZeRO-3 / FSDP2"))
        print(f"| {phase} | {trains} | {cells} | {gathered} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
