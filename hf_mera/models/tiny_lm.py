"""A word-level tokenizer and a tiny Llama, for the CPU quickstart and for tests.

No pretrained causal LM fits the quickstart's 10-minute CPU budget, so the quickstart trains this
tiny Llama as a text LM on the benchmark's sentences first (see `hf_mera.continual`); `smollm2.yaml`
is the documented run on a real pretrained LLM.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

SPECIAL_TOKENS = {"pad_token": "<pad>", "unk_token": "<unk>", "bos_token": "<s>", "eos_token": "</s>"}
# Roles and separators of `DEFAULT_CHAT_TEMPLATE`, which the word-level vocabulary must cover.
TEMPLATE_WORDS = ("user", "assistant", "system", ":")
_WORD = re.compile(r"\w+|[^\w\s]")


def build_word_level_tokenizer(
    texts: Iterable[str], extra_tokens: Iterable[str] = ()
) -> PreTrainedTokenizerFast:
    """A lower-cased word-level tokenizer whose vocabulary is every word and punctuation mark in `texts`."""
    from tokenizers import Tokenizer, normalizers, pre_tokenizers
    from tokenizers.models import WordLevel

    words = sorted({w for text in texts for w in _WORD.findall(text.lower())} | set(TEMPLATE_WORDS))
    vocab = {tok: i for i, tok in enumerate(SPECIAL_TOKENS.values())}
    for word in words:
        vocab.setdefault(word, len(vocab))
    model = Tokenizer(WordLevel(vocab=vocab, unk_token=SPECIAL_TOKENS["unk_token"]))
    model.normalizer = normalizers.Lowercase()
    model.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Punctuation()]
    )
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=model, **SPECIAL_TOKENS)
    extra = [t for t in extra_tokens if t not in vocab]
    if extra:
        tokenizer.add_special_tokens({"additional_special_tokens": extra})
    return tokenizer


def build_tiny_llama(
    tokenizer, hidden_size: int = 128, num_layers: int = 4, num_heads: int = 4, seed: int | None = None
) -> LlamaForCausalLM:
    """A small random Llama sized to `tokenizer` (tied embeddings, as small LMs usually are)."""
    import torch

    if seed is not None:
        torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=hidden_size * 4,
        num_hidden_layers=num_layers,
        num_attention_heads=num_heads,
        num_key_value_heads=num_heads,
        max_position_embeddings=512,
        tie_word_embeddings=True,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    return LlamaForCausalLM(config)


def pretrain_text_lm(
    model,
    tokenizer,
    texts: list[str],
    steps: int,
    learning_rate: float = 3e-3,
    batch_size: int = 64,
    seed: int = 0,
    progress: bool = True,
) -> list[float]:
    """Plain next-token training of a causal LM on `texts` (AdamW, cosine decay); returns the losses.

    Gives the quickstart's tiny Llama the benchmark's language before any modality is added, the
    way a pretrained LLM would already know it. A plain loop: a Trainer's overhead would dominate
    at this size.
    """
    if not texts:
        raise ValueError("pretrain_text_lm needs at least one text.")
    encoded = [tokenizer(t + tokenizer.eos_token, add_special_tokens=False)["input_ids"] for t in texts]
    return _train_causal_lm(
        model,
        tokenizer.pad_token_id,
        [(ids, ids) for ids in encoded],  # every token is a label
        steps,
        learning_rate,
        batch_size,
        seed,
        progress,
        desc="text pre-training",
        fault_phase="text_pretrain",
    )


def _train_causal_lm(
    model,
    pad_token_id: int,
    encoded: list[tuple[list[int], list[int]]],
    steps: int,
    learning_rate: float,
    batch_size: int,
    seed: int,
    progress: bool,
    desc: str,
    fault_phase: str | None = None,
) -> list[float]:
    """The plain loop both text phases share: random batches of `(input ids, labels)` rows padded on the
    right, AdamW with cosine decay and gradient clipping at 1; returns the losses. A Trainer's overhead
    would dominate at this size."""
    import torch
    from tqdm.auto import tqdm

    from hf_mera.faults import fault_point

    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=learning_rate, weight_decay=0.0)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(steps, 1))
    model.train()
    losses = []
    for step in tqdm(range(steps), desc=desc, disable=not progress):
        idx = torch.randint(len(encoded), (batch_size,), generator=generator).tolist()
        longest = max(len(encoded[i][0]) for i in idx)
        ids = torch.full((batch_size, longest), pad_token_id, dtype=torch.long)
        labels = torch.full((batch_size, longest), -100, dtype=torch.long)
        mask = torch.zeros((batch_size, longest), dtype=torch.long)
        for row, i in enumerate(idx):
            seq, lab = encoded[i]
            ids[row, : len(seq)] = torch.tensor(seq)
            labels[row, : len(seq)] = torch.tensor(lab)
            mask[row, : len(seq)] = 1
        loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(loss.item())
        if fault_phase is not None:
            fault_point(fault_phase, step + 1)
    model.eval()
    return losses


def _chat_ids(tokenizer, user: str, answer: str | None) -> list[int]:
    """`user` (and `answer`) rendered with the library's chat template, as token ids."""
    from hf_mera.models.anymodality_llava.processing_anymodality_llava import DEFAULT_CHAT_TEMPLATE

    messages = [{"role": "user", "content": user}]
    if answer is not None:
        messages.append({"role": "assistant", "content": answer})
    text = tokenizer.apply_chat_template(
        messages, chat_template=DEFAULT_CHAT_TEMPLATE, tokenize=False, add_generation_prompt=answer is None
    )
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def encode_conversation(tokenizer, user: str, answer: str) -> tuple[list[int], list[int]]:
    """Token ids of a one-turn conversation and its labels: -100 but on the answer and its end token,
    as `MultimodalCollator` labels a stage's conversations."""
    prompt = _chat_ids(tokenizer, user, None)
    full = _chat_ids(tokenizer, user, answer)
    if full[: len(prompt)] != prompt:
        raise ValueError("The chat template does not render the prompt as a prefix of the conversation.")
    return full, [-100] * len(prompt) + full[len(prompt) :]


def instruction_tune_text_lm(
    model,
    tokenizer,
    conversations: list[tuple[str, str]],
    steps: int,
    learning_rate: float = 1e-3,
    batch_size: int = 32,
    seed: int = 0,
    progress: bool = True,
) -> list[float]:
    """Text-only instruction tuning: `(user, answer)` turns in the library's chat format, loss on the
    answers only (AdamW, cosine decay); returns the losses.

    The tiny Llama's stand-in for what makes Llama-3-8B-*Instruct* an instruction follower before
    stage 1 (#17): after it, the LLM answers a question about an item described in words, so the
    stages only have to teach it to read the same facts from a modality's features.
    """
    if not conversations:
        raise ValueError("instruction_tune_text_lm needs at least one conversation.")
    encoded = [encode_conversation(tokenizer, user, answer) for user, answer in conversations]
    return _train_causal_lm(
        model,
        tokenizer.pad_token_id,
        encoded,
        steps,
        learning_rate,
        batch_size,
        seed,
        progress,
        desc="text instruction tuning",
    )


def described_answer_accuracy(
    model, tokenizer, conversations: list[tuple[str, str]], max_new_tokens: int = 8
) -> float:
    """Share of `(user, answer)` turns the LM answers exactly (greedy, lower-cased, stripped)."""
    import torch

    if not conversations:
        raise ValueError("described_answer_accuracy needs at least one conversation.")
    model.eval()
    correct = 0
    with torch.no_grad():
        for user, answer in conversations:
            ids = torch.tensor([_chat_ids(tokenizer, user, None)])
            out = model.generate(
                input_ids=ids,
                attention_mask=torch.ones_like(ids),
                max_new_tokens=max_new_tokens,
                do_sample=False,
                eos_token_id=tokenizer.eos_token_id,
                pad_token_id=tokenizer.pad_token_id,
            )
            text = tokenizer.decode(out[0, ids.shape[1] :], skip_special_tokens=True)
            correct += " ".join(text.lower().split()) == " ".join(answer.lower().split())
    return correct / len(conversations)


__all__ = [
    "build_word_level_tokenizer",
    "build_tiny_llama",
    "described_answer_accuracy",
    "encode_conversation",
    "instruction_tune_text_lm",
    "pretrain_text_lm",
    "SPECIAL_TOKENS",
]
