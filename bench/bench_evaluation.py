"""Evaluation's generation: batched greedy decoding with the KV cache against plain loops (issue #20,
part 3). Evaluation's share of the quickstart's wall time is in the run's own table (`trainers/timing.py`,
printed by `bench/bench_quickstart.py`).

    nice -n 10 python bench/bench_evaluation.py [--rows 64] [--new-tokens 12] [--rounds 3]

On a quickstart-shaped model (`bench/_shapes.py`) and a quickstart-sized test set (64 rows, 12 new
tokens, the quickstart's `evaluation.batch_size` 64 and `max_new_tokens` 12), with cached features:
- **ours**: `hf_mera.evaluation.generate_predictions(batch_size=64)`: left-padded batches through
  `model.generate` (greedy, KV cache);
- **ours, batch 1**: the same one row at a time;
- **plain loop, KV cache**: a hand-written batched greedy loop (`logits[:, -1].argmax()`, placeholder
  tokens suppressed as `generate` does, positions from the mask, stopped at end-of-sequence) through a
  `DynamicCache`: what `generate` costs beyond the arithmetic;
- **plain loop, no cache**: the same loop with a full forward over the sequence so far at every token.
Time is CPU seconds of this process on one thread (the machine is shared), median over interleaved
rounds; how many predictions each shares with ours is printed as a check.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import _shapes  # noqa: E402
import torch  # noqa: E402


def ours(model, processor, rows, batch_size: int, new_tokens: int) -> list[str]:
    from hf_mera.evaluation import generate_predictions

    return generate_predictions(
        model,
        processor,
        rows,
        batch_size=batch_size,
        max_new_tokens=new_tokens,
        progress=False,
        feature_lookup=_shapes.feature_lookup,
    )


@torch.inference_mode()
def plain_loop(model, processor, rows, new_tokens: int, cache: bool) -> list[str]:
    """Greedy decoding by hand: with `cache`, a prefill then one token per forward through a
    `DynamicCache`; without, one full forward over the sequence so far per new token. Positions come
    from the attention mask (left padding), as `generate` makes them."""
    from transformers import DynamicCache

    from hf_mera.evaluation.generation import _batched_features, prompt_messages

    tokenizer = processor.tokenizer
    tokenizer.padding_side = "left"
    prompts = [
        processor.apply_chat_template(prompt_messages(r), add_generation_prompt=True, tokenize=False)
        for r in rows
    ]
    inputs = processor(text=prompts, media=None, return_tensors="pt", padding=True)
    features = _batched_features(rows, _shapes.feature_lookup, None, None)
    ids, mask = inputs["input_ids"], inputs["attention_mask"]
    suppress = torch.tensor(model.generation_config.suppress_tokens or [], dtype=torch.long)
    eos = tokenizer.eos_token_id
    done = torch.zeros(len(rows), dtype=torch.bool)
    model.eval()
    kv = DynamicCache() if cache else None
    step_ids, positions = ids, (mask.cumsum(-1) - 1).clamp(min=0)
    for step in range(new_tokens):
        logits = model(
            input_ids=step_ids,
            attention_mask=mask,
            position_ids=positions,
            modality_features=features if step == 0 or not cache else None,
            past_key_values=kv,
            use_cache=cache,
            logits_to_keep=1,
        ).logits[:, -1]
        logits[:, suppress] = float("-inf")
        token = logits.argmax(-1)
        token = torch.where(done, torch.full_like(token, tokenizer.pad_token_id), token)
        done |= token == eos
        ids = torch.cat([ids, token[:, None]], 1)
        mask = torch.cat([mask, torch.ones_like(token)[:, None]], 1)
        if cache:
            step_ids, positions = token[:, None], positions[:, -1:] + 1
        else:
            step_ids, positions = ids, (mask.cumsum(-1) - 1).clamp(min=0)
        if done.all():
            break
    new = ids[:, inputs["input_ids"].shape[1] :]
    return [text.strip() for text in processor.batch_decode(new, skip_special_tokens=True)]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=64)
    parser.add_argument("--new-tokens", type=int, default=12)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(1)
    modalities = _shapes.modality_names(4)
    model, processor = _shapes.build(modalities)
    rows = [row for m in modalities for row in _shapes.rows(m, args.rows // len(modalities), seed=3)]
    variants = {
        "ours (batch 64, KV cache)": lambda: ours(model, processor, rows, 64, args.new_tokens),
        "ours, batch 1 (KV cache)": lambda: ours(model, processor, rows, 1, args.new_tokens),
        "plain loop (batch 64, KV cache)": lambda: plain_loop(model, processor, rows, args.new_tokens, True),
        "plain loop (batch 64, no cache)": lambda: plain_loop(model, processor, rows, args.new_tokens, False),
    }
    times = {name: [] for name in variants}
    outputs = {}
    for _ in range(args.rounds):
        for name, run in variants.items():
            start = time.process_time()
            outputs[name] = run()
            times[name].append(time.process_time() - start)
    base = statistics.median(times["ours (batch 64, KV cache)"])
    print(
        f"{len(rows)} rows, max {args.new_tokens} new tokens, one thread, CPU seconds, "
        f"median of {args.rounds} interleaved rounds\n"
    )
    print("| generation | seconds | ms per row | time against ours |")
    print("|---|---|---|---|")
    for name in variants:
        seconds = statistics.median(times[name])
        print(f"| {name} | {seconds:.2f} | {1000 * seconds / len(rows):.1f} | {seconds / base:.2f}x |")
    reference = outputs["ours (batch 64, KV cache)"]
    for name, predictions in outputs.items():
        same = sum(a == b for a, b in zip(reference, predictions))
        print(f"{name}: {same}/{len(rows)} predictions equal to ours (batch 64)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
