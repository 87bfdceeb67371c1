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

import numpy as np
import torch
from conftest import make_tiny_model
from datasets import Dataset
from PIL import Image
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
    """The quickstart cut to a tiny curriculum; full fine-tuning unless `lora` (the quickstart's LoRA)."""
    return [
        "--output_dir", str(output_dir),
        "--order", order,
        "--data.root", str(data_root),
        "--data.embedded", TINY_SIZES,
        "--model.backbone.hidden_size", "32",
        "--model.backbone.num_layers", "2",
        "--model.backbone.text_pretrain_steps", "10",
        "--model.backbone.text_pretrain_batch_size", "16",
        # The quickstart's text instruction phase (300 steps) cut to 2, so it still runs here.
        "--model.backbone.text_instruct_steps", "2",
        "--model.backbone.text_instruct_batch_size", "8",
        "--training.connector_pretrain.max_steps", "3",
        "--training.connector_pretrain.per_device_train_batch_size", str(batch),
        "--training.instruction_tuning.max_steps", "3",
        "--training.instruction_tuning.per_device_train_batch_size", str(batch),
        "--training.instruction_tuning.use_lora", str(lora).lower(),
        # Full fine-tuning's 5e-4 for both (the quickstart's 5e-3 is LoRA's): the e2e checks were set at it.
        "--training.instruction_tuning.learning_rate", "0.0005",
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


# ---- tiny transformers LLaVAs (test_llava_import, test_llava_extend_e2e) ---------------------------
# llava-hf's chat templates (llava-1.5-7b-hf; llava-interleave-qwen-0.5b-hf without its video lines).
LLAVA15_TEMPLATE = (
    "{% for message in messages %}{% if message['role'] != 'system' %}{{ message['role'].upper() + ': '}}"
    "{% endif %}{% for content in message['content'] | selectattr('type', 'equalto', 'image') %}"
    "{{ '<image>\n' }}{% endfor %}{% if message['role'] != 'assistant' %}"
    "{% for content in message['content'] | selectattr('type', 'equalto', 'text') %}{{ content['text'] + ' '}}"
    "{% endfor %}{% else %}{% for content in message['content'] | selectattr('type', 'equalto', 'text') %}"
    "{% generation %}{{ content['text'] + ' '}}{% endgeneration %}{% endfor %}{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}{{ 'ASSISTANT:' }}{% endif %}"
)
QWEN_TEMPLATE = (
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n'}}"
    "{% for content in message['content'] | selectattr('type', 'equalto', 'image') %}{{ '<image>\n' }}"
    "{% endfor %}{% if message['role'] != 'assistant' %}"
    "{% for content in message['content'] | selectattr('type', 'equalto', 'text') %}{{ content['text'] }}"
    "{% endfor %}{% else %}{% for content in message['content'] | selectattr('type', 'equalto', 'text') %}"
    "{% generation %}{{ content['text'] }}{% endgeneration %}{% endfor %}{% endif %}{{'<|im_end|>\n'}}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
WORDS = (
    "user assistant system : what is this ? a red blue green yellow circle square triangle shape the color "
    "colour of it describe image audio point cloud . yes no one two three four sound beeps how many , "
    "small large cone cube sphere moves left right up down"
).split()


def build_tokenizer(family: str, words=WORDS):
    """A word-level tokenizer shaped like the family's: Llama's adds BOS, Qwen2's adds nothing."""
    from tokenizers import Tokenizer, normalizers, pre_tokenizers, processors
    from tokenizers.models import WordLevel
    from transformers import PreTrainedTokenizerFast

    if family == "llama":
        special = {"unk_token": "<unk>", "bos_token": "<s>", "eos_token": "</s>", "pad_token": "<pad>"}
    else:
        special = {"unk_token": "<unk>", "eos_token": "<|im_end|>", "pad_token": "<|endoftext|>"}
    vocab = {token: i for i, token in enumerate([*special.values(), "<|im_start|>", "<image>"])}
    for word in sorted(set(words)):
        vocab.setdefault(word, len(vocab))
    model = Tokenizer(WordLevel(vocab=vocab, unk_token="<unk>"))
    model.normalizer = normalizers.Lowercase()
    model.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Punctuation()]
    )
    if family == "llama":
        model.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 1)])
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=model, **special)
    tokenizer.add_special_tokens({"additional_special_tokens": ["<|im_start|>", "<image>"]})
    return tokenizer


def build_tiny_llava(folder, family: str = "llama", seed: int = 0, words=WORDS):
    """Save a tiny random `LlavaForConditionalGeneration` and its `LlavaProcessor` to `folder`.

    llama: LLaVA-1.5's layout (CLS dropped, layer -2); qwen2: the interleave layout read with the
    "full" strategy (CLS kept) and tied embeddings."""
    from transformers import (
        CLIPImageProcessor,
        CLIPVisionConfig,
        LlamaConfig,
        LlavaConfig,
        LlavaForConditionalGeneration,
        LlavaProcessor,
        Qwen2Config,
    )

    tokenizer = build_tokenizer(family, words)
    text = dict(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    if family == "llama":
        text_config, strategy, template = LlamaConfig(**text, bos_token_id=1), "default", LLAVA15_TEMPLATE
    else:
        text_config, strategy, template = Qwen2Config(**text, tie_word_embeddings=True), "full", QWEN_TEMPLATE
    vision = CLIPVisionConfig(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        image_size=32,
        patch_size=8,
    )
    image_token_id = tokenizer.convert_tokens_to_ids("<image>")
    config = LlavaConfig(
        vision_config=vision,
        text_config=text_config,
        image_token_id=image_token_id,
        vision_feature_select_strategy=strategy,
        vision_feature_layer=-2,
        image_seq_length=16 if strategy == "default" else 17,
        tie_word_embeddings=family != "llama",
    )
    torch.manual_seed(seed)
    model = LlavaForConditionalGeneration(config)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    image_processor = CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    processor = LlavaProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        patch_size=8,
        vision_feature_select_strategy=strategy,
        num_additional_image_tokens=1,
        chat_template=template,
    )
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


def random_image(seed: int, size=(40, 52)) -> Image.Image:
    rng = np.random.RandomState(seed)
    return Image.fromarray((rng.rand(*size, 3) * 255).astype("uint8"))


# Two prompts of different lengths, so the batch is padded.
CONVERSATIONS = [("what is this ?", None), ("describe the image , what color is the shape ?", None)]


def both_inputs(llava_processor, processor, images, prompts):
    """The source's inputs (LLaVA parts through LlavaProcessor) and ours (hf_mera's string messages)."""
    source_texts, our_texts = [], []
    for prompt, answer in prompts:
        parts = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": prompt}]}]
        plain = [{"role": "user", "content": f"<image>\n{prompt}"}]
        if answer is not None:
            parts.append({"role": "assistant", "content": [{"type": "text", "text": answer}]})
            plain.append({"role": "assistant", "content": answer})
        generation = answer is None
        source_texts.append(llava_processor.apply_chat_template(parts, add_generation_prompt=generation))
        our_texts.append(processor.apply_chat_template(plain, add_generation_prompt=generation))
    source = llava_processor(images=images, text=source_texts, return_tensors="pt", padding=True)
    ours = processor(text=our_texts, media=[[{"modality": "image", "value": im}] for im in images])
    return source, ours, source_texts, our_texts


# ---- comparing runs (test_run_e2e, test_sharded) ----------------------------------------------------
def scores_of(output_dir: Path) -> list:
    """Every method's per-stage scores from results.json (the full report or the raw fallback)."""
    results = json.loads((output_dir / "results.json").read_text())
    if "runs" in results:
        return [(run["method"], run["stages"], run["expert_scores"]) for run in results["runs"]]
    return [(r["name"], [stage["scores"] for stage in r["stages"]]) for r in results["records"]]


def nested_close(a, b, tol: float = 1e-6) -> bool:
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(nested_close(a[k], b[k], tol) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(nested_close(x, y, tol) for x, y in zip(a, b))
    if isinstance(a, float):
        return abs(a - b) <= tol * max(1.0, abs(a))
    return a == b
