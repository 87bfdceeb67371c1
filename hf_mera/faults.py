"""A fault injector for crash tests: kill the process at a named phase and step, like `kill -9`.

    HF_MERA_FAULT=<phase>:<step>[@<n>] accelerate launch hf_mera/run.py ...

kills the run (SIGKILL of itself: no `finally`, no `atexit`, no flush, as a power cut or the OOM
killer would) the `n`-th time (default 1st) the code reaches `fault_point(<phase>, <step>)`. Then the
same command without the variable must end with the stage weights and `results.json` of an
uninterrupted run (`tests/test_crash_matrix.py`). Unset, every fault point is one dictionary lookup.

Fault points (phase: steps):

| phase | steps | where |
|---|---|---|
| `text_pretrain` | 1, 2, … (optimiser steps) | `hf_mera.models.tiny_lm.pretrain_text_lm` |
| `connector_pretrain`, `instruction_tuning`, `realign` | 1, 2, … (`global_step` after each optimiser step) | `fault_callback`, in every phase trainer (`trainers._common`) |
| any phase type (`backbone`, `add_modality`, `connector_pretrain`, `instruction_tuning`, `merge`, `realign`) | `begin` (parent loaded, temporary folder made), `saved` (weights written, not yet committed) | `trainers.workspace.Workspace.run_phase` |
| `evaluation` | 1, 2, … (modalities scored, result not yet written) | `trainers.evaluation.StageEvaluator.evaluate` |
| `publish` | `linked` (stage folder built, not renamed into place) | `trainers.stage_folder.publish_stage` |
| `card` | `written` (card written into the unpublished stage folder) | `trainers.stage_folder.StagePublisher.on_stage_saved` |
| `push` | 1, 2, … (revisions uploaded so far) | `model_cards.hub.push_stage` |

Occurrences are counted per process, so `instruction_tuning:2@2` is step 2 of the second instruction
tuning this process runs (stage 2 when stage 1's phases are not reused).
"""

from __future__ import annotations

import os
import signal
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager

ENV = "HF_MERA_FAULT"
_reached: Counter = Counter()
_phase: list[str] = []  # the phase types being built, innermost last (set by `phase_scope`)


@contextmanager
def phase_scope(phase: str) -> Iterator[None]:
    """Name the phase type whose trainer steps `FaultCallback` reports (`Workspace.run_phase`)."""
    _phase.append(phase)
    try:
        yield
    finally:
        _phase.pop()


def parse_fault(spec: str) -> tuple[str, str, int]:
    """`'<phase>:<step>[@<n>]'` → (phase, step, n); ValueError naming the variable otherwise."""
    where, _, nth = spec.partition("@")
    phase, sep, step = where.partition(":")
    if not sep or not phase or not step or (nth and not nth.isdigit()) or nth == "0":
        raise ValueError(
            f"{ENV}={spec!r}: expected <phase>:<step>[@<n>], e.g. 'merge:saved' or "
            "'instruction_tuning:2@2' (see hf_mera/faults.py for the phases and steps)."
        )
    return phase, step, int(nth or 1)


def fault_point(phase: str, step: int | str) -> None:
    """Kill this process here if `HF_MERA_FAULT` names (`phase`, `step`) and this is its n-th time."""
    spec = os.environ.get(ENV)
    if not spec:
        return
    target_phase, target_step, nth = parse_fault(spec)
    if (phase, str(step)) != (target_phase, target_step):
        return
    _reached[phase, str(step)] += 1
    if _reached[phase, str(step)] == nth:
        print(f"{ENV}: killing the process at {phase}:{step} (occurrence {nth})", flush=True)
        os.kill(os.getpid(), signal.SIGKILL)


def fault_callback():
    """A `TrainerCallback` calling `fault_point(<phase being built>, global_step)` after every
    optimiser step, or None when no fault is asked for (so normal runs carry no extra callback)."""
    if not os.environ.get(ENV):
        return None
    from transformers import TrainerCallback

    class FaultCallback(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if _phase:
                fault_point(_phase[-1], state.global_step)

    return FaultCallback()


__all__ = ["ENV", "fault_callback", "fault_point", "parse_fault", "phase_scope"]
