"""Mean ± 95 % t interval over seeds and paired differences (issue #17), against hand-computed values
and scipy's own interval."""

import math

import pytest
from scipy import stats

from hf_mera.evaluation.intervals import paired_difference, t_interval


def test_t_interval_matches_hand_computation_and_scipy():
    values = [90.0, 94.0, 101.0]
    got = t_interval(values)
    mean = sum(values) / 3
    s = math.sqrt(sum((v - mean) ** 2 for v in values) / 2)  # sample std, n − 1
    # t_{0.975, 2} = 4.302652729749462 (tables: 4.303)
    assert got.mean == pytest.approx(95.0)
    assert got.half_width == pytest.approx(4.302652729749462 * s / math.sqrt(3), rel=1e-12)
    low, high = stats.t.interval(0.95, df=2, loc=mean, scale=stats.sem(values))
    assert (got.low, got.high) == pytest.approx((low, high), rel=1e-12)
    assert got.n == 3 and got.resolved
    assert str(got) == f"95.00 ± {got.half_width:.2f}"


def test_t_interval_drops_missing_values_and_handles_small_n():
    assert t_interval([None, float("nan")]).n == 0
    assert str(t_interval([])) == "–"
    one = t_interval([3.0, None])
    assert one.n == 1 and one.mean == 3.0 and math.isnan(one.half_width) and not one.resolved
    assert str(one) == "3.00 (1 seed)"
    with pytest.raises(ValueError, match="confidence"):
        t_interval([1.0, 2.0], confidence=1.5)


def test_paired_difference_pairs_by_key_and_cancels_the_shared_swing():
    # Both methods swing by 20 points between seeds, the method is always 2 points below.
    reference = {0: 100.0, 1: 80.0, 2: 90.0, 3: 70.0}
    method = {0: 98.0, 1: 78.5, 2: 87.5, 3: 68.0, 4: 10.0}  # key 4 has no reference: left out
    diff = paired_difference(method, reference)
    assert diff.n == 4
    assert diff.mean == pytest.approx(-2.0)
    assert diff.resolved  # the paired interval settles the sign ...
    separate = (t_interval(list(method.values())[:4]), t_interval(list(reference.values())))
    assert separate[0].high > separate[1].low  # ... which two separate intervals would not


def test_paired_difference_with_zero_inside_is_unresolved():
    diff = paired_difference({0: 1.0, 1: -1.0, 2: 0.5}, {0: 0.0, 1: 0.0, 2: 0.0})
    assert diff.low < 0 < diff.high and not diff.resolved
