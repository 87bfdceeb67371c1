"""MergeAndRealignTrainer: runs a modality-incremental curriculum, MERA by default.

For stage i (modality Mᵢ) of the order:

    add Mᵢ → pre-train its connector (captions) → instruction-tune LLM + connector (captions + QA,
    with the method's plugins) → merge the LLM only (θᵢ = θᵢ₋₁ + (θᵢ,vanilla − θᵢ₋₁)/i, i.e.
    θᵢ₋₁ + ΔWᵢ/i) → realign the connectors of M₁…Mᵢ on r % replay of D₁…Dᵢ → evaluate every seen
    modality → save the stage → next.

Each transition is a method of this class, so another method overrides or switches off one step:
Fine-Tuning is this trainer with `merge="none"` and `realign=False`. Every phase is a
content-addressed checkpoint (`trainers.checkpoints`), which makes runs resumable after a crash
and lets methods share identical phases.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from hf_mera.continual.curriculum import MethodConfig, PhaseSettings, RunConfig

from .checkpoints import COMPLETE_MARKER, Checkpoint, CheckpointStore, derive_seed, phase_key
from .data_sources import DataSource, load_data_source

logger = logging.getLogger(__name__)

LORA_DELTAS_FILE = "lora_deltas.safetensors"


def _set_seed(seed: int) -> None:
    from transformers import set_seed

    set_seed(seed)


def _link_or_copy(source: Path, target: Path) -> None:
    try:
        os.link(source, target)
    except OSError:  # another file system, or links not allowed
        shutil.copy2(source, target)


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in name.lower()).strip("-").replace("--", "-")


@dataclass
class StageRecord:
    """What one stage produced: scores per seen modality and task, and where its checkpoint is."""

    index: int
    modality: str
    scores: dict[str, dict[str, float]]
    checkpoint: str
    seconds: float = 0.0


@dataclass
class MethodRecord:
    name: str
    type: str
    order: list[str]
    stages: list[StageRecord] = field(default_factory=list)
    cross_modal_accuracy: float | None = None
    train_seconds: float = 0.0
    peak_memory_bytes: int | None = None
    memory_source: str | None = None
    infer_peak_memory_bytes: int | None = None
    latency_per_token_ms: float | None = None


class Workspace:
    """What all methods of a run share: data, feature bank, checkpoint store, process state."""

    def __init__(self, run: RunConfig, progress: bool = True):
        from accelerate import PartialState

        self.run = run
        # On CPU the process group must be gloo: say so before anything else creates the shared state
        # (the trainers' use_cpu=True then finds the same one).
        self.state = PartialState(cpu=not torch.cuda.is_available())
        logger.info(
            "%d process(es), %s, this is process %d",
            self.state.num_processes,
            self.state.distributed_type,
            self.state.process_index,
        )
        self.progress = progress and self.state.is_main_process
        self.output_dir = Path(run.output_dir)
        self.store = CheckpointStore(self.output_dir / "checkpoints", self.state.is_main_process)
        self.data: DataSource = load_data_source(run.data, list(run.order), run.seed)
        if self.state.is_main_process:
            where = self.data.description.get("root") or run.data.source
            print(f"Benchmark: {where} (content hash {self.data.benchmark_hash})", flush=True)
        self._features: dict[str, dict[str, torch.Tensor]] = {}
        self._evaluated: dict[tuple[str, str], dict] = {}

    # ---- process coordination ----------------------------------------------------------------
    @property
    def is_main(self) -> bool:
        return self.state.is_main_process

    def barrier(self) -> None:
        self.state.wait_for_everyone()

    # ---- model I/O ---------------------------------------------------------------------------
    def load(self, checkpoint: Checkpoint):
        from hf_mera import AnyModalityLlava, AnyModalityProcessor

        model = AnyModalityLlava.from_pretrained(checkpoint.path, dtype=self._dtype())
        processor = AnyModalityProcessor.from_pretrained(checkpoint.path)
        return model, processor

    def _dtype(self) -> torch.dtype:
        return getattr(torch, self.run.model.backbone.dtype)

    def run_phase(
        self, name: str, parent: Checkpoint | None, description: dict[str, Any], build
    ) -> Checkpoint:
        """Return the checkpoint of phase `name` applied to `parent`, training it unless it exists.

        `build(model, processor, tmp_dir)` (model/processor loaded from `parent`, or None for the
        root) returns the new `(model, processor)`; it may write extra files into `tmp_dir`.
        """
        key = phase_key(parent.key if parent else "root", description)
        done = self.store.find(name, key)
        if done is not None:
            logger.info("phase %s (%s): reusing %s", name, key, done.path)
            return done
        logger.info("phase %s (%s): running", name, key)
        _set_seed(derive_seed(self.run.seed, key))
        model, processor = self.load(parent) if parent else (None, None)
        tmp = self.store.begin(name, key)
        self.barrier()
        from hf_mera.evaluation import measure

        with measure() as cost:
            model, processor = build(model, processor, tmp)
        if self.is_main:
            model.save_pretrained(tmp)
            processor.save_pretrained(tmp)
        self.barrier()
        checkpoint = self.store.commit(name, key, tmp, description, parent, cost=vars(cost))
        self.barrier()
        return checkpoint

    # ---- encoder features --------------------------------------------------------------------
    def modality_paths(self, modality: str) -> list[str]:
        """Every media file of `modality` in the run's train, test and cross-modal sets."""
        datasets = list(self.data.train_sets[modality].values()) + list(
            self.data.test_sets[modality].values()
        )
        if self.data.cross_modal is not None:
            datasets.append(self.data.cross_modal)
        paths = {
            item["path"]
            for ds in datasets
            for media in ds["media"]
            for item in media
            if item["modality"] == modality
        }
        return sorted(paths)

    def ensure_features(self, model, processor, modality: str) -> None:
        """Encode every item of `modality` once with the (frozen) encoder, through the disk cache."""
        if not self.run.data.feature_cache or modality in self._features:
            return
        from hf_mera.data.feature_cache import FeatureCache
        from hf_mera.modalities import encoder_fingerprint

        mc = model.config.modality(modality)
        fingerprint = "-".join(
            [
                encoder_fingerprint(mc.encoder_type, mc.encoder_config, model.model.encoders[modality]),
                processor.preprocessor(modality).fingerprint(),
                f"pool{mc.token_pool}",
            ]
        )
        cache_dir = (
            Path(self.run.data.cache_dir) if self.run.data.cache_dir else self.output_dir / "feature_cache"
        )
        cache = FeatureCache(cache_dir)
        paths = self.modality_paths(modality)
        model.eval()

        @torch.no_grad()
        def compute(batch_paths: list[str]) -> torch.Tensor:
            return model.encode_features(modality, processor.preprocess(modality, batch_paths)).float()

        with self.state.main_process_first():
            tensors = cache.get_or_compute(paths, fingerprint, compute, batch_size=32, progress=self.progress)
        self._features[modality] = dict(zip(paths, tensors))

    def feature_lookup(self, row: dict) -> dict[str, torch.Tensor]:
        by_modality: dict[str, list[torch.Tensor]] = {}
        for item in row["media"]:
            bank = self._features.get(item["modality"])
            if bank is None:
                raise ValueError(
                    f"Sample {row.get('id')!r}: no cached features for modality {item['modality']!r}."
                )
            by_modality.setdefault(item["modality"], []).append(bank[item["path"]])
        return {m: torch.stack(ts) for m, ts in by_modality.items()}

    def collator(self, processor):
        from hf_mera.data.collator import MultimodalCollator

        lookup = self.feature_lookup if self.run.data.feature_cache else None
        return MultimodalCollator(processor, feature_lookup=lookup)

    # ---- evaluation --------------------------------------------------------------------------
    def evaluate(self, checkpoint: Checkpoint, modalities: list[str], model=None, processor=None) -> dict:
        """Scores of `checkpoint` on the test sets of `modalities` (cached beside the checkpoint)."""
        ev = self.run.evaluation
        spec = {"evaluate": modalities, **asdict(ev)}
        if self.data.metrics:  # a dataset's own metric (OK-VQA: VQA accuracy) is part of what a score means
            spec["metrics"] = {m: self.data.metrics.get(m) for m in modalities}
        eval_key = phase_key(checkpoint.key, spec)
        result_file = checkpoint.path / f"eval-{eval_key}.json"
        if result_file.is_file():
            return json.loads(result_file.read_text())
        scores: dict[str, dict[str, float]] = {}
        if self.is_main:
            if model is None:
                model, processor = self.load(checkpoint)
            for modality in modalities:
                self.ensure_features(model, processor, modality)
                scores[modality] = {
                    task: self._score(model, processor, ds, task, self.data.metric(modality, task))
                    for task, ds in self.data.test(modality).items()
                }
            tmp = result_file.with_suffix(".tmp")
            tmp.write_text(json.dumps(scores, indent=2))
            os.replace(tmp, result_file)
        self.barrier()
        return json.loads(result_file.read_text())

    def _score(self, model, processor, dataset, task: str, metric: str | None = None) -> float:
        from hf_mera.evaluation import evaluate_task

        ev = self.run.evaluation
        if ev.max_test_samples is not None:
            dataset = dataset.select(range(min(ev.max_test_samples, len(dataset))))
        result = evaluate_task(
            model,
            processor,
            dataset,
            task,
            judge=self.judge(),
            batch_size=ev.batch_size,
            max_new_tokens=ev.max_new_tokens,
            progress=self.progress,
            feature_lookup=self.feature_lookup if self.run.data.feature_cache else None,
            metric=metric,
        )
        return result.score

    def judge(self):
        from hf_mera.evaluation import ExactMatchJudge, OpenAIJudge

        judges = {"exact_match": ExactMatchJudge, "openai": OpenAIJudge}
        name = self.run.evaluation.judge
        if name not in judges:
            raise ValueError(f"evaluation.judge: unknown {name!r}; known: {sorted(judges)}.")
        return judges[name](**self.run.evaluation.judge_kwargs)

    def inference_cost(self, checkpoint: Checkpoint, modality: str, samples: int = 8) -> dict:
        """Latency per generated token and peak memory of `checkpoint` at batch size 1 (the paper's
        Table 6 setting), from raw media through the encoders, on `samples` test items of `modality`."""
        result_file = checkpoint.path / "inference-cost.json"
        if not result_file.is_file() and self.is_main:
            from hf_mera.evaluation import generate_predictions, measure

            model, processor = self.load(checkpoint)
            rows = [row for ds in self.data.test(modality).values() for row in ds][:samples]
            with measure() as cost:
                predictions = generate_predictions(
                    model,
                    processor,
                    rows,
                    batch_size=1,
                    max_new_tokens=self.run.evaluation.max_new_tokens,
                    progress=False,
                )
            # +1: the end-of-answer token is generated too.
            tokens = sum(
                len(processor.tokenizer(p, add_special_tokens=False)["input_ids"]) + 1 for p in predictions
            )
            result = {
                "latency_per_token_ms": 1000 * cost.wall_seconds / max(tokens, 1),
                "peak_memory_bytes": cost.peak_memory_bytes,
                "memory_source": cost.memory_source,
                "tokens": tokens,
            }
            result_file.write_text(json.dumps(result, indent=2))
        self.barrier()
        return json.loads(result_file.read_text())

    def cross_modal_accuracy(self, checkpoint: Checkpoint) -> float | None:
        if not self.run.evaluation.cross_modal or self.data.cross_modal is None:
            return None
        result_file = checkpoint.path / "eval-cross-modal.json"
        if not result_file.is_file() and self.is_main:
            model, processor = self.load(checkpoint)
            for modality in self.run.order:
                self.ensure_features(model, processor, modality)
            accuracy = self._score(model, processor, self.data.cross_modal, "cross")
            result_file.write_text(json.dumps({"accuracy": accuracy}))
        self.barrier()
        return json.loads(result_file.read_text())["accuracy"]

    # ---- the backbone ------------------------------------------------------------------------
    def backbone(self) -> Checkpoint:
        """The starting model: the LLM with no modality (the tiny Llama after text pre-training)."""
        cfg = self.run.model.backbone
        # Every phase descends from this one, so its key naming the data means that a run on another
        # benchmark (or another version of it) never reuses a phase trained on this one.
        description = {
            "phase": "backbone",
            **asdict(cfg),
            "seed": self.run.seed,
            "benchmark_hash": self.data.benchmark_hash,
        }
        if cfg.type == "tiny_llama":
            description["texts"] = phase_key("texts", {"texts": self.data.texts or []})
        return self.run_phase("backbone", None, description, lambda m, p, tmp: self._build_backbone())

    def _build_backbone(self):
        from hf_mera import AnyModalityLlava
        from hf_mera.models.tiny_lm import build_tiny_llama, build_word_level_tokenizer, pretrain_text_lm

        cfg = self.run.model.backbone
        if cfg.type == "tiny_llama":
            if not self.data.texts:
                raise ValueError(
                    "model.backbone.type 'tiny_llama' needs a data source with texts (the embedded one)."
                )
            tokenizer = build_word_level_tokenizer(self.data.texts)
            llm = build_tiny_llama(
                tokenizer, cfg.hidden_size, cfg.num_layers, cfg.num_heads, seed=self.run.seed
            )
            rendered = [t for t in self.data.texts]
            pretrain_text_lm(
                llm,
                tokenizer,
                rendered,
                steps=cfg.text_pretrain_steps,
                learning_rate=cfg.text_pretrain_learning_rate,
                batch_size=cfg.text_pretrain_batch_size,
                seed=self.run.seed,
                progress=self.progress,
            )
            return AnyModalityLlava.from_pretrained_components(llm, [], tokenizer=tokenizer)
        if cfg.type == "pretrained":
            from hf_mera.models.pretrained import load_causal_lm

            llm, tokenizer = load_causal_lm(cfg.name_or_path, gguf_file=cfg.gguf_file, dtype=self._dtype())
            return AnyModalityLlava.from_pretrained_components(llm, [], tokenizer=tokenizer)
        raise ValueError(f"model.backbone.type: unknown {cfg.type!r}; use 'tiny_llama' or 'pretrained'.")


class MergeAndRealignTrainer:
    """MERA over a curriculum; `merge` and `realign` switch its two steps (Fine-Tuning: both off)."""

    merge_schedule: str = "mera"
    realign: bool = True

    def __init__(self, workspace: Workspace, method: MethodConfig):
        self.used: dict[str, Checkpoint] = {}  # every phase this method's curriculum went through
        self.ws = workspace
        self.run = workspace.run
        self.method = method
        if method.merge is not None:
            self.merge_schedule = method.merge
        if method.realign is not None:
            self.realign = method.realign
        from hf_mera.continual.plugins import build_plugin

        self.plugins = [build_plugin(**spec) for spec in method.plugins]
        from model_cards import check_push_ready

        check_push_ready(self.run, method.name)  # no token: fail now, not after training

    # ---- the curriculum ----------------------------------------------------------------------
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
        inference = self.ws.inference_cost(final, self.run.order[-1])
        record.infer_peak_memory_bytes = inference.get("peak_memory_bytes")
        record.latency_per_token_ms = inference.get("latency_per_token_ms")

    def train(self) -> MethodRecord:
        record = MethodRecord(self.method.name, self.method.type, list(self.run.order))
        checkpoint = self.track(self.ws.backbone())
        for index, modality in enumerate(self.run.order, start=1):
            stage_start = time.perf_counter()
            checkpoint = self.run_stage(index, modality, checkpoint)
            seen = list(self.run.order[:index])
            scores = self.ws.evaluate(checkpoint, seen)
            record.stages.append(
                StageRecord(index, modality, scores, str(checkpoint.path), time.perf_counter() - stage_start)
            )
            self.save_stage(index, modality, checkpoint, scores)
        record.cross_modal_accuracy = self.ws.cross_modal_accuracy(checkpoint)
        self.account(record, checkpoint)
        return record

    def run_stage(self, index: int, modality: str, previous: Checkpoint) -> Checkpoint:
        checkpoint = self.add_modality(index, modality, previous)
        start = self.pretrain_connector(index, modality, checkpoint)
        vanilla = self.instruction_tune(index, modality, start)
        # θᵢ₋₁ for the merge is instruction tuning's starting point: the previous stage's LLM with
        # this modality's placeholder row added, so every LLM tensor has the same shape as θᵢ,vanilla.
        merged = self.merge(index, modality, start, vanilla)
        return self.realign_connectors(index, modality, merged) if self.realign else merged

    def stage_context(self, index: int, modality: str):
        from hf_mera.continual.plugins import StageContext

        return StageContext(
            index=index,
            modality=modality,
            order=list(self.run.order),
            seen=list(self.run.order[:index]),
            output_dir=str(self.ws.output_dir),
            seed=self.run.seed,
        )

    # ---- transitions (override any of these) -------------------------------------------------
    def add_modality(self, index: int, modality: str, previous: Checkpoint) -> Checkpoint:
        config = dict(self.run.model.modalities[modality])
        description = {"phase": "add_modality", "modality": modality, "config": config}

        def build(model, processor, tmp):
            from hf_mera.models.anymodality_llava.configuration_anymodality_llava import ModalityConfig
            from hf_mera.models.anymodality_llava.modeling_anymodality_llava import load_modality_encoder

            # Encoder and connector depend only on (seed, modality): every method and the expert
            # start this modality from the same modules, and the feature cache is shared.
            _set_seed(derive_seed(self.run.seed, "modality", modality))
            mc = ModalityConfig.from_dict({**config, "name": modality})
            encoder = load_modality_encoder(mc)
            model.add_modality(mc, encoder=encoder, processor=processor)
            return model, processor

        return self.phase(f"add-{modality}", previous, description, build)

    def pretrain_connector(self, index: int, modality: str, checkpoint: Checkpoint) -> Checkpoint:
        settings = self.run.training.connector_pretrain
        description = {"phase": "connector_pretrain", "modality": modality, **asdict(settings)}

        def build(model, processor, tmp):
            from trainers.configs import ConnectorPretrainConfig
            from trainers.connector_pretrain import ConnectorPretrainTrainer

            self.ws.ensure_features(model, processor, modality)
            args = self._trainer_args(ConnectorPretrainConfig, settings, tmp)
            trainer = ConnectorPretrainTrainer(
                model=model,
                modality=modality,
                args=args,
                train_dataset=self.ws.data.train(modality, tasks=("caption",)),
                processing_class=processor,
                data_collator=self.ws.collator(processor),
            )
            trainer.train()
            return trainer.model, processor

        return self.phase(f"pretrain-{modality}", checkpoint, description, build)

    def instruction_train_dataset(self, index: int, modality: str):
        dataset = self.ws.data.train(modality)
        stage = self.stage_context(index, modality)
        for plugin in self.plugins:
            dataset = plugin.transform_train_dataset(dataset, stage)
        return dataset

    def instruction_tune(self, index: int, modality: str, checkpoint: Checkpoint) -> Checkpoint:
        settings = self.run.training.instruction_tuning
        description = {
            "phase": "instruction_tuning",
            "modality": modality,
            **asdict(settings),
            "plugins": self.method.plugins,
        }
        if self.plugins:  # plugins may depend on the stage's position and the run's method
            description["stage"] = index

        def build(model, processor, tmp):
            from trainers.configs import InstructionTuningConfig
            from trainers.instruction_tuning import InstructionTuningTrainer

            self.ws.ensure_features(model, processor, modality)
            stage = self.stage_context(index, modality)
            for plugin in self.plugins:
                plugin.on_stage_start(stage, model)
            args = self._trainer_args(InstructionTuningConfig, settings, tmp)
            dataset = self.instruction_train_dataset(index, modality)
            trainer = InstructionTuningTrainer(
                model=model,
                modality=modality,
                args=args,
                train_dataset=dataset,
                processing_class=processor,
                data_collator=self.ws.collator(processor),
                plugins=self.plugins,
                stage=stage,
            )
            trainer.train()
            model = self._finish_instruction_tuning(trainer, tmp)
            for plugin in self.plugins:
                plugin.on_stage_end(stage, model, dataset)
            return model, processor

        return self.phase(f"it-{modality}", checkpoint, description, build)

    def _finish_instruction_tuning(self, trainer, tmp: Path):
        """The plain vanilla model θᵢ,vanilla; with LoRA also store ΔWᵢ = B·A·scaling for the merge."""
        if not trainer.args.use_lora:
            return trainer.model
        from safetensors.torch import save_file

        deltas, model = trainer.unwrap_lora(merge=True)
        if self.ws.is_main:
            save_file({k: v.contiguous() for k, v in deltas.items()}, str(tmp / LORA_DELTAS_FILE))
        return model

    def merge(self, index: int, modality: str, previous: Checkpoint, vanilla: Checkpoint) -> Checkpoint:
        """θᵢ = θᵢ₋₁ + c(i)·ΔWᵢ on the LLM only (c = 1/i for MERA); encoders and connectors are kept."""
        from hf_mera.merging import MergeSchedule

        coefficient = MergeSchedule(self.merge_schedule)(index)
        if coefficient == 1.0:  # stage 1 of MERA, or no merging: θᵢ = θᵢ,vanilla
            return vanilla
        description = {
            "phase": "merge",
            "schedule": self.merge_schedule,
            "stage": index,
            "previous": previous.key,
        }

        def build(model, processor, tmp):
            from hf_mera.merging import LLM_KEY_PATTERN, fold_lora_into_state_dict, mera_merge_full

            previous_state = self.ws.load(previous)[0].state_dict()
            vanilla_state = model.state_dict()
            deltas_file = vanilla.path / LORA_DELTAS_FILE
            if deltas_file.is_file():
                from safetensors.torch import load_file

                # Exact for LoRA: θᵢ₋₁ + c·B·A·scaling, not peft's "linear" (which averages A and B).
                # Weights LoRA did not touch are equal in θᵢ₋₁ and θᵢ,vanilla; connectors come from vanilla.
                deltas = load_file(str(deltas_file))
                merged = dict(vanilla_state)
                merged.update(
                    fold_lora_into_state_dict({k: previous_state[k] for k in deltas}, deltas, coefficient)
                )
            else:
                merged = mera_merge_full(
                    previous_state,
                    vanilla_state,
                    index,
                    include=LLM_KEY_PATTERN,
                    schedule=MergeSchedule(self.merge_schedule),
                )
            model.load_state_dict(merged)
            return model, processor

        return self.phase(f"merge-{modality}", vanilla, description, build)

    def realign_connectors(self, index: int, modality: str, checkpoint: Checkpoint) -> Checkpoint:
        from hf_mera.data.replay import replay_for_realign

        settings = self.run.training.realign
        seen = list(self.run.order[:index])
        replay, replay_record = replay_for_realign(
            index,
            self.run.order,
            {m: self.ws.data.train(m) for m in seen},
            ratio=self.method.replay_ratio,
            seed=self.run.seed,
        )
        description = {
            "phase": "realign",
            "modalities": seen,
            "replay_ratio": self.method.replay_ratio,
            **asdict(settings),
        }

        def build(model, processor, tmp):
            from trainers.configs import RealignConfig
            from trainers.realign import RealignTrainer

            for m in seen:
                self.ws.ensure_features(model, processor, m)
            args = self._trainer_args(RealignConfig, settings, tmp)
            trainer = RealignTrainer(
                model=model,
                modalities=seen,
                args=args,
                train_dataset=replay,
                processing_class=processor,
                data_collator=self.ws.collator(processor),
            )
            trainer.train()
            if self.ws.is_main:
                (tmp / "replay_ids.json").write_text(
                    json.dumps(replay_record.to_dict(), indent=2, default=str)
                )
            return trainer.model, processor

        return self.phase(f"realign-{modality}", checkpoint, description, build)

    def save_stage(
        self, index: int, modality: str, checkpoint: Checkpoint, scores: dict | None = None
    ) -> Path:
        """Publish the stage as its own hub-format folder `<output_dir>/<method>/stage-<i>-<modality>`.

        The files are hard links to the (possibly shared) phase checkpoint, so a stage costs no disk
        and files written beside them (`stage.json`, a model card) belong to this method's stage only.
        Built in a temporary folder and renamed, like every checkpoint.
        """
        stage_dir = self.ws.output_dir / _slug(self.method.name) / f"stage-{index}-{modality}"
        if self.ws.is_main:
            tmp = stage_dir.with_name(f".tmp-{stage_dir.name}")
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir(parents=True)
            for source in checkpoint.path.iterdir():
                if (
                    source.is_file()
                    and source.name != COMPLETE_MARKER
                    and not source.name.startswith("eval-")
                ):
                    _link_or_copy(source, tmp / source.name)
            info = {
                "method": self.method.name,
                "method_type": self.method.type,
                "stage": index,
                "modality": modality,
                "order": list(self.run.order),
                "seen": list(self.run.order[:index]) if self.method.type != "experts" else [modality],
                "checkpoint": checkpoint.path.name,
                "scores": scores,
                "benchmark_hash": self.ws.data.benchmark_hash,
            }
            (tmp / "stage.json").write_text(json.dumps(info, indent=2))
            self.on_stage_saved(tmp, info)
            if stage_dir.is_symlink() or stage_dir.is_file():
                stage_dir.unlink()
            elif stage_dir.exists():
                shutil.rmtree(stage_dir)
            os.replace(tmp, stage_dir)
            self.on_stage_published(stage_dir, info)
        self.ws.barrier()
        return stage_dir

    def on_stage_saved(self, stage_dir: Path, info: dict) -> None:
        """Hook called on the main process with each published stage folder (before it is renamed
        into place) and its `stage.json` content: writes the model card (`README.md`)."""
        from model_cards import hub_target, write_stage_card

        repo_id, revision = hub_target(self.run, info)
        write_stage_card(stage_dir, info, self.run, repo_id=repo_id, revision=revision)

    def on_stage_published(self, stage_dir: Path, info: dict) -> None:
        """Hook called on the main process once the stage folder is in place: pushes it to the hub
        when the run's `push_to_hub` section names this method (after the rename, so that a failed
        upload never costs the local stage)."""
        from model_cards import push_stage

        push_stage(stage_dir, info, self.run)

    # ---- helpers -----------------------------------------------------------------------------
    def _trainer_args(self, config_cls, settings: PhaseSettings, output_dir: Path):
        fields = {
            k: v
            for k, v in asdict(settings).items()
            if k not in ("extra", "use_lora", "lora_r", "lora_alpha", "connector_learning_rate")
        }
        extra = dict(settings.extra)
        for name in ("use_lora", "lora_r", "lora_alpha", "connector_learning_rate"):
            if hasattr(settings, name):
                extra[name] = getattr(settings, name)
        extra.setdefault("disable_tqdm", not self.ws.progress)
        extra.setdefault("logging_steps", 50)
        if not torch.cuda.is_available():
            extra.setdefault("use_cpu", True)
        return config_cls(output_dir=str(output_dir / "trainer"), seed=self.run.seed, **fields, **extra)


class ExpertsTrainer(MergeAndRealignTrainer):
    """Individually trained experts: each modality alone, from the backbone (the Relative Gain's S_sup)."""

    merge_schedule = "none"
    realign = False

    def train(self) -> MethodRecord:
        record = MethodRecord(self.method.name, self.method.type, list(self.run.order))
        backbone = self.track(self.ws.backbone())
        for modality in self.run.order:
            stage_start = time.perf_counter()
            checkpoint = self.run_stage(1, modality, backbone)
            scores = self.ws.evaluate(checkpoint, [modality])
            record.stages.append(
                StageRecord(1, modality, scores, str(checkpoint.path), time.perf_counter() - stage_start)
            )
            self.save_stage(1, modality, checkpoint, scores)
        self.account(record, checkpoint)
        return record

    def stage_context(self, index: int, modality: str):
        from hf_mera.continual.plugins import StageContext

        # An expert's curriculum is its one modality.
        return StageContext(
            index=1,
            modality=modality,
            order=[modality],
            seen=[modality],
            output_dir=str(self.ws.output_dir),
            seed=self.run.seed,
        )


METHODS: dict[str, tuple[type[MergeAndRealignTrainer], dict[str, Any]]] = {}


def register_method(name: str, runner: type[MergeAndRealignTrainer], **defaults: Any) -> None:
    if name in METHODS:
        raise ValueError(f"Method {name!r} is already registered.")
    METHODS[name] = (runner, defaults)


def build_method(workspace: Workspace, method: MethodConfig) -> MergeAndRealignTrainer:
    if method.type not in METHODS:
        raise ValueError(
            f"methods: unknown type {method.type!r} for {method.name!r}; known: {sorted(METHODS)}."
        )
    runner, defaults = METHODS[method.type]
    trainer = runner(workspace, method)
    for key, value in defaults.items():
        if getattr(method, key) is None:
            setattr(trainer, "merge_schedule" if key == "merge" else key, value)
    return trainer


register_method("experts", ExpertsTrainer)
register_method("mera", MergeAndRealignTrainer, merge="mera", realign=True)
register_method("fine_tuning", MergeAndRealignTrainer, merge="none", realign=False)


__all__ = [
    "MergeAndRealignTrainer",
    "ExpertsTrainer",
    "Workspace",
    "StageRecord",
    "MethodRecord",
    "METHODS",
    "register_method",
    "build_method",
]
