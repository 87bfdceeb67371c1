"""An append-only JSON-lines cache of judge verdicts, so re-running an evaluation costs no requests."""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path

logger = logging.getLogger(__name__)


def verdict_cache_key(model: str, question: str, answer: str, prediction: str, prompt: str = "") -> str:
    """SHA-256 of (judge model, question, answer, prediction[, prompt template]) as a hex string.

    The prompt template is part of the key so that editing the prompt never reuses old verdicts.
    """
    payload = json.dumps([model, question, answer, prediction, prompt], ensure_ascii=False)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


class VerdictCache:
    """Verdict records keyed by `verdict_cache_key`, kept in `<cache_dir>/judge_verdicts.jsonl`.

    Every record is one JSON line written and flushed on `put`, so an interrupted evaluation keeps what
    it paid for; a truncated last line (from a crash mid-write) is skipped with a warning on load.
    """

    filename = "judge_verdicts.jsonl"

    def __init__(self, cache_dir: str | os.PathLike):
        self.path = Path(cache_dir) / self.filename
        self._records: dict[str, dict] = {}
        if self.path.exists():
            self._load()

    def _load(self) -> None:
        with self.path.open(encoding="utf-8") as handle:
            for line_number, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                    self._records[record["key"]] = record
                except (json.JSONDecodeError, KeyError, TypeError):
                    logger.warning("Skipping unreadable judge-cache line %d of %s.", line_number, self.path)

    def get(self, key: str) -> dict | None:
        return self._records.get(key)

    def put(self, key: str, record: dict) -> None:
        record = {"key": key, **record}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(record, ensure_ascii=False) + "\n")
        self._records[key] = record

    def __len__(self) -> int:
        return len(self._records)


__all__ = ["VerdictCache", "verdict_cache_key"]
