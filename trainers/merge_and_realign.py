"""MergeAndRealignTrainer: runs a modality-incremental curriculum, MERA by default.

For stage i (modality Mᵢ) of the order:

    add Mᵢ → pre-train its connector (captions) → instruction-tune LLM + connector (captions + QA,
    with the method's plugins) → merge the LLM only (θᵢ = θᵢ₋₁ + (θᵢ,vanilla − θᵢ₋₁)/i, i.e.
    θᵢ₋₁ + ΔWᵢ/i; `hf_mera.merging.mera`) → realign the connectors of M₁…Mᵢ on r % replay of D₁…Dᵢ
    (`trainers.realign`) → evaluate every seen modality → publish the stage → next.

Each transition is a method of this class, so a method (`trainers/methods/`) overrides or switches
off one step: Fine-Tuning is this trainer with `merge_method = "none"` and `realign = False`. Every
phase is a content-addressed checkpoint (`trainers.checkpoints`), which makes runs resumable after a
crash and lets methods share identical phases.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any, ClassVar

from hf_mera.continual.curriculum import MethodConfig
from hf_mera.continual.plugins import StageContext

from .checkpoints import Checkpoint, derive_seed
from .configs import phase_args
from .merge import LORA_DELTAS_FILE, StageUpdate, merge_phase
from .records import MethodRecord, StageRecord
from .stage_folder import StagePublisher
from .workspace import Workspace, set_seed


class MergeAndRealignTrainer(StagePublisher):
    """MERA over a curriculum; `merge_method` and `realign` switch its two steps.

    Class attributes a method sets (a method's YAML entry may override the first two):
        merge_method: the stage merge (`hf_mera.merging`: "mera", 1/i; "none": no merge;
            "ties", "lpm" ...), a name or {method: <name>, <options>}.
        realign: realign the seen connectors after the merge.
        reference: the stage scores are the run's S_sup (the individually trained experts).
        summary: what stage i trains and what it keeps, in one line (the README's method table).
        description: the method in a few sentences (its stage cards' "Method" section).
        paper: the method's paper, as trl's trainers carry `_paper`: {"title", "id" (arXiv id or
            venue), "citation" (BibTeX)}, or None; its cards cite it beside MERA.
    """

    merge_method: str | dict = "mera"
    realign: bool = True
    reference: bool = False
    summary: ClassVar[str] = ""
    description: ClassVar[str] = ""
    paper: ClassVar[dict[str, str] | None] = None

    def __init__(self, workspace: Workspace, method: MethodConfig):
        self.used: dict[str, Checkpoint] = {}  # every phase this method's curriculum went through
        self.ws = workspace
        self.run = workspace.run
        self.method = method
        if method.realign is not None:
            self.realign = method.realign
        self.stage_merge = method.stage_merge(self.merge_method)  # the YAML's `merge:`, else the class's
        self.updates: list[StageUpdate] = []  # stages 1 … i of the current curriculum, for the merge
        from hf_mera.continual.plugins import build_plugin

        self.plugins = [build_plugin(**spec) for spec in method.plugins]
        from model_cards import check_push_ready

        check_push_ready(self.run, method.name)  # no token: fail now, not after training

    # ---- the curriculum ----------------------------------------------------------------------
    def stages(self) -> Iterator[StageContext]:
        """The stages in curriculum order; each starts from the previous one's model (stage 1 from
        the backbone)."""
        for index, modality in enumerate(self.run.order, start=1):
            yield self.stage_context(index, modality, list(self.run.order))

    def stage_context(self, index: int, modality: str, order: list[str]) -> StageContext:
        return StageContext(
            index=index,
            modality=modality,
            order=order,
            output_dir=str(self.ws.output_dir),
            seed=self.run.seed,
            train_sets={m: self.ws.data.train(m) for m in order},
        )

    def train(self) -> MethodRecord:
        record = MethodRecord(
            self.method.name, self.method.type, list(self.run.order), reference=self.reference
        )
        backbone = checkpoint = self.track(self.ws.backbone())
        evaluator = self.ws.evaluator
        for stage in self.stages():
            stage_start = time.perf_counter()
            checkpoint = self.run_stage(stage, backbone if stage.index == 1 else checkpoint)
            scores = evaluator.evaluate(checkpoint, list(stage.seen))
            record.stages.append(
                StageRecord(
                    stage.index,
                    stage.modality,
                    scores,
                    str(checkpoint.path),
                    time.perf_counter() - stage_start,
                )
            )
            self.save_stage(stage, checkpoint, scores)
        if set(stage.seen) == set(self.run.order):  # a model that knows every modality of the run
            record.cross_modal_accuracy = evaluator.cross_modal_accuracy(checkpoint)
        self.account(record, checkpoint)
        return record

    def run_stage(self, stage: StageContext, previous: Checkpoint) -> Checkpoint:
        if stage.modality in self.ws.learned_modalities:  # measured, not trained (an imported LLaVA)
            from .learned_stage import learned_stage_phase

            return learned_stage_phase(self, stage, previous)
        checkpoint = self.add_modality(stage, previous)
        start = self.pretrain_connector(stage, checkpoint)
        vanilla = self.instruction_tune(stage, start)
        # θᵢ₋₁ for the merge is instruction tuning's starting point: the previous stage's LLM with
        # this modality's placeholder row added, so every LLM tensor has the same shape as θᵢ,vanilla.
        # Merges over every stage read all of them (an expert's stage 1 starts a fresh list).
        self.updates = [*self.updates[: stage.index - 1], StageUpdate(stage.modality, start, vanilla)]
        merged = self.merge(stage, self.updates)
        return self.realign_connectors(stage, merged) if self.realigns(stage) else merged

    def realigns(self, stage: StageContext) -> bool:
        """Whether `stage` ends with a realignment. Stage 1 has no merged LLM to realign to, and the
        paper's MERA stage 1 is the expert (Table 11): it realigns only with `realign_first_stage`."""
        return self.realign and (stage.index > 1 or self.method.realign_first_stage)

    def phase(self, name: str, parent: Checkpoint | None, description: dict[str, Any], build) -> Checkpoint:
        """`Workspace.run_phase`, remembering the phase as part of this method's curriculum."""
        return self.track(self.ws.run_phase(name, parent, description, build))

    def track(self, checkpoint: Checkpoint) -> Checkpoint:
        self.used[checkpoint.key] = checkpoint
        return checkpoint

    def account(self, record: MethodRecord, final: Checkpoint) -> None:
        """Table 6 for this method: the training cost of every phase of its curriculum (phases shared
        with another method count for both, so methods compare fairly), and inference on `final`."""
        costs = [c.cost for c in self.used.values() if c.cost]
        record.train_seconds = sum(c["wall_seconds"] for c in costs)
        peaks = [c["peak_memory_bytes"] for c in costs if c.get("peak_memory_bytes")]
        record.peak_memory_bytes = max(peaks) if peaks else None
        record.memory_source = costs[0].get("memory_source") if costs else None
        inference = self.ws.evaluator.inference_cost(final, self.run.order[-1])
        record.infer_peak_memory_bytes = inference.get("peak_memory_bytes")
        record.latency_per_token_ms = inference.get("latency_per_token_ms")

    # ---- transitions (override any of these) -------------------------------------------------
    def add_modality(self, stage: StageContext, previous: Checkpoint) -> Checkpoint:
        modality = stage.modality
        config = dict(self.run.model.modalities[modality])
        description = {"phase": "add_modality", "modality": modality, "config": config}

        def build(model, processor, tmp):
            from hf_mera.models.anymodality_llava.configuration_anymodality_llava import ModalityConfig
            from hf_mera.models.anymodality_llava.modeling_anymodality_llava import load_modality_encoder

            # Encoder and connector depend only on (seed, modality): every method and the expert
            # start this modality from the same modules, and the feature cache is shared.
            set_seed(derive_seed(self.run.seed, "modality", modality))
            mc = ModalityConfig.from_dict({**config, "name": modality})
            model.add_modality(mc, encoder=load_modality_encoder(mc), processor=processor)
            return model, processor

        return self.phase(f"add-{modality}", previous, description, build)

    def pretrain_connector(self, stage: StageContext, checkpoint: Checkpoint) -> Checkpoint:
        captions = self.ws.data.train(stage.modality, tasks=("caption",))
        settings = self.run.training.connector_pretrain
        return self.connector_phase("pretrain", "connector_pretrain", stage, checkpoint, settings, captions)

    def connector_phase(self, name: str, kind: str, stage, checkpoint, settings, dataset) -> Checkpoint:
        """Phase `<name>-<modality>` that trains the stage's connector alone on `dataset` (connector
        pre-training; EProj's instruction tuning); `kind` names it in the phase's description."""
        modality = stage.modality
        description = {"phase": kind, "modality": modality, **asdict(settings)}

        def build(model, processor, tmp):
            from .configs import ConnectorPretrainConfig
            from .connector_pretrain import ConnectorPretrainTrainer

            self.ws.features.ensure(model, processor, modality)
            trainer = ConnectorPretrainTrainer(
                model=model,
                modality=modality,
                args=self.trainer_args(ConnectorPretrainConfig, settings, tmp),
                train_dataset=dataset,
                processing_class=processor,
                data_collator=self.ws.features.collator(processor),
            )
            trainer.train()
            return trainer.model, processor

        return self.phase(f"{name}-{modality}", checkpoint, description, build)

    def instruction_train_dataset(self, stage: StageContext):
        dataset = self.ws.data.train(stage.modality)
        for plugin in self.plugins:
            dataset = plugin.transform_train_dataset(dataset, stage)
        return dataset

    def instruction_tune(self, stage: StageContext, checkpoint: Checkpoint) -> Checkpoint:
        """Tune the LLM side and the new connector on Dᵢ (the plugins' hooks around it). The plugins'
        state is saved in the checkpoint and restored from it, so a reused phase (a resumed run)
        hands later stages the state an uninterrupted run would."""
        modality, settings = stage.modality, self.instruction_settings(stage)
        description = {
            "phase": "instruction_tuning",
            "modality": modality,
            **asdict(settings),
            **self.instruction_description(stage),
            "plugins": self.method.plugins,
        }
        if self.plugins:  # plugins may depend on the stage's position and the run's method
            description["stage"] = stage.index

        def build(model, processor, tmp):
            from hf_mera.continual.plugins import save_plugin_states

            from .configs import InstructionTuningConfig
            from .instruction_tuning import InstructionTuningTrainer

            model = self.prepare_instruction_model(model, stage)
            self.ws.features.ensure(model, processor, modality)
            for plugin in self.plugins:
                plugin.on_stage_start(stage, model)
            dataset = self.instruction_train_dataset(stage)
            collator = self.ws.features.collator(processor)
            trainer = InstructionTuningTrainer(
                model=model,
                modality=modality,
                args=self.trainer_args(InstructionTuningConfig, settings, tmp),
                train_dataset=dataset,
                processing_class=processor,
                data_collator=collator,
                plugins=self.plugins,
                stage=stage,
                train_parameters=self.instruction_train_parameters(model, stage),
            )
            trainer.train()
            model = self._finish_instruction_tuning(trainer, tmp)
            for plugin in self.plugins:
                plugin.on_stage_end(stage, model, dataset, collator)
            if self.ws.is_main:
                save_plugin_states(self.plugins, tmp)
            return model, processor

        checkpoint = self.phase(f"it-{modality}", checkpoint, description, build)
        if self.plugins:
            from hf_mera.continual.plugins import load_plugin_states

            load_plugin_states(self.plugins, checkpoint.path)
        return checkpoint

    # Instruction tuning's parts a method changes (PathWeave: its adapters train in place of LoRA).
    def instruction_settings(self, stage: StageContext):
        return self.run.training.instruction_tuning

    def instruction_description(self, stage: StageContext) -> dict[str, Any]:
        """What the method adds to the phase's description (so its checkpoints are its own)."""
        return {}

    def prepare_instruction_model(self, model, stage: StageContext):
        return model

    def instruction_train_parameters(self, model, stage: StageContext):
        """LLM-side parameters to train instead of LoRA / the whole LLM; None: the settings decide."""
        return None

    def _finish_instruction_tuning(self, trainer, tmp: Path):
        """The plain vanilla model θᵢ,vanilla; with LoRA also store ΔWᵢ = B·A·scaling for the merge."""
        if not trainer.args.use_lora:
            return trainer.model
        from safetensors.torch import save_file

        deltas, model = trainer.unwrap_lora(merge=True)
        if self.ws.is_main:
            save_file({k: v.contiguous() for k, v in deltas.items()}, str(tmp / LORA_DELTAS_FILE))
        return model

    def merge(self, stage: StageContext, updates: list[StageUpdate]) -> Checkpoint:
        """θᵢ from stages 1 … i by the method's stage merge (`trainers.merge`; MERA: θᵢ₋₁ + ΔWᵢ/i)."""
        return merge_phase(self, stage, updates)

    def realign_ratio(self) -> float:
        """r of the realignment: the entry's `realign_ratio`, by default its `replay_ratio`."""
        ratio = self.method.realign_ratio
        return ratio if ratio is not None else self.method.replay_ratio

    def realign_settings(self):
        """`training.realign`, with the entry's `realign_epochs` as its epochs if given. Unset, the
        settings (and so every realign phase's description and cached checkpoint) are unchanged."""
        settings = self.run.training.realign
        epochs = self.method.realign_epochs
        return settings if epochs is None else replace(settings, num_train_epochs=epochs)

    def realign_connectors(self, stage: StageContext, checkpoint: Checkpoint) -> Checkpoint:
        from .realign import realign_phase

        return realign_phase(
            stage,
            checkpoint,
            ratio=self.realign_ratio(),
            settings=self.realign_settings(),
            seed=self.run.seed,
            features=self.ws.features,
            is_main=self.ws.is_main,
            trainer_args=self.trainer_args,
            phase=self.phase,
        )

    def trainer_args(self, config_cls, settings, output_dir: Path):
        return phase_args(config_cls, settings, output_dir, seed=self.run.seed, progress=self.ws.progress)


__all__ = ["MergeAndRealignTrainer"]
