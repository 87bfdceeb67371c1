"""Clotho-AQA (Lipping et al., 2022): the paper's audio QA set.

Files under `data_dir`: `clotho_aqa_train.csv` and `clotho_aqa_test.csv` (as distributed on
Zenodo), columns `file_name,QuestionText,answer,confidence`, one row per annotator answer (three
per question). Only rows with `confidence == "yes"` are kept (appendix B). Audio: `audio_files/`
(or `media_dir`) / `file_name`. Training has one row per distinct (file, question, answer) kept;
a test row is one (file, question) with its confident answers as references and the most frequent
as target.
"""

from __future__ import annotations

from collections.abc import Iterator

from ..bad_data import BadItemLog
from .base import DatasetAdapter, Record, majority, read_csv_rows, register_dataset_adapter


@register_dataset_adapter("clotho_aqa")
class ClothoAQAAdapter(DatasetAdapter):
    modality = "audio"
    task = "qa"
    default_files = {"train": "clotho_aqa_train.csv", "test": "clotho_aqa_test.csv"}
    default_media_dir = "audio_files"

    def records(self, split: str, log: BadItemLog) -> Iterator[Record]:
        path = self.file(split)
        questions: dict[tuple[str, str], list[tuple[int, str]]] = {}
        for index, row in read_csv_rows(path, ("file_name", "QuestionText", "answer", "confidence")):
            if (row["confidence"] or "").strip().lower() != "yes":
                continue
            file_name, question, answer = (
                row["file_name"],
                (row["QuestionText"] or "").strip(),
                (row["answer"] or "").strip(),
            )
            if not file_name or not question or not answer:
                log.report(index, str(path), "row without file_name, QuestionText or answer")
                continue
            questions.setdefault((file_name, question), []).append((index, answer))
        for number, ((file_name, question), answers) in enumerate(questions.items()):
            media = [str(self.media_dir / file_name)]
            if split == "test":
                refs = [a for _, a in answers]
                yield Record(
                    row=answers[0][0],
                    key=str(number),
                    media=media,
                    answer=majority(refs),
                    references=refs,
                    question=question,
                )
                continue
            seen: set[str] = set()
            for index, answer in answers:
                if answer.lower() in seen:  # three annotators often agree: one row per distinct answer
                    continue
                seen.add(answer.lower())
                yield Record(
                    row=index,
                    key=f"{number}/{len(seen) - 1}",
                    media=media,
                    answer=answer,
                    references=[answer],
                    question=question,
                )
