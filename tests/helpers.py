"""Builders the test files share (no test file imports another): tiny models, rows and datasets of
the trainers' tests, whole tiny curricula in process or through the CLI, a tiny demo checkpoint.

pytest puts `tests/` on the path (as for `conftest`), so a test imports them with `from helpers import ...`.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch
from conftest import make_tiny_model
from datasets import Dataset
from torch import nn

from hf_mera import AnyModalityLlava, ModalityConfig
from hf_mera.data.format import make_sample, samples_to_dataset
from hf_mera.models.tiny_lm import build_tiny_llama, build_word_level_tokenizer

# ---- whole curricula on tiny settings (test_run_e2e, test_methods_e2e, test_fifth_modality) --------
REPO = Path(__file__).resolve().parent.parent
# The demo is an app in the repository, not part of the installed package: import it from there
# whatever the working directory (plain `pytest` puts only tests/ on the path).
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))
TINY_SIZES = (
    "{caption_train: 24, qa_train: 24, caption_test: 6, qa_test: 6, cross_test: 6, speech_fraction: 0.0}"
)
TRAIN_ROWS_PER_TASK = 24


def tiny_overrides(
    data_root: Path, output_dir: Path, order: str = "[image, audio]", lora: bool = False, batch: int = 8
) -> list[str]:
    return [
        "--output_dir", str(output_dir),
        "--order", order,
        "--data.root", str(data_root),
        "--data.embedded", TINY_SIZES,
        "--model.backbone.hidden_size", "32",
        "--model.backbone.num_layers", "2",
        "--model.backbone.text_pretrain_steps", "10",
        "--model.backbone.text_pretrain_batch_size", "16",
        "--training.connector_pretrain.max_steps", "3",
        "--training.connector_pretrain.per_device_train_batch_size", str(batch),
        "--training.instruction_tuning.max_steps", "3",
        "--training.instruction_tuning.per_device_train_batch_size", str(batch),
        "--training.instruction_tuning.use_lora", str(lora).lower(),
        "--training.instruction_tuning.lora_r", "4",
        "--training.instruction_tuning.lora_alpha", "8",
        "--training.realign.max_steps", "2",
        "--training.realign.per_device_train_batch_size", str(batch),
        "--evaluation.max_new_tokens", "4",
        "--evaluation.batch_size", "8",
    ]  # fmt: skip


def run_in_process(overrides: list[str]):
    from hf_mera.continual.curriculum import load_run_config
    from trainers.runner import run_curriculum

    run = load_run_config("quickstart", overrides)
    run_curriculum(run, progress=False)
    return run


def load_state(path: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(path / "model.safetensors"))


def checkpoints(output_dir: Path, prefix: str) -> list[Path]:
    return sorted(p for p in (output_dir / "checkpoints").glob(f"{prefix}-*") if (p / "phase.json").is_file())


def phase(path: Path) -> dict:
    return json.loads((path / "phase.json").read_text())


def is_llm_key(key: str) -> bool:
    return "language_model." in key or key.startswith("lm_head.")


def start_cli(args: list[str], launcher: list[str] = (), **kwargs) -> subprocess.Popen:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    return subprocess.Popen(
        [*(launcher or [sys.executable]), str(REPO / "hf_mera" / "run.py"), *args],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        **kwargs,
    )


def run_to_the_end(args: list[str]) -> str:
    """Run the CLI to completion; its output (it must exit 0)."""
    proc = start_cli(args)
    out, _ = proc.communicate(timeout=900)
    assert proc.returncode == 0, out[-3000:]
    return out


def kill_minus_9_once(args: list[str], done) -> None:
    """Start the CLI and SIGKILL it as soon as `done()` holds, while it is still running."""
    proc = start_cli(args)
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline and proc.poll() is None and not done():
        time.sleep(0.1)
    assert proc.poll() is None, "the run finished before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()


# ---- the phase trainers' tiny model and rows (test_trainers, test_plugins_ewc, test_pathweave, ...) --
MODALITIES = ("image", "audio")
TOKENS, RAW_DIM, FEATURE_DIM = 4, 6, 8
CAPTIONS = ["a red circle", "a blue square", "a green triangle", "a red square"]
QUESTION, ANSWERS = "what colour is the shape ?", ["red", "blue", "green", "red"]


class TinyEncoder(nn.Module):
    """`[n, TOKENS * RAW_DIM]` values → `[n, TOKENS, FEATURE_DIM]` features."""

    hidden_size, num_tokens = FEATURE_DIM, TOKENS

    def __init__(self):
        super().__init__()
        self.proj = nn.Linear(RAW_DIM, FEATURE_DIM)

    def forward(self, values: torch.Tensor) -> torch.Tensor:
        return self.proj(values.view(values.shape[0], TOKENS, RAW_DIM))


def build_model(freeze_encoder: bool = True):
    tokenizer = build_word_level_tokenizer([*CAPTIONS, QUESTION, *ANSWERS, "describe it ."])
    llm = build_tiny_llama(tokenizer, hidden_size=32, num_layers=2, num_heads=4, seed=0)
    model, processor = AnyModalityLlava.from_pretrained_components(llm, [], tokenizer=tokenizer)
    torch.manual_seed(1)
    for name in MODALITIES:
        config = ModalityConfig(name=name, connector_type="mlp2x_gelu", freeze_encoder=freeze_encoder)
        model.add_modality(config, encoder=TinyEncoder(), processor=processor)
    return model, processor


def rows(modality: str, root=None) -> list[dict]:
    """Two caption and two QA samples of `modality`; media paths are keys of the feature table."""
    out = []
    for k, (caption, answer) in enumerate(zip(CAPTIONS, ANSWERS)):
        path = f"{root}/{modality}-{k}.npy" if root else f"{modality}-{k}"
        caption_task = k % 2 == 0
        prompt = "describe it ." if caption_task else QUESTION
        out.append(
            {
                "id": f"{modality}-{k}",
                "modality": modality,
                "task": "caption" if caption_task else "qa",
                "media": [{"modality": modality, "path": path}],
                "messages": [
                    {"role": "user", "content": f"<{modality}>\n{prompt}"},
                    {"role": "assistant", "content": caption if caption_task else answer},
                ],
                "references": [caption if caption_task else answer],
                "question": "" if caption_task else QUESTION,
            }
        )
    return out


FEATURES = {
    f"{m}-{k}": torch.randn(1, TOKENS, FEATURE_DIM, generator=torch.Generator().manual_seed(10 * i + k))
    for i, m in enumerate(MODALITIES)
    for k in range(len(CAPTIONS))
}


def feature_lookup(row: dict) -> dict[str, torch.Tensor]:
    return {item["modality"]: FEATURES[item["path"]] for item in row["media"]}


def dataset(*modalities: str) -> Dataset:
    return Dataset.from_list([row for m in modalities for row in rows(m)])


def test_args(config_class, tmp_path, **overrides):
    options = dict(
        output_dir=str(tmp_path),
        use_cpu=True,
        bf16=False,
        report_to="none",
        max_steps=3,
        per_device_train_batch_size=4,
        logging_steps=1000,
        disable_tqdm=True,
        learning_rate=1e-2,
        seed=0,
    )
    return config_class(**{**options, **overrides})


test_args.__test__ = False  # a helper, not a test


def snapshot(model: nn.Module) -> dict[str, torch.Tensor]:
    return {name: p.detach().clone() for name, p in model.named_parameters()}


def assert_changed_exactly(
    model: nn.Module, before: dict[str, torch.Tensor], trained_prefixes: tuple[str, ...]
):
    """Parameters under `trained_prefixes` all changed; every other parameter is bitwise equal."""
    after = dict(model.named_parameters())
    assert set(after) == set(before)
    changed = {name for name, p in after.items() if not torch.equal(p.detach(), before[name])}
    expected = {name for name in after if name.startswith(trained_prefixes)}
    assert expected, trained_prefixes
    assert changed == expected, (sorted(changed - expected), sorted(expected - changed))


def linear_weight_names(model: nn.Module) -> set[str]:
    return {
        f"model.language_model.{name}.weight"
        for name, module in model.model.language_model.named_modules()
        if isinstance(module, nn.Linear)
    }


# ---- sample-format rows of one modality (test_data_replay, test_plugins_replay) ---------------------
def training_data(modality: str, n_caption: int, n_qa: int):
    rows = [
        make_sample(
            f"{modality}/caption/{i}", modality, "caption", [(modality, f"/x/{i}")], "describe", "a thing"
        )
        for i in range(n_caption)
    ]
    rows += [
        make_sample(
            f"{modality}/qa/{i}", modality, "qa", [(modality, f"/x/q{i}")], "what?", "yes", question="what?"
        )
        for i in range(n_qa)
    ]
    return samples_to_dataset(rows)


# ---- a tiny checkpoint the demo loads (test_demo, test_demo_served) -------------------------------
def save_tiny_checkpoint(folder: Path, tokenizer, modalities=("image", "point_cloud"), order=None) -> Path:
    """A tiny random checkpoint; it always says a few words (min_new_tokens). With `order`, a
    published stage folder: its stage.json says in which order the modalities were learned."""
    model, processor = make_tiny_model(tokenizer, modalities=modalities)
    model.generation_config.min_new_tokens = 3
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    if order:
        (folder / "stage.json").write_text(json.dumps({"seen": list(order)}))
    return folder
