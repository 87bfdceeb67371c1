"""AudioCaps (Kim et al., 2019): the paper's audio captioning set.

Files under `data_dir`: `train.csv` and `test.csv` (as distributed at github.com/cdjkim/audiocaps),
columns `audiocap_id,youtube_id,start_time,caption`. AudioCaps ships no audio: the clips are
10 s cut from YouTube at `start_time`, and downloaders name them differently. A clip is looked
for in `audio/` (or `media_dir`), then in its `<split>/` subfolder, under the names, in order:
`<youtube_id>.wav`, `<youtube_id>_<start_time>.wav`, `Y<youtube_id>.wav`, `<audiocap_id>.wav`,
each also as `.flac`. Training has one row per caption; a test row is one clip (youtube_id,
start_time) with all its captions (5 in AudioCaps' test set) as references, the first as target.
"""

from __future__ import annotations

from collections.abc import Iterator

from ..bad_data import BadItemLog
from .base import DatasetAdapter, Record, read_csv_rows, register_dataset_adapter

AUDIO_EXTENSIONS = (".wav", ".flac")


@register_dataset_adapter("audiocaps")
class AudioCapsAdapter(DatasetAdapter):
    modality = "audio"
    task = "caption"
    default_files = {"train": "train.csv", "test": "test.csv"}
    default_media_dir = "audio"

    def candidates(self, split: str, row: dict[str, str]) -> list[str]:
        youtube_id, start = row["youtube_id"], row["start_time"]
        stems = [youtube_id, f"{youtube_id}_{start}", f"Y{youtube_id}", row["audiocap_id"]]
        folders = [self.media_dir, self.media_dir / split]
        return [
            str(folder / f"{stem}{ext}") for folder in folders for stem in stems for ext in AUDIO_EXTENSIONS
        ]

    def records(self, split: str, log: BadItemLog) -> Iterator[Record]:
        path = self.file(split)
        clips: dict[tuple[str, str], list[tuple[int, dict[str, str]]]] = {}
        for index, row in read_csv_rows(path, ("audiocap_id", "youtube_id", "start_time", "caption")):
            if not row["youtube_id"] or not (row["caption"] or "").strip():
                log.report(index, str(path), "row without youtube_id or caption")
                continue
            clips.setdefault((row["youtube_id"], row["start_time"]), []).append((index, row))
        for (youtube_id, start), rows in clips.items():
            media = self.candidates(split, rows[0][1])
            captions = [r["caption"].strip() for _, r in rows]
            if split == "test":
                key = f"{youtube_id}_{start}"
                yield Record(row=rows[0][0], key=key, media=media, answer=captions[0], references=captions)
            else:
                for (index, row), caption in zip(rows, captions):
                    yield Record(
                        row=index,
                        key=row["audiocap_id"] or str(index),
                        media=media,
                        answer=caption,
                        references=[caption],
                    )
