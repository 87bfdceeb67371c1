"""Does the tiny Llama answer questions about items described in words (#17)? Builds the quickstart's
backbone (word-level tokenizer, text pre-training on the train split), then the text-only instruction
phase on the train split's described items, and prints QA accuracy on the VALIDATION split's described
items (exact match) before and after, with each phase's wall time.

    nice -n 10 python bench/bench_text_instruct.py --instruct-steps 300
"""

from __future__ import annotations

import argparse
import time

from hf_mera.data.embedded import EmbeddedSizes, build_embedded_benchmark
from hf_mera.models.tiny_lm import (
    build_tiny_llama,
    build_word_level_tokenizer,
    described_answer_accuracy,
    instruction_tune_text_lm,
    pretrain_text_lm,
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pretrain-steps", type=int, default=200)
    parser.add_argument("--instruct-steps", type=int, default=300)
    parser.add_argument("--instruct-lr", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    import torch

    torch.set_num_threads(2)
    # The quickstart's sizes (val at its default).
    sizes = EmbeddedSizes(caption_train=400, qa_train=400, caption_test=60, qa_test=60, cross_test=80)
    bench = build_embedded_benchmark(seed=args.seed, sizes=sizes, progress=False)
    val = bench.described_conversations("val", tasks=("qa",))
    tokenizer = build_word_level_tokenizer(bench.all_texts())
    model = build_tiny_llama(tokenizer, 128, 4, 4, seed=args.seed)
    start = time.perf_counter()
    pretrain_text_lm(
        model,
        tokenizer,
        bench.all_texts(("train",)),
        steps=args.pretrain_steps,
        seed=args.seed,
        progress=False,
    )
    pretrain_s = time.perf_counter() - start
    before = described_answer_accuracy(model, tokenizer, val)
    start = time.perf_counter()
    losses = instruction_tune_text_lm(
        model,
        tokenizer,
        bench.described_conversations("train"),
        steps=args.instruct_steps,
        learning_rate=args.instruct_lr,
        seed=args.seed,
        progress=False,
    )
    instruct_s = time.perf_counter() - start
    after = described_answer_accuracy(model, tokenizer, val)
    per_modality = {
        m: described_answer_accuracy(model, tokenizer, bench.described_conversations("val", ("qa",), (m,)))
        for m in bench.modalities
    }
    print(f"benchmark {bench.content_hash}; val QA items {len(val)}")
    print(
        f"text pre-training {args.pretrain_steps} steps: {pretrain_s:.1f} s; val described-QA accuracy {100 * before:.1f} %"
    )
    print(
        f"text instruction {args.instruct_steps} steps (lr {args.instruct_lr}): {instruct_s:.1f} s "
        f"(ratio to pre-training {instruct_s / pretrain_s:.2f}); final loss {losses[-1]:.3f}; "
        f"val described-QA accuracy {100 * after:.1f} %"
    )
    print("per modality: " + ", ".join(f"{m} {100 * a:.1f} %" for m, a in per_modality.items()))


if __name__ == "__main__":
    main()
