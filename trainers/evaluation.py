"""Scoring checkpoints during a run: every seen modality's test sets after each stage, the cross-modal
set after the last, and Table 6's inference cost. Each result is stored beside the checkpoint it
scores (keyed by the evaluation settings), so a resumed run or another method sharing the phase
never scores it twice."""

from __future__ import annotations

import json
from dataclasses import asdict

from hf_mera.atomic import atomic_write_json
from hf_mera.faults import fault_point

from .checkpoints import Checkpoint, phase_key


class StageEvaluator:
    """Scores checkpoints of one run on its test sets, on the main process; others wait and read."""

    def __init__(self, workspace):
        self.ws = workspace
        self.settings = workspace.run.evaluation

    def evaluate(
        self,
        checkpoint: Checkpoint,
        modalities: list[str],
        model=None,
        processor=None,
        split: str | None = None,
    ) -> dict:
        """Scores `{modality: {task: score}}` of `checkpoint` on the `split` sets of `modalities`
        (default `evaluation.split`: "test"; "val" is where hyper-parameters are chosen, #17)."""
        data = self.ws.data
        split = split or self.settings.split
        settings = asdict(self.settings)
        # The test split's key stays what it was before val existed, so stored results stay valid.
        settings.pop("split", None)
        spec = {"evaluate": modalities, **settings, **({"split": split} if split != "test" else {})}
        if data.metrics:  # a dataset's own metric (OK-VQA: VQA accuracy) is part of what a score means
            spec["metrics"] = {m: data.metrics.get(m) for m in modalities}
        result_file = checkpoint.path / f"eval-{phase_key(checkpoint.key, spec)}.json"
        # Every process reaches the barrier below, also when the scores exist: a process that saw the
        # file the main one had just written and skipped the barrier would pair with the next one.
        if not result_file.is_file() and self.ws.is_main:
            with self.ws.clock.phase("evaluation"):
                if model is None:
                    model, processor = self.ws.load(checkpoint)
                scores: dict[str, dict[str, float]] = {}
                for modality in modalities:
                    self.ws.features.ensure(model, processor, modality)
                    scores[modality] = {
                        task: self.score(model, processor, ds, task, data.metric(modality, task))
                        for task, ds in data.split(modality, split).items()
                    }
                    fault_point("evaluation", len(scores))
                atomic_write_json(result_file, scores)
        self.ws.barrier()
        return json.loads(result_file.read_text())

    def score(self, model, processor, dataset, task: str, metric: str | None = None) -> float:
        """One test set's score: CIDEr for captions, the judge's accuracy for QA (or the set's metric)."""
        from hf_mera.evaluation import evaluate_task

        settings = self.settings
        if settings.max_test_samples is not None:
            dataset = dataset.select(range(min(settings.max_test_samples, len(dataset))))
        from .distributed import without_zero3

        with without_zero3():  # the main process generates alone: no ZeRO-3 step syncing
            result = evaluate_task(
                model,
                processor,
                dataset,
                task,
                judge=self.judge(),
                batch_size=settings.batch_size,
                max_new_tokens=settings.max_new_tokens,
                progress=self.ws.progress,
                feature_lookup=self.ws.features.feature_lookup,
                metric=metric,
            )
        return result.score

    def judge(self):
        """The QA judge named by `evaluation.judge`, built with `evaluation.judge_kwargs`."""
        from hf_mera.evaluation import JUDGES

        return JUDGES.get(self.settings.judge, where="evaluation.judge")(**self.settings.judge_kwargs)

    def cross_modal_accuracy(self, checkpoint: Checkpoint) -> float | None:
        """Accuracy on the cross-modal set (paper Table 3), None when the run has none or skips it."""
        data = self.ws.data
        # The cross-modal set is a test set only: a validation run does not score it.
        if not self.settings.cross_modal or data.cross_modal is None or self.settings.split != "test":
            return None
        result_file = checkpoint.path / "eval-cross-modal.json"
        if not result_file.is_file() and self.ws.is_main:
            with self.ws.clock.phase("evaluation"):
                model, processor = self.ws.load(checkpoint)
                for modality in self.ws.run.order:
                    self.ws.features.ensure(model, processor, modality)
                accuracy = self.score(model, processor, data.cross_modal, "cross")
                atomic_write_json(result_file, {"accuracy": accuracy}, indent=None)
        self.ws.barrier()
        return json.loads(result_file.read_text())["accuracy"]

    def inference_cost(self, checkpoint: Checkpoint, modality: str, samples: int = 8) -> dict:
        """Latency per generated token and peak memory of `checkpoint` at batch size 1 (the paper's
        Table 6 setting), from raw media through the encoders, on `samples` test items of `modality`."""
        result_file = checkpoint.path / "inference-cost.json"
        if not result_file.is_file() and self.ws.is_main:
            with self.ws.clock.phase("evaluation"):
                from hf_mera.evaluation import generate_predictions, measure

                model, processor = self.ws.load(checkpoint)
                rows = [row for ds in self.ws.data.test(modality).values() for row in ds][:samples]
                from .distributed import without_zero3

                with measure() as cost, without_zero3():
                    predictions = generate_predictions(
                        model,
                        processor,
                        rows,
                        batch_size=1,
                        max_new_tokens=self.settings.max_new_tokens,
                        progress=False,
                    )
                # +1: the end-of-answer token is generated too.
                tokens = sum(
                    len(processor.tokenizer(p, add_special_tokens=False)["input_ids"]) + 1
                    for p in predictions
                )
                atomic_write_json(
                    result_file,
                    {
                        "latency_per_token_ms": 1000 * cost.wall_seconds / max(tokens, 1),
                        "peak_memory_bytes": cost.peak_memory_bytes,
                        "memory_source": cost.memory_source,
                        "tokens": tokens,
                    },
                )
        self.ws.barrier()
        return json.loads(result_file.read_text())


__all__ = ["StageEvaluator"]
