"""OK-VQA (Marino et al., 2019): the paper's image QA set.

Files (as distributed at okvqa.allenai.org, VQA-v2 format), under `data_dir`::

    OpenEnded_mscoco_train2014_questions.json   mscoco_train2014_annotations.json   -> "train"
    OpenEnded_mscoco_val2014_questions.json     mscoco_val2014_annotations.json     -> "test"
    train2014/COCO_train2014_<image_id:012d>.jpg, val2014/COCO_val2014_<image_id:012d>.jpg

Questions: `{"questions": [{"image_id", "question", "question_id"}]}`; annotations:
`{"annotations": [{"question_id", "answers": [{"answer", ...} x 10]}]}`. The target is the most
frequent of the 10 annotators' answers (ties: the first given); `references` keeps all 10 in
annotator order, duplicates included, as VQA accuracy counts them. The test split is scored with
VQA accuracy (`hf_mera.evaluation.vqa_accuracy`, the metric OK-VQA is published with), not the run's
QA judge; `AdapterConfig.metric="accuracy"` judges it like the other QA sets (the paper judged
every QA set with GPT-4o mini). With `media_dir` set, images are looked up in `media_dir` for both
splits.
"""

from __future__ import annotations

from collections.abc import Iterator

from ..bad_data import BadItemLog
from .base import DatasetAdapter, Record, majority, read_json, register_dataset_adapter

_COCO = {
    "train": ("train2014", "COCO_train2014_{:012d}.jpg"),
    "test": ("val2014", "COCO_val2014_{:012d}.jpg"),
}


@register_dataset_adapter("okvqa")
class OKVQAAdapter(DatasetAdapter):
    modality = "image"
    task = "qa"
    metric = "vqa_accuracy"
    default_files = {
        "train_questions": "OpenEnded_mscoco_train2014_questions.json",
        "train_annotations": "mscoco_train2014_annotations.json",
        "test_questions": "OpenEnded_mscoco_val2014_questions.json",
        "test_annotations": "mscoco_val2014_annotations.json",
    }

    def records(self, split: str, log: BadItemLog) -> Iterator[Record]:
        questions_path, annotations_path = self.file(f"{split}_questions"), self.file(f"{split}_annotations")
        questions = read_json(questions_path).get("questions", [])
        answers: dict[int, list[str]] = {}
        for index, annotation in enumerate(read_json(annotations_path).get("annotations", [])):
            try:
                answers[annotation["question_id"]] = [str(a["answer"]).strip() for a in annotation["answers"]]
            except (KeyError, TypeError):
                log.report(index, str(annotations_path), "annotation without question_id or answers")
        folder_name, pattern = _COCO[split]
        folder = self.media_dir if self.config.media_dir else self.data_dir / folder_name
        for index, entry in enumerate(questions):
            try:
                question_id, image_id, question = (
                    entry["question_id"],
                    int(entry["image_id"]),
                    entry["question"].strip(),
                )
            except (KeyError, TypeError, ValueError, AttributeError):
                log.report(index, str(questions_path), "question without question_id, image_id or question")
                continue
            refs = [a for a in answers.get(question_id, []) if a]
            if not refs:
                log.report(
                    index,
                    str(annotations_path),
                    f"question {question_id} has no answers",
                    id=str(question_id),
                )
                continue
            yield Record(
                row=index,
                key=str(question_id),
                media=[str(folder / pattern.format(image_id))],
                answer=majority(refs),
                references=refs,
                question=question,
            )
