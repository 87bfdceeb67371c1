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
    import torch
    from tqdm.auto import tqdm

    from hf_mera.faults import fault_point

    if not texts:
        raise ValueError("pretrain_text_lm needs at least one text.")
    generator = torch.Generator().manual_seed(seed)
    encoded = [tokenizer(t + tokenizer.eos_token, add_special_tokens=False)["input_ids"] for t in texts]
    optimizer = torch.optim.AdamW(model.parameters(), lr=learning_rate, weight_decay=0.0)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(steps, 1))
    model.train()
    losses = []
    for step in tqdm(range(steps), desc="text pre-training", disable=not progress):
        idx = torch.randint(len(encoded), (batch_size,), generator=generator).tolist()
        longest = max(len(encoded[i]) for i in idx)
        ids = torch.full((batch_size, longest), tokenizer.pad_token_id, dtype=torch.long)
        labels = torch.full((batch_size, longest), -100, dtype=torch.long)
        mask = torch.zeros((batch_size, longest), dtype=torch.long)
        for row, i in enumerate(idx):
            seq = torch.tensor(encoded[i])
            ids[row, : len(seq)], labels[row, : len(seq)], mask[row, : len(seq)] = seq, seq, 1
        loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(loss.item())
        fault_point("text_pretrain", step + 1)
    model.eval()
    return losses


__all__ = ["build_word_level_tokenizer", "build_tiny_llama", "pretrain_text_lm", "SPECIAL_TOKENS"]
