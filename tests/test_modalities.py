"""Modalities: real files written to disk and read back, bad inputs, and every encoder type on tiny configs."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import TINY_CLIP_VISION as TINY_CLIP  # noqa: E402  (pytest puts tests/ on the path)

from hf_mera.modalities import (
    CLIP_IMAGE_MEAN,
    CLIP_IMAGE_STD,
    ENCODER_REGISTRY,
    MODALITY_REGISTRY,
    AudioPreprocessor,
    ImagePreprocessor,
    ModalitySpec,
    PointCloudPreprocessor,
    VideoPreprocessor,
    build_encoder,
    encoder_fingerprint,
    farthest_point_sample,
    get_modality,
    load_audio,
    load_image,
    load_point_cloud,
    load_pretrained_encoder,
    load_video,
    modality_for_path,
    register_encoder,
    register_modality,
    sample_frame_indices,
)
from hf_mera.modalities.encoders import EFFICIENTNET_LITE_PREPROCESS, ModalityEncoder

TINY_WHISPER = {
    "model_type": "whisper",
    "d_model": 32,
    "encoder_layers": 2,
    "decoder_layers": 1,
    "encoder_attention_heads": 4,
    "decoder_attention_heads": 4,
    "encoder_ffn_dim": 64,
    "decoder_ffn_dim": 64,
    "num_mel_bins": 80,
    "max_source_positions": 50,  # 100 mel frames = 1 s at a 10 ms hop
    "max_target_positions": 16,
}
TINY_AST = {
    "model_type": "audio-spectrogram-transformer",
    "hidden_size": 32,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "intermediate_size": 64,
    "max_length": 64,
    "num_mel_bins": 32,
    "patch_size": 16,
}
SR = 16000


# ---------------------------------------------------------------- file writers


def write_png(path, array: np.ndarray) -> str:
    from PIL import Image

    Image.fromarray(array).save(path, format="PNG")  # explicit: tests also write PNGs under lying extensions
    return str(path)


def write_wav(path, waveform: np.ndarray, rate: int) -> str:
    import soundfile as sf

    sf.write(path, waveform, rate, format="WAV")  # explicit: tests also write WAVs under lying extensions
    return str(path)


def tone(freq: float, seconds: float, rate: int = SR) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (0.5 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def write_mp4(path, levels: list[int], size: tuple[int, int] = (48, 64)) -> str:
    """One frame per entry of `levels`, each a flat grey of that level (frame index readable after decoding)."""
    import av

    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=10)
        stream.height, stream.width, stream.pix_fmt = size[0], size[1], "yuv420p"
        for level in levels:
            frame = av.VideoFrame.from_ndarray(np.full((*size, 3), level, np.uint8), format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return str(path)


def write_m4a(path, waveform: np.ndarray, rate: int) -> str:
    """AAC in an MP4 container: libsndfile cannot read it, so loading goes through PyAV."""
    import av

    with av.open(str(path), "w") as container:
        stream = container.add_stream("aac", rate=rate)
        for start in range(0, len(waveform), 1024):
            frame = av.AudioFrame.from_ndarray(
                waveform[None, start : start + 1024], format="fltp", layout="mono"
            )
            frame.sample_rate, frame.pts = rate, start
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return str(path)


def assert_value_error_names(func, needle: str) -> None:
    with pytest.raises(ValueError) as info:
        func()
    assert needle in str(info.value), f"{needle!r} not in {info.value!r}"


# ---------------------------------------------------------------- registry and base class


def test_builtin_modalities_are_registered():
    expected = {
        "image": "transformers",
        "video": "video_frames",
        "audio": "spectrogram",
        "point_cloud": "point_patch",
    }
    for name, encoder_type in expected.items():
        spec = get_modality(name)
        assert spec.default_encoder_type == encoder_type and encoder_type in ENCODER_REGISTRY
        assert spec.file_extensions and all(ext.startswith(".") for ext in spec.file_extensions)
    assert modality_for_path("/x/clip.MP4") == "video" and modality_for_path("a.wav") == "audio"
    assert modality_for_path("cloud.ply") == "point_cloud" and modality_for_path("p.png") == "image"
    assert_value_error_names(lambda: modality_for_path("notes.txt"), "notes.txt")


def test_unknown_modality_and_duplicates_are_value_errors():
    with pytest.raises(ValueError) as info:
        get_modality("smell")
    assert "smell" in str(info.value) and "point_cloud" in str(info.value)
    duplicate = ModalitySpec("image", (".png",), load_image, ImagePreprocessor, "transformers")
    assert_value_error_names(lambda: register_modality(duplicate), "image")
    assert_value_error_names(lambda: register_encoder("spectrogram")(ModalityEncoder), "spectrogram")
    assert_value_error_names(lambda: build_encoder("smell_encoder", {}), "point_patch")
    assert len(MODALITY_REGISTRY) >= 4


def test_preprocessor_kwargs_validation_dict_and_fingerprint():
    assert_value_error_names(lambda: ImagePreprocessor(img_size=32), "img_size")
    assert_value_error_names(lambda: ImagePreprocessor(image_size=0), "image_size")
    assert_value_error_names(lambda: ImagePreprocessor(image_std=(1.0, 0.0, 1.0)), "image_std")
    assert_value_error_names(lambda: VideoPreprocessor(num_frames=-1), "num_frames")
    assert_value_error_names(lambda: AudioPreprocessor(max_seconds=0), "max_seconds")
    assert_value_error_names(
        lambda: AudioPreprocessor(feature_extractor="NoSuchExtractor"), "NoSuchExtractor"
    )
    assert_value_error_names(lambda: PointCloudPreprocessor(use_color="yes"), "use_color")
    prep = ImagePreprocessor(image_size=(24, 32))
    config = prep.to_dict()
    assert json.loads(json.dumps(config)) == config and config["image_mean"] == list(CLIP_IMAGE_MEAN)
    assert ImagePreprocessor(**config).fingerprint() == prep.fingerprint()
    assert ImagePreprocessor(image_size=24).fingerprint() != prep.fingerprint()
    assert len(prep.fingerprint()) == 64
    assert_value_error_names(lambda: prep("single.png"), "list")
    assert_value_error_names(lambda: prep([]), "empty")


# ---------------------------------------------------------------- image


def test_image_from_png_pil_and_arrays(tmp_path):
    white = write_png(tmp_path / "white.png", np.full((40, 50, 3), 255, np.uint8))
    grey = np.full((20, 20), 128, np.uint8)  # 2-D grey arrays become RGB
    values = ImagePreprocessor(image_size=(24, 32))([white, load_image(white), grey, np.ones((5, 5, 3))])
    assert values.shape == (4, 3, 24, 32) and values.dtype == torch.float32
    expected_white = (1.0 - torch.tensor(CLIP_IMAGE_MEAN)) / torch.tensor(CLIP_IMAGE_STD)
    torch.testing.assert_close(values[0, :, 5, 5], expected_white)
    torch.testing.assert_close(values[3], values[0])  # float 1.0 == uint8 255
    expected_grey = (128 / 255 - torch.tensor(CLIP_IMAGE_MEAN)) / torch.tensor(CLIP_IMAGE_STD)
    torch.testing.assert_close(values[2, :, 3, 3], expected_grey)
    assert_value_error_names(lambda: load_image(np.zeros((2, 2, 3), np.float32) + 2.0), "[0, 1]")
    assert_value_error_names(lambda: load_image(42), "int")


def test_bad_image_files_raise_value_errors_naming_the_path(tmp_path):
    good = write_png(tmp_path / "good.png", np.zeros((64, 64, 3), np.uint8) + 7)
    data = open(good, "rb").read()
    truncated = tmp_path / "truncated.png"
    truncated.write_bytes(data[: len(data) // 2])
    text = tmp_path / "text.png"
    text.write_text("this is not an image")
    wav = write_wav(tmp_path / "sound.png", tone(440, 0.1), SR)
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    for bad in [truncated, text, wav, empty, tmp_path / "missing.png"]:
        assert_value_error_names(lambda bad=bad: ImagePreprocessor(image_size=8)([str(bad)]), str(bad))


# ---------------------------------------------------------------- video


def test_frame_indices_are_segment_centres():
    assert sample_frame_indices(20, 4) == [2, 7, 12, 17]
    assert sample_frame_indices(4, 4) == [0, 1, 2, 3]
    assert sample_frame_indices(3, 4) == [0, 1, 1, 2]  # short clips repeat frames
    assert_value_error_names(lambda: sample_frame_indices(0, 4), "frame")


def test_video_file_sampling_and_shapes(tmp_path):
    levels = [12 * i for i in range(20)]
    path = write_mp4(tmp_path / "clip.mp4", levels)
    frames = load_video(path, num_frames=4)
    decoded_index = [float(np.asarray(frame).mean()) / 12 for frame in frames]
    np.testing.assert_allclose(decoded_index, [2, 7, 12, 17], atol=0.6)  # mpeg4 is lossy
    assert len(load_video(path)) == 20
    in_memory = np.stack([np.full((16, 16, 3), level, np.uint8) for level in levels])
    values = VideoPreprocessor(num_frames=4, image_size=32)([path, in_memory, list(frames)])
    assert values.shape == (3, 4, 3, 32, 32)
    torch.testing.assert_close(values[1, :, 0, 0, 0], values[2, :, 0, 0, 0], atol=0.1, rtol=0)


def test_bad_video_files_raise_value_errors_naming_the_path(tmp_path):
    garbage = tmp_path / "garbage.mp4"
    garbage.write_bytes(np.random.default_rng(0).integers(0, 255, 5000, dtype=np.uint8).tobytes())
    audio_only = write_wav(tmp_path / "audio_only.mp4", tone(440, 0.2), SR)
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    for bad in [garbage, audio_only, empty]:
        assert_value_error_names(lambda bad=bad: VideoPreprocessor(image_size=8)([str(bad)]), str(bad))


# ---------------------------------------------------------------- audio


def test_audio_resampling_length_and_pitch(tmp_path):
    stereo = np.stack([tone(440, 1.0, 22050), tone(440, 1.0, 22050)], axis=1)
    path = write_wav(tmp_path / "a440.wav", stereo, 22050)
    waveform, rate = load_audio(path)
    assert rate == 22050 and waveform.shape == (22050,)
    values = AudioPreprocessor(max_seconds=2)([path, (tone(440, 3.0, 8000), 8000)])
    assert values.shape == (2, 2 * SR)
    # One second of tone, then zero padding.
    assert values[0, 15900:15990].abs().max() > 0.3 and values[0, 16100:].abs().max() == 0
    spectrum = np.abs(np.fft.rfft(values[0, :SR].numpy()))
    assert abs(int(spectrum.argmax()) - 440) <= 1  # 1 Hz bins over one second: pitch survives resampling
    assert values[1].abs().min() < 1e-3 and values[1, -100:].abs().max() > 0.3  # 3 s cropped to 2 s


def test_audio_pyav_fallback_and_whisper_features(tmp_path):
    path = write_m4a(tmp_path / "speech.m4a", tone(440, 1.0), SR)
    waveform, rate = load_audio(path)
    assert rate == SR and abs(len(waveform) - SR) < 2048 and np.abs(waveform).max() > 0.3
    prep = AudioPreprocessor(
        max_seconds=1.0,
        feature_extractor="WhisperFeatureExtractor",
        feature_extractor_kwargs={"feature_size": 80, "chunk_length": 1},
    )
    features = prep([path, {"array": tone(880, 0.5), "sampling_rate": SR}])
    assert features.shape == (2, 80, 100)
    encoder = build_encoder("transformers", TINY_WHISPER)
    assert type(encoder.model).__name__ == "WhisperEncoder"  # the decoder is not kept
    assert encoder(features).shape == (2, encoder.num_tokens, encoder.hidden_size) == (2, 50, 32)
    assert_value_error_names(
        lambda: AudioPreprocessor(sampling_rate=8000, feature_extractor="WhisperFeatureExtractor"), "8000"
    )


def test_bad_audio_files_raise_value_errors_naming_the_path(tmp_path):
    garbage = tmp_path / "garbage.wav"
    garbage.write_bytes(b"RIFF" + bytes(range(200)))
    image = write_png(tmp_path / "picture.wav", np.zeros((16, 16, 3), np.uint8))
    empty = tmp_path / "empty.flac"
    empty.write_bytes(b"")
    for bad in [garbage, image, empty]:
        assert_value_error_names(lambda bad=bad: AudioPreprocessor()([str(bad)]), str(bad))
    assert_value_error_names(lambda: load_audio((np.array([np.nan, 1.0]), SR)), "finite")


# ---------------------------------------------------------------- point cloud


def test_farthest_point_sampling_is_deterministic_and_spread():
    line = torch.tensor([[[0.0, 0, 0], [1, 0, 0], [2, 0, 0], [3, 0, 0], [4, 0, 0]]])
    assert farthest_point_sample(line, 3).tolist() == [[0, 4, 2]]
    cloud = torch.randn(2, 300, 3, generator=torch.Generator().manual_seed(0))
    picks = farthest_point_sample(cloud, 50)
    assert picks.shape == (2, 50) and all(len(set(row.tolist())) == 50 for row in picks)
    assert torch.equal(picks, farthest_point_sample(cloud, 50))


def test_point_cloud_files_normalised_and_sampled(tmp_path):
    import trimesh

    rng = np.random.default_rng(0)
    xyz = rng.normal(size=(2000, 3)) * 5 + 10
    np.save(tmp_path / "cloud.npy", xyz)
    np.savez(tmp_path / "cloud.npz", points=xyz[:300], rgb=rng.integers(0, 256, (300, 3)))
    colours = rng.integers(0, 256, (400, 4)).astype(np.uint8)
    trimesh.PointCloud(xyz[:400], colors=colours).export(tmp_path / "cloud.ply")
    trimesh.creation.box(extents=(2, 4, 6)).export(tmp_path / "box.obj")
    np.save(tmp_path / "small.npy", xyz[:10])
    prep = PointCloudPreprocessor(num_points=256, use_color=True, mesh_samples=2048)
    names = ["cloud.npy", "cloud.npz", "cloud.ply", "box.obj", "small.npy"]
    values = prep([str(tmp_path / name) for name in names])
    assert values.shape == (5, 256, 6)
    radii = values[..., :3].norm(dim=-1).amax(dim=1)
    assert (radii <= 1 + 1e-5).all() and (radii > 0.9).all()
    for row in values[:4]:
        assert len(torch.unique(row[:, :3], dim=0)) == 256  # farthest-point picks are distinct
    assert len(torch.unique(values[4, :, :3], dim=0)) == 10  # padded by repetition
    rgb = values[..., 3:]
    assert rgb.min() >= 0 and rgb.max() <= 1 and rgb[1].std() > 0.1  # .npz colours scaled from [0, 255]
    assert torch.allclose(rgb[0], torch.tensor(0.5))  # no colour → mid-grey
    assert load_point_cloud(str(tmp_path / "cloud.ply")).shape == (400, 6)
    assert PointCloudPreprocessor(num_points=64)([xyz]).shape == (1, 64, 3)


def test_bad_point_clouds_raise_value_errors_naming_the_path(tmp_path):
    with_nan = np.zeros((50, 3))
    with_nan[3, 1] = np.nan
    np.save(tmp_path / "nan.npy", with_nan)
    np.save(tmp_path / "flat.npy", np.zeros((50, 2)))
    np.save(tmp_path / "empty.npy", np.zeros((0, 3)))
    (tmp_path / "garbage.ply").write_bytes(b"ply\nformat nonsense\n" + bytes(range(100)))
    (tmp_path / "cloud.xyz").write_text("1 2 3\n")
    for name in ["nan.npy", "flat.npy", "empty.npy", "garbage.ply", "cloud.xyz", "missing.npy"]:
        path = str(tmp_path / name)
        assert_value_error_names(lambda path=path: PointCloudPreprocessor()([path]), path)


# ---------------------------------------------------------------- encoders


def test_transformers_encoders_token_counts():
    clip = build_encoder("transformers", TINY_CLIP)
    assert (clip.num_tokens, clip.hidden_size, clip.grid_size, clip.num_prefix_tokens) == (17, 32, (4, 4), 1)
    llava = build_encoder("transformers", {**TINY_CLIP, "feature_layer": -2, "drop_cls_token": True})
    assert llava(torch.randn(2, 3, 32, 32)).shape == (2, 16, 32) and llava.num_tokens == 16
    ast = build_encoder("transformers", {**TINY_AST, "drop_cls_token": True})
    assert ast.num_tokens == 10  # a 2×5 patch grid; CLS and distillation tokens dropped
    assert ast(torch.randn(2, 64, 32)).shape == (2, 10, 32)
    assert_value_error_names(lambda: clip(torch.randn(1, 3, 64, 64)), "3, 32, 32")
    assert_value_error_names(
        lambda: build_encoder("transformers", {**TINY_CLIP, "feature_layer": 7}), "feature_layer"
    )
    assert_value_error_names(lambda: build_encoder("transformers", {"hidden_size": 32}), "model_type")


def test_load_pretrained_transformers_encoder_round_trip(tmp_path):
    from transformers import AutoConfig, AutoModel

    torch.manual_seed(0)
    saved = AutoModel.from_config(AutoConfig.for_model(**TINY_CLIP)).eval()
    saved.save_pretrained(tmp_path / "clip")
    encoder, config = load_pretrained_encoder(
        "transformers", str(tmp_path / "clip"), feature_layer=-2, drop_cls_token=True
    )
    pixels = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        expected = saved(pixel_values=pixels, output_hidden_states=True).hidden_states[-2][:, 1:]
        torch.testing.assert_close(encoder.eval()(pixels), expected)
        rebuilt = build_encoder("transformers", json.loads(json.dumps(config)))  # configs survive JSON
        rebuilt.load_state_dict(encoder.state_dict())
        torch.testing.assert_close(rebuilt.eval()(pixels), expected)
    assert config["feature_layer"] == -2 and config["model_type"] == "clip_vision_model"
    video, video_config = load_pretrained_encoder(
        "video_frames", str(tmp_path / "clip"), num_frames=2, drop_cls_token=True
    )
    assert video(torch.randn(1, 2, 3, 32, 32)).shape == (1, 8, 32)
    assert video_config["frame_encoder"]["encoder_config"]["drop_cls_token"] is True


def test_load_pretrained_vision_tower_of_a_full_clip_checkpoint(tmp_path):
    from transformers import CLIPConfig, CLIPModel

    vision = {key: value for key, value in TINY_CLIP.items() if key != "model_type"}
    text = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 4}
    clip = CLIPModel(CLIPConfig(text_config={**text, "vocab_size": 99}, vision_config=vision)).eval()
    clip.save_pretrained(tmp_path / "clip")
    assert_value_error_names(
        lambda: load_pretrained_encoder("transformers", str(tmp_path / "clip")), "model_class"
    )
    encoder, config = load_pretrained_encoder(
        "transformers", str(tmp_path / "clip"), model_class="CLIPVisionModel"
    )
    pixels = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        expected = clip.vision_model(pixel_values=pixels, output_hidden_states=True).hidden_states[-1]
        torch.testing.assert_close(encoder.eval()(pixels), expected)
    assert config["model_type"] == "clip_vision_model" and encoder.num_tokens == 17


def test_load_pretrained_whisper_keeps_only_the_encoder(tmp_path):
    from transformers import AutoConfig, AutoModel

    AutoModel.from_config(AutoConfig.for_model(**TINY_WHISPER)).save_pretrained(tmp_path / "whisper")
    encoder, config = load_pretrained_encoder("transformers", str(tmp_path / "whisper"))
    assert config["model_class"].endswith("WhisperEncoder") and encoder.num_tokens == 50
    rebuilt = build_encoder("transformers", config)
    assert set(rebuilt.state_dict()) == set(encoder.state_dict())
    assert_value_error_names(lambda: load_pretrained_encoder("transformers", None), "transformers")


def test_video_frames_pools_each_grid_side_by_two():
    config = {"frame_encoder": {"encoder_type": "transformers", "encoder_config": TINY_CLIP}, "num_frames": 3}
    video = build_encoder("video_frames", config).eval()
    assert (video.num_tokens, video.hidden_size, video.pooled_grid) == (3 * 4, 32, (2, 2))
    frames = torch.randn(2, 3, 3, 32, 32)
    with torch.no_grad():
        out = video(frames)
        patches = video.frame_encoder(frames.flatten(0, 1))[:, 1:]  # the CLS token is dropped before pooling
    grid = patches.transpose(1, 2).reshape(6, 32, 4, 4)
    expected = F.avg_pool2d(grid, 2).flatten(2).transpose(1, 2).reshape(2, 12, 32)  # bilinear ½ == 2×2 mean
    torch.testing.assert_close(out, expected)
    assert_value_error_names(lambda: video(torch.randn(1, 4, 3, 32, 32)), "num_frames")
    spectrogram_frames = {"frame_encoder": {"encoder_type": "spectrogram", "encoder_config": {}}}
    assert_value_error_names(lambda: build_encoder("video_frames", spectrogram_frames), "grid")


def test_spectrogram_features_are_informative_without_training():
    encoder = build_encoder("spectrogram", {})
    assert (encoder.num_tokens, encoder.hidden_size) == (32, 256)

    def features(*parts: np.ndarray) -> torch.Tensor:
        waveform = np.zeros(10 * SR, np.float32)
        mixed = sum(parts) / len(parts)
        waveform[: len(mixed)] = mixed
        with torch.no_grad():
            return encoder(torch.from_numpy(waveform)[None])[0]

    def distance(a: torch.Tensor, b: torch.Tensor) -> float:
        return float((a - b).norm() / a.norm())

    a440 = features(tone(440, 3))
    assert a440.shape == (32, 256)
    assert torch.equal(a440, features(tone(440, 3)))  # same tone, identical features
    with torch.no_grad():  # a second build has the same seeded weights
        rebuilt = build_encoder("spectrogram", {})(torch.from_numpy(np.pad(tone(440, 3), (0, 7 * SR)))[None])
    assert torch.equal(a440, rebuilt[0])
    assert distance(a440, features(tone(880, 3))) > 0.5  # pitch
    assert distance(a440, features(tone(440, 3), tone(660, 3))) > 0.3  # number of tones
    assert distance(a440, features(tone(440, 6))) > 0.5  # duration
    assert_value_error_names(lambda: build_encoder("spectrogram", {"mels": 64}), "mels")


def test_point_patch_encoder_is_deterministic_and_shape_aware(tmp_path):
    import trimesh

    trimesh.creation.icosphere().export(tmp_path / "sphere.ply")
    trimesh.creation.box().export(tmp_path / "box.glb")
    values = PointCloudPreprocessor(num_points=256)([str(tmp_path / "sphere.ply"), str(tmp_path / "box.glb")])
    encoder = build_encoder("point_patch", {})
    assert (encoder.num_tokens, encoder.hidden_size) == (32, 256)
    with torch.no_grad():
        tokens = encoder(values)
        again = build_encoder("point_patch", {})(values)
    assert tokens.shape == (2, 32, 256) and torch.equal(tokens, again)
    assert float((tokens[0] - tokens[1]).norm() / tokens[0].norm()) > 0.05
    coloured = build_encoder("point_patch", {"in_channels": 6, "num_tokens": 8, "group_size": 16})
    assert coloured(torch.rand(1, 64, 6)).shape == (1, 8, 256)
    assert_value_error_names(lambda: encoder(torch.rand(1, 64, 6)), "point_patch")


def test_efficientnet_lite0_real_weights():
    encoder, config = load_pretrained_encoder("efficientnet_lite0", None)
    assert config == {"image_size": 224}
    encoder.requires_grad_(False)
    encoder.train()
    assert not encoder.training  # frozen encoders keep BatchNorm in eval mode
    images = ImagePreprocessor(**EFFICIENTNET_LITE_PREPROCESS)([np.full((100, 120, 3), 200, np.uint8)])
    with torch.no_grad():
        tokens = encoder(images)
    assert tokens.shape == (1, 49, 1280) == (1, encoder.num_tokens, encoder.hidden_size)
    assert encoder.grid_size == (7, 7) and torch.isfinite(tokens).all()
    random_init = build_encoder("efficientnet_lite0", config)
    assert encoder_fingerprint("efficientnet_lite0", config, encoder) != encoder_fingerprint(
        "efficientnet_lite0", config, random_init
    )


def test_encoder_fingerprint_tracks_config_and_weights():
    config = {"num_tokens": 4, "group_size": 8, "hidden_size": 16}
    encoder = build_encoder("point_patch", config)
    base = encoder_fingerprint("point_patch", encoder.config, encoder)
    assert base == encoder_fingerprint("point_patch", encoder.config, build_encoder("point_patch", config))
    assert base != encoder_fingerprint("point_patch", encoder.config)
    reseeded = {**encoder.config, "seed": 1}
    assert encoder_fingerprint("point_patch", reseeded) != encoder_fingerprint("point_patch", encoder.config)
    with torch.no_grad():
        encoder.first_mlp[0].weight.add_(1e-3)
    assert encoder_fingerprint("point_patch", encoder.config, encoder) != base


def test_default_encoders_accept_their_modality_preprocessing(tmp_path):
    """Each modality's preprocessor output feeds the encoder its spec defaults to."""
    image = write_png(tmp_path / "i.png", np.zeros((20, 30, 3), np.uint8))
    video = write_mp4(tmp_path / "v.mp4", [0, 50, 100, 150])
    audio = write_wav(tmp_path / "a.wav", tone(440, 0.5), SR)
    np.save(tmp_path / "p.npy", np.random.default_rng(0).normal(size=(100, 3)))
    cases = {
        "image": ([image], {"image_size": 32}, {**TINY_CLIP, "drop_cls_token": True}),
        "video": (
            [video],
            {"num_frames": 2, "image_size": 32},
            {"frame_encoder": {"encoder_type": "transformers", "encoder_config": TINY_CLIP}, "num_frames": 2},
        ),
        "audio": ([audio], {"max_seconds": 0.5}, {"num_tokens": 4, "hidden_size": 32, "n_mels": 16}),
        "point_cloud": (
            [str(tmp_path / "p.npy")],
            {"num_points": 64},
            {"num_tokens": 4, "group_size": 8, "hidden_size": 32},
        ),
    }
    for name, (items, preprocess, encoder_config) in cases.items():
        spec = get_modality(name)
        encoder = build_encoder(spec.default_encoder_type, encoder_config)
        with torch.no_grad():
            features = encoder(spec.preprocessor_cls(**preprocess)(items))
        assert features.shape == (1, encoder.num_tokens, encoder.hidden_size), name


def test_point_cloud_batch_sampling_equals_one_by_one(tmp_path):
    """The batched farthest-point sampling picks exactly what sampling each cloud alone picks."""
    from hf_mera.modalities import PointCloudPreprocessor

    rng = np.random.default_rng(1)
    paths = []
    for i, n in enumerate([300, 300, 120, 500]):
        path = tmp_path / f"cloud{i}.npy"
        np.save(path, rng.normal(size=(n, 6)).astype(np.float32))
        paths.append(str(path))
    pre = PointCloudPreprocessor(num_points=200, use_color=True)
    batched = pre(paths)
    one_by_one = torch.stack([pre.process_item(p) for p in paths])
    assert torch.equal(batched, one_by_one) and batched.shape == (4, 200, 6)
