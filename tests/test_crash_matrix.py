"""Crashes lose no work: a run killed at any phase, then the same command, ends bitwise where an
uninterrupted run ends; disk full and permission denied leave the last good state and name the path;
a damaged phase is recomputed, never loaded.

The crashes are real (`HF_MERA_FAULT`, `hf_mera/faults.py`: the process SIGKILLs itself at a named
phase and step); the hub is a local folder (`tests/fixtures/local_hub_run.py`). One uninterrupted
reference run is shared by every case; "bitwise" is `bench/compare_outputs.py`'s comparison (every
published stage's weights, the phase keys, results.json without timings) plus the pushed files.
"""

from __future__ import annotations

import errno
import hashlib
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
LOCAL_HUB_RUN = REPO / "tests" / "fixtures" / "local_hub_run.py"
sys.path.insert(0, str(REPO / "bench"))
sys.path.insert(0, str(REPO / "tests" / "fixtures"))

from compare_outputs import compare  # noqa: E402

pytestmark = pytest.mark.slow

# The smallest curriculum of the e2e tests, with MERA only (it has every phase type) and a push.
# Output paths are relative (each run in its own folder), so results.json holds the same strings.
SIZES = "{caption_train: 24, qa_train: 24, caption_test: 6, qa_test: 6, cross_test: 6, speech_fraction: 0.0}"


def run_args(data_root: Path) -> list[str]:
    return [
        "--output_dir", "out", "--order", "[image, audio]",
        "--data.root", str(data_root), "--data.embedded", SIZES,
        "--model.backbone.hidden_size", "32", "--model.backbone.num_layers", "2",
        "--model.backbone.text_pretrain_steps", "10", "--model.backbone.text_pretrain_batch_size", "16",
        "--model.backbone.text_instruct_steps", "2", "--model.backbone.text_instruct_batch_size", "8",
        "--training.connector_pretrain.max_steps", "3",
        "--training.connector_pretrain.per_device_train_batch_size", "8",
        "--training.instruction_tuning.max_steps", "3",
        "--training.instruction_tuning.per_device_train_batch_size", "8",
        "--training.realign.max_steps", "2", "--training.realign.per_device_train_batch_size", "8",
        "--evaluation.max_new_tokens", "4", "--evaluation.batch_size", "8",
        "--methods", "[{name: MERA, type: mera}]", "--push_to_hub.repo_id", "org/tiny",
    ]  # fmt: skip


# One crash per phase type (phase:step@occurrence, see hf_mera/faults.py), each at a damaging point:
# mid-training, weights written but not committed, half a stage's scores, a stage folder built or
# its card written but not renamed into place, a stage pushed to its branch but not yet to main.
# They form one chain: each command resumes from the previous crash and is killed at the next point,
# the last one runs to the end (10 processes for 9 crashes, instead of 18). Occurrences count per
# process, and a resumed process reuses what the crashed ones finished: `push:1@2` is the second
# push of a process that publishes stage 1 again and then stage 2.
CHAIN = [
    "text_pretrain:5",  # the backbone's text pre-training, step 5 of 10
    "connector_pretrain:2",  # stage 1's connector pre-training, step 2 of 3
    "publish:linked",  # stage 1 evaluated, its folder built, not renamed into place
    "card:written",  # stage 1's card written into its unpublished folder
    "instruction_tuning:2",  # stage 2's instruction tuning, step 2 of 3
    "merge:saved",  # stage 2's merged weights written, the phase not committed
    "realign:1",  # stage 2's realignment, step 1 of 2
    "evaluation:1",  # stage 2 evaluated on image, not yet on audio
    "push:1@2",  # stage 2 pushed to its branch, not yet to main
]


def launch(cwd: Path, data_root: Path, fault: str | None = None) -> subprocess.CompletedProcess:
    """The command (`hf_mera/run.py` with the hub in `cwd/hub`), in `cwd`, optionally with a fault."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "HF_TOKEN": "hf_local"}
    env.pop("HF_MERA_FAULT", None)
    if fault:
        env["HF_MERA_FAULT"] = fault
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")])
    cwd.mkdir(parents=True, exist_ok=True)
    return subprocess.run(
        [sys.executable, str(LOCAL_HUB_RUN), "hub", *run_args(data_root)],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=900,
    )  # fmt: skip


def tree_digests(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def leftovers(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.name.startswith((".tmp-", ".old-", ".commit-"))]


def assert_same_as(reference: Path, folder: Path) -> None:
    assert compare(reference / "out", folder / "out") == []
    assert tree_digests(reference / "hub") == tree_digests(folder / "hub")
    assert not leftovers(folder)


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    return tmp_path_factory.mktemp("bench")


@pytest.fixture(scope="module")
def reference(data_root, tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("reference")
    result = launch(folder, data_root)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert len(tree_digests(folder / "hub")) > 0 and not leftovers(folder)
    return folder


def test_a_crash_in_every_phase_type_then_the_same_command_ends_as_an_uninterrupted_run(
    reference, data_root, tmp_path
):
    finished_before: set[str] = set()
    for fault in CHAIN:
        crashed = launch(tmp_path, data_root, fault)
        log = crashed.stdout + crashed.stderr
        assert crashed.returncode == -signal.SIGKILL, f"{fault}: " + log[-3000:]
        phase, step = fault.split("@")[0].split(":")
        assert f"killing the process at {phase}:{step}" in log, fault
        assert not (tmp_path / "out" / "results.json").exists()
        # Every phase finished before a crash is reused as it is, never trained again.
        trained = set(re.findall(r"phase (\S+) \((\w+)\): running", log))
        assert not {f"{name}-{key}" for name, key in trained} & finished_before, fault
        finished_before = {p.parent.name for p in (tmp_path / "out").glob("checkpoints/*/phase.json")}
    resumed = launch(tmp_path, data_root)
    assert resumed.returncode == 0, (resumed.stdout + resumed.stderr)[-3000:]
    assert_same_as(reference, tmp_path)


def test_a_damaged_or_truncated_phase_is_reported_and_recomputed(reference, data_root, tmp_path):
    shutil.copytree(reference, tmp_path, dirs_exist_ok=True)
    phases = tmp_path / "out" / "checkpoints"
    (flipped,) = phases.glob("it-image-*/model.safetensors")  # stage 1's model, under every later phase
    data = bytearray(flipped.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped byte in the tensor data: safetensors would load it
    flipped.write_bytes(bytes(data))
    (truncated,) = phases.glob("merge-audio-*/model.safetensors")
    truncated.write_bytes(truncated.read_bytes()[:-1000])
    result = launch(tmp_path, data_root)
    log = result.stdout + result.stderr
    assert result.returncode == 0, log[-3000:]
    for path, damage in [(flipped, "is damaged"), (truncated, "is truncated")]:  # named as the run names it
        named = re.escape(str(path.relative_to(tmp_path)))
        assert re.search(rf"WARNING .*{named} {damage}", log), log[-3000:]
    recomputed = set(re.findall(r"phase (\S+) \(\w+\): running", log))
    assert recomputed == {"it-image", "merge-audio"}, recomputed  # those two only, never loaded
    assert_same_as(reference, tmp_path)


def test_disk_full_and_permission_denied_leave_the_last_good_state(
    reference, data_root, tmp_path, monkeypatch
):
    """In process, with the failures injected (tests run as root, where a read-only folder does not
    stop writes): disk full while the merge writes its weights, then permission denied when stage 2
    is published; each time the error names the path, nothing half-written stays, every finished
    phase and stage is intact, and the next run ends as the uninterrupted one."""
    from local_hub_run import install_local_hub

    import hf_mera.atomic
    from hf_mera.continual.curriculum import load_run_config
    from trainers.checkpoints import CheckpointStore
    from trainers.runner import run_curriculum

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HF_TOKEN", "hf_local")
    monkeypatch.delenv("HF_MERA_FAULT", raising=False)
    install_local_hub(tmp_path / "hub", setattr=monkeypatch.setattr)
    args = run_args(data_root)

    def intact_phases() -> set[str]:
        store = CheckpointStore(tmp_path / "out" / "checkpoints")
        folders = [p for p in store.root.iterdir() if not p.name.startswith(".")]
        return {p.name for p in folders if store.find(*p.name.rsplit("-", 1))}

    # Disk full while the merge phase writes model.safetensors (streamed, not through save_pretrained):
    # half a file, then ENOSPC.
    import hf_mera.merging.streaming as streaming

    write_merged = streaming.write_merged

    def disk_full(tensors, vanilla, folder, *a, **k):
        if Path(folder).name.startswith(".tmp-merge-"):
            (Path(folder) / "model.safetensors").write_bytes(b"\0" * 4096)
            raise OSError(errno.ENOSPC, "No space left on device")
        return write_merged(tensors, vanilla, folder, *a, **k)

    monkeypatch.setattr(streaming, "write_merged", disk_full)
    with pytest.raises(OSError) as failure:
        run_curriculum(load_run_config("quickstart", args), progress=False)
    assert failure.value.errno == errno.ENOSPC
    note = "\n".join(failure.value.__notes__)
    assert re.search(r"temporary folder out/checkpoints/\.tmp-merge-audio-\w+ was removed", note), note
    assert not leftovers(tmp_path / "out")
    before = intact_phases()
    assert any(name.startswith("it-audio-") for name in before)
    assert not any(name.startswith("merge-") for name in before)
    stage_1 = tree_digests(tmp_path / "out" / "mera" / "stage-1-image")
    monkeypatch.setattr(streaming, "write_merged", write_merged)

    # Permission denied when stage 2's folder is renamed into place.
    replace = os.replace

    def denied(src, dst):
        if Path(dst).name == "stage-2-audio":
            raise PermissionError(errno.EACCES, "Permission denied", str(dst))
        return replace(src, dst)

    monkeypatch.setattr(hf_mera.atomic.os, "replace", denied)
    with pytest.raises(PermissionError) as failure:
        run_curriculum(load_run_config("quickstart", args), progress=False)
    assert failure.value.filename == str(Path("out") / "mera" / "stage-2-audio")
    assert "stage-2-audio failed" in "\n".join(failure.value.__notes__)
    assert not leftovers(tmp_path / "out") and not (tmp_path / "out" / "mera" / "stage-2-audio").exists()
    assert before < intact_phases()  # the merge and realignment finished this time and stay
    assert tree_digests(tmp_path / "out" / "mera" / "stage-1-image") == stage_1
    monkeypatch.setattr(hf_mera.atomic.os, "replace", replace)

    run_curriculum(load_run_config("quickstart", args), progress=False)
    assert_same_as(reference, tmp_path)
