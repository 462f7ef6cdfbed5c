"""Lemma A.1, Definitions B.4-B.7 and Lemma B.9's E[D_tau] (docs/theory/lemma-a1.md,
docs/theory/definitions-b4-b7.md, docs/theory/lemma-b9.md)."""

from __future__ import annotations

import itertools
import math
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mdm_exact.errors import BudgetError
from mdm_exact.policies import Threshold
from mdm_exact.schedules import DeterministicPlan, FixedCountPlan, Schedule
from mdm_exact.theory import (
    dependencies,
    expected_dependencies,
    multi_token_kl_bound,
    product_kl,
    separators,
    total_correlation,
    total_dependencies,
)

# ------------------------------------------------------------------------------ brute force


def brute_counts(steps, n):
    """Definitions B.4/B.5 literally: build the greedy left-aligned separators of every run of
    T_<k, cut [L] at them and count the intervals holding positions of tau_k."""
    steps = [int(s) for s in steps]
    length = len(steps)
    s_out, excess, hit = [], [], []
    for k in range(max(steps) + 1):
        revealed = [s < k for s in steps]
        seps = []
        j = 0
        while j < length:
            if not revealed[j]:
                j += 1
                continue
            end = j
            while end + 1 < length and revealed[end + 1]:
                end += 1
            a = j
            while a + n - 2 <= end:
                seps.append(set(range(a, a + n - 1)))
                a += n - 1
            j = end + 1
        s_out.append(len(seps))
        cut = set().union(*seps) if seps else set()
        ends = {max(sep) for sep in seps}
        intervals: list[list[int]] = [[]]
        for j in range(length):
            if j in cut:
                if j in ends:
                    intervals.append([])
                continue
            intervals[-1].append(j)
        tau = {j for j in range(length) if steps[j] == k}
        groups = [len(tau & set(i)) for i in intervals]
        hit.append(sum(g > 0 for g in groups))
        excess.append(sum(max(g - 1, 0) for g in groups))
    return np.array(s_out), np.array(excess), np.array(hit)


steps_arrays = st.integers(1, 24).flatmap(
    lambda length: st.lists(st.integers(0, 5), min_size=length, max_size=length)
)


# ------------------------------------------------------------------------------ B.4 - B.7


def test_example_b6():
    # L = 10, n = 3, T_<k = {2, 5, 6, 9}, tau_k = {3, 8, 10} (1-based); the rest comes later.
    steps = np.full(10, 2)
    steps[[1, 4, 5, 8]] = 0
    steps[[2, 7, 9]] = 1
    assert separators(steps, 3)[0, 1] == 1
    assert dependencies(steps, 3, reading="intervals")[0, 1] == 2
    assert dependencies(steps, 3)[0, 1] == 1


@given(steps_arrays, st.integers(2, 5))
def test_counts_match_the_definitions(steps, n):
    s, excess, hit = brute_counts(steps, n)
    arr = np.array(steps)
    assert np.array_equal(separators(arr, n)[0], s)
    assert np.array_equal(dependencies(arr, n)[0], excess)
    assert np.array_equal(dependencies(arr, n, reading="intervals")[0], hit)
    assert total_dependencies(arr, n)[0] == excess.sum()


@given(steps_arrays, st.integers(2, 4))
def test_excess_is_size_minus_intervals(steps, n):
    arr = np.array(steps)
    sizes = np.bincount(arr)
    d = dependencies(arr, n)[0]
    d_hash = dependencies(arr, n, reading="intervals")[0]
    assert np.array_equal(d + d_hash, sizes)
    assert np.all(d >= 0) and np.all(d <= np.maximum(sizes - 1, 0))


def test_separator_count_special_cases():
    # n = 2: every earlier position is a separator, so s_k = |T_<k|.
    rng = np.random.default_rng(0)
    steps = rng.integers(0, 7, size=(5, 40))
    s = separators(steps, 2, num_steps=7)
    expected = np.stack([[np.sum(row < k) for k in range(7)] for row in steps])
    assert np.array_equal(s, expected)
    # the first step has no separators and one interval: D_1 = |tau_1| - 1.
    d = dependencies(steps, 3, num_steps=7)
    assert np.array_equal(d[:, 0], np.maximum((steps == 0).sum(axis=1) - 1, 0))


def test_batched_equals_row_by_row():
    steps = Schedule.linear(9).draw_steps(6, 300, np.random.default_rng(1))
    batch = dependencies(steps, 3, num_steps=9)
    rows = np.concatenate([dependencies(row, 3, num_steps=9) for row in steps])
    assert np.array_equal(batch, rows)
    assert batch.shape == (6, 9)


def test_long_instances_are_feasible():
    # The Lemma B.12 excess checks need L ~ 3e6; one instance runs in well under a second once
    # compiled.
    steps = Schedule.adaptive_ngram(4, 0.05).draw_steps(1, 3_000_000, np.random.default_rng(2))
    d = total_dependencies(steps, 4)
    assert 0.05 < d[0] / 3e6 < 0.065


def test_argument_errors():
    with pytest.raises(ValueError, match="reading"):
        dependencies([0, 1], 2, reading="pairs")
    with pytest.raises(ValueError, match="n must be >= 2"):
        separators([0, 1], 1)
    with pytest.raises(ValueError, match="steps must be >= 0"):
        separators([0, -1], 2)
    with pytest.raises(TypeError, match="integer"):
        separators([0.5, 1.0], 2)
    with pytest.raises(ValueError, match="num_steps"):
        separators([0, 3], 2, num_steps=2)


# ------------------------------------------------------------------------------ Lemma A.1


def _random_joint(rng, v, k, zeros):
    q = rng.exponential(size=(v,) * k) ** rng.uniform(1, 4)
    if zeros:
        q[rng.random(q.shape) < 0.3] = 0.0
        q.flat[rng.integers(q.size)] += 1.0
    return q / q.sum()


@settings(max_examples=60)
@given(st.sampled_from([(2, 2), (2, 4), (3, 3), (4, 4)]), st.integers(0, 2**32 - 1),
       st.booleans())
def test_lemma_a1_identity_and_bound(shape, seed, zeros):
    v, k = shape
    rng = np.random.default_rng(seed)
    q = _random_joint(rng, v, k, zeros)
    factors = rng.dirichlet(np.ones(v), size=k)
    res = product_kl(q, factors)
    assert res.identity_error < 1e-12
    assert 0 <= res.total_correlation <= (k - 1) * math.log(v) + 1e-12
    assert res.kl <= multi_token_kl_bound(k, v, res.marginal_kl) + 1e-12
    assert res.kl <= multi_token_kl_bound(k, v, res.marginal_kl.max()) + 1e-12


@pytest.mark.parametrize("v,k", [(2, 2), (2, 4), (3, 3), (4, 4)])
def test_lemma_a1_is_tight_for_copies(v, k):
    # X_1 = ... = X_k uniform: TC = (k-1) log V, the bound's ratio is 1 (docs/theory/lemma-a1.md).
    q = np.zeros((v,) * k)
    for a in range(v):
        q[(a,) * k] = 1.0 / v
    assert total_correlation(q) == pytest.approx((k - 1) * math.log(v), rel=1e-12)
    res = product_kl(q, np.full((k, v), 1.0 / v))
    assert res.kl == pytest.approx(multi_token_kl_bound(k, v, 0.0), rel=1e-12)


def test_product_kl_infinite_off_support():
    q = np.array([[0.5, 0.0], [0.0, 0.5]])
    assert product_kl(q, [[1.0, 0.0], [0.5, 0.5]]).kl == math.inf


@pytest.mark.parametrize("k,v", [(2, 2), (3, 2), (4, 3), (5, 7)])
def test_lemma_a1_bound_closed_form(k, v):
    """(k - 1) log|V| + sum_i KL(q_i || p_i) term by term, not k max_i KL(q_i || p_i)."""
    kls = np.random.default_rng(k * v).exponential(size=k)
    kls[0] = 0.0  # unequal terms: the sum is far below k * max
    want = math.fsum([(k - 1) * math.log(v), *kls.tolist()])
    assert multi_token_kl_bound(k, v, kls) == pytest.approx(want, rel=1e-14)
    assert multi_token_kl_bound(k, v, list(kls)) == pytest.approx(want, rel=1e-14)
    delta = float(kls.max())
    assert multi_token_kl_bound(k, v, delta) == pytest.approx((k - 1) * math.log(v) + k * delta,
                                                              rel=1e-14)
    assert multi_token_kl_bound(1, v, 0.25) == 0.25  # one token: no (k - 1) log|V| term


@pytest.mark.parametrize("v,k", [(2, 2), (2, 4), (3, 3), (4, 2)])
def test_lemma_a1_is_attained_by_copies_with_any_factors(v, k):
    """X_1 = ... = X_k uniform on V with arbitrary factors p_i: KL(q || prod p_i) =
    -log V - (1/V) sum_a sum_i log p_i(a), which is exactly (k - 1) log V + sum_i KL(q_i || p_i)."""
    rng = np.random.default_rng(10 * v + k)
    factors = rng.dirichlet(np.ones(v), size=k)
    q = np.zeros((v,) * k)
    for a in range(v):
        q[(a,) * k] = 1.0 / v
    direct = -math.log(v) - sum(math.log(factors[i, a]) for i in range(k) for a in range(v)) / v
    marginal = [sum(math.log(1.0 / (v * factors[i, a])) for a in range(v)) / v for i in range(k)]
    res = product_kl(q, factors)
    assert res.kl == pytest.approx(direct, rel=1e-12)
    np.testing.assert_allclose(res.marginal_kl, marginal, rtol=1e-12, atol=1e-15)
    assert res.total_correlation == pytest.approx((k - 1) * math.log(v), rel=1e-12)
    assert multi_token_kl_bound(k, v, res.marginal_kl) == pytest.approx(direct, rel=1e-12)


# ------------------------------------------------------------------------------ Lemma B.9


def brute_expected_excess(masses, length: int, n: int) -> Fraction:
    """E_tau[D_tau] in exact rationals: every step assignment, weight prod_k (p^(k))^|tau_k|,
    D_tau from the literal definitions (``brute_counts``)."""
    ps = [Fraction(m) for m in masses]
    total = Fraction(0)
    for steps in itertools.product(range(len(ps)), repeat=length):
        weight = math.prod((ps[s] for s in steps), start=Fraction(1))
        if weight:
            total += weight * int(brute_counts(steps, n)[1].sum())
    return total


@pytest.mark.parametrize("masses,length,n", [
    ([1.0], 4, 2),
    ([0.5, 0.5], 5, 2),
    ([0.25, 0.5, 0.25], 4, 3),
    ([0.125, 0.0, 0.375, 0.5], 5, 3),
    ([0.5, 0.25, 0.25], 6, 4),
])
def test_expected_dependencies_of_a_schedule_by_enumeration(masses, length, n):
    want = brute_expected_excess(masses, length, n)
    got = expected_dependencies(Schedule(masses), length, n)
    assert got.exact and got.low == got.value == got.high
    assert got.value == pytest.approx(float(want), rel=1e-13, abs=1e-15)


@pytest.mark.parametrize("counts,n", [([2, 2], 2), ([1, 3, 0, 2], 3), ([3, 1, 1], 2), ([5], 3)])
def test_expected_dependencies_of_fixed_counts_by_enumeration(counts, n):
    """Every distinct arrangement of the multiset of steps is equally likely."""
    labels = np.repeat(np.arange(len(counts)), counts).tolist()
    arrangements = set(itertools.permutations(labels))
    want = Fraction(sum(int(brute_counts(a, n)[1].sum()) for a in arrangements),
                    len(arrangements))
    assert expected_dependencies(FixedCountPlan(counts), sum(counts), n).value == pytest.approx(
        float(want), rel=1e-13)


def test_expected_dependencies_of_a_deterministic_plan():
    # one instance: tau_1 = {0, 1, 4}, tau_2 = {2, 3}; n = 2 (every earlier position separates)
    plan = DeterministicPlan([[0, 1, 4], [2, 3]])
    assert expected_dependencies(plan, 5, 2).value == int(brute_counts([0, 0, 1, 1, 0], 2)[1].sum())
    assert expected_dependencies(plan, 5, 2).value == 3


def test_expected_dependencies_monte_carlo_brackets_the_exact_value():
    schedule = Schedule([0.2, 0.3, 0.5])
    want = float(brute_expected_excess([0.2, 0.3, 0.5], 6, 2))
    est = expected_dependencies(schedule, 6, 2, method="monte-carlo", num_samples=4000, seed=1,
                                confidence=0.999)
    assert est.method == "monte-carlo t" and est.num_samples == 4000
    assert est.low < want < est.high and est.high - est.low < 0.2
    again = expected_dependencies(schedule, 6, 2, method="monte-carlo", num_samples=4000, seed=1,
                                  confidence=0.999)
    assert again == est
    # a deterministic plan has no spread
    plan = DeterministicPlan([[0, 1, 4], [2, 3]])
    fixed = expected_dependencies(plan, 5, 2, method="monte-carlo", num_samples=5, seed=0)
    assert fixed.low == fixed.value == fixed.high == 3


def test_expected_dependencies_refuses_large_enumerations():
    with pytest.raises(BudgetError, match=r"about 10\^[0-9.]+ instances.*monte-carlo"):
        expected_dependencies(Schedule.linear(4), 40, 2)
    with pytest.raises(BudgetError, match=r"about 10\^"):
        expected_dependencies(FixedCountPlan.even(10**6, 10), 10**6, 2)
    with pytest.raises(ValueError, match="method"):
        expected_dependencies(Schedule.linear(2), 3, 2, method="mc")
    with pytest.raises(ValueError, match="order"):
        expected_dependencies(Schedule.linear(2), 3, 1)
    with pytest.raises(ValueError, match="length"):
        expected_dependencies(FixedCountPlan([1, 1]), 3, 2)
    with pytest.raises(TypeError, match="schedule"):
        expected_dependencies(Threshold(0.9), 3, 2)
    with pytest.raises(ValueError, match="num_samples"):
        expected_dependencies(Schedule.linear(2), 3, 2, method="monte-carlo", num_samples=1)
