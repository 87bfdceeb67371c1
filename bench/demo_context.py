"""Does the demo's chat keep its answers when earlier turns go back to the model? (#23)

Asks, in one chat, one QA test question per modality (a random order per chat) of the embedded
benchmark, through the demo's own `ChatBackend`, three ways:

- alone: each question in a fresh chat (what the API and `report.md` measure);
- context with files: earlier turns go back with their files (the demo's "Keep context" switch);
- context as text: earlier turns as text only (the demo before #23: their files were dropped).

It prints, per turn position, how often each way's answer equals the question's answer alone, and
the exact-match accuracy of each against the benchmark's references.

    python bench/demo_context.py outputs/quickstart/mera-10/stage-4-point_cloud \
        --benchmark ~/.cache/hf_mera/embedded/v2-0-... --chats 25
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from demo.app import ChatBackend, DemoSettings  # noqa: E402
from demo.checkpoints import learned_order, load_checkpoint  # noqa: E402


def normalise(text: str) -> str:
    return " ".join(text.lower().replace(".", " ").split())


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint")
    parser.add_argument(
        "--benchmark", required=True, help="the embedded benchmark folder the stage was tested on"
    )
    parser.add_argument("--chats", type=int, default=25)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-new-tokens", type=int, default=16)
    parser.add_argument("--show", type=int, default=1, help="print the answers of the first N chats")
    args = parser.parse_args(argv)

    from hf_mera.data.embedded import EmbeddedBenchmark

    bench = EmbeddedBenchmark(args.benchmark)
    model, processor = load_checkpoint(args.checkpoint)
    backend = ChatBackend(model, processor, DemoSettings(max_new_tokens=args.max_new_tokens), args.checkpoint)
    modalities = learned_order(args.checkpoint) or list(model.config.modalities)
    tests = {m: bench.dataset(m, "qa", "test") for m in modalities}
    rng = random.Random(args.seed)

    def ask(question: str, path: str, history: list[dict], keep: bool) -> str:
        return list(backend.respond({"text": question, "files": [path]}, history, keep))[-1][0].strip()

    ways = ("alone", "context with files", "context as text")
    same = {w: [0] * len(modalities) for w in ways}
    correct = {w: 0 for w in ways}
    asked = 0
    start = time.monotonic()
    shown = []
    for chat in range(args.chats):
        order = rng.sample(modalities, len(modalities))
        rows = [tests[m][rng.randrange(len(tests[m]))] for m in order]
        with_files, as_text = [], []
        for turn, row in enumerate(rows):
            question, path = row["question"], row["media"][0]["path"]
            refs = {normalise(r) for r in row["references"]}
            answers = {
                "alone": ask(question, path, [], False),
                "context with files": ask(question, path, with_files, True),
                "context as text": ask(question, path, as_text, True),
            }
            if chat < args.show:
                shown.append(f"{chat + 1}.{turn + 1} [{order[turn]}] {question!r} refs={row['references'][:2]}: "
                             + "; ".join(f"{way}={answer!r}" for way, answer in answers.items()))  # fmt: skip
            for way, answer in answers.items():
                same[way][turn] += answer == answers["alone"]
                correct[way] += normalise(answer) in refs
            asked += 1
            # The history gradio keeps: the message's files and text, then the streamed answer.
            user_text = [{"type": "text", "text": question}]
            with_files += [
                {"role": "user", "content": [{"type": "file", "file": {"path": path}}, *user_text]},
                {"role": "assistant", "content": [{"type": "text", "text": answers["context with files"]}]},
            ]
            as_text += [
                {"role": "user", "content": user_text},
                {"role": "assistant", "content": [{"type": "text", "text": answers["context as text"]}]},
            ]
    print(f"checkpoint: {args.checkpoint}\nbenchmark: {args.benchmark}")
    print(f"{args.chats} chats x {len(modalities)} questions (one per modality, random order), "
          f"greedy, max_new_tokens={args.max_new_tokens}; {time.monotonic() - start:.0f} s\n")  # fmt: skip
    print("\n".join(shown) + "\n")
    header = " | ".join(f"turn {i + 1}" for i in range(len(modalities)))
    print(f"| way | same answer as alone: {header} | exact match vs references |")
    print("|---|" + "---|" * len(modalities) + "---|")
    for way in ways:
        cells = " | ".join(f"{100 * n / args.chats:.0f} %" for n in same[way])
        print(f"| {way} | {cells} | {100 * correct[way] / asked:.1f} % |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
