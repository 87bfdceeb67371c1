"""MSVD-QA (Xu et al., 2017): the paper's video QA set.

Files under `data_dir`: `train_qa.json` and `test_qa.json`, each a JSON list of
`{"question", "answer", "video_id" | "video", "id"?}`:

- `video_id` (int N, as distributed): the clip `vid<N>`; with `youtube_mapping.txt` (`<clip>
  vid<N>` lines, shipped with MSVD-QA) it is renamed to the original clip name;
- `video` (str): a file name in the video folder (extension optional).

Videos are looked up in `video/` (or `media_dir`) as `<name>.avi` / .mp4 / .webm / .mkv.
Rows are keyed by `id` when present, else by their position.
"""

from __future__ import annotations

from collections.abc import Iterator

from ..bad_data import BadItemLog
from .base import DatasetAdapter, Record, read_json, register_dataset_adapter, with_extensions
from .msvd import VIDEO_EXTENSIONS, read_youtube_mapping


@register_dataset_adapter("msvd_qa")
class MSVDQAAdapter(DatasetAdapter):
    modality = "video"
    task = "qa"
    default_files = {"train": "train_qa.json", "test": "test_qa.json", "mapping": "youtube_mapping.txt"}
    default_media_dir = "video"

    def records(self, split: str, log: BadItemLog) -> Iterator[Record]:
        path = self.file(split)
        entries = read_json(path)
        if not isinstance(entries, list):
            raise ValueError(f"{path}: expected a JSON list of question entries.")
        mapping_path = self.data_dir / self.config.files.get("mapping", self.default_files["mapping"])
        vid_to_clip = (
            {n: clip for clip, n in read_youtube_mapping(mapping_path).items()}
            if mapping_path.is_file()
            else {}
        )
        for index, entry in enumerate(entries):
            try:
                question, answer = str(entry["question"]).strip(), str(entry["answer"]).strip()
                if "video" in entry:
                    name = str(entry["video"])
                else:
                    number = int(entry["video_id"])
                    name = vid_to_clip.get(number, f"vid{number}")
            except (KeyError, TypeError, ValueError):
                log.report(index, str(path), "entry without question, answer and video_id/video")
                continue
            if not question or not answer:
                log.report(index, str(path), "empty question or answer")
                continue
            yield Record(
                row=index,
                key=str(entry.get("id", index)),
                media=with_extensions(self.media_dir / name, VIDEO_EXTENSIONS),
                answer=answer,
                references=[answer],
                question=question,
            )
