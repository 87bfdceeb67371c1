"""The checks of a run that need `trainers/`: the library reads and checks the YAML
(`hf_mera.continual.curriculum`), but method types, backbone types and data sources are registered
here, and each phase's trainer config is trl's `SFTConfig`. `check_run` runs them all before any data
is built or model loaded (`run.py` calls it after reading the YAML, and `run_curriculum` again, for
runs built in Python), so a typo fails in seconds, not after the benchmark and the first phases.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from hf_mera.continual.curriculum import RunConfig
from hf_mera.continual.schema import NameTable, check_names

from .backbone import BACKBONES
from .configs import ConnectorPretrainConfig, InstructionTuningConfig, RealignConfig, phase_args
from .data_sources import DATA_SOURCES
from .methods import METHODS

# The `choices` kinds of the run config that the library leaves to the trainers.
TRAINER_NAMES: NameTable = {
    "method": lambda: METHODS,
    "backbone type": lambda: BACKBONES,
    "data source": lambda: DATA_SOURCES,
}

PHASE_CONFIGS = {
    "connector_pretrain": ConnectorPretrainConfig,
    "instruction_tuning": InstructionTuningConfig,
    "realign": RealignConfig,
}


def check_run(run: RunConfig) -> None:
    """ValueError naming the dotted field of the first thing in `run` the trainers would refuse."""
    import torch
    from accelerate import PartialState

    check_names(run, TRAINER_NAMES)
    # Building a TrainingArguments sets up the process state: make it the one `Workspace` makes (gloo
    # on CPU), as the first thing to create it decides for the whole run.
    PartialState(cpu=not torch.cuda.is_available())
    for name, config_cls in PHASE_CONFIGS.items():
        # The phase's trainer config as the phase will build it, `extra` included: what SFTConfig /
        # TrainingArguments refuse (an unknown optimizer, bf16 on a CPU ...) fails now.
        settings = getattr(run.training, name)
        with tempfile.TemporaryDirectory() as tmp:
            try:
                phase_args(config_cls, settings, Path(tmp), seed=run.seed, progress=False)
            except (TypeError, ValueError) as err:
                raise ValueError(
                    f"training.{name}: its trainer config refuses these settings: {err}"
                ) from err
    for i, method in enumerate(run.methods):
        cls = METHODS.get(method.type)
        realigns = cls.realign if method.realign is None else method.realign
        ratio = method.realign_ratio if method.realign_ratio is not None else method.replay_ratio
        if realigns and ratio == 0 and (len(run.order) > 1 or method.realign_first_stage):
            field = "realign_ratio" if method.realign_ratio is not None else "replay_ratio"
            raise ValueError(
                f"methods[{i}].{field}: got 0, but method {method.name!r} realigns its connectors on that "
                "share of the replay data: allowed: > 0 and <= 1 (or realign: false)."
            )
        if method.realign_epochs is not None and not realigns:
            raise ValueError(
                f"methods[{i}].realign_epochs: method {method.name!r} does not realign its connectors, so "
                "a realignment budget would change nothing: drop it or set realign: true."
            )
        if method.realign_epochs is not None and run.training.realign.max_steps > 0:
            # Trainer's max_steps overrides the epochs: the field would be ignored without a word.
            raise ValueError(
                f"methods[{i}].realign_epochs: training.realign.max_steps is "
                f"{run.training.realign.max_steps}, which overrides any number of epochs: set it to -1."
            )


__all__ = ["TRAINER_NAMES", "check_run"]
