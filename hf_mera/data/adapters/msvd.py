"""MSVD (Chen and Dolan, 2011): the paper's video captioning set.

Supported annotation files (role "annotations", looked for in this order under `data_dir`):

- `MSR Video Description Corpus.csv`, the corpus as distributed by Microsoft: columns `VideoID`,
  `Start`, `End`, `WorkerID`, `Source`, `AnnotationTime`, `Language`, `Description`. Only rows
  with `Language == "English"` are used.
- `annotations.txt`, one caption per line, either `<clip> <caption words>` (clip names such as
  `-4wsuPCjDBc_5_15`, the common re-distribution) or `<VideoID> <start> <end> <caption words>`.

A clip is `<VideoID>_<Start>_<End>`; its video is `<clip>.avi` (or .mp4/.webm/.mkv) in
`YouTubeClips/` (or `media_dir`). Splits: with `youtube_mapping.txt` (`<clip> vid<N>` lines, as
shipped with MSVD-QA), the standard split by N: 1-1200 train, 1301-1970 test (1201-1300 are
validation and unused). Without it, a seeded split keeps 670 test clips (the standard test size).
Training has one row per caption (Table 8: 48K); a test row is one clip with all its captions as
references and the first as target.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

from ..bad_data import BadItemLog
from .base import DatasetAdapter, Record, read_csv_rows, register_dataset_adapter, subsample, with_extensions

VIDEO_EXTENSIONS = (".avi", ".mp4", ".webm", ".mkv")
ANNOTATION_CANDIDATES = ("MSR Video Description Corpus.csv", "annotations.txt")
TRAIN_VIDS = range(1, 1201)
TEST_VIDS = range(1301, 1971)
SEEDED_TEST_CLIPS = 670


def read_youtube_mapping(path: Path) -> dict[str, int]:
    """`<clip> vid<N>` lines -> {clip: N}."""
    mapping = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        parts = line.split()
        if len(parts) == 2 and re.fullmatch(r"vid\d+", parts[1]):
            mapping[parts[0]] = int(parts[1][3:])
    return mapping


@register_dataset_adapter("msvd")
class MSVDCaptionsAdapter(DatasetAdapter):
    modality = "video"
    task = "caption"
    default_files = {"mapping": "youtube_mapping.txt"}
    default_media_dir = "YouTubeClips"

    def annotation_file(self) -> Path:
        if "annotations" in self.config.files:
            return self.file("annotations")
        for name in ANNOTATION_CANDIDATES:
            if (self.data_dir / name).is_file():
                return self.data_dir / name
        raise FileNotFoundError(
            f"msvd: none of {', '.join(ANNOTATION_CANDIDATES)} in {self.data_dir} "
            "(set AdapterConfig.files['annotations'])."
        )

    def captions(self, log: BadItemLog) -> tuple[Path, dict[str, list[tuple[int, str]]]]:
        """{clip: [(row, caption), ...]} in file order."""
        path = self.annotation_file()
        clips: dict[str, list[tuple[int, str]]] = {}
        if path.suffix.lower() == ".csv":
            required = ("VideoID", "Start", "End", "Language", "Description")
            for index, row in read_csv_rows(path, required):
                if row["Language"] != "English":
                    continue
                caption = (row["Description"] or "").strip()
                if not row["VideoID"] or not caption:
                    log.report(index, str(path), "row without VideoID or Description")
                    continue
                clips.setdefault(f"{row['VideoID']}_{row['Start']}_{row['End']}", []).append((index, caption))
        else:
            for index, line in enumerate(path.read_text(encoding="utf-8").splitlines()):
                parts = line.split()
                if not parts:
                    continue
                if len(parts) >= 4 and parts[1].isdigit() and parts[2].isdigit():
                    clip, words = f"{parts[0]}_{parts[1]}_{parts[2]}", parts[3:]
                else:
                    clip, words = parts[0], parts[1:]
                if not words:
                    log.report(index, str(path), "line without caption")
                    continue
                clips.setdefault(clip, []).append((index, " ".join(words)))
        return path, clips

    def split_clips(self, clips: list[str]) -> dict[str, set[str]]:
        mapping_name = self.config.files.get("mapping", self.default_files["mapping"])
        mapping_path = self.data_dir / mapping_name
        if mapping_path.is_file():
            mapping = read_youtube_mapping(mapping_path)
            return {
                "train": {c for c in clips if mapping.get(c) in TRAIN_VIDS},
                "test": {c for c in clips if mapping.get(c) in TEST_VIDS},
            }
        test = set(subsample(sorted(clips), SEEDED_TEST_CLIPS, self.config.seed, self.name, "split"))
        return {"train": set(clips) - test, "test": test}

    def records(self, split: str, log: BadItemLog) -> Iterator[Record]:
        _, clips = self.captions(log)
        chosen = self.split_clips(list(clips))[split]
        for clip, captions in clips.items():
            if clip not in chosen:
                continue
            media = with_extensions(self.media_dir / clip, VIDEO_EXTENSIONS)
            if split == "test":
                refs = [c for _, c in captions]
                yield Record(row=captions[0][0], key=clip, media=media, answer=refs[0], references=refs)
            else:
                for k, (row, caption) in enumerate(captions):
                    yield Record(
                        row=row, key=f"{clip}/{k}", media=media, answer=caption, references=[caption]
                    )
