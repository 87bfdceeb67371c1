"""Which checkpoint the demo chats with: the latest quickstart output by default, or a stage folder or
hub id (`org/name[@revision]`) loaded through the Auto classes, with the order its modalities were
learned in."""

from __future__ import annotations

from pathlib import Path

QUICKSTART_DIR = Path("outputs/quickstart")
QUICKSTART_COMMAND = "accelerate launch hf_mera/run.py"


def find_quickstart_checkpoint(root: Path = QUICKSTART_DIR, method: str = "mera") -> Path | None:
    """The final stage of `method` (a method's `name`, MERA by default) in the latest quickstart
    output, or None when there is none."""
    import json

    finals = []
    for info_file in Path(root).glob("*/stage-*/stage.json"):
        try:
            info = json.loads(info_file.read_text())
        except (OSError, ValueError):
            continue
        if info.get("method_type") == method and info.get("stage") == len(info.get("order", [])):
            finals.append(info_file)
    if not finals:
        return None
    return max(finals, key=lambda f: f.stat().st_mtime).parent


class DemoError(ValueError):
    """A problem the user can fix: shown in the chat (or printed by the CLI) as a sentence."""


def load_checkpoint(checkpoint: str):
    """`(model, processor)` from a folder or a hub id (`org/name[@revision]`), via the Auto classes."""
    from transformers import AutoModelForCausalLM, AutoProcessor

    import hf_mera  # noqa: F401  registers AnyModalityLlava with the Auto classes

    name, _, revision = checkpoint.partition("@")
    kwargs = {"revision": revision} if revision else {}
    try:
        model = AutoModelForCausalLM.from_pretrained(name, **kwargs)
        processor = AutoProcessor.from_pretrained(name, **kwargs)
    except (OSError, ValueError) as err:
        raise DemoError(f"Cannot load checkpoint {checkpoint!r}: {err}") from err
    if not hasattr(processor, "modalities") or not getattr(model.config, "modalities", None):
        raise DemoError(f"{checkpoint!r} is not an hf_mera checkpoint: it knows no modality.")
    model.eval()
    return model, processor


def stage_info(checkpoint: str) -> dict:
    """The stage's `stage.json` (a published stage folder, local or on the hub); {} when there is
    none (a plain checkpoint), offline or unreadable."""
    import json

    name, _, revision = checkpoint.partition("@")
    path = Path(name) / "stage.json"
    try:
        if not Path(name).is_dir():
            from huggingface_hub import hf_hub_download

            path = Path(hf_hub_download(name, "stage.json", revision=revision or None))
        info = json.loads(path.read_text())
        return info if isinstance(info, dict) else {}
    except Exception:
        return {}


def learned_order(checkpoint: str) -> list[str]:
    """The modalities in the order the curriculum taught them, from the stage's `stage.json`; []
    when there is none."""
    return list(stage_info(checkpoint).get("seen", []))


def one_turn_curriculum(checkpoint: str) -> bool:
    """Whether the checkpoint is a stage of an hf_mera curriculum (it has a `stage.json`), which
    trains on one-turn chats only: every sample is one user turn and its answer
    (`hf_mera.data.format.make_sample`). Such a model has never seen an earlier turn in its input,
    and measured on the quickstart's final stage it answers later turns worse with them than alone
    (`bench/demo_context.py`, bench/RESULTS.md), so the demo keeps no context for it by default."""
    return bool(stage_info(checkpoint))


__all__ = [
    "QUICKSTART_COMMAND",
    "QUICKSTART_DIR",
    "DemoError",
    "find_quickstart_checkpoint",
    "learned_order",
    "load_checkpoint",
    "one_turn_curriculum",
    "stage_info",
]
