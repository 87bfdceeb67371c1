"""The QA judges by name, as a run's `evaluation.judge` names them::

    judge = JUDGES.get(settings.judge, where="evaluation.judge")(**settings.judge_kwargs)

A new judge is one class in `judges.py` (or anywhere) plus one `JUDGES.register(name, cls)` line.
"""

from __future__ import annotations

from hf_mera.registry import Registry

from .judges import ExactMatchJudge, OpenAIJudge, QAJudge

JUDGES: Registry[type[QAJudge]] = Registry("judge")
JUDGES.register("exact_match", ExactMatchJudge)
JUDGES.register("openai", OpenAIJudge)

__all__ = ["JUDGES"]
