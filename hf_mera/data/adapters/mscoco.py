"""MSCOCO-2014 captions (Lin et al., 2014): the paper's image captioning set.

Files (as distributed at cocodataset.org), under `data_dir`::

    annotations/captions_train2014.json     -> "train"
    annotations/captions_val2014.json       -> "test" (the holdout set the 1K test is drawn from)
    train2014/COCO_train2014_000000xxxxxx.jpg, val2014/COCO_val2014_000000xxxxxx.jpg

Each JSON has `images` ({"id", "file_name"}) and `annotations` ({"image_id", "caption"}). Training
uses the first caption of each image (in file order, appendix B) as target and reference; a test
row is one image, its first caption the target and all its captions the references. With
`media_dir` set, images are looked up as `media_dir/<file_name>` for both splits.
"""

from __future__ import annotations

from collections.abc import Iterator

from ..bad_data import BadItemLog
from .base import DatasetAdapter, Record, read_json, register_dataset_adapter

_IMAGE_FOLDERS = {"train": "train2014", "test": "val2014"}


@register_dataset_adapter("mscoco")
class MSCOCOCaptionsAdapter(DatasetAdapter):
    modality = "image"
    task = "caption"
    default_files = {
        "train": "annotations/captions_train2014.json",
        "test": "annotations/captions_val2014.json",
    }

    def records(self, split: str, log: BadItemLog) -> Iterator[Record]:
        path = self.file(split)
        data = read_json(path)
        if not isinstance(data, dict) or "images" not in data or "annotations" not in data:
            raise ValueError(f"{path}: expected a COCO captions JSON with 'images' and 'annotations'.")
        folder = self.media_dir if self.config.media_dir else self.data_dir / _IMAGE_FOLDERS[split]
        captions: dict[int, list[str]] = {}
        for index, annotation in enumerate(data["annotations"]):
            caption = annotation.get("caption") if isinstance(annotation, dict) else None
            if not isinstance(caption, str) or "image_id" not in annotation:
                log.report(index, str(path), "annotation without image_id or caption")
                continue
            captions.setdefault(annotation["image_id"], []).append(caption.strip())
        for index, image in enumerate(data["images"]):
            if not isinstance(image, dict) or "id" not in image or "file_name" not in image:
                log.report(index, str(path), "image entry without id or file_name")
                continue
            refs = captions.get(image["id"])
            if not refs:
                log.report(index, str(path), f"image {image['id']} has no caption", id=str(image["id"]))
                continue
            yield Record(
                row=index,
                key=str(image["id"]),
                media=[str(folder / image["file_name"])],
                answer=refs[0],
                references=refs if split == "test" else refs[:1],
            )
