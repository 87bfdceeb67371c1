"""Pushing published stages to the Hugging Face hub: one branch per stage, the final stage also on main.

The token comes from the `HF_TOKEN` environment variable and is handed to `HfApi` in memory only: no
config field holds it, and nothing here writes it to a file or a log.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from hf_mera.continual.curriculum import RunConfig
from hf_mera.faults import fault_point

logger = logging.getLogger(__name__)


def pushed_method(run: RunConfig) -> str | None:
    """Display name of the method whose stages go to the hub, or None when the run pushes nothing."""
    if run.push_to_hub.repo_id is None:
        return None
    return run.push_to_hub.method or run.methods[-1].name


def stage_revisions(run: RunConfig, info: dict) -> list[str]:
    """The branches a stage is pushed to: its own, plus `final_revision` for the curriculum's last."""
    section = run.push_to_hub
    slug = "".join(c if c.isalnum() else "-" for c in info["method"].lower()).strip("-")
    revisions = [section.revision.format(stage=info["stage"], modality=info["modality"], method=slug)]
    if section.final_revision and info["stage"] == len(info["order"]):
        revisions.append(section.final_revision)
    return revisions


def hub_target(run: RunConfig, info: dict) -> tuple[str | None, str | None]:
    """(repo id, the revision the stage's card should name) if this stage is pushed, else (None, None)."""
    if pushed_method(run) != info["method"]:
        return None, None
    return run.push_to_hub.repo_id, stage_revisions(run, info)[-1]


def hub_token() -> str:
    token = os.environ.get("HF_TOKEN")
    if not token:
        raise ValueError(
            "push_to_hub.repo_id is set but the HF_TOKEN environment variable is empty: export a hub "
            "token with write access (it is read from the environment only, never from a config)."
        )
    return token


def check_push_ready(run: RunConfig, method_name: str) -> None:
    """Fail before training, not after it, when `method_name`'s stages are to be pushed without a token."""
    if pushed_method(run) == method_name:
        hub_token()


def push_stage(stage_dir: str | Path, info: dict, run: RunConfig, api=None) -> list[str]:
    """Upload the published stage folder to every revision of `stage_revisions`; returns them.

    Does nothing (returns []) unless `push_to_hub` names this stage's method. `api`: an `HfApi`
    (default: one holding the `HF_TOKEN` token).
    """
    if pushed_method(run) != info["method"]:
        return []
    from huggingface_hub import HfApi

    section = run.push_to_hub
    api = api or HfApi(token=hub_token())
    api.create_repo(section.repo_id, repo_type="model", private=section.private, exist_ok=True)
    revisions = stage_revisions(run, info)
    for revision in revisions:
        if revision != "main":
            # Branch from main so that every stage branch shares the repo's history.
            api.create_branch(section.repo_id, branch=revision, repo_type="model", exist_ok=True)
        api.upload_folder(
            repo_id=section.repo_id,
            repo_type="model",
            folder_path=str(stage_dir),
            revision=revision,
            commit_message=f"{info['method']}: stage {info['stage']} ({info['modality']})",
            # Temporary or hidden files (a half-written card, `.complete` markers) are not the model.
            ignore_patterns=[".*", "**/.*"],
        )
        logger.info("pushed %s to %s@%s", stage_dir, section.repo_id, revision)
        fault_point("push", revisions.index(revision) + 1)
    return revisions


__all__ = ["check_push_ready", "hub_target", "hub_token", "push_stage", "pushed_method", "stage_revisions"]
