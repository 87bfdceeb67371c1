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
    θₖ₋₁ (the previous merge, given) and trains an increment; stage k adds one embedding row."""

    def __init__(self, starts, vanillas, lora=None, grams=None, seed=0):
        self.starts, self.vanillas, self.lora, self.gram_values = starts, vanillas, lora, grams
        self.seed = seed
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


FAMILY = ["task_arithmetic", "magnitude_prune", "ties", "dare_linear", "dare_ties"]
DENSITY = {"magnitude_prune": 0.5, "ties": 0.5, "dare_linear": 0.5, "dare_ties": 0.5}


def test_task_arithmetic_mean_is_meras_merge():
    """τₖ = θₖ,vanilla − θ₀: θ₀ + mean τₖ = mean θₖ,vanilla, MERA's running mean, at every stage
    (on θ₀'s weights).

    Tolerance: the two are the same real number computed in different orders in float32 (MERA: i
    interpolations; task arithmetic: i subtractions, a weighted sum, one addition), each operation
    rounding by at most 2⁻²⁴ relative to operands of size ≤ max|θ|: at most ~4i roundings, bounded by
    16 · 2⁻²⁴ · max|θ| for i ≤ 4 (measured: ≤ 1 · 2⁻²⁴ · max|θ|). An increment-based τₖ (the old
    definition) misses by O(1): it shrinks stage 1's update to 1/i.
    """
    for stages in (2, 3, 4):
        mera, *_ = sequential_history("mera", stages=stages)
        ta, starts, vanillas, _ = sequential_history("task_arithmetic", stages=stages, weights="mean")
        atol = 16 * 2**-24 * max(t.abs().max().item() for v in vanillas for t in v.values())
        # θ₀'s block; the placeholder rows added after stage 1 are not in θ₀ (no task vector): the
        # task-vector merges take them from θᵢ,vanilla, MERA averages them since their stage.
        rows = starts[0][EMBED].shape[0]
        torch.testing.assert_close(ta[KEY], mera[KEY], rtol=0, atol=atol)
        torch.testing.assert_close(ta[EMBED][:rows], mera[EMBED][:rows], rtol=0, atol=atol)
        # by hand on θ₀'s block of the embedding; the rows added later come from θᵢ,vanilla
        by_hand = torch.stack([v[EMBED][:rows] for v in vanillas]).mean(0)
        torch.testing.assert_close(ta[EMBED][:rows], by_hand, rtol=0, atol=atol)
        assert torch.equal(ta[EMBED][rows:], vanillas[-1][EMBED][rows:])
        assert torch.equal(ta[CONNECTOR], vanillas[-1][CONNECTOR])  # connectors are never merged


def test_ties_equals_peft_ties_over_the_task_vectors_from_theta0():
    theta, starts, vanillas, _ = sequential_history("ties", density=0.5)
    # The last merge combined τ₁ … τ₃ of its own history: τₖ = θₖ,vanilla − θ₀.
    taus = [vanillas[k][KEY] - starts[0][KEY] for k in range(3)]
    expected = starts[0][KEY] + merge_utils.ties(torch.stack(taus), torch.ones(3), density=0.5)
    torch.testing.assert_close(theta[KEY], expected, rtol=0, atol=1e-6)


@pytest.mark.parametrize("name", [*FAMILY, "lpm", "mera"])
def test_every_merge_starts_from_the_stage_one_expert(name):
    """Stage 1 has no merge phase: the method's stage-1 checkpoint is the expert's checkpoint itself."""
    from types import SimpleNamespace

    from trainers.merge import merge_phase

    merge = build_merge({"method": name, **({"density": DENSITY[name]} if name in DENSITY else {})})
    assert merge.skips(1) and not merge.skips(2)
    expert = object()  # θ₁,vanilla's checkpoint
    method = SimpleNamespace(stage_merge=merge)
    update = SimpleNamespace(start=object(), vanilla=expert)
    assert merge_phase(method, SimpleNamespace(index=1), [update]) is expert


@pytest.mark.filterwarnings("ignore:The density 1.0:UserWarning")  # peft: density 1 prunes nothing
def test_ties_at_density_one_on_one_stage_is_the_expert():
    """θ₀ + TIES(τ₁) at density 1 = θ₀ + τ₁ = θ₁,vanilla, up to one float32 rounding of θ₀ + (θ₁ − θ₀)
    (≤ 2⁻²³ · max(|θ₀|, |θ₁|))."""
    theta, starts, vanillas, _ = sequential_history("ties", stages=1, density=1.0)
    assert theta is vanillas[0]  # the trainer's path: stage 1 skips the merge
    merged = build_merge({"method": "ties", "density": 1.0})(History(starts, vanillas))
    for key in (KEY, EMBED):
        atol = 2**-23 * max(starts[0][key].abs().max().item(), vanillas[0][key].abs().max().item())
        torch.testing.assert_close(merged[key], vanillas[0][key], rtol=0, atol=atol)


def test_merge_phase_descriptions_name_the_new_protocol_except_meras():
    """Task-vector members and LPM changed what they compute (#17): their phase descriptions say so, so
    no old checkpoint is reused. MERA's description is byte for byte what its cached phases have."""
    from types import SimpleNamespace

    from trainers.merge import merge_phase

    seen = []
    ws = SimpleNamespace(run_file_phase=lambda name, parent, description, write: seen.append(description))
    update = SimpleNamespace(start=SimpleNamespace(key="s2"), vanilla=SimpleNamespace(key="v2"))
    first = SimpleNamespace(start=SimpleNamespace(key="s1"), vanilla=SimpleNamespace(key="v1"))
    stage = SimpleNamespace(index=2, modality="audio")
    for spec in ("mera", {"method": "ties", "density": 0.2}, "lpm", {"method": "dare_ties", "density": 0.5}):
        merge_phase(
            SimpleNamespace(stage_merge=build_merge(spec), ws=ws, track=lambda c: c), stage, [first, update]
        )
    assert seen[0] == {"phase": "merge", "schedule": "mera", "stage": 2, "previous": "s2"}
    assert all(d["protocol"] == "theta0-task-vectors" for d in seen[1:])


def _dare_history(stages, seed=0, order=(KEY, EMBED)):
    """τ₁ random, θₖ,vanilla = θ₀ for k ≥ 2 (τₖ = 0, which DARE keeps 0): with weights 1 the merge is
    θ₀ + DARE(τ₁), whose nonzero entries are τ₁'s mask. `order`: the keys' order in every state dict."""
    g = torch.Generator().manual_seed(3)
    theta0 = {KEY: torch.randn(16, 3, generator=g), EMBED: torch.randn(5, 2, generator=g)}
    tau1 = {KEY: torch.randn(16, 3, generator=g), EMBED: torch.randn(5, 2, generator=g)}
    reorder = lambda d: {k: d[k] for k in order}  # noqa: E731
    starts = [reorder(theta0)] * stages
    vanillas = [reorder({k: theta0[k] + tau1[k] for k in theta0})] + [reorder(theta0)] * (stages - 1)
    return History(starts, vanillas, seed=seed), theta0, tau1


@pytest.mark.parametrize("name", ["dare_linear", "dare_ties"])
def test_dare_draws_one_mask_per_stage_update_and_keeps_it(name):
    from hf_mera.merging.task_vector import dare_mask_seed, random_prune

    merge = build_merge({"method": name, "density": 0.5})

    def kept(stages, **kwargs):
        history, theta0, tau1 = _dare_history(stages, **kwargs)
        merged = merge(history)
        return {k: merged[k] - theta0[k] for k in theta0}, tau1

    at2, tau1 = kept(2)
    at3, _ = kept(3)
    reordered, _ = kept(2, order=(EMBED, KEY))
    for key in (KEY, EMBED):
        mask = at2[key] != 0
        assert 0 < mask.sum() < mask.numel()
        assert torch.equal(at3[key] != 0, mask) and torch.equal(reordered[key] != 0, mask)
        assert torch.equal(at3[key], at2[key]) and torch.equal(reordered[key], at2[key])
        # the mask is τ₁'s own, from the stream (seed, k = 1, key), and the arithmetic is peft's
        seed = dare_mask_seed(0, 1, key)
        ours = random_prune(tau1[key], 0.5, torch.Generator().manual_seed(seed))
        torch.manual_seed(seed)
        assert torch.equal(ours, merge_utils.prune(tau1[key], 0.5, method="random", rescale=True))
        torch.testing.assert_close(at2[key], ours, rtol=0, atol=1e-6)
    other_seed, _ = kept(2, seed=1)
    assert not torch.equal(other_seed[KEY] != 0, at2[KEY] != 0)
    # sha256 of (seed, "dare-mask", k, key), not Python's salted hash(): the same in every process
    assert dare_mask_seed(0, 1, "w") == dare_mask_seed(0, 1, "w") != dare_mask_seed(0, 2, "w")
    assert dare_mask_seed(0, 1, "w") == 4203675889


def test_dare_needs_the_run_seed():
    history, *_ = _dare_history(2, seed=None)
    with pytest.raises(ValueError, match="needs a seed"):
        build_merge({"method": "dare_linear", "density": 0.5})(history)


def test_lora_stages_use_the_exact_stored_product():
    """τₖ = (θₖ,start − θ₀) + ΔWₖ: the folded θₖ,vanilla's rounding (here + 1e-3) never enters."""
    theta0 = state(torch.zeros(4, 3), torch.zeros(5, 2), torch.zeros(2))
    d1, d2 = torch.randn(4, 3), torch.randn(4, 3)
    v1 = {**theta0, KEY: theta0[KEY] + d1 + 1e-3}  # the folded weight carries rounding; ΔW does not
    merged = build_merge({"method": "task_arithmetic", "scale": 0.5})(
        History([theta0], [v1], lora=[{KEY: d1}])
    )
    torch.testing.assert_close(merged[KEY], 0.5 * d1, rtol=0, atol=0)
    assert torch.equal(merged[EMBED], theta0[EMBED])  # no LoRA on it: θ₁,vanilla's = θ₀'s
    # stage 2 trained ΔW₂ on θ₂,start = θ₁ (here 0.5 · d1): τ₂ = 0.5 · d1 + d2
    s2 = {**theta0, KEY: 0.5 * d1}
    v2 = {**s2, KEY: s2[KEY] + d2 - 1e-3}
    history = History([theta0, s2], [v1, v2], lora=[{KEY: d1}, {KEY: d2}])
    merged = build_merge({"method": "task_arithmetic", "weights": "mean"})(history)
    torch.testing.assert_close(merged[KEY], (d1 + (0.5 * d1 + d2)) / 2, rtol=0, atol=1e-6)


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
        ({"method": "task_arithmetic", "weights": "mera"}, "MERA's merge is `weights: mean`"),
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
