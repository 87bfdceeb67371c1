"""Cap3D-QA (Panagopoulou et al., 2023, X-InstructBLIP): the paper's point-cloud QA set.

Files under `data_dir`: `cap3d_qa_train.json` and `cap3d_qa_test.json` (names assumed; set
`AdapterConfig.files`). Assumed shape, as in X-InstructBLIP's release: a JSON list, or a JSON
object holding the list under "data" / "annotations", or JSON lines, of entries

    {"sample_id" | "uid": "<Objaverse uid>", "question": "...", "answer": "..." | ["...", ...]}

(`answers` is accepted for `answer`). A list of answers gives the references, the first is the
target. Point clouds as for Cap3D: `points/` (or `media_dir`) / `<uid>.npy`, else `.ply`.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..bad_data import BadItemLog
from .base import DatasetAdapter, Record, read_json, register_dataset_adapter, with_extensions
from .cap3d import POINT_EXTENSIONS


def read_entries(path: Path) -> list[Any]:
    if path.suffix == ".jsonl":
        return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    data = read_json(path)
    if isinstance(data, dict):
        for key in ("data", "annotations"):
            if isinstance(data.get(key), list):
                return data[key]
        raise ValueError(f"{path}: expected a list of entries, or one under 'data' or 'annotations'.")
    if not isinstance(data, list):
        raise ValueError(f"{path}: expected a JSON list of entries.")
    return data


@register_dataset_adapter("cap3d_qa")
class Cap3DQAAdapter(DatasetAdapter):
    modality = "point_cloud"
    task = "qa"
    default_files = {"train": "cap3d_qa_train.json", "test": "cap3d_qa_test.json"}
    default_media_dir = "points"

    def records(self, split: str, log: BadItemLog) -> Iterator[Record]:
        path = self.file(split)
        for index, entry in enumerate(read_entries(path)):
            if not isinstance(entry, dict):
                log.report(index, str(path), "entry is not an object")
                continue
            uid = entry.get("sample_id", entry.get("uid"))
            question = str(entry.get("question", "")).strip()
            answers = entry.get("answer", entry.get("answers"))
            answers = [answers] if isinstance(answers, str) else answers
            refs = [str(a).strip() for a in answers or [] if str(a).strip()]
            if not uid or not question or not refs:
                log.report(index, str(path), "entry without sample_id/uid, question or answer")
                continue
            yield Record(
                row=index,
                key=str(index),
                media=with_extensions(self.media_dir / str(uid), POINT_EXTENSIONS),
                answer=refs[0],
                references=refs,
                question=question,
            )
