"""What all methods of a run share: process state, data, the phase store, features and evaluation."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Any

import torch

from hf_mera.continual.curriculum import RunConfig

from .checkpoints import Checkpoint, CheckpointStore, derive_seed, phase_key
from .data_sources import DataSource, load_data_source
from .evaluation import StageEvaluator
from .features import FeatureBank
from .timing import PhaseClock

logger = logging.getLogger(__name__)


def set_seed(seed: int) -> None:
    from transformers import set_seed as transformers_set_seed

    transformers_set_seed(seed)


class Workspace:
    """One run's shared state. Methods ask it for phases (`run_phase`), which it trains once and
    stores content-addressed, so identical phases of different methods are trained once and a
    resumed run reuses every finished phase."""

    def __init__(self, run: RunConfig, progress: bool = True):
        from accelerate import PartialState

        self.clock = PhaseClock()  # wall time per phase type, reported at the end of the run
        self.run = run
        # On CPU the process group must be gloo: say so before anything else creates the shared state
        # (the trainers' use_cpu=True then finds the same one).
        from .distributed import deepspeed_on_cpu_state

        self.state = deepspeed_on_cpu_state() or PartialState(cpu=not torch.cuda.is_available())
        from .distributed import enable_fsdp_on_cpu

        enable_fsdp_on_cpu(self.state)  # an FSDP launch on CPU processes (accelerate alone runs DDP)
        logger.info(
            "%d process(es), %s, this is process %d",
            self.state.num_processes,
            self.state.distributed_type,
            self.state.process_index,
        )
        self.progress = progress and self.state.is_main_process
        self.output_dir = Path(run.output_dir)
        self.store = CheckpointStore(self.output_dir / "checkpoints", self.state.is_main_process)
        with self.clock.phase("data"):
            self.data: DataSource = load_data_source(run.data, list(run.order), run.seed)
        if self.state.is_main_process:
            where = self.data.description.get("root") or run.data.source
            print(f"Benchmark: {where} (content hash {self.data.benchmark_hash})", flush=True)
        self.features = FeatureBank(
            run, self.data, self.state, self.output_dir, self.progress, clock=self.clock
        )
        self.evaluator = StageEvaluator(self)

    @property
    def is_main(self) -> bool:
        return self.state.is_main_process

    def barrier(self) -> None:
        self.state.wait_for_everyone()

    @property
    def dtype(self) -> torch.dtype:
        return getattr(torch, self.run.model.backbone.dtype)

    def load(self, checkpoint: Checkpoint):
        from hf_mera import AnyModalityLlava, AnyModalityProcessor
        from hf_mera.models.pretrained import kernel_kwargs

        from .distributed import without_zero3

        kernels = kernel_kwargs(self.run.model.use_kernels)
        with without_zero3():  # whole tensors, also after a DeepSpeed ZeRO-3 phase
            model = AnyModalityLlava.from_pretrained(checkpoint.path, dtype=self.dtype, **kernels)
        processor = AnyModalityProcessor.from_pretrained(checkpoint.path)
        return model, processor

    def run_phase(
        self, name: str, parent: Checkpoint | None, description: dict[str, Any], build
    ) -> Checkpoint:
        """Return the checkpoint of phase `name` applied to `parent`, training it unless it exists.

        `build(model, processor, tmp_dir)` (model/processor loaded from `parent`, or None for the
        root) returns the new `(model, processor)`; it may write extra files into `tmp_dir`.
        """

        def produce(tmp, loaded):
            return build(*loaded, tmp)

        def publish(tmp, result):
            if self.is_main:
                model, processor = result
                model.save_pretrained(tmp)
                processor.save_pretrained(tmp)

        load = (lambda: self.load(parent)) if parent else (lambda: (None, None))
        return self._phase(name, parent, description, produce, publish, load)

    def run_file_phase(self, name: str, parent: Checkpoint, description: dict[str, Any], write) -> Checkpoint:
        """`run_phase` for a phase that writes its checkpoint's files itself (`write(tmp)`, on the main
        process) instead of returning a model (the streamed merge): same key, seed, store, timing,
        fault points and clean-up."""

        def produce(tmp, _loaded):
            if self.is_main:
                from .distributed import without_zero3

                # The main process works alone here: any model it builds or loads (the merge's key
                # layout, LPM's Grams) must not be partitioned by ZeRO-3's collective init (a hang).
                with without_zero3():
                    write(tmp)

        return self._phase(name, parent, description, produce, None, lambda: None)

    def _phase(self, name, parent, description, produce, publish, load) -> Checkpoint:
        key = phase_key(parent.key if parent else "root", description)
        done = self.store.find(name, key)
        if done is not None:
            logger.info("phase %s (%s): reusing %s", name, key, done.path)
            return done
        logger.info("phase %s (%s): running", name, key)
        with self.clock.phase(description.get("phase", name)):
            return self._run_phase(name, key, parent, description, produce, publish, load)

    def _run_phase(self, name, key, parent, description, produce, publish, load) -> Checkpoint:
        set_seed(derive_seed(self.run.seed, key))
        loaded = load()
        tmp = self.store.begin(name, key)
        self.barrier()
        from hf_mera.evaluation import measure
        from hf_mera.faults import fault_point, phase_scope

        kind = description.get("phase", name)  # the phase type, as HF_MERA_FAULT names it
        fault_point(kind, "begin")
        try:
            with measure() as cost, phase_scope(kind):
                result = produce(tmp, loaded)
            if publish is not None:
                publish(tmp, result)
            fault_point(kind, "saved")
            self.barrier()
            checkpoint = self.store.commit(name, key, tmp, description, parent, cost=vars(cost))
        except Exception as err:  # disk full, permission denied ...: say what is safe, free the space
            if self.is_main:
                shutil.rmtree(tmp, ignore_errors=True)
            err.add_note(
                f"hf_mera: phase {name} failed; its temporary folder {tmp} was removed, nothing of it "
                f"was published and every finished phase in {self.store.root} is intact: fix the cause "
                "(e.g. free disk space, permissions) and run the same command again to resume."
            )
            raise
        self.barrier()
        return checkpoint

    @property
    def learned_modalities(self) -> list[str]:
        """Modalities the backbone already knows (a `llava` backbone: image); checked against the order."""
        from .backbone import learned_modalities

        return learned_modalities(self.run)

    def backbone(self) -> Checkpoint:
        from .backbone import backbone_phase

        return backbone_phase(self)


__all__ = ["Workspace", "set_seed"]
