"""The public hypothesis strategies of ``mdm_exact.testing`` produce valid inputs, shrink to
small tables (not seeds), and the property users are shown in their docstrings holds."""

from __future__ import annotations

import itertools
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import find, given
from hypothesis import strategies as st

import mdm_exact as me
from mdm_exact.testing import (
    alpha_grids,
    eps_learnings,
    hmms,
    interval_parity,
    masked_sequences,
    ngrams,
    plans,
    schedules,
    small_languages,
)


def tables(language) -> list[np.ndarray]:
    if isinstance(language, me.HMM):
        return [language.initial, language.transition, language.emission]
    return [language.initial.ravel(), language.transition]


@given(alpha_grids())
def test_alpha_grids_are_schedules(grid):
    assert grid[0] == 1 and grid[-1] == 0 and np.all(np.diff(grid) <= 0)
    sched = me.Schedule.from_alpha(grid)
    np.testing.assert_allclose(sched.alphas, grid, atol=1e-12)


@given(st.data())
def test_plans_cover_the_length(data):
    plan = data.draw(plans(5))
    steps = plan.draw_steps(3, 5, 0)
    assert steps.shape == (3, 5) and steps.min() >= 0 and steps.max() < plan.num_steps


@given(st.data())
def test_kl_below_jensen_for_any_plan_and_learning_error(data):
    language = data.draw(small_languages())
    length = 2 * language.interval if isinstance(language, me.IntervalParity) else 3
    plan = data.draw(plans(length))
    eps = data.draw(eps_learnings(0.2))
    den = me.Oracle(language) if eps == 0 else me.PerturbedOracle(language, eps)
    m = me.exact_metrics(language, plan, length, den)
    assert abs(m.total_mass - 1) < 1e-10
    assert m.kl <= m.jensen_bound + 1e-10
    assert -1e-12 <= m.ser <= 1 + 1e-12


# ------------------------------------------------------------------------------- schedules


@given(schedules(num_steps=st.integers(1, 8)))
def test_schedules_are_valid_with_some_step_of_mass(schedule):
    assert isinstance(schedule, me.Schedule) and 1 <= schedule.num_steps <= 8
    assert (schedule.masses >= 0).all() and (schedule.masses > 0).any()
    assert abs(sum(Fraction(m) for m in schedule.masses) - 1) <= 1e-15
    assert schedule.expected_nfe(4) <= np.count_nonzero(schedule.masses) + 1e-12


def test_schedules_reach_empty_steps_and_honour_the_arguments():
    found = find(schedules(6), lambda s: (s.masses == 0).sum() >= 2)
    assert found.num_steps == 6 and found.masses.sum() == pytest.approx(1.0, abs=1e-15)
    dense = find(schedules(st.integers(3, 5), zeros=False), lambda s: True)
    assert dense.num_steps == 3 and (dense.masses > 0).all()
    # Shrinking works on the masses themselves: the simplest schedule is uniform.
    np.testing.assert_array_equal(dense.masses, np.full(3, 1 / 3))


def test_plans_include_drawn_masses():
    found = find(plans(3), lambda p: isinstance(p, me.Schedule) and p.name == "schedules")
    assert found.masses.sum() == pytest.approx(1.0, abs=1e-15)


# ---------------------------------------------------------------------------------- tables


@given(st.one_of(hmms(zeros=False), ngrams(zeros=False)))
def test_tables_without_zeros_are_positive_and_stochastic(language):
    for table in tables(language):
        assert (table > 0).all()
        np.testing.assert_allclose(table.sum(axis=-1), 1.0, rtol=0, atol=1e-15)


@given(st.one_of(hmms(dyadic=True), ngrams(dyadic=True), hmms(dyadic=True, zeros=False)))
def test_dyadic_tables_sum_to_exactly_one(language):
    for table in tables(language):
        assert (table * 64 == np.round(table * 64)).all()
        for row in table.reshape(-1, table.shape[-1]):
            assert sum(Fraction(float(p)) for p in row) == 1


def test_dyadic_rows_without_zeros_keep_every_entry():
    wide = find(hmms(num_states=1, vocab_size=70, zeros=False, dyadic=True), lambda h: True)
    assert (wide.emission > 0).all()
    assert sum(Fraction(float(p)) for p in wide.emission[0]) == 1


def test_tables_shrink_entry_by_entry():
    """The shrunk example of a condition on one entry is the smallest integer weights meeting
    it, every other row uniform: hypothesis works on the tables, not on a seed."""
    found = find(hmms(num_states=2, vocab_size=2, zeros=False),
                 lambda h: h.emission[0, 0] > 0.6)
    np.testing.assert_array_equal(found.emission, [[2 / 3, 1 / 3], [0.5, 0.5]])
    np.testing.assert_array_equal(found.transition, np.full((2, 2), 0.5))
    np.testing.assert_array_equal(found.initial, [0.5, 0.5])
    zero = find(ngrams(order=2, vocab_size=2), lambda g: g.transition[1, 0] == 0)
    np.testing.assert_array_equal(zero.transition, [[0.5, 0.5], [0.0, 1.0]])


# ------------------------------------------------------------------------------- sequences


@given(st.data())
def test_masked_sequences_reveal_only_possible_tokens(data):
    language = data.draw(st.one_of(small_languages(), interval_parity(st.integers(2, 4))))
    length = data.draw(st.sampled_from((language.interval, 2 * language.interval))
                       if isinstance(language, me.IntervalParity) else st.integers(1, 6))
    x = data.draw(masked_sequences(language, length, batch=st.integers(1, 3),
                                   arbitrary_tokens=False))
    assert x.dtype == np.int64 and x.shape[1] == length and 1 <= x.shape[0] <= 3
    assert ((x >= me.MASK) & (x < language.vocab_size)).all()
    # Independent check by enumeration: every row has a completion of positive probability.
    joint = language.joint(length)
    for row in x:
        assert joint[tuple(slice(None) if t < 0 else t for t in row)].sum() > 0


def test_masked_sequences_shrink_to_the_first_possible_tokens(zero_hmm):
    """From uniforms of 0 the chain takes the first state and token of positive probability:
    state 0 emits 0 and moves to state 1, which emits 1 and moves back to state 0."""
    found = find(masked_sequences(zero_hmm, 4, batch=1), lambda x: True)
    np.testing.assert_array_equal(found, [[0, 1, 0, 1]])
    trigram = me.NGram(3, [[0.0, 0.0], [1.0, 0.0]], [[[1, 0], [1, 0]], [[0, 1], [1, 0]]])
    found = find(masked_sequences(trigram, 5, batch=1), lambda x: True)
    np.testing.assert_array_equal(found, [[1, 0, 1, 0, 1]])
    parity = find(masked_sequences(me.IntervalParity(3), 3, batch=1), lambda x: True)
    np.testing.assert_array_equal(parity, [[0, 0, 0]])


def test_masked_sequences_reach_every_pattern(parity3):
    x = find(masked_sequences(parity3, 6, batch=2), lambda x: (x == me.MASK).all())
    assert x.shape == (2, 6)
    find(masked_sequences(parity3, 6), lambda x: not parity3.in_support(x).all())
    for ones in itertools.product((0, 1), repeat=3):
        tokens = parity3.tokens_from_pair_bits(np.array(ones))
        find(masked_sequences(parity3, 3, batch=1, arbitrary_tokens=False),
             lambda x, t=tokens: (x == t).all())


def test_masked_sequences_refuse_lengths_off_the_interval(parity3):
    with pytest.raises(me.ArgumentError, match="length must be a multiple of interval=3"):
        find(masked_sequences(parity3, 4), lambda x: True)
