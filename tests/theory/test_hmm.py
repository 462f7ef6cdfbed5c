"""Lemmas C.1, C.2, Theorem C.3 and Appendix D (their pages under docs/theory/)."""

from __future__ import annotations

import itertools
import math
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mdm_exact.schedules import DeterministicPlan, FixedCountPlan, Schedule
from mdm_exact.testing import hmms, ngrams
from mdm_exact.theory import (
    acceptance_lower_bound,
    collision_max_bound,
    collision_probability,
    collision_union_bound,
    expected_nfe,
    nfe_monte_carlo,
    ser_upper_bound,
)

small_languages = st.one_of(
    ngrams(order=st.integers(2, 3), vocab_size=st.integers(2, 3)),
    hmms(num_states=st.integers(1, 3), vocab_size=st.integers(2, 3)),
)

masses_strategy = st.integers(1, 10).flatmap(
    lambda n: st.lists(st.floats(0.01, 1.0), min_size=n, max_size=n)
).map(lambda w: np.array(w) / np.sum(w))


# ------------------------------------------------------------------------------ Lemma C.1


@pytest.mark.parametrize("family,exact,union", [("linear", 0.1143, 0.1211),
                                                 ("cosine", 0.1391, 0.1494)])
def test_section_10_7_collisions(family, exact, union):
    schedule = Schedule.named(family, 4096)
    p = collision_probability(schedule, 32)
    assert round(p, 4) == exact
    assert round(collision_union_bound(schedule, 32), 4) == union
    assert p <= collision_union_bound(schedule, 32) <= collision_max_bound(schedule, 32)


def test_collision_probability_by_enumeration():
    masses = np.array([0.5, 0.2, 0.3])
    for length in range(1, 5):
        brute = sum(
            math.prod(masses[k] for k in steps)
            for steps in itertools.product(range(3), repeat=length)
            if len(set(steps)) < length
        )
        assert collision_probability(masses, length) == pytest.approx(brute, abs=1e-15)


def _collision_fraction(masses, length: int) -> Fraction:
    """Pr[some step holds two of the L positions], every step assignment in exact rationals."""
    ps = [Fraction(m) for m in masses]
    return sum((math.prod((ps[k] for k in steps), start=Fraction(1))
                for steps in itertools.product(range(len(ps)), repeat=length)
                if len(set(steps)) < length), start=Fraction(0))


@pytest.mark.parametrize("masses", [[0.5, 0.25, 0.25], [0.125, 0.375, 0.0, 0.5], [1.0]])
def test_lemma_c1_closed_forms(masses):
    """Exact value by enumeration; union bound C(L,2) sum p^2 and max form C(L,2) max p written
    out; at L = 2 the union bound is the exact value (one pair)."""
    p = np.array(masses)
    for length in range(1, 6):
        exact_value = float(_collision_fraction(masses, length))
        assert collision_probability(p, length) == pytest.approx(exact_value, rel=1e-13,
                                                                 abs=1e-16)
        pairs = length * (length - 1) // 2
        union = pairs * sum(Fraction(m) ** 2 for m in masses)
        assert collision_union_bound(p, length) == pytest.approx(float(union), rel=1e-15)
        assert collision_max_bound(p, length) == pytest.approx(pairs * max(masses), rel=1e-15)
    assert collision_union_bound(p, 2) == pytest.approx(collision_probability(p, 2), rel=1e-14)


@given(masses_strategy, st.integers(1, 15))
def test_lemma_c1_chain(masses, length):
    p = collision_probability(masses, length)
    assert 0.0 <= p <= collision_union_bound(masses, length) + 1e-12
    assert collision_union_bound(masses, length) <= collision_max_bound(masses, length) + 1e-12


def test_collision_monte_carlo():
    schedule = Schedule.cosine(200)
    steps = schedule.draw_steps(40_000, 12, np.random.default_rng(0))
    freq = np.mean([len(set(r)) < 12 for r in steps])
    se = math.sqrt(freq * (1 - freq) / steps.shape[0])
    assert abs(freq - collision_probability(schedule, 12)) < 5 * se


def test_continuous_schedules_stop_colliding():
    """C.1: a continuous alpha makes Pr[collision] -> 0; a jump in alpha does not (Amb. 14)."""
    smooth = [collision_max_bound(Schedule.cosine(n), 16) for n in (10**3, 10**4, 10**5)]
    assert smooth[0] > smooth[1] > smooth[2] and smooth[2] < 0.01
    jump = [collision_probability(Schedule.loglinear(n, 0.5), 16) for n in (10**3, 10**4)]
    assert min(jump) > 0.99


# ------------------------------------------------------------------------------ Lemma C.2


@settings(max_examples=25)
@given(language=small_languages, length=st.integers(2, 4), seed=st.integers(0, 2**32 - 1),
       lam=st.sampled_from([0.02, 0.1, 0.5]))
def test_lemma_c2_one_token_per_step(language, length, seed, lam, ref, brute):
    """p_acc >= exp(-L eps_learning) when every step reveals one token (any order)."""
    joint = ref.joint(language, length)
    order = np.random.default_rng(seed).permutation(length)
    steps = np.empty(length, dtype=np.int64)
    steps[order] = np.arange(length)
    denoiser = brute.mixed(brute.oracle(joint), lam)
    eps = brute.eps_learning(joint, denoiser)
    law = brute.instance_law(joint.shape, steps, denoiser)
    p_acc = law[joint > 0].sum()
    assert p_acc >= acceptance_lower_bound(length, eps) - 1e-12
    assert acceptance_lower_bound(length, eps) >= 1 - length * eps


# ------------------------------------------------------------------------------ Theorem C.3


@settings(max_examples=15)
@given(language=small_languages, masses=st.sampled_from([[1.0], [0.5, 0.5], [0.2, 0.3, 0.5]]),
       lam=st.sampled_from([0.0, 0.05, 0.3]))
def test_theorem_c3(language, masses, lam, ref, brute):
    """SER <= 1 - (1 - Pr[collision]) exp(-L eps) <= Pr[collision] + 1 - exp(-L eps)."""
    length = 3
    joint = ref.joint(language, length)
    denoiser = brute.mixed(brute.oracle(joint), lam)
    eps = brute.eps_learning(joint, denoiser) if lam else 0.0
    accepted = sum(
        weight * brute.instance_law(joint.shape, steps, denoiser)[joint > 0].sum()
        for steps, weight in brute.schedule_instances(masses, length)
    )
    res = ser_upper_bound(np.array(masses), length, eps)
    assert 1 - accepted <= res.bound + 1e-12
    assert res.bound <= res.paper_bound + 1e-15


@pytest.mark.parametrize("masses,length,eps", [
    ([0.5, 0.25, 0.25], 3, 0.01), ([0.125, 0.375, 0.5], 4, 0.0), ([0.25] * 4, 5, 0.2),
    ([1.0], 2, 0.05),
])
def test_theorem_c3_fields_closed_form(masses, length, eps):
    """``collision`` is the exact Pr[collision] (not its union bound), ``acceptance`` =
    exp(-L eps), ``bound`` = 1 - (1 - collision) acceptance, ``paper_bound`` = collision + 1 -
    acceptance; checked field by field against an enumeration and the formulas written here."""
    collision = float(_collision_fraction(masses, length))
    acceptance = math.exp(-length * eps)
    res = ser_upper_bound(np.array(masses), length, eps)
    assert res.collision == pytest.approx(collision, rel=1e-13)
    if length > 2 and len(masses) > 1:
        assert res.collision < collision_union_bound(np.array(masses), length)
    assert res.acceptance == pytest.approx(acceptance, rel=1e-15)
    assert acceptance_lower_bound(length, eps) == pytest.approx(acceptance, rel=1e-15)
    assert res.bound == pytest.approx(1 - (1 - collision) * acceptance, rel=1e-13)
    assert res.paper_bound == pytest.approx(collision + 1 - acceptance, rel=1e-13)


def test_theorem_c3_delta_condition():
    """eps_learning < delta / (2L) and Pr[collision] <= delta / 2 give SER < delta."""
    length, delta = 32, 0.1
    n = 2
    while collision_probability(Schedule.linear(n), length) > delta / 2:
        n *= 2
    res = ser_upper_bound(Schedule.linear(n), length, 0.999 * delta / (2 * length))
    assert res.bound < delta


# ------------------------------------------------------------------------------ Appendix D


def test_section_10_7_expected_nfe():
    schedule = Schedule.linear(4096)
    value = expected_nfe(schedule, 512)
    assert round(value, 2) == 481.35
    assert value <= min(4096, 512)
    est = nfe_monte_carlo(schedule, 512, num_samples=4000, seed=0, confidence=0.99)
    assert est.contains(value)


@given(masses_strategy, st.integers(1, 40))
def test_expected_nfe_bounded(masses, length):
    value = expected_nfe(Schedule(masses), length)
    assert value <= min(masses.size, length) + 1e-9


def test_expected_nfe_of_other_plans():
    assert expected_nfe(FixedCountPlan([2, 0, 3]), 5) == 2
    assert expected_nfe(DeterministicPlan([[0], [], [1, 2]]), 3) == 2
    with pytest.raises(TypeError, match="schedule must be"):
        expected_nfe([0.5, 0.5], 4)
