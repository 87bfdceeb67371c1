"""Cap3D (Luo et al., 2024): the paper's point-cloud captioning set.

Files under `data_dir`: the captions CSV `Cap3D_automated_Objaverse*.csv` (the first match in name
order, e.g. `Cap3D_automated_Objaverse_full.csv`; rows `uid,caption`, no header, a `uid,caption`
header is skipped). Point clouds: `points/` (or `media_dir`) / `<uid>.npy` ([N, 6] xyz + rgb),
else `<uid>.ply`. Captions longer than `AdapterConfig.max_caption_chars` (100, appendix B) are
dropped. Cap3D has no official split: a seeded `test_size` (1K) is held out, and the training set
is the rest, subsampled to `train_size` (the paper: 50K).
"""

from __future__ import annotations

import csv
from collections.abc import Iterator

from ..bad_data import BadItemLog
from .base import DatasetAdapter, Record, register_dataset_adapter, subsample, with_extensions

POINT_EXTENSIONS = (".npy", ".ply")


@register_dataset_adapter("cap3d")
class Cap3DAdapter(DatasetAdapter):
    modality = "point_cloud"
    task = "caption"
    default_files = {"captions": "Cap3D_automated_Objaverse*.csv"}
    default_media_dir = "points"

    def records(self, split: str, log: BadItemLog) -> Iterator[Record]:
        path = self.file("captions")
        limit = self.config.max_caption_chars
        with open(path, newline="", encoding="utf-8") as handle:
            for index, row in enumerate(csv.reader(handle)):
                if index == 0 and row[:2] == ["uid", "caption"]:
                    continue
                if len(row) < 2 or not row[0] or not row[1].strip():
                    log.report(index, str(path), "row without uid and caption")
                    continue
                uid, caption = row[0], row[1].strip()
                if limit is not None and len(caption) > limit:
                    continue
                media = with_extensions(self.media_dir / uid, POINT_EXTENSIONS)
                yield Record(row=index, key=uid, media=media, answer=caption, references=[caption])

    def select(self, split: str, kept: list[tuple[Record, str]]) -> list[tuple[Record, str]]:
        # One file, both splits: the held-out test set is drawn first, training is the rest.
        test = subsample(kept, self.config.test_size, self.config.seed, self.name, "test")
        if split == "test":
            return test
        held_out = {record.key for record, _ in test}
        rest = [(record, path) for record, path in kept if record.key not in held_out]
        if kept and not rest and self.config.test_size is not None:  # None: all of it is the test set
            raise ValueError(
                f"{self.name}: test_size {self.config.test_size} holds out all {len(kept)} captions of "
                f"{self.data_dir}; nothing is left to train on (lower test_size)."
            )
        return subsample(rest, self.config.train_size, self.config.seed, self.name, "train")
