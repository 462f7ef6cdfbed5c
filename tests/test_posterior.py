"""The exact masked posterior against independent brute force (conftest.Reference).

Brute force enumerates all V**L sequences, computes q(x) from the tables directly and conditions
on the revealed tokens; the package's forward-backward must agree to 1e-12 (floats) or to 1e-15
relative (exact rationals).
"""

from __future__ import annotations

import itertools
import math
import subprocess
import sys
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from mdm_exact import (
    HMM,
    MASK,
    ArgumentError,
    ArgumentTypeError,
    IntervalParity,
    Language,
    in_support,
    log_prob,
    posterior,
    posterior_marginals,
    preset,
)
from mdm_exact.posterior import HMMArrays, IntervalParityArrays, NGramArrays, _chain
from mdm_exact.testing import hmms, interval_parity, masked_sequences, ngrams

MAX_CELLS = 729
"""Largest V**L enumerated per hypothesis example."""


def max_length(vocab_size: int) -> int:
    return int(math.log(MAX_CELLS) / math.log(vocab_size) + 1e-9)


def assert_matches_brute_force(ref, language, x, joint) -> None:
    """posterior, log_prob and in_support of every row of ``x`` against enumeration."""
    post = posterior(language, x)
    lp = log_prob(language, x)
    sup = in_support(language, x)
    assert post.marginals.shape == (*x.shape, language.vocab_size)
    for b, row in enumerate(x):
        evidence, marg = ref.condition(joint, row)
        if marg is None:
            assert not post.valid[b]
            assert post.log_evidence[b] == -np.inf
            assert np.isnan(post.marginals[b]).all()
            assert lp[b] == -np.inf
            assert not sup[b]
        else:
            assert post.valid[b]
            assert sup[b]
            np.testing.assert_allclose(post.marginals[b], marg, rtol=0, atol=1e-12)
            np.testing.assert_allclose(post.log_evidence[b], math.log(evidence), rtol=0,
                                       atol=1e-12)
            np.testing.assert_allclose(lp[b], math.log(evidence), rtol=0, atol=1e-12)


# ------------------------------------------------------------------ property tests vs brute force


@given(st.data())
def test_ngram_posterior_matches_enumeration(ref, data):
    """n-grams of order 2-4 with zeros: marginals, log-evidence, log_prob, in_support."""
    language = data.draw(ngrams(order=st.integers(2, 4), vocab_size=st.integers(2, 3)))
    length = data.draw(st.integers(1, max_length(language.vocab_size)))
    x = data.draw(masked_sequences(language, length))
    assert_matches_brute_force(ref, language, x, ref.joint(language, length))


@given(st.data())
def test_hmm_posterior_matches_enumeration(ref, data):
    """HMMs with zeros in the initial, transition and emission tables."""
    language = data.draw(hmms(num_states=st.integers(1, 4), vocab_size=st.integers(2, 3)))
    length = data.draw(st.integers(1, max_length(language.vocab_size)))
    x = data.draw(masked_sequences(language, length))
    assert_matches_brute_force(ref, language, x, ref.joint(language, length))


_PARITY_JOINTS: dict[tuple[int, int], np.ndarray] = {}


def parity_joint(ref, interval: int, length: int) -> np.ndarray:
    """Brute-force joint of Example C.7, cached: the same few (l, L) recur in every example."""
    if (interval, length) not in _PARITY_JOINTS:
        _PARITY_JOINTS[interval, length] = ref.joint(IntervalParity(interval), length)
    return _PARITY_JOINTS[interval, length]


@given(st.data())
def test_interval_parity_posterior_matches_enumeration(ref, data):
    """Example C.7 with l = 2, 3, 4 (closed form per interval) against the pair-bit rule."""
    language = data.draw(interval_parity(st.integers(2, 4)))
    interval = language.interval
    length = data.draw(st.sampled_from({2: [2, 4, 6], 3: [3, 6], 4: [4]}[interval]))
    x = data.draw(masked_sequences(language, length))
    assert_matches_brute_force(ref, language, x, parity_joint(ref, interval, length))


@pytest.mark.parametrize("name", ["bigram", "trigram", "zero_hmm", "sparse_hmm", "parity3"])
def test_every_partial_sequence_matches_enumeration(ref, request, name):
    """Exhaustive: every row in {MASK, 0..V-1}^L, for fixed languages covering the n-gram chain,
    the dense and the sparse HMM kernels and the interval-parity closed form."""
    language = request.getfixturevalue(name)
    length = 3 if name == "parity3" else 4
    v = language.vocab_size
    x = np.array(list(itertools.product(range(MASK, v), repeat=length)))
    joint = ref.joint(language, length)
    assert_matches_brute_force(ref, language, x, joint)
    valid = np.array([ref.condition(joint, row)[1] is not None for row in x])
    assert valid.any() and not valid.all()


def test_fixtures_exercise_both_hmm_kernels(zero_hmm, sparse_hmm):
    assert _chain(zero_hmm.chain_arrays).dense.shape == (3, 3)
    assert _chain(sparse_hmm.chain_arrays).dense.shape == (0, 0)


@pytest.mark.parametrize("implementation", ["auto", "sparse", "dense"])
@pytest.mark.parametrize("name", ["bigram", "trigram", "zero_hmm", "sparse_hmm", "parity3"])
def test_chain_arrays_alone_match_enumeration(ref, request, name, implementation):
    """The engine run on the arrays a language hands it (no language object), with every
    implementation (an n-gram's dense HMM view included), on every partial sequence."""
    language = request.getfixturevalue(name)
    length = 3 if name == "parity3" else 4
    x = np.array(list(itertools.product(range(MASK, language.vocab_size), repeat=length)))
    arrays = language.chain_arrays
    assert type(arrays) is {"bigram": NGramArrays, "trigram": NGramArrays,
                            "parity3": IntervalParityArrays}.get(name, HMMArrays)
    joint = ref.joint(language, length)
    assert_matches_brute_force(ref, arrays, x, joint)
    post = posterior(arrays, x, implementation=implementation)
    for b, row in enumerate(x):
        marg = ref.condition(joint, row)[1]
        assert post.valid[b] == (marg is not None)
        if marg is not None:
            np.testing.assert_allclose(post.marginals[b], marg, rtol=0, atol=1e-12)


class _CycleLanguage(Language):
    """A language known to the engine only through ``as_hmm`` (the default ``chain_arrays``):
    a deterministic cycle 0 -> 1 -> 2 -> 0 over 3 tokens, started uniformly."""

    kind = "cycle"
    vocab_size = 3
    sample = joint = entropy = to_dict = None

    def as_hmm(self) -> HMM:
        return HMM(np.full(3, 1 / 3), np.roll(np.eye(3), 1, axis=1), np.eye(3))


class _Handle:
    """Not a Language at all: the engine reads any object's ``chain_arrays``."""

    def __init__(self, arrays):
        self.chain_arrays = arrays


def test_any_object_handing_chain_arrays_is_a_language(bigram):
    cycle = _CycleLanguage()
    assert isinstance(cycle.chain_arrays, HMMArrays)
    assert cycle.chain_arrays is cycle.chain_arrays  # built once
    post = posterior(cycle, [[MASK, 2, MASK]])
    np.testing.assert_array_equal(post.marginals[0], [[0, 1, 0], [0, 0, 1], [1, 0, 0]])
    assert post.log_evidence[0] == pytest.approx(math.log(1 / 3), abs=1e-15)
    assert log_prob(cycle, [[0, 2, MASK]])[0] == -np.inf
    x = np.array([[0, MASK, 1], [MASK, MASK, 2]])
    for source in (_Handle(bigram.chain_arrays), bigram.chain_arrays):
        np.testing.assert_array_equal(log_prob(source, x), log_prob(bigram, x))
        np.testing.assert_array_equal(in_support(source, x), in_support(bigram, x))


def test_chain_arrays_are_validated():
    with pytest.raises(ArgumentError, match=r"^transition is not stochastic: row \(1,\)"):
        HMMArrays([1.0, 0.0], [[1.0, 0.0], [0.5, 0.6]], [[1.0], [1.0]])
    with pytest.raises(ArgumentError, match=r"^emission must have shape \(K, V\)"):
        HMMArrays([1.0], [[1.0]], [1.0])
    with pytest.raises(ArgumentError, match=r"^initial has a negative entry"):
        NGramArrays([1.5, -0.5], [[0.5, 0.5], [0.5, 0.5]])
    with pytest.raises(ArgumentError, match=r"^transition must have shape \(V,\)\*n"):
        NGramArrays([1.0], [1.0])
    with pytest.raises(ArgumentError, match=r"^initial must have shape \(V,\)\*\(n-1\)"):
        NGramArrays([[0.5, 0.5]], [[0.5, 0.5], [0.5, 0.5]])
    with pytest.raises(ArgumentError, match="interval must be <= 16"):
        IntervalParityArrays(17)
    arrays = NGramArrays([0.5, 0.5], [[0.5, 0.5], [0.5, 0.5]])
    assert not arrays.transition.flags.writeable and arrays.order == 2


def test_implementation_is_checked_for_every_language(parity3, bigram):
    for language in (parity3, bigram):
        with pytest.raises(ArgumentError, match="implementation must be one of"):
            posterior(language, [[MASK, MASK, MASK]], implementation="fast")


# ------------------------------------------------------------------------- exact rationals


def dyadic_languages() -> st.SearchStrategy:
    return st.one_of(
        ngrams(order=st.integers(2, 3), vocab_size=st.integers(2, 3), dyadic=True),
        hmms(num_states=st.integers(1, 3), vocab_size=st.integers(2, 3), dyadic=True),
    )


def assert_close_to_fraction(value: float, exact: Fraction, rel: float = 1e-15) -> None:
    if exact == 0:
        assert value == 0
    else:
        assert abs(value - float(exact)) <= rel * abs(float(exact)), (value, exact)


@given(st.data())
def test_marginals_equal_exact_rationals(ref, data):
    """Tables of multiples of 1/64 (exact in float): conditional marginals computed in
    ``Fraction`` arithmetic agree with the float result to 1e-15 relative; exact zeros are 0."""
    language = data.draw(dyadic_languages())
    length = data.draw(st.integers(1, 4))
    x = data.draw(masked_sequences(language, length, arbitrary_tokens=False))
    joint = ref.joint(language, length, exact=True)
    assert sum(joint.ravel()) == 1
    post = posterior(language, x)
    for b, row in enumerate(x):
        evidence, marg = ref.condition(joint, row)
        assert post.valid[b]
        for j in range(length):
            for v in range(language.vocab_size):
                assert_close_to_fraction(post.marginals[b, j, v], marg[j, v])
        assert math.isclose(log_prob(language, row), math.log(evidence), rel_tol=0,
                            abs_tol=1e-14)


@pytest.mark.parametrize("interval", [3, 4])
def test_interval_parity_marginals_are_exact_dyadics(ref, interval):
    """Example C.7: every conditional marginal is 0 or a power of 1/2, reproduced exactly."""
    language = IntervalParity(interval)
    rng = np.random.default_rng(interval)
    x = language.sample(50, interval, rng)
    x[rng.random(x.shape) < 0.5] = MASK
    joint = ref.joint(language, interval, exact=True)
    marg = posterior_marginals(language, x)
    for b, row in enumerate(x):
        evidence, exact = ref.condition(joint, row)
        assert marg[b].tolist() == [[float(f) for f in r] for r in exact]
        assert log_prob(language, row) == pytest.approx(math.log(float(evidence)), rel=1e-15)


# --------------------------------------------------------------------------- support tests


def test_in_support_is_exact_where_the_probability_underflows():
    """L = 5000 on a Markov chain: q(x) ~ 1e-9000 underflows as a float product, log_prob stays
    exact (scaling) and in_support is True; one forbidden transition makes it False/-inf."""
    transition = np.array([[0.5, 0.5, 0.0], [0.001, 0.0, 0.999], [1.0, 0.0, 0.0]])
    language = HMM([1.0, 0.0, 0.0], transition, np.eye(3))
    x = np.tile([0, 1], 2500)
    expected = math.fsum([math.log(0.5), math.log(0.001)] * 2499 + [math.log(0.5)])
    assert np.prod(transition[x[:-1], x[1:]]) == 0.0
    assert in_support(language, x)
    assert log_prob(language, x) == pytest.approx(expected, rel=1e-12)
    bad = x.copy()
    bad[4001] = 2  # follows x[4000] = 0, and 0 -> 2 is forbidden
    assert not in_support(language, bad)
    assert log_prob(language, bad) == -np.inf
    masked = x.copy()
    masked[::7] = MASK
    assert in_support(language, masked)
    assert np.isfinite(log_prob(language, masked))


def test_in_support_survives_a_single_step_underflow():
    """A revealed token whose only explanation costs 1e-200 (transition) * 1e-200 (emission):
    the scaled float forward underflows within one step, the Boolean semiring does not."""
    tiny = 1e-200
    language = HMM(
        [1.0, 0.0],
        [[1.0 - tiny, tiny], [1.0, 0.0]],
        [[1.0, 0.0, 0.0], [0.0, tiny, 1.0 - tiny]],
    )
    x = np.zeros(5000, dtype=np.int64)
    x[[1000, 2500, 4999]] = 1
    assert in_support(language, x)
    impossible = x.copy()
    impossible[1001] = 2  # state 1 always returns to state 0, which only emits token 0
    assert not in_support(language, impossible)
    assert log_prob(language, impossible) == -np.inf


# ------------------------------------------------------------------------- long sequences


@pytest.mark.parametrize("name", ["hmm", "2-gram", "3-gram"])
def test_length_100000_half_masked(name):
    """Scaling keeps L = 100000 finite: rows of marginals sum to 1 within 1e-12, log_prob is
    finite and equals the posterior's log-evidence."""
    language = preset(name)
    rng = np.random.default_rng(7)
    x = np.repeat(language.sample(1, 100_000, rng), 2, axis=0)  # sampling is the slow part
    x[rng.random(x.shape) < 0.5] = MASK
    post = posterior(language, x)
    assert post.valid.all()
    assert np.isfinite(post.marginals).all()
    np.testing.assert_allclose(post.marginals.sum(axis=-1), 1.0, rtol=0, atol=1e-12)
    revealed = x >= 0
    assert (post.marginals[revealed, x[revealed]] == 1.0).all()
    lp = log_prob(language, x)
    assert np.isfinite(lp).all()
    np.testing.assert_allclose(lp, post.log_evidence, rtol=1e-12)
    assert in_support(language, x).all()


# --------------------------------------------------------------------------------- API


def test_impossible_rows_raise_in_marginals_but_not_in_posterior(bigram):
    # token 1 is never followed by 0 or 1 in the bigram fixture; token 1 never starts
    x = np.array([[0, MASK, 2], [1, MASK, MASK], [0, 1, 0], [MASK, MASK, MASK]])
    post = posterior(bigram, x)
    assert post.valid.tolist() == [True, False, False, True]
    assert np.isnan(post.marginals[[1, 2]]).all()
    assert np.isfinite(post.marginals[[0, 3]]).all()
    with pytest.raises(ValueError, match=r"row\(s\) 1, 2;") as err:
        posterior_marginals(bigram, x)
    assert "\n" not in str(err.value)
    np.testing.assert_array_equal(posterior_marginals(bigram, x[[0, 3]]), post.marginals[[0, 3]])


@pytest.mark.parametrize("name", ["bigram", "zero_hmm", "parity3"])
@pytest.mark.parametrize("where", ["below", "vocab_size", "far"])
def test_tokens_outside_vocabulary_are_refused(request, name, where):
    language = request.getfixturevalue(name)
    bad = {"below": MASK - 1, "vocab_size": language.vocab_size, "far": 99}[where]
    x = np.array([[MASK, 0, MASK], [0, bad, 0]])
    for fn in (posterior, posterior_marginals, log_prob, in_support):
        with pytest.raises(ValueError, match=rf"^x has token {bad} at row 1, position 1") as err:
            fn(language, x)
        assert "\n" not in str(err.value)


def test_non_integer_tokens_are_refused(bigram):
    with pytest.raises(TypeError, match="x must hold integer tokens"):
        posterior(bigram, np.array([[0.5, 1.0]]))
    for fn in (posterior, log_prob, in_support):
        with pytest.raises(ArgumentTypeError, match="^language must be an mdm_exact Language"):
            fn("bigram", np.array([[0, 1]]))


def test_interval_parity_length_must_be_a_multiple(parity3):
    with pytest.raises(ValueError, match="interval=3"):
        posterior(parity3, np.full((1, 4), MASK))


def test_posterior_refuses_memory_above_budget():
    language = preset("hmm")
    with pytest.raises(ValueError, match=r"posterior\(batch=1, length=1000\).*max_bytes"):
        posterior(language, np.full((1, 1000), MASK), max_bytes=1000)


def test_one_dimensional_input_is_one_row(zero_hmm):
    x = np.array([[0, MASK, 2, MASK], [MASK, 1, MASK, MASK]])
    batch = posterior(zero_hmm, x)
    for b in range(2):
        single = posterior(zero_hmm, x[b])
        np.testing.assert_array_equal(single.marginals, batch.marginals[b])
        assert single.log_evidence == batch.log_evidence[b]
        assert log_prob(zero_hmm, x[b]) == pytest.approx(batch.log_evidence[b], abs=1e-12)
        assert bool(in_support(zero_hmm, x[b])) == bool(batch.valid[b])


def test_rows_are_independent_of_their_batch(sparse_hmm):
    rng = np.random.default_rng(3)
    x = sparse_hmm.sample(64, 12, rng)
    x[rng.random(x.shape) < 0.4] = MASK
    full = posterior(sparse_hmm, x)
    for b in (0, 17, 63):
        np.testing.assert_array_equal(posterior(sparse_hmm, x[b : b + 1]).marginals[0],
                                      full.marginals[b])


@pytest.mark.parametrize(
    "code",
    [
        "from mdm_exact import log_prob, posterior",
        "import mdm_exact; mdm_exact.preset('2-gram').log_prob([[0, 1]]); "
        "from mdm_exact import posterior",
        "import mdm_exact.posterior; from mdm_exact import posterior",
    ],
)
def test_public_posterior_is_the_function_whatever_loads_first(code):
    """``posterior`` is both a submodule and a lazily exported function: loading the submodule
    first must not make ``mdm_exact.posterior`` the module."""
    check = (f"{code}; import mdm_exact; "
             "assert callable(posterior) and callable(mdm_exact.posterior)")
    subprocess.run([sys.executable, "-c", check], check=True, capture_output=True)
