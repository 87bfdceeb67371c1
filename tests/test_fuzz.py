"""Fuzzing (hypothesis) of everything that reads user input: the media loaders, the processor, the
curriculum YAML loader and the demo's upload path, on random bytes and on mutated valid inputs.

The only failure allowed is a clear error: a `ValueError` naming the file (loaders, processor, YAML)
or the field (YAML), or the demo's sentence naming the upload. Anything else (an IndexError deep
in a decoder, a TypeError, a crash) fails the test. Examples are few and derandomized, so CI runs
the same inputs every time in seconds; `HF_MERA_FUZZ_EXAMPLES=500 HF_MERA_FUZZ_RANDOM=1` explores.
"""

from __future__ import annotations

import copy
import os
import sys
import tempfile
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hf_mera.continual.curriculum import RunConfig, load_run_config, shipped_config

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

FUZZ = settings(
    max_examples=int(os.environ.get("HF_MERA_FUZZ_EXAMPLES", "25")),
    deadline=None,  # decoders' first call imports codecs: timing says nothing here
    derandomize=not os.environ.get("HF_MERA_FUZZ_RANDOM"),
    database=None,  # nothing written into the repository
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
MODALITIES = ("image", "video", "audio", "point_cloud")


@st.composite
def mutated(draw, original: bytes) -> bytes:
    """`original` with a few random edits: bytes flipped, a chunk inserted or deleted, truncation."""
    data = bytearray(original)
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["flip", "insert", "delete", "truncate"]))
        at = draw(st.integers(0, max(len(data) - 1, 0)))
        if kind == "flip" and data:
            data[at] = draw(st.integers(0, 255))
        elif kind == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=64))
        elif kind == "delete":
            del data[at : at + draw(st.integers(1, 256))]
        else:
            del data[at:]
    return bytes(data)


def write(folder: str, name: str, data: bytes) -> Path:
    path = Path(folder) / name
    path.write_bytes(data)
    return path


def assert_names_the_file(call, path: Path):
    """`call()` succeeds or raises ValueError naming `path`; any other exception fails the test."""
    try:
        return call()
    except ValueError as err:
        assert path.name in str(err), f"error does not name {path.name}: {err}"
    return None


def extensions(modality: str) -> list[str]:
    from hf_mera.modalities import get_modality

    return list(get_modality(modality).file_extensions)


# ---- media loaders -----------------------------------------------------------------------------


@pytest.mark.parametrize("modality", MODALITIES)
@FUZZ
@given(data=st.data())
def test_loader_on_mutated_valid_file(modality, media_files, data):
    from hf_mera.modalities import get_modality

    original = Path(media_files[f"{modality}0"])
    blob = data.draw(mutated(original.read_bytes()))
    spec = get_modality(modality)
    with tempfile.TemporaryDirectory() as folder:
        path = write(folder, f"upload{original.suffix}", blob)
        raw = assert_names_the_file(lambda: spec.load(str(path)), path)
        if raw is not None:  # what loads must preprocess or be refused naming the file too
            assert_names_the_file(lambda: spec.preprocessor_cls()([str(path)]), path)


@pytest.mark.parametrize("modality", MODALITIES)
@FUZZ
@given(data=st.data())
def test_loader_on_random_bytes_under_every_extension(modality, data):
    from hf_mera.modalities import get_modality

    spec = get_modality(modality)
    suffix = data.draw(st.sampled_from(extensions(modality)))
    blob = data.draw(st.binary(max_size=2048))
    with tempfile.TemporaryDirectory() as folder:
        path = write(folder, f"random{suffix}", blob)
        assert_names_the_file(lambda: spec.load(str(path)), path)


# ---- the processor ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def processor(tiny_tokenizer):
    from conftest import make_tiny_model

    return make_tiny_model(tiny_tokenizer)[1]


@FUZZ
@given(data=st.data())
def test_processor_on_random_text_and_media(processor, media_files, data):
    """Any text (placeholders anywhere, any count) with any list of media: a batch, or a ValueError."""
    placeholders = [processor.modalities[m]["placeholder_token"] for m in MODALITIES]
    pieces = data.draw(st.lists(st.one_of(st.sampled_from(placeholders), st.text(max_size=20)), max_size=6))
    media = data.draw(
        st.lists(
            st.sampled_from(MODALITIES).map(lambda m: {"modality": m, "path": media_files[f"{m}0"]}),
            max_size=4,
        )
    )
    try:
        out = processor(text="".join(pieces), media=media)
    except ValueError as err:
        assert str(err), "an empty error message names nothing"
        return
    assert out["input_ids"].shape[0] == 1


@FUZZ
@given(data=st.data())
def test_processor_on_a_mutated_file_names_it(processor, media_files, data):
    modality = data.draw(st.sampled_from(MODALITIES))
    original = Path(media_files[f"{modality}0"])
    blob = data.draw(mutated(original.read_bytes()))
    placeholder = processor.modalities[modality]["placeholder_token"]
    with tempfile.TemporaryDirectory() as folder:
        path = write(folder, f"mutated{original.suffix}", blob)
        assert_names_the_file(
            lambda: processor(
                text=f"{placeholder} what is it?", media=[{"modality": modality, "path": str(path)}]
            ),
            path,
        )


# ---- the curriculum YAML loader -------------------------------------------------------------------

QUICKSTART = yaml.safe_load(shipped_config("quickstart").read_text())


def dotted_paths(node, prefix=()):
    if isinstance(node, dict):
        for key, value in node.items():
            yield (*prefix, key)
            yield from dotted_paths(value, (*prefix, key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from dotted_paths(value, (*prefix, i))


PATHS = list(dotted_paths(QUICKSTART))
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**40), 2**40),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=6,
)


def assert_loads_or_names(path: Path):
    try:
        return load_run_config(path)
    except ValueError as err:
        assert str(err).startswith(str(path)), f"error does not name the file: {err}"
    return None


@FUZZ
@given(data=st.data())
def test_yaml_with_random_values_at_real_fields(data):
    """The quickstart with 1-3 of its fields (or an unknown key beside one) set to anything."""
    config = copy.deepcopy(QUICKSTART)
    for _ in range(data.draw(st.integers(1, 3))):
        path = data.draw(st.sampled_from(PATHS))
        node = config
        try:
            for part in path[:-1]:
                node = node[part]
            key = (
                data.draw(st.sampled_from([path[-1], f"{path[-1]}_typo"]))
                if isinstance(node, dict)
                else path[-1]
            )
            node[key] = data.draw(VALUES)
        except (KeyError, IndexError, TypeError):  # an earlier edit replaced a parent
            continue
    with tempfile.TemporaryDirectory() as folder:
        file = Path(folder) / "run.yaml"
        file.write_text(yaml.safe_dump(config))
        run = assert_loads_or_names(file)
        assert run is None or isinstance(run, RunConfig)


@FUZZ
@given(text=st.one_of(st.text(max_size=300), st.binary(max_size=300).map(lambda b: b.decode("latin-1"))))
def test_yaml_loader_on_random_text(text):
    with tempfile.TemporaryDirectory() as folder:
        file = Path(folder) / "run.yaml"
        file.write_text(text, encoding="utf-8", errors="surrogateescape")
        assert_loads_or_names(file)


@FUZZ
@given(blob=st.data())
def test_yaml_loader_on_mutated_shipped_config(blob):
    original = shipped_config("quickstart").read_bytes()
    with tempfile.TemporaryDirectory() as folder:
        file = write(folder, "run.yaml", blob.draw(mutated(original)))
        assert_loads_or_names(file)


# ---- the demo's upload path ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def demo_backend(tiny_tokenizer):
    from conftest import make_tiny_model

    from demo.app import ChatBackend, DemoSettings

    model, processor = make_tiny_model(tiny_tokenizer, modalities=("image", "audio", "point_cloud"))
    return ChatBackend(model, processor, DemoSettings(max_new_tokens=2, max_upload_mb=0.05), "")


@FUZZ
@given(data=st.data())
def test_demo_upload_of_random_or_mutated_files(demo_backend, media_files, data):
    """`respond` on one upload (random bytes under any extension, or a mutated real file): an answer,
    or a sentence naming the upload; never "Something went wrong" (the catch-all for bugs)."""
    every = [ext for m in MODALITIES for ext in extensions(m)] + [".txt", ".exe", ""]
    modality = data.draw(st.sampled_from(MODALITIES))
    original = Path(media_files[f"{modality}0"])
    if data.draw(st.booleans()):
        blob, suffix = data.draw(mutated(original.read_bytes())), original.suffix
    else:
        blob, suffix = data.draw(st.binary(max_size=1024)), data.draw(st.sampled_from(every))
    with tempfile.TemporaryDirectory() as folder:
        path = write(folder, f"upload{suffix}", blob)
        answers = [
            answer for answer, _ in demo_backend.respond({"text": "what is it?", "files": [str(path)]}, [])
        ]
        view = demo_backend.point_cloud_view(str(path))  # never raises: the 3D view is a nicety
    assert answers, "no answer at all"
    final = answers[-1]
    assert not final.startswith("Something went wrong"), final
    if modality != "video" and suffix == original.suffix and blob == original.read_bytes():
        return
    refused = any(word in final for word in ("can't", "Cannot", "not learned", " MB"))
    assert not refused or f"`{path.name}`" in final, final  # the name the user uploaded, not a temp path
    assert view is None or Path(view).suffix in (".ply", ".obj", ".glb", ".gltf", ".stl")


def test_audio_with_an_unknown_codec_tag_names_the_file(media_files, tmp_path):
    """Found by the fuzzer: libsndfile refuses a WAV whose format tag is unknown, and PyAV opens it
    with a stream that has no codec context, whose every attribute raised AttributeError."""
    from hf_mera.modalities import get_modality

    blob = bytearray(Path(media_files["audio0"]).read_bytes())
    assert blob[:4] == b"RIFF" and blob[12:16] == b"fmt "
    for tag in (0x0000, 0x1234, 0xFFFE):
        blob[20:22] = tag.to_bytes(2, "little")
        path = write(str(tmp_path), f"tag{tag}.wav", bytes(blob))
        with pytest.raises(ValueError, match=f"Cannot read audio .*{path.name}"):
            get_modality("audio").load(str(path))
