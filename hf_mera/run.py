"""Run a modality-incremental curriculum.

    accelerate launch hf_mera/run.py [CONFIG] [--section.key value ...]
    python hf_mera/run.py [CONFIG] --check [--section.key value ...]

With no CONFIG it runs the shipped quickstart (`hf_mera/configs/quickstart.yaml`): the embedded
benchmark, image → video → audio → point cloud, individually trained experts, Fine-Tuning and
MERA (10 %). CONFIG is a YAML path or the name of a shipped config (`smollm2`, `paper-sequential` ...).
At the end it prints the per-stage scores and Backward / Forward Relative Gain, and writes
`results.json`, `report.md` and plots into the output folder. Re-running the same command after a
crash resumes from the last finished phase.

`--check` trains nothing: it checks the config (every error names its dotted field), finds the data,
the LLM's and the encoders' weights, prints the plan (every phase of every method, and which ones the
phase store already holds) and the disk space, and exits 1 if anything would stop the run.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

if __package__ in (None, ""):
    # `accelerate launch hf_mera/run.py` runs this file as a script: make the repository importable
    # so that `trainers/` (beside `hf_mera/`) is found without installing.
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def parse_args(argv: list[str] | None = None, flags: set[str] | None = None) -> tuple[str | None, list[str]]:
    """`[CONFIG] [--check] [--section.key value ...]` → (CONFIG or None, the overrides); the flags
    found (`--check`) are added to `flags`."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if any(arg in ("-h", "--help") for arg in argv):
        print(__doc__)
        print("Overrides: any config field as --section.key value, e.g. --training.realign.max_steps 50")
        raise SystemExit(0)
    if "--check" in argv:  # no config field is named `check`, so it cannot be an override's key
        argv.remove("--check")
        if flags is not None:
            flags.add("--check")
    # Only the first argument may be the config; every other one belongs to an override.
    if argv and not argv[0].startswith("--"):
        return argv[0], argv[1:]
    return None, argv


def use_all_cpu_cores() -> None:
    """On CPU, give each process its share of the cores.

    `accelerate launch` without `--cpu` sets OMP_NUM_THREADS=1 for every process, which halves the
    speed of a single-process CPU run on two cores. Threads are raised to cores / local processes
    unless OMP_NUM_THREADS asks for more. `HF_MERA_NUM_THREADS` sets the number exactly (for several
    runs side by side, e.g. `bench/compare_methods.py --jobs 2`).
    """
    import torch

    if torch.cuda.is_available():
        return
    if os.environ.get("HF_MERA_NUM_THREADS"):
        torch.set_num_threads(int(os.environ["HF_MERA_NUM_THREADS"]))
        return
    local_processes = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
    share = max(1, len(os.sched_getaffinity(0)) // local_processes)
    if torch.get_num_threads() < share:
        torch.set_num_threads(share)


def main(argv: list[str] | None = None) -> int:
    flags: set[str] = set()
    config_path, overrides = parse_args(argv, flags)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in ("httpx", "urllib3", "datasets", "filelock"):
        logging.getLogger(noisy).setLevel(logging.WARNING)

    from hf_mera.continual.curriculum import load_run_config
    from trainers.validation import check_run

    try:
        run = load_run_config(config_path, overrides)
        check_run(run)  # what the trainers refuse (method types, backbones ...), before any data is built
    except ValueError as err:
        # A bad config is the user's to fix: one line naming the field, not a traceback.
        message = (
            str(err) if str(err).startswith(str(config_path)) else f"{config_path or 'quickstart'}: {err}"
        )
        print(f"error: {message}", file=sys.stderr)
        return 2
    if "--check" in flags:
        from trainers.plan import check

        return 1 if check(run) else 0
    from trainers.runner import run_curriculum

    use_all_cpu_cores()
    run_curriculum(run)
    return 0


if __name__ == "__main__":
    sys.exit(main())
