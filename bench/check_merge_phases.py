"""Recompute every stored merge phase of a run with the streaming merge and compare bytes.

    PYTHONPATH=$PWD python bench/check_merge_phases.py OUTPUT_DIR [--tmp /tmp/merge-check]

For each `checkpoints/merge-*` folder of a run (written by whichever code ran it, e.g. the in-memory
merge before #19), the merge its `phase.json` describes is run again from the same input checkpoints
with today's stage-loop path (`trainers.merge.CheckpointHistory` over the files, the merge's
`tensors`, `write_merged`) and its `model.safetensors` compared byte for byte with the stored one.
MERA merges are checked (their description names θᵢ₋₁ and θᵢ,vanilla); other merges are listed.
Exits 1 on any difference.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

from hf_mera.merging import build_merge
from hf_mera.merging.streaming import write_merged
from trainers.checkpoints import Checkpoint
from trainers.merge import CheckpointHistory, StageUpdate


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("output_dir")
    parser.add_argument("--tmp", default="/tmp/merge-check")
    args = parser.parse_args()
    root = Path(args.output_dir) / "checkpoints"
    bad = 0
    for folder in sorted(root.glob("merge-*")):
        record = json.loads((folder / "phase.json").read_text())
        description = record["description"]
        if description.get("schedule") != "mera":
            print(f"skip {folder.name}: {description.get('merge')}")
            continue
        vanilla = root / record["parent"]
        start = next(p for p in root.glob(f"*-{description['previous']}") if (p / "phase.json").is_file())
        i = description["stage"]
        update = StageUpdate("?", Checkpoint("start", start, {}), Checkpoint("vanilla", vanilla, {}))
        history = CheckpointHistory(method=None, updates=[update] * i)  # MERA reads stage i only
        out = Path(args.tmp) / folder.name
        shutil.rmtree(out, ignore_errors=True)
        write_merged(build_merge("mera").tensors(history), history.vanilla(i), out)
        same = (out / "model.safetensors").read_bytes() == (folder / "model.safetensors").read_bytes()
        bad += not same
        print(f"{'IDENTICAL' if same else 'DIFFERENT'} {folder.name} (stage {i})", flush=True)
        shutil.rmtree(out, ignore_errors=True)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
