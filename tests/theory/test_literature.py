"""Other papers' bounds (docs/theory/literature.md): Li & Cai and the factorization floor."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mdm_exact import NGram
from mdm_exact.schedules import DeterministicPlan, FixedCountPlan, Schedule
from mdm_exact.testing import hmms, ngrams
from mdm_exact.theory import (
    expected_factorization_floor,
    factorization_floor,
    li_cai_bound,
    mutual_information_profile,
    total_correlation,
)

small_languages = st.one_of(
    ngrams(order=st.integers(2, 3), vocab_size=st.integers(2, 3)),
    hmms(num_states=st.integers(1, 3), vocab_size=st.integers(2, 3)),
)


def _entropy(p):
    p = np.asarray(p).ravel()
    p = p[p > 0]
    return float(-(p * np.log(p)).sum())


@settings(max_examples=20)
@given(language=small_languages, length=st.integers(1, 5))
def test_exact_profile_against_reference(language, length, ref):
    joint = ref.joint(language, length)
    prof = mutual_information_profile(language, length, method="exact")
    assert prof.method == "exact" and prof.total.exact
    axes = tuple(range(length))
    for i in axes:
        h_i = _entropy(joint.sum(axis=axes[:i] + axes[i + 1:]))
        h_cond = _entropy(joint) - _entropy(joint.sum(axis=i))
        assert prof.mutual_information[i] == pytest.approx(h_i - h_cond, abs=1e-12)
    assert np.all(prof.mutual_information >= -1e-12)


def test_monte_carlo_profile_agrees_with_exact():
    language = NGram(2, [0.6, 0.4], [[0.9, 0.1], [0.3, 0.7]])
    exact = mutual_information_profile(language, 8, method="exact")
    mc = mutual_information_profile(language, 8, method="monte-carlo", num_samples=3000,
                                    seed=0, confidence=0.999)
    assert mc.method == "monte-carlo"
    np.testing.assert_allclose(mc.marginal_entropy, exact.marginal_entropy, atol=1e-12)
    assert mc.total.contains(exact.total.value)
    np.testing.assert_allclose(mc.conditional_entropy, exact.conditional_entropy, atol=0.05)


def test_li_cai_formula():
    assert li_cai_bound(2.0, 4, 1) == 0.0
    assert li_cai_bound(2.0, 4, 2, 0.1) == pytest.approx(0.5 + 0.1)
    assert li_cai_bound(2.0, 4, 3) == pytest.approx(3 / 4 * 2.0)
    assert li_cai_bound(2.0, 4, 4) == pytest.approx(3 / 4 * 2.0)


@settings(max_examples=25)
@given(language=small_languages, length=st.integers(2, 5), data=st.data())
def test_li_cai_bound_holds(language, length, data, ref):
    """[recalled] E_tau KL(q || p_tau) <= (2^ceil(log2 s_max) - 1)/L sum_i I(X_i; X_-i) for
    uniformly random orders of a fixed-count plan, oracle denoiser (eps_train = 0)."""
    num_steps = data.draw(st.integers(1, length))
    plan = FixedCountPlan.even(length, num_steps)
    joint = ref.joint(language, length)
    floor = expected_factorization_floor(joint, plan)
    total = mutual_information_profile(language, length, method="exact").total.value
    assert floor <= li_cai_bound(total, length, int(plan.counts.max())) + 1e-10


def test_li_cai_is_tight_for_two_tokens():
    language = NGram(2, [0.5, 0.5], [[0.8, 0.2], [0.1, 0.9]])
    joint = language.joint(2)
    floor = expected_factorization_floor(joint, FixedCountPlan([2]))
    total = mutual_information_profile(language, 2).total.value
    assert floor == pytest.approx(li_cai_bound(total, 2, 2), rel=1e-12)


def test_factorization_floor_special_cases():
    language = NGram(2, [0.5, 0.5], [[0.99, 0.01], [0.01, 0.99]])
    joint = language.joint(6)
    # all at once: the total correlation; one at a time: zero
    assert factorization_floor(joint, np.zeros(6, int)) == pytest.approx(total_correlation(joint))
    assert factorization_floor(joint, np.arange(6)) == pytest.approx(0.0, abs=1e-12)
    assert expected_factorization_floor(joint, DeterministicPlan.left_to_right(6)) == (
        pytest.approx(0.0, abs=1e-12))


@settings(max_examples=10)
@given(language=ngrams(order=st.just(2), vocab_size=st.just(2)), length=st.integers(2, 4))
def test_expected_floor_matches_brute_force(language, length, ref, brute):
    masses = np.array([0.6, 0.4])
    joint = ref.joint(language, length)
    oracle = brute.oracle(joint)
    expected = sum(
        w * brute.kl(joint, brute.instance_law(joint.shape, steps, oracle))
        for steps, w in brute.schedule_instances(masses, length)
    )
    assert expected_factorization_floor(joint, Schedule(masses)) == pytest.approx(expected,
                                                                                  abs=1e-12)


def test_refuses_huge_enumerations():
    joint = np.full((2,) * 12, 2.0**-12)
    with pytest.raises(ValueError, match="instances"):
        expected_factorization_floor(joint, Schedule.linear(3))
    with pytest.raises(ValueError, match="method"):
        mutual_information_profile(NGram(2, [1.0, 0.0], [[0.5, 0.5], [0.5, 0.5]]), 3,
                                   method="fast")
    assert math.isfinite(li_cai_bound(0.0, 3, 3))
