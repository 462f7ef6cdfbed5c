"""The sampler's fast path: the exact Oracle of an n-gram or a first-order chain asked only at
the positions a step reveals (``Oracle.marginals_at``, ``mdm_exact.posterior_at``), against brute
force and against the generic whole-row path (same marginals, so the same draws from the same
rng)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from mdm_exact import HMM, MASK, NGram, preset, random_hmm
from mdm_exact.posterior import SQRT_TINY
from mdm_exact.posterior_at import marginals_at, power_table
from mdm_exact.sampling import Oracle, PerturbedOracle, sample
from mdm_exact.schedules import DeterministicPlan, FixedCountPlan, Schedule
from mdm_exact.testing import masked_sequences, ngrams


def whole_rows(oracle: Oracle):
    """The same oracle seen by the sampler as an arbitrary denoiser: whole rows every step."""
    return lambda x: oracle(x)


def fast_path_runs(language, length: int) -> bool:
    """Whether ``marginals_at`` answers for rows of ``length`` tokens (else whole rows)."""
    x = np.full((1, length), MASK)
    return marginals_at(language.chain_arrays, x, np.array([0, 1]), np.array([0])) is not None


@given(data=st.data())
def test_marginals_at_equal_brute_force(data, ref):
    language = data.draw(ngrams(vocab_size=st.integers(2, 3), order=st.integers(2, 3)))
    length = data.draw(st.integers(1, 5))
    x = data.draw(masked_sequences(language, length))
    rows, cols = np.nonzero(x == MASK)
    got = Oracle(language).marginals_at(x, rows, cols)
    joint = ref.joint(language, length)
    for i, (r, c) in enumerate(zip(rows, cols, strict=True)):
        evidence, marg = ref.condition(joint, x[r])
        expected = np.full(language.vocab_size, 1.0 / language.vocab_size) if marg is None \
            else marg[c]
        np.testing.assert_allclose(got[i], expected, rtol=0, atol=1e-12)


@given(data=st.data())
def test_marginals_at_equal_the_full_posterior(data):
    language = data.draw(ngrams(vocab_size=st.integers(2, 4), order=st.integers(2, 4)))
    length = data.draw(st.integers(1, 40))
    x = data.draw(masked_sequences(language, length))
    rows, cols = np.nonzero(x == MASK)
    oracle = Oracle(language)
    np.testing.assert_allclose(oracle.marginals_at(x, rows, cols), oracle(x)[rows, cols],
                               rtol=0, atol=1e-12)


@pytest.mark.parametrize("name", ["2-gram", "3-gram"])
@pytest.mark.parametrize("plan", [Schedule.linear(16), Schedule.cosine(7), FixedCountPlan([5] * 12),
                                  DeterministicPlan.left_to_right(60)])
def test_fast_and_generic_sampler_draw_the_same_tokens(name, plan):
    language = preset(name)
    oracle = Oracle(language)
    assert fast_path_runs(language, 60)
    fast = sample(language, plan, 60, 150, rng=np.random.default_rng(7))
    generic = sample(language, plan, 60, 150, denoiser=whole_rows(oracle),
                     rng=np.random.default_rng(7))
    np.testing.assert_array_equal(fast.tokens, generic.tokens)
    np.testing.assert_array_equal(fast.reveal_step, generic.reveal_step)


@given(language=ngrams(vocab_size=st.integers(2, 4), order=st.integers(2, 3)),
       seed=st.integers(0, 2**32 - 1))
def test_fast_and_generic_sampler_agree_on_random_ngrams_with_zeros(language, seed):
    oracle = Oracle(language)
    fast = sample(language, Schedule.linear(4), 12, 30, rng=seed)
    generic = sample(language, Schedule.linear(4), 12, 30, denoiser=whole_rows(oracle),
                     rng=seed)
    np.testing.assert_array_equal(fast.tokens, generic.tokens)


def test_rows_off_the_support_get_uniform_marginals():
    # Token 1 can never follow token 0: the row (0, 1, MASK, ...) is impossible.
    transition = np.array([[1.0, 0.0], [0.5, 0.5]])
    language = NGram(2, np.array([0.5, 0.5]), transition)
    x = np.array([[0, 1, MASK, MASK], [0, MASK, MASK, 1]])
    marg, valid, trouble = marginals_at(language.chain_arrays, x, np.array([0, 2, 4]),
                                        np.array([2, 3, 1, 2]))
    np.testing.assert_array_equal(valid, [False, False])
    np.testing.assert_array_equal(marg, np.full((4, 2), 0.5))
    assert not trouble.any()


def test_rows_near_the_float_range_are_redone_by_the_full_posterior():
    # A state of initial probability 1e-75 makes the smallest message times the smallest power
    # fall below TINY: such rows are flagged and recomputed, and still equal the posterior.
    initial = np.array([[1 - 1e-75, 1e-75], [0.0, 0.0]])
    transition = np.full((2, 2, 2), 0.5)
    language = NGram(3, initial, transition)
    x = np.array([[0, MASK, MASK, 1, MASK], [MASK] * 5])
    rows, cols = np.nonzero(x == MASK)
    ptr = np.searchsorted(rows, np.arange(3))
    _, valid, trouble = marginals_at(language.chain_arrays, x, ptr, cols)
    assert valid.all() and trouble[0]
    oracle = Oracle(language)
    np.testing.assert_allclose(oracle.marginals_at(x, rows, cols), oracle(x)[rows, cols],
                               rtol=0, atol=1e-15)


def test_tables_that_cannot_hold_exact_zeros_are_refused():
    # P^g entries of 1e-120 are below POWER_FLOOR: no table, the whole-row path is used.
    transition = np.full((2, 2, 2), 0.5)
    transition[0, 0] = [1 - 1e-120, 1e-120]
    language = NGram(3, np.array([[1.0, 0.0], [0.0, 0.0]]), transition)
    assert power_table(language.chain_arrays, 8) is None
    x = np.array([[MASK, MASK, 1, MASK]])
    rows, cols = np.nonzero(x == MASK)
    assert marginals_at(language.chain_arrays, x, np.array([0, 3]), cols) is None
    oracle = Oracle(language)
    np.testing.assert_array_equal(oracle.marginals_at(x, rows, cols), oracle(x)[rows, cols])


def test_first_order_chains_answer_tiny_powers_exactly(ref):
    # P^g entries near 1e-120 (refused by the old whole-table floor) are trusted by the
    # first-order engine (>= SQRT_TINY, zeros exact): answered with no trouble, exactly.
    transition = np.array([[1 - 1e-120, 1e-120], [0.5, 0.5]])
    language = NGram(2, np.array([1.0, 0.0]), transition)
    x = np.array([[MASK, MASK, 1, MASK], [0, MASK, MASK, MASK], [MASK, 1, 1, MASK]])
    rows, cols = np.nonzero(x == MASK)
    ptr = np.searchsorted(rows, np.arange(4))
    marg, valid, trouble = marginals_at(language.chain_arrays, x, ptr, cols)
    assert valid.all() and not trouble.any()
    joint = ref.joint(language, 4, exact=True)
    for i, (r, c) in enumerate(zip(rows, cols, strict=True)):
        expected = ref.condition(joint, x[r])[1][c].astype(np.float64)
        np.testing.assert_allclose(marg[i], expected, rtol=1e-14, atol=0)


def test_first_order_rows_reading_untrusted_powers_are_redone():
    # P[0, 1] = 1e-150 < SQRT_TINY: rows whose gaps read it are trouble (whatever positions
    # are requested) and are recomputed by the full posterior; the others are answered.
    assert 1e-150 < SQRT_TINY
    transition = np.array([[1 - 1e-150, 1e-150], [0.5, 0.5]])
    language = NGram(2, np.array([0.5, 0.5]), transition)
    x = np.array([[0, MASK, MASK, 1], [1, MASK, MASK, MASK], [0, MASK, MASK, 1]])
    ptr = np.array([0, 1, 2, 3])
    cols = np.array([1, 2, 2])
    _, valid, trouble = marginals_at(language.chain_arrays, x, ptr, cols)
    np.testing.assert_array_equal(trouble, [True, False, True])
    assert valid[1]
    oracle = Oracle(language)
    rows, cols = np.nonzero(x == MASK)
    np.testing.assert_array_equal(oracle.marginals_at(x, rows, cols), oracle(x)[rows, cols])


def test_permutation_hmms_take_the_fast_path():
    # An HMM whose emission is a permutation is the token chain of its states: first-order.
    base = random_hmm(3, 3, randomness=1.0, threshold=0.2, seed=4)
    emission = np.eye(3)[[2, 0, 1]]
    language = HMM(base.initial, base.transition, emission)
    assert fast_path_runs(language, 12)
    oracle = Oracle(language)
    fast = sample(language, Schedule.linear(4), 12, 60, rng=3)
    generic = sample(language, Schedule.linear(4), 12, 60, denoiser=whole_rows(oracle), rng=3)
    np.testing.assert_array_equal(fast.tokens, generic.tokens)


class CountingOracle(Oracle):
    """An Oracle subclass: the sampler must treat it as any denoiser (whole rows)."""

    def __init__(self, language):
        super().__init__(language)
        self.shapes = []

    def __call__(self, x):
        self.shapes.append(x.shape)
        return super().__call__(x)


def test_other_denoisers_see_whole_rows():
    language = preset("2-gram")
    counting = CountingOracle(language)
    sample(language, Schedule.linear(4), 10, 5, denoiser=counting, rng=0)
    assert counting.shapes and all(shape[1] == 10 for shape in counting.shapes)
    perturbed = PerturbedOracle(language, 0.1)
    first = sample(language, Schedule.linear(4), 10, 20, denoiser=perturbed, rng=1)
    again = sample(language, Schedule.linear(4), 10, 20, denoiser=lambda x: perturbed(x), rng=1)
    np.testing.assert_array_equal(first.tokens, again.tokens)


def test_hmms_keep_the_whole_row_oracle():
    language = random_hmm(3, 2, randomness=1.0, threshold=0.2, seed=0)
    assert not fast_path_runs(language, 6)
    oracle = Oracle(language)
    fast = sample(language, Schedule.linear(3), 6, 40, rng=2)
    generic = sample(language, Schedule.linear(3), 6, 40, denoiser=whole_rows(oracle), rng=2)
    np.testing.assert_array_equal(fast.tokens, generic.tokens)
