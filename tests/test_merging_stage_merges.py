"""The stage merges a method names in YAML (hf_mera.merging's registry), on hand-made stage histories:
each against a hand computation or the peft function it reuses, on exact per-stage deltas."""

from __future__ import annotations

import pytest
import torch
from peft.utils import merge_utils

from hf_mera.merging import MERGES, build_merge
from hf_mera.merging.mera import mera_merge_state_dict

KEY = "model.language_model.layers.0.mlp.up_proj.weight"
EMBED = "model.language_model.embed_tokens.weight"
CONNECTOR = "model.connectors.image.linear_1.weight"


class History:
    """Stages of a sequential curriculum on one linear and a growing embedding: stage k starts from
    θₖ₋₁ (the previous merge, given) and adds τₖ; stage k adds one embedding row."""

    def __init__(self, starts, vanillas, lora=None, grams=None):
        self.starts, self.vanillas, self.lora, self.gram_values = starts, vanillas, lora, grams
        self.index = len(vanillas)
        self._loaded = {}

    def start(self, k):
        return self.starts[k - 1]

    def vanilla(self, k):
        # As the checkpoint history: loaded once per merge, and stage i's is the merge's to overwrite
        # (so the test's own `vanillas` stay as trained).
        if k not in self._loaded:
            self._loaded[k] = {key: t.clone() for key, t in self.vanillas[k - 1].items()}
        return self._loaded[k]

    def lora_deltas(self, k):
        return None if self.lora is None else self.lora[k - 1]

    def grams(self, k, weight_names, samples, normalize):
        # Identity Grams unless given: every input direction weighs the same (MERA's case).
        gram = torch.eye(3) if self.gram_values is None else self.gram_values[k - 1]
        return {name: gram for name in weight_names}


def state(weight, embed_rows, connector):
    return {KEY: weight, EMBED: embed_rows, CONNECTOR: connector}


def sequential_history(merge_name: str, stages: int = 3, seed: int = 0, **options):
    """Build stages by running the merge itself after each one, as the trainer does."""
    generator = torch.Generator().manual_seed(seed)
    merge = build_merge({"method": merge_name, **options})
    theta = state(
        torch.randn(4, 3, generator=generator), torch.randn(5, 2, generator=generator), torch.zeros(2)
    )
    starts, vanillas, updates = [], [], []
    for k in range(1, stages + 1):
        # add_modality: one more embedding row; this is θₖ,start
        start = dict(theta)
        start[EMBED] = torch.cat([theta[EMBED], torch.randn(1, 2, generator=generator)])
        tau = {
            KEY: torch.randn(4, 3, generator=generator),
            EMBED: torch.randn(start[EMBED].shape, generator=generator),
        }
        vanilla = {
            KEY: start[KEY] + tau[KEY],
            EMBED: start[EMBED] + tau[EMBED],
            CONNECTOR: torch.full((2,), float(k)),
        }
        starts.append(start)
        vanillas.append(vanilla)
        updates.append(tau)
        history = History(starts, vanillas)
        theta = vanilla if merge.skips(k) else merge(history)
    return theta, starts, vanillas, updates


def test_registered_merges_are_the_documented_ones():
    assert set(MERGES.names()) >= {
        "none", "mera", "task_arithmetic", "magnitude_prune", "ties", "dare_linear", "dare_ties", "lpm"
    }  # fmt: skip


def test_mera_is_the_paper_merge_and_skips_stage_one():
    theta, starts, vanillas, _ = sequential_history("mera")
    merge = build_merge("mera")
    assert merge.skips(1) and not merge.skips(2)
    expected = mera_merge_state_dict(starts[2], vanillas[2], 3)
    assert all(torch.equal(theta[k], expected[k]) for k in expected)


def test_task_arithmetic_with_mera_weights_is_mera_unrolled():
    """θ₀ + Σₖ τₖ/k: MERA's running average written over the stage updates."""
    mera, *_ = sequential_history("mera")
    ta, starts, vanillas, updates = sequential_history("task_arithmetic", weights="mera")
    torch.testing.assert_close(ta[KEY], mera[KEY], rtol=0, atol=1e-6)
    # by hand on θ₀'s block of the embedding; the rows added later come from θ₃,vanilla
    theta0 = starts[0][EMBED]
    rows = theta0.shape[0]
    by_hand = theta0 + sum(u[EMBED][:rows] / k for k, u in enumerate(updates, start=1))
    torch.testing.assert_close(ta[EMBED][:rows], by_hand, rtol=0, atol=1e-6)
    assert torch.equal(ta[EMBED][rows:], vanillas[2][EMBED][rows:])
    assert torch.equal(ta[CONNECTOR], vanillas[2][CONNECTOR])  # connectors are never merged


def test_ties_equals_peft_ties_over_the_stage_updates():
    theta, starts, vanillas, updates = sequential_history("ties", density=0.5)
    # The last merge combined τ₁ … τ₃ of its own history: recompute them from starts and vanillas.
    taus = [vanillas[k][KEY] - starts[k][KEY] for k in range(3)]
    expected = starts[0][KEY] + merge_utils.ties(torch.stack(taus), torch.ones(3), density=0.5)
    torch.testing.assert_close(theta[KEY], expected, rtol=0, atol=1e-6)


def test_dare_is_reproducible_under_the_phase_seed_and_equals_peft():
    taus = None
    torch.manual_seed(7)
    theta, starts, vanillas, _ = sequential_history("dare_linear", stages=1, density=0.5)
    taus = [vanillas[0][KEY] - starts[0][KEY]]
    torch.manual_seed(7)
    expected = starts[0][KEY] + merge_utils.dare_linear(torch.stack(taus), torch.ones(1), density=0.5)
    torch.testing.assert_close(theta[KEY], expected, rtol=0, atol=1e-6)


def test_lora_stages_use_the_exact_stored_product():
    start = state(torch.zeros(4, 3), torch.zeros(5, 2), torch.zeros(2))
    delta = torch.randn(4, 3)
    vanilla = {**start, KEY: start[KEY] + delta + 1e-3}  # the folded weight carries rounding; ΔW does not
    history = History([start], [vanilla], lora=[{KEY: delta}])
    merged = build_merge({"method": "task_arithmetic", "scale": 0.5})(history)
    torch.testing.assert_close(merged[KEY], 0.5 * delta, rtol=0, atol=0)
    assert torch.equal(merged[EMBED], start[EMBED])  # no LoRA on it: τ = 0


def test_lpm_with_identity_grams_is_mera_and_other_grams_weigh_the_stages():
    mera, *_ = sequential_history("mera")
    # The same stages (same draws), each merged by LPM with G = I: MERA's merge at every stage.
    lpm, *_ = sequential_history("lpm", ridge=0.0)
    torch.testing.assert_close(lpm[KEY], mera[KEY], rtol=0, atol=1e-5)
    # A stage whose inputs span only the first input direction decides that column alone.
    g1, g2 = torch.diag(torch.tensor([1.0, 0.0, 0.0])), torch.diag(torch.tensor([0.0, 1.0, 1.0]))
    start = state(torch.zeros(4, 3), torch.zeros(5, 2), torch.zeros(2))
    d1, d2 = torch.randn(4, 3), torch.randn(4, 3)
    v1 = {**start, KEY: d1}
    s2 = dict(v1)
    v2 = {**s2, KEY: d1 + d2}
    merged = build_merge({"method": "lpm", "ridge": 0.0})(History([start, s2], [v1, v2], grams=[g1, g2]))
    # Column 0 only stage 1 saw: its ΔW₁ = d1; columns 1, 2 only stage 2 saw: ΔW₁ + d2.
    torch.testing.assert_close(merged[KEY][:, 0], d1[:, 0], rtol=0, atol=1e-5)
    torch.testing.assert_close(merged[KEY][:, 1:], (d1 + d2)[:, 1:], rtol=0, atol=1e-5)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("tie", "methods: 'X': merge: unknown merge 'tie'"),
        ({"method": "task_arithmetic", "density": 0.5}, "takes no density"),
        ({"method": "ties"}, "needs a density"),
        ({"method": "ties", "density": 0.5, "weights": "harmonic"}, "weights must be one of"),
        ({"method": "none", "density": 0.5}, "takes no options"),
        ({"method": "lpm", "gram_samples": 0}, "gram_samples must be a positive int"),
        ({"density": 0.5}, "a merge name or"),
    ],
)
def test_bad_merge_specs_name_the_field(spec, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        build_merge(spec, where="methods: 'X': merge")


def test_a_curriculum_with_a_bad_merge_fails_when_read():
    from hf_mera.continual.curriculum import load_run_config

    with pytest.raises(ValueError, match="methods: 'Bad': merge: unknown merge 'tie'"):
        load_run_config("quickstart", ["--methods", "[{name: Bad, type: mera, merge: tie}]"])
    run = load_run_config(
        "quickstart", ["--methods", "[{name: T, type: mera, merge: {method: ties, density: 0.3}}]"]
    )
    assert run.methods[0].merge == {"method": "ties", "density": 0.3}
