"""Paper-dataset adapters: small fixture files in each published format are parsed into samples."""

from __future__ import annotations

import csv
import json
import logging
from pathlib import Path

import numpy as np
import pytest

from hf_mera.data.adapters import (
    ADAPTER_REGISTRY,
    PAPER_DATASETS,
    AdapterConfig,
    DatasetAdapter,
    adapter_config,
    check_paper_configs,
    get_dataset_adapter,
    load_paper_dataset,
    load_paper_modality,
    paper_metrics,
    register_dataset_adapter,
)
from hf_mera.data.format import validate_sample


def touch(path: Path, data: bytes = b"x") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def write_json(path: Path, data) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))


def write_csv(path: Path, header: list[str] | None, rows: list[list]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        if header:
            writer.writerow(header)
        writer.writerows(rows)


def check_rows(dataset, modality, task):
    for row in dataset:
        validate_sample(row)
        assert row["modality"] == modality and row["task"] == task
        assert Path(row["media"][0]["path"]).is_file()


def test_registry_covers_the_papers_eight_datasets():
    names = {n for pair in PAPER_DATASETS.values() for n in pair}
    assert names == set(ADAPTER_REGISTRY) and len(names) == 8
    for modality, (caption, qa) in PAPER_DATASETS.items():
        assert (
            get_dataset_adapter(caption).modality == modality
            and get_dataset_adapter(caption).task == "caption"
        )
        assert get_dataset_adapter(qa).modality == modality and get_dataset_adapter(qa).task == "qa"
    with pytest.raises(ValueError, match=r"unknown dataset adapter 'imagenet'; known: \['audiocaps'"):
        get_dataset_adapter("imagenet")
    with pytest.raises(ValueError, match="already registered"):
        register_dataset_adapter("mscoco")(type("Again", (DatasetAdapter,), {}))
    with pytest.raises(ValueError, match="on_bad_item"):
        AdapterConfig(data_dir=".", on_bad_item="ignore")
    with pytest.raises(ValueError, match="test_size"):
        AdapterConfig(data_dir=".", test_size=0)


def test_one_location_key_and_config_errors_name_the_field():
    assert adapter_config("mscoco", {"data_dir": "/data/coco"}).data_dir == "/data/coco"
    for alias in ("root", "path"):
        with pytest.raises(
            ValueError, match=rf"data\.paper\.mscoco\.{alias}: .*rename '{alias}' to 'data_dir'"
        ):
            adapter_config("mscoco", {alias: "/data/coco"})
    with pytest.raises(ValueError, match=r"data\.paper\.cap3d\.train_sise: unknown field; known: data_dir"):
        adapter_config("cap3d", {"data_dir": "x", "train_sise": 5})
    with pytest.raises(ValueError, match=r"data\.paper\.cap3d\.data_dir: missing"):
        adapter_config("cap3d", {"train_size": 5})
    with pytest.raises(
        ValueError, match=r"data\.paper\.cap3d: AdapterConfig\.train_size must be a positive int"
    ):
        adapter_config("cap3d", {"data_dir": "x", "train_size": 0})
    with pytest.raises(
        ValueError, match=r"^data\.paper: unknown dataset adapter 'coco'; known: \['audiocaps'"
    ):
        check_paper_configs({"coco": {"data_dir": "x"}})
    check_paper_configs({"okvqa": {"data_dir": "x", "metric": "accuracy"}})


def test_each_adapter_says_how_its_test_split_is_scored():
    assert {n: get_dataset_adapter(n).default_metric() for n in ADAPTER_REGISTRY} == {
        "mscoco": "cider",
        "msvd": "cider",
        "audiocaps": "cider",
        "cap3d": "cider",
        "okvqa": "vqa_accuracy",  # ten annotator answers a question
        "msvd_qa": "accuracy",  # the run's QA judge
        "clotho_aqa": "accuracy",
        "cap3d_qa": "accuracy",
    }
    assert paper_metrics("image") == {"caption": "cider", "qa": "vqa_accuracy"}
    assert paper_metrics("image", {"okvqa": {"data_dir": "x", "metric": "accuracy"}})["qa"] == "accuracy"
    assert (
        get_dataset_adapter("okvqa")(AdapterConfig(data_dir=".", metric="accuracy")).test_metric == "accuracy"
    )
    with pytest.raises(ValueError, match="metric must be one of cider, accuracy, vqa_accuracy"):
        AdapterConfig(data_dir=".", metric="bleu")
    from hf_mera.data.adapters import METRICS
    from hf_mera.evaluation import METRICS as EVALUATION_METRICS

    assert METRICS == EVALUATION_METRICS  # what an adapter may name is what evaluation can compute


# ---- image ---------------------------------------------------------------------------------
def coco_files(root: Path) -> None:
    for split, folder in (("train", "train2014"), ("val", "val2014")):
        images = [{"id": i, "file_name": f"COCO_{folder}_{i:012d}.jpg"} for i in (1, 2, 3)]
        annotations = [
            {"image_id": 1, "id": 10, "caption": "A man riding a bike."},
            {"image_id": 2, "id": 11, "caption": "Two dogs play."},
            {"image_id": 1, "id": 12, "caption": "A cyclist on a road."},
            {"image_id": 3, "id": 13, "caption": "A red bus."},
        ]
        write_json(
            root / "annotations" / f"captions_{split}2014.json",
            {"images": images, "annotations": annotations},
        )
        for i in (1, 2):  # image 3 is missing on disk
            touch(root / folder / f"COCO_{folder}_{i:012d}.jpg")


def test_mscoco_first_caption_for_training_all_for_test(tmp_path, caplog):
    coco_files(tmp_path)
    with caplog.at_level(logging.WARNING):
        data = load_paper_dataset("mscoco", tmp_path)
    check_rows(data["train"], "image", "caption")
    train = {r["id"]: r for r in data["train"]}
    assert set(train) == {"mscoco/train/1", "mscoco/train/2"}
    assert train["mscoco/train/1"]["messages"][-1]["content"] == "A man riding a bike."
    assert train["mscoco/train/1"]["references"] == ["A man riding a bike."]
    test = {r["id"]: r for r in data["test"]}
    assert test["mscoco/test/1"]["references"] == ["A man riding a bike.", "A cyclist on a road."]
    assert (
        test["mscoco/test/1"]["question"] == ""
        and "<image>" in test["mscoco/test/1"]["messages"][0]["content"]
    )
    assert "skipped 1 bad item" in caplog.text and "COCO_train2014_000000000003.jpg" in caplog.text
    with pytest.raises(ValueError, match=r"row 2\b.*COCO_train2014_000000000003\.jpg"):
        load_paper_dataset("mscoco", tmp_path, on_bad_item="raise")


def test_missing_annotation_file_names_the_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="captions_train2014.json"):
        load_paper_dataset("mscoco", tmp_path)


def okvqa_files(root: Path) -> None:
    for split, folder in (("train", "train2014"), ("val", "val2014")):
        questions = [{"image_id": 7, "question": "What sport is this?", "question_id": 70}]
        questions.append({"image_id": 8, "question": "What is the man holding?", "question_id": 80})
        answers = ["tennis"] * 6 + ["racket sport"] * 4
        annotations = [
            {
                "question_id": 70,
                "image_id": 7,
                "answers": [{"answer": a, "answer_id": i} for i, a in enumerate(answers)],
            },
            {"question_id": 80, "image_id": 8, "answers": [{"answer": "bat"}] * 10},
        ]
        write_json(root / f"OpenEnded_mscoco_{split}2014_questions.json", {"questions": questions})
        write_json(root / f"mscoco_{split}2014_annotations.json", {"annotations": annotations})
        for image_id in (7, 8):
            touch(root / folder / f"COCO_{folder}_{image_id:012d}.jpg")


def test_okvqa_majority_answer_and_all_ten_references(tmp_path):
    okvqa_files(tmp_path)
    data = load_paper_dataset("okvqa", tmp_path)
    check_rows(data["test"], "image", "qa")
    row = next(r for r in data["test"] if r["id"] == "okvqa/test/70")
    assert row["messages"][-1]["content"] == "tennis"
    assert len(row["references"]) == 10 and row["references"].count("racket sport") == 4
    assert row["question"] == "What sport is this?"
    assert row["messages"][0]["content"].startswith("<image>\nWhat sport is this?\nAnswer the question")


def test_load_paper_modality_gives_both_tasks_by_split(tmp_path):
    coco_files(tmp_path / "coco")
    okvqa_files(tmp_path / "okvqa")
    configs = {
        "mscoco": {"data_dir": str(tmp_path / "coco")},
        "okvqa": {"data_dir": str(tmp_path / "okvqa"), "test_size": 1},
    }
    splits = load_paper_modality("image", configs, seed=0)
    assert set(splits) == {"train", "test"} and set(splits["train"]) == {"caption", "qa"}
    assert len(splits["train"]["caption"]) == 2 and len(splits["test"]["qa"]) == 1
    assert set(splits["test"]["qa"]["task"]) == {"qa"}
    with pytest.raises(ValueError, match=r"data\.paper\.okvqa: missing"):
        load_paper_modality("image", {"mscoco": configs["mscoco"]})
    with pytest.raises(ValueError, match=r"data\.paper\.okvqa\.root: .*'data_dir'"):
        load_paper_modality("image", {**configs, "okvqa": {"root": str(tmp_path / "okvqa")}})
    with pytest.raises(ValueError, match="media file not found"):
        load_paper_modality("image", configs, on_bad_item="raise")


# ---- video ---------------------------------------------------------------------------------
def test_msvd_csv_english_rows_and_standard_split(tmp_path):
    header = ["VideoID", "Start", "End", "WorkerID", "Source", "AnnotationTime", "Language", "Description"]
    rows = [
        ["aaa", 1, 5, 1, "clean", 10, "English", "a cat plays"],
        ["aaa", 1, 5, 2, "clean", 10, "French", "un chat joue"],
        ["aaa", 1, 5, 3, "clean", 10, "English", "a kitten is playing"],
        ["bbb", 0, 9, 1, "clean", 10, "English", "a man cooks"],
        ["bbb", 0, 9, 2, "clean", 10, "English", "someone is cooking"],
        ["ccc", 3, 4, 1, "clean", 10, "English", "gone from youtube"],
    ]
    write_csv(tmp_path / "MSR Video Description Corpus.csv", header, rows)
    (tmp_path / "youtube_mapping.txt").write_text("aaa_1_5 vid1\nbbb_0_9 vid1301\nccc_3_4 vid2\n")
    touch(tmp_path / "YouTubeClips" / "aaa_1_5.avi")
    touch(tmp_path / "YouTubeClips" / "bbb_0_9.avi")
    data = load_paper_dataset("msvd", tmp_path)
    check_rows(data["train"], "video", "caption")
    assert [r["messages"][-1]["content"] for r in data["train"]] == ["a cat plays", "a kitten is playing"]
    (test,) = data["test"]
    assert test["id"] == "msvd/test/bbb_0_9" and test["references"] == ["a man cooks", "someone is cooking"]


def test_msvd_text_annotations_in_both_line_forms_with_seeded_split(tmp_path):
    (tmp_path / "annotations.txt").write_text(
        "-4wsuPCjDBc_5_15 a squirrel is eating a peanut\n"
        "-4wsuPCjDBc 5 15 a squirrel eats\n"
        "zzz_1_2 a dog runs\n"
    )
    touch(tmp_path / "clips" / "-4wsuPCjDBc_5_15.mp4")
    touch(tmp_path / "clips" / "zzz_1_2.avi")
    data = load_paper_dataset("msvd", tmp_path, media_dir=str(tmp_path / "clips"))
    # Without youtube_mapping.txt: a seeded split keeping up to 670 test clips -> here both clips.
    assert len(data["train"]) == 0 and len(data["test"]) == 2
    squirrel = next(r for r in data["test"] if "squirrel" in r["references"][0])
    assert squirrel["references"] == ["a squirrel is eating a peanut", "a squirrel eats"]
    assert squirrel["media"][0]["path"].endswith("-4wsuPCjDBc_5_15.mp4")


def test_msvd_qa_video_ids_through_the_mapping_and_video_names(tmp_path):
    (tmp_path / "youtube_mapping.txt").write_text("abc_1_5 vid1\n")
    write_json(
        tmp_path / "train_qa.json",
        [
            {"answer": "cat", "id": 0, "question": "what is playing?", "video_id": 1},
            {"answer": "dog", "id": 1, "question": "what runs?", "video_id": 2},
        ],
    )
    write_json(
        tmp_path / "test_qa.json",
        [{"answer": "run", "id": 5, "question": "what does it do?", "video": "vid2.avi"}],
    )
    touch(tmp_path / "video" / "abc_1_5.avi")
    touch(tmp_path / "video" / "vid2.avi")
    data = load_paper_dataset("msvd_qa", tmp_path)
    check_rows(data["train"], "video", "qa")
    paths = [Path(r["media"][0]["path"]).name for r in data["train"]]
    assert paths == ["abc_1_5.avi", "vid2.avi"]
    assert data["test"][0]["id"] == "msvd_qa/test/5" and data["test"][0]["messages"][-1]["content"] == "run"


# ---- audio ---------------------------------------------------------------------------------
def test_audiocaps_file_naming_variants_and_grouped_test_references(tmp_path):
    header = ["audiocap_id", "youtube_id", "start_time", "caption"]
    write_csv(
        tmp_path / "train.csv",
        header,
        [[1, "yt1", 30, "a dog barks"], [2, "yt2", 0, "rain falls"], [3, "yt3", 5, "lost"]],
    )
    write_csv(
        tmp_path / "test.csv", header, [[9, "yt9", 10, "birds sing"], [10, "yt9", 10, "chirping birds"]]
    )
    touch(tmp_path / "audio" / "yt1.wav")
    touch(tmp_path / "audio" / "train" / "yt2_0.flac")
    touch(tmp_path / "audio" / "test" / "Yyt9.wav")
    data = load_paper_dataset("audiocaps", tmp_path)
    check_rows(data["train"], "audio", "caption")
    assert [r["id"] for r in data["train"]] == ["audiocaps/train/1", "audiocaps/train/2"]
    (test,) = data["test"]
    assert test["references"] == ["birds sing", "chirping birds"] and test["id"] == "audiocaps/test/yt9_10"


def test_clotho_aqa_keeps_confident_answers_only(tmp_path):
    header = ["file_name", "QuestionText", "answer", "confidence"]
    rows = [
        ["a.wav", "Is it raining?", "yes", "yes"],
        ["a.wav", "Is it raining?", "yes", "yes"],
        ["a.wav", "Is it raining?", "no", "maybe"],
        ["a.wav", "How many birds?", "two", "yes"],
        ["a.wav", "How many birds?", "three", "yes"],
        ["a.wav", "How many birds?", "two", "yes"],
    ]
    write_csv(tmp_path / "clotho_aqa_train.csv", header, rows)
    write_csv(tmp_path / "clotho_aqa_test.csv", header, rows)
    touch(tmp_path / "audio_files" / "a.wav")
    data = load_paper_dataset("clotho_aqa", tmp_path)
    check_rows(data["train"], "audio", "qa")
    pairs = [(r["question"], r["messages"][-1]["content"]) for r in data["train"]]
    assert pairs == [("Is it raining?", "yes"), ("How many birds?", "two"), ("How many birds?", "three")]
    birds = next(r for r in data["test"] if r["question"] == "How many birds?")
    assert birds["references"] == ["two", "three", "two"] and birds["messages"][-1]["content"] == "two"
    assert all("maybe" not in r["references"] and "no" not in r["references"] for r in data["test"])


# ---- point cloud ---------------------------------------------------------------------------
def test_cap3d_filters_long_captions_and_holds_out_a_seeded_test_set(tmp_path):
    rows = [[f"uid{i}", f"a small object number {i}"] for i in range(10)]
    rows.append(["uidlong", "x" * 101])
    write_csv(tmp_path / "Cap3D_automated_Objaverse_full.csv", None, rows)
    for i in range(10):
        if i == 3:
            continue  # missing cloud
        path = tmp_path / "points" / (f"uid{i}.ply" if i == 5 else f"uid{i}.npy")
        if path.suffix == ".npy":
            path.parent.mkdir(parents=True, exist_ok=True)
            np.save(path, np.zeros((8, 6), dtype=np.float32))
        else:
            touch(path)
    touch(tmp_path / "points" / "uidlong.npy")
    data = load_paper_dataset("cap3d", tmp_path, test_size=3, train_size=4, seed=1)
    check_rows(data["train"], "point_cloud", "caption")
    train_ids, test_ids = set(data["train"]["id"]), set(data["test"]["id"])
    assert len(test_ids) == 3 and len(train_ids) == 4
    keys = {i.split("/")[-1] for i in train_ids | test_ids}
    assert not ({i.split("/")[-1] for i in train_ids} & {i.split("/")[-1] for i in test_ids})
    assert "uidlong" not in keys and "uid3" not in keys
    again = load_paper_dataset("cap3d", tmp_path, test_size=3, train_size=4, seed=1)
    other = load_paper_dataset("cap3d", tmp_path, test_size=3, train_size=4, seed=2)
    assert set(again["test"]["id"]) == test_ids and set(other["test"]["id"]) != test_ids
    assert len(load_paper_dataset("cap3d", tmp_path, max_caption_chars=None, test_size=None)["test"]) == 10


def test_cap3d_qa_accepts_the_assumed_json_shapes(tmp_path):
    write_json(
        tmp_path / "cap3d_qa_train.json",
        [
            {"sample_id": "u1", "question": "What color is it?", "answer": "red"},
            {"uid": "u2", "question": "What is it?", "answers": ["a chair", "chair"]},
            {"uid": "u2", "question": "", "answer": "broken"},
        ],
    )
    write_json(
        tmp_path / "cap3d_qa_test.json", {"data": [{"uid": "u1", "question": "Is it round?", "answer": "no"}]}
    )
    for uid in ("u1", "u2"):
        touch(tmp_path / "points" / f"{uid}.npy")
    data = load_paper_dataset("cap3d_qa", tmp_path)
    check_rows(data["train"], "point_cloud", "qa")
    assert [r["references"] for r in data["train"]] == [["red"], ["a chair", "chair"]]
    assert data["test"][0]["messages"][-1]["content"] == "no"
    with pytest.raises(ValueError, match=r"row 2\b.*cap3d_qa_train\.json"):
        load_paper_dataset("cap3d_qa", tmp_path, on_bad_item="raise")


def test_test_sets_are_subsampled_with_the_seed(tmp_path):
    header = ["audiocap_id", "youtube_id", "start_time", "caption"]
    rows = [[i, f"yt{i}", 0, f"sound {i}"] for i in range(30)]
    write_csv(tmp_path / "train.csv", header, rows)
    write_csv(tmp_path / "test.csv", header, rows)
    for i in range(30):
        touch(tmp_path / "audio" / f"yt{i}.wav")
    a = load_paper_dataset("audiocaps", tmp_path, test_size=10, seed=0)["test"]["id"]
    b = load_paper_dataset("audiocaps", tmp_path, test_size=10, seed=0)["test"]["id"]
    c = load_paper_dataset("audiocaps", tmp_path, test_size=10, seed=1)["test"]["id"]
    assert a == b and len(a) == 10 and a != c
    assert a == sorted(a, key=lambda i: int(i.split("yt")[1].split("_")[0]))  # file order kept
