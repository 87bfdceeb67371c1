"""bench/compare_methods.py's tables from finished runs (issue #17): means with 95 % t intervals over
seeds and each method's paired difference against MERA (10 %), resolved or not."""

from __future__ import annotations

import importlib.util
import json

from helpers import REPO

from hf_mera.evaluation.intervals import paired_difference

ORDER = ["image", "audio"]
EXPERT = {"image": {"caption": 100.0, "qa": 0.5}, "audio": {"caption": 100.0, "qa": 0.5}}


def load_bench():
    spec = importlib.util.spec_from_file_location("compare_methods", REPO / "bench" / "compare_methods.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run(method: str, image_share: float, seed: int) -> dict:
    """A two-stage run whose stage-2 image scores are `image_share` of the expert's."""
    image = {"caption": 100.0 * image_share, "qa": 0.5 * image_share}
    return {
        "method": method,
        "order": ORDER,
        "stages": [{"image": EXPERT["image"]}, {"image": image, "audio": EXPERT["audio"]}],
        "expert_scores": EXPERT,
        "order_name": "sequential",
        "metadata": {"seed": seed},
    }


def test_report_gives_t_intervals_and_paired_differences_against_mera(tmp_path):
    bench = load_bench()
    # Both methods swing with the seed; Fine-Tuning is always 30 points lower; Replay ties MERA on average.
    shares = {0: 0.9, 1: 0.7, 2: 0.8}
    folders = {}
    for seed, share in shares.items():
        folder = tmp_path / f"sequential-seed{seed}"
        folder.mkdir()
        runs = [
            run("MERA (10%)", share, seed),
            run("Fine-Tuning", share - 0.3, seed),
            run("Replay (1%)", share + (0.05 if seed != 1 else -0.1), seed),
        ]
        (folder / "results.json").write_text(json.dumps({"benchmark_hash": f"h{seed}", "runs": runs}))
        folders[("sequential", seed)] = folder
    loaded, hashes = bench.load(folders)
    text = bench.report(loaded, hashes, ["sequential"], [0, 1, 2], "quickstart")

    mera = bench.seed_means(loaded, "MERA (10%)", "sequential", [0, 1, 2])
    # Stage 1 is 100 (the expert), stage 2 is the image share: the mean over stages is (100 + 100·share)/2.
    assert mera == {s: (100 + 100 * share) / 2 for s, share in shares.items()}
    ft = paired_difference(bench.seed_means(loaded, "Fine-Tuning", "sequential", [0, 1, 2]), mera)
    assert abs(ft.mean + 15.0) < 1e-9 and ft.resolved  # −30 points at stage 2, halved over stages
    replay = paired_difference(bench.seed_means(loaded, "Replay (1%)", "sequential", [0, 1, 2]), mera)
    assert not replay.resolved
    assert f"| Fine-Tuning | {ft} **resolved** |" in text
    assert f"| Replay (1%) | {replay} *unresolved* |" in text
    assert "seed 0: `h0`" in text and "95 % confidence interval" in text
