"""Shared fixtures: tiny random models built from configs and real media files on disk (no network)."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

TINY_WORDS = [
    "a red circle",
    "a blue square moves left",
    "three short high beeps",
    "a large green cone",
    "what color is the shape ?",
    "how many beeps ?",
    "yes no one two three four",
    "describe the input .",
    "do the image and the audio match ?",
]

# Tiny versions of the four modalities (hidden sizes <= 64) with small inputs.
# A tiny CLIP vision tower (hidden 32, a 4x4 patch grid), and the LLaVA way of reading it.
TINY_CLIP_VISION = {
    "model_type": "clip_vision_model",
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "image_size": 32,
    "patch_size": 8,
}
TINY_CLIP = {**TINY_CLIP_VISION, "feature_layer": -2, "drop_cls_token": True}
TINY_MODALITIES = {
    "image": {
        "encoder_type": "transformers",
        "encoder_config": TINY_CLIP,
        "preprocess": {"image_size": 32},
    },
    "video": {
        "encoder_type": "video_frames",
        "encoder_config": {
            "frame_encoder": {"encoder_type": "transformers", "encoder_config": TINY_CLIP},
            "num_frames": 2,
            "pool_stride": 2,
        },
        "preprocess": {"num_frames": 2, "image_size": 32},
    },
    "audio": {
        "encoder_type": "spectrogram",
        "encoder_config": {"num_tokens": 4, "hidden_size": 32, "n_mels": 16},
        "preprocess": {"sampling_rate": 16000, "max_seconds": 0.5},
        "connector_type": "qformer",
        "connector_config": {
            "num_query_tokens": 3,
            "hidden_size": 32,
            "num_hidden_layers": 1,
            "num_attention_heads": 4,
        },
    },
    "point_cloud": {
        "encoder_type": "point_patch",
        "encoder_config": {"num_tokens": 4, "group_size": 8, "hidden_size": 32},
        "preprocess": {"num_points": 64},
    },
}


@pytest.fixture(scope="session")
def tiny_tokenizer():
    from hf_mera.models.tiny_lm import build_word_level_tokenizer

    return build_word_level_tokenizer(TINY_WORDS)


def make_tiny_model(tokenizer, modalities=("image", "video", "audio", "point_cloud"), seed: int = 0):
    """A tiny AnyModalityLlava (hidden 64, 2 layers) with the given modalities, and its processor."""
    import copy

    from hf_mera import AnyModalityLlava, AnyModalityProcessor, ModalityConfig
    from hf_mera.models.tiny_lm import build_tiny_llama

    tokenizer = copy.deepcopy(tokenizer)
    llm = build_tiny_llama(tokenizer, hidden_size=64, num_layers=2, num_heads=4, seed=seed)
    model, processor = AnyModalityLlava.from_pretrained_components(llm, [], tokenizer=tokenizer)
    assert isinstance(processor, AnyModalityProcessor)
    torch.manual_seed(seed)
    for name in modalities:
        model.add_modality(
            ModalityConfig(name=name, **copy.deepcopy(TINY_MODALITIES[name])), processor=processor
        )
    model.eval()
    return model, processor


@pytest.fixture
def tiny_model(tiny_tokenizer):
    return make_tiny_model(tiny_tokenizer)


@pytest.fixture(scope="session")
def media_files(tmp_path_factory):
    """One real file per modality: PNG, MP4 (PyAV), WAV (soundfile), NPY point cloud."""
    import av
    import soundfile as sf
    from PIL import Image

    root = tmp_path_factory.mktemp("media")
    rng = np.random.default_rng(0)
    files = {}
    for i, color in enumerate([(220, 30, 30), (30, 30, 220)]):
        img = np.zeros((48, 48, 3), np.uint8)
        img[10:38, 10:38] = color
        path = root / f"image{i}.png"
        Image.fromarray(img).save(path)
        files[f"image{i}"] = str(path)
    video_path = root / "clip.mp4"
    with av.open(str(video_path), "w") as container:
        stream = container.add_stream("mpeg4", rate=8)
        stream.width, stream.height, stream.pix_fmt = 32, 32, "yuv420p"
        for t in range(8):
            frame = np.zeros((32, 32, 3), np.uint8)
            frame[8:20, 2 + 3 * t : 12 + 3 * t] = (0, 200, 0)
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    files["video0"] = str(video_path)
    for i, freq in enumerate([440.0, 880.0]):
        t = np.arange(8000) / 16000
        path = root / f"tone{i}.wav"
        sf.write(path, (0.5 * np.sin(2 * np.pi * freq * t)).astype(np.float32), 16000)
        files[f"audio{i}"] = str(path)
    path = root / "cloud.npy"
    np.save(path, rng.normal(size=(200, 3)).astype(np.float32))
    files["point_cloud0"] = str(path)
    return files
