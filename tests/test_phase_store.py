"""The phase store checks itself; the fault injector kills where it is told; atomic writes that fail
name their path and keep the previous content. Fast: real files, no training."""

from __future__ import annotations

import errno
import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from hf_mera.atomic import atomic_write_json
from hf_mera.faults import parse_fault
from trainers.checkpoints import COMPLETE_MARKER, CheckpointStore

REPO = Path(__file__).resolve().parent.parent


def committed(store: CheckpointStore, name: str = "it-image", key: str = "k1"):
    tmp = store.begin(name, key)
    save_file({"w": torch.arange(4096, dtype=torch.float32)}, str(tmp / "model.safetensors"))
    (tmp / "config.json").write_text('{"hidden_size": 32}')
    return store.commit(name, key, tmp, {"phase": "instruction_tuning"})


def fresh(store: CheckpointStore) -> CheckpointStore:
    """A new store on the same folder: what a resumed run (a new process) sees."""
    return CheckpointStore(store.root)


@pytest.fixture
def store(tmp_path):
    return CheckpointStore(tmp_path / "checkpoints")


def test_commit_records_every_file_with_its_size_and_hash(store):
    checkpoint = committed(store)
    files = json.loads((checkpoint.path / COMPLETE_MARKER).read_text())["files"]
    assert sorted(files) == ["config.json", "model.safetensors"]
    assert files["model.safetensors"]["bytes"] == (checkpoint.path / "model.safetensors").stat().st_size
    assert len(files["model.safetensors"]["xxh3_128"]) == 32
    assert fresh(store).find("it-image", "k1") == checkpoint


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        ("flip", "is damaged"),
        ("truncate", "is truncated or grown"),
        ("delete", "is missing"),
        ("flip-config", "is damaged"),
    ],
)
def test_a_damaged_file_is_reported_by_name_and_the_phase_not_reused(store, caplog, damage, message):
    checkpoint = committed(store)
    path = checkpoint.path / ("config.json" if damage == "flip-config" else "model.safetensors")
    data = bytearray(path.read_bytes())
    if damage == "truncate":
        path.write_bytes(bytes(data[:-16]))
    elif damage == "delete":
        path.unlink()
    else:
        data[len(data) // 2] ^= 0x01  # one bit: the header still parses, the size is the same
        path.write_bytes(bytes(data))
    with caplog.at_level(logging.WARNING, logger="trainers.checkpoints"):
        assert fresh(store).find("it-image", "k1") is None
    assert f"{path} {message}" in caplog.text and "recomputing" in caplog.text
    # Recomputing commits over the damaged folder; the new one is trusted again.
    again = committed(store)
    assert fresh(store).find("it-image", "k1") == again


def test_an_unreadable_phase_json_means_recompute(store, caplog):
    checkpoint = committed(store)
    (checkpoint.path / COMPLETE_MARKER).write_text('{"name": "it-image", "descr')
    with caplog.at_level(logging.WARNING, logger="trainers.checkpoints"):
        assert fresh(store).find("it-image", "k1") is None
    assert str(checkpoint.path / COMPLETE_MARKER) in caplog.text


def test_files_added_after_the_phase_are_not_checked(store):
    checkpoint = committed(store)
    (checkpoint.path / "eval-abc.json").write_text("{}")  # the evaluator's cache beside the checkpoint
    assert fresh(store).find("it-image", "k1") == checkpoint


def as_legacy(checkpoint) -> None:
    """phase.json as hf_mera wrote it before the hashes."""
    marker = checkpoint.path / COMPLETE_MARKER
    record = json.loads(marker.read_text())
    del record["files"]
    marker.write_text(json.dumps(record))


def test_a_phase_without_hashes_is_trusted_with_a_warning(store, caplog):
    checkpoint = committed(store)
    as_legacy(checkpoint)
    with caplog.at_level(logging.WARNING, logger="trainers.checkpoints"):
        assert fresh(store).find("it-image", "k1") == checkpoint
    assert "no file hashes" in caplog.text and str(checkpoint.path) in caplog.text


def test_a_truncated_safetensors_file_without_hashes_is_still_caught(store, caplog):
    checkpoint = committed(store)
    as_legacy(checkpoint)
    path = checkpoint.path / "model.safetensors"
    path.write_bytes(path.read_bytes()[:-100])
    with caplog.at_level(logging.WARNING, logger="trainers.checkpoints"):
        assert fresh(store).find("it-image", "k1") is None
    assert f"{path} is truncated" in caplog.text


def test_each_folder_is_hashed_once_per_process(store, monkeypatch):
    import trainers.checkpoints as checkpoints

    committed(store)
    reader = fresh(store)
    calls = []
    digest = checkpoints.file_digest
    monkeypatch.setattr(checkpoints, "file_digest", lambda path: calls.append(path) or digest(path))
    reader.find("it-image", "k1")
    reader.find("it-image", "k1")
    assert len(calls) == 2  # two files, hashed on the first find only


# ---- the fault injector ---------------------------------------------------------------------------
@pytest.mark.parametrize("spec", ["merge", "merge:", ":saved", "merge:saved@x", "merge:saved@0"])
def test_a_malformed_fault_is_a_clear_error(spec):
    with pytest.raises(ValueError, match="HF_MERA_FAULT"):
        parse_fault(spec)


def test_fault_point_kills_the_process_at_the_named_step_and_occurrence():
    script = (  # faults.py alone (stdlib only): no need to import the library in the child
        "import importlib.util, sys\n"
        f"spec = importlib.util.spec_from_file_location('faults', {str(REPO / 'hf_mera' / 'faults.py')!r})\n"
        "faults = importlib.util.module_from_spec(spec); spec.loader.exec_module(faults)\n"
        "fault_point = faults.fault_point\n"
        "for stage in (1, 2):\n"
        "    for step in (1, 2, 3):\n"
        "        print(stage, step, flush=True)\n"
        "        fault_point('instruction_tuning', step)\n"
        "        fault_point('realign', step)\n"
        "print('finished', flush=True)\n"
    )
    env = {**os.environ, "HF_MERA_FAULT": "instruction_tuning:2@2", "PYTHONPATH": str(REPO)}
    result = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True)
    assert result.returncode == -9  # SIGKILL: no cleanup runs, as with kill -9
    lines = result.stdout.splitlines()
    assert lines[-2:] == ["2 2", "HF_MERA_FAULT: killing the process at instruction_tuning:2 (occurrence 2)"]
    env.pop("HF_MERA_FAULT")
    result = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True)
    assert result.returncode == 0 and result.stdout.splitlines()[-1] == "finished"


# ---- atomic writes that fail ----------------------------------------------------------------------
def test_disk_full_during_an_atomic_write_names_the_file_and_keeps_the_old_content(tmp_path, monkeypatch):
    target = tmp_path / "results.json"
    atomic_write_json(target, {"good": 1})
    real_write_text = Path.write_text

    def disk_full(self, text, *args, **kwargs):
        real_write_text(self, text[:5], *args, **kwargs)  # half written, then the disk is full
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Path, "write_text", disk_full)
    with pytest.raises(OSError) as failure:
        atomic_write_json(target, {"new": 2})
    monkeypatch.undo()
    assert failure.value.errno == errno.ENOSPC
    assert f"writing {target} failed" in "\n".join(failure.value.__notes__)
    assert json.loads(target.read_text()) == {"good": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["results.json"]  # no temporary file left
