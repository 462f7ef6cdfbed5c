"""Hypothesis strategies for property tests of code built on mdm_exact.

Needs the ``test`` extra (``pip install mdm_exact[test]``); the package itself never imports this
module. Every table is drawn by ``hypothesis.extra.numpy.arrays`` (integer weights, normalised
row by row) and every sequence from arrays of uniforms and bits, never from a random seed: a
failing example shrinks entry by entry (towards uniform rows, the first possible token, nothing
masked) and is reported as the arrays themselves. Tables may hold exact zeros (in the initial
distribution, the transition and the emission) but are always valid: every row is non-negative
and sums to 1.

Typical use::

    import numpy as np
    from hypothesis import given, strategies as st

    import mdm_exact
    from mdm_exact.testing import masked_sequences, small_languages

    @given(st.data())
    def test_marginals_are_distributions(data):
        language = data.draw(small_languages())
        x = data.draw(masked_sequences(language, 6, arbitrary_tokens=False))
        marginals = mdm_exact.posterior_marginals(language, x)
        assert np.allclose(marginals.sum(axis=-1), 1.0)
"""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from hypothesis.strategies import SearchStrategy

from ._utils import MASK
from .errors import ArgumentError
from .languages import HMM, IntervalParity, Language, NGram
from .schedules import DeterministicPlan, FixedCountPlan, Schedule

__all__ = [
    "alpha_grids",
    "eps_learnings",
    "hmms",
    "interval_parity",
    "masked_sequences",
    "ngrams",
    "plans",
    "schedules",
    "small_languages",
]

_ORDERS = st.integers(2, 4)
_VOCAB_SIZES = st.integers(2, 3)
_NUM_STATES = st.integers(1, 4)
_INTERVALS = st.integers(2, 4)
_BATCHES = st.integers(1, 4)
_STEPS = st.integers(1, 5)
MAX_WEIGHT = 64
"""Tables are integer weights in [0, 64] (in [1, 64] without zeros) divided by their row sums."""
DYADIC_DENOMINATOR = 64
"""With ``dyadic=True`` every table entry is a multiple of 1/64 (of 1/2^k >= 1/width for rows
wider than 64 entries)."""
_UNIFORMS = st.floats(0.0, 1.0, exclude_max=True)


def _strategy(value) -> SearchStrategy:
    return value if isinstance(value, SearchStrategy) else st.just(value)


def _weights(draw, shape: tuple[int, ...], zeros: bool) -> np.ndarray:
    """Integer weights of ``shape``; with ``zeros`` a table is either dense or sparse (about half
    its weights 0), so that supports come out small and irregular. A row of zeros reads as
    uniform (all weights 1)."""
    positive = st.integers(1, MAX_WEIGHT)
    elements = st.one_of(st.just(0), positive) if zeros and draw(st.booleans()) else positive
    w = draw(arrays(np.int64, shape, elements=elements))
    return np.where(w.sum(axis=-1, keepdims=True) == 0, 1, w)


def _apportion(w: np.ndarray, units: np.ndarray) -> np.ndarray:
    """Integer units per entry summing to ``units`` (one per row, keepdims) along the last axis,
    proportional to the weights ``w`` by largest remainders (ties to the lower index); a zero
    weight gets 0 units."""
    total = w.sum(axis=-1, keepdims=True)
    base, rest = np.divmod(w * units, total)
    missing = units - base.sum(axis=-1, keepdims=True)
    order = np.argsort(-rest, axis=-1, kind="stable")
    rank = np.argsort(order, axis=-1, kind="stable")
    # sum(rest) = missing * total and every rest < total, so the top ``missing`` ranks all have
    # rest > 0: zero weights stay at 0.
    return base + (rank < missing)


def _stochastic(draw, shape: tuple[int, ...], zeros: bool, dyadic: bool) -> np.ndarray:
    """Stochastic rows along the last axis of ``shape``, each with a positive entry (all
    positive without ``zeros``); an entry is 0 exactly where its weight is. Dyadic rows are
    integer units over a power-of-two denominator (one unit for every positive weight, the rest
    shared in proportion), exact in binary floating point and summing to exactly 1."""
    w = _weights(draw, shape, zeros)
    if not dyadic:
        return w / w.sum(axis=-1, keepdims=True)
    denominator = max(DYADIC_DENOMINATOR, 1 << (shape[-1] - 1).bit_length())
    positive = w > 0
    spare = denominator - positive.sum(axis=-1, keepdims=True)
    return (positive + _apportion(w, spare)) / denominator


@st.composite
def ngrams(
    draw,
    order: int | SearchStrategy[int] = _ORDERS,
    vocab_size: int | SearchStrategy[int] = _VOCAB_SIZES,
    zeros: bool = True,
    dyadic: bool = False,
) -> NGram:
    """Random ``NGram`` languages with ``order`` and ``vocab_size`` drawn (or fixed).

    With ``zeros=True`` both the initial joint of the first n-1 tokens and the transition rows
    may contain exact zeros. With ``dyadic=True`` every entry is a multiple of 1/64, so the float
    tables equal their rational values and rows sum to exactly 1: results can be compared with
    ``fractions.Fraction`` arithmetic.

    Example::

        @given(ngrams(order=3, vocab_size=st.integers(2, 4)))
        def test_entropy_is_non_negative(language):
            assert language.entropy(5).value >= 0
    """
    n = draw(_strategy(order))
    v = draw(_strategy(vocab_size))
    initial = _stochastic(draw, (v ** (n - 1),), zeros, dyadic).reshape((v,) * (n - 1))
    transition = _stochastic(draw, (v,) * n, zeros, dyadic)
    return NGram(n, initial, transition, {"strategy": "ngrams"})


@st.composite
def hmms(
    draw,
    num_states: int | SearchStrategy[int] = _NUM_STATES,
    vocab_size: int | SearchStrategy[int] = _VOCAB_SIZES,
    zeros: bool = True,
    dyadic: bool = False,
) -> HMM:
    """Random ``HMM`` languages with ``num_states`` hidden states and ``vocab_size`` tokens.

    With ``zeros=True`` the initial distribution, the transition and the emission may all contain
    exact zeros (rows stay stochastic). ``dyadic=True`` makes every entry a multiple of 1/64, as
    for ``ngrams``.

    Example::

        @given(hmms(num_states=st.integers(2, 6), zeros=False))
        def test_every_sequence_is_possible(language):
            assert language.in_support(language.sample(3, 4, rng=0)).all()
    """
    k = draw(_strategy(num_states))
    v = draw(_strategy(vocab_size))
    return HMM(
        _stochastic(draw, (k,), zeros, dyadic),
        _stochastic(draw, (k, k), zeros, dyadic),
        _stochastic(draw, (k, v), zeros, dyadic),
        {"strategy": "hmms"},
    )


@st.composite
def interval_parity(draw, interval: int | SearchStrategy[int] = _INTERVALS) -> IntervalParity:
    """Example C.7 languages ``IntervalParity(l)`` (vocabulary 2^(l-1)); lengths must be
    multiples of l.

    Example::

        @given(interval_parity())
        def test_entropy(language):
            k = language.interval
            assert language.entropy(2 * k).value == pytest.approx(k * (k - 1) * math.log(2))
    """
    return IntervalParity(draw(_strategy(interval)))


def small_languages(zeros: bool = True) -> SearchStrategy[Language]:
    """Any of the three kinds, kept tiny (vocabulary at most 4, at most 4 hidden states or a
    context of at most 2 tokens) so that enumerating all V**L sequences stays cheap for L <= 6.
    Interval-parity languages have interval 2 or 3, so use lengths that are multiples of both
    (or read ``language.interval``).

    Example::

        @given(st.data())
        def test_joint_sums_to_one(data):
            language = data.draw(small_languages())
            assert language.joint(6).sum() == pytest.approx(1.0)
    """
    return st.one_of(
        ngrams(order=st.integers(2, 3), vocab_size=st.integers(2, 3), zeros=zeros),
        hmms(num_states=st.integers(1, 4), vocab_size=st.integers(2, 3), zeros=zeros),
        interval_parity(interval=st.integers(2, 3)),
    )


def _inverse_cdf(p: np.ndarray, u: np.ndarray) -> np.ndarray:
    """(n,) index drawn from each row of ``p`` (n, width) by the uniform ``u`` (n,) in [0, 1):
    the first index whose cumulative sum exceeds u * total, never an entry of probability 0
    (equal cumulative sums are skipped; rounding at the top falls back to the last positive
    entry)."""
    cdf = np.cumsum(p, axis=1)
    idx = (cdf <= (u * cdf[:, -1])[:, None]).sum(axis=1)
    last = p.shape[1] - 1 - np.argmax(p[:, ::-1] > 0, axis=1)
    return np.minimum(idx, last)


def _support_sequences(draw, language: Language, num: int, length: int) -> np.ndarray:
    """(num, length) sequences of positive probability, drawn from arrays of uniforms (pair bits
    for Example C.7) by inverse CDFs along the chain, so that they shrink towards the first
    possible token at every position."""
    if isinstance(language, IntervalParity):
        ell = language.interval
        if length % ell:
            raise ArgumentError(f"length must be a multiple of interval={ell}, got {length}")
        bits = draw(arrays(np.bool_, (num, length // ell, language.num_pairs)))
        return language.tokens_from_pair_bits(bits).reshape(num, length)
    if isinstance(language, NGram):
        v, c = language.vocab_size, language.order - 1
        u = draw(arrays(np.float64, (num, max(length, c) - c + 1), elements=_UNIFORMS))
        context = _inverse_cdf(np.broadcast_to(language.initial.ravel(), (num, v**c)), u[:, 0])
        out = np.empty((num, max(length, c)), dtype=np.int64)
        out[:, :c] = np.stack(np.unravel_index(context, (v,) * c), axis=1)
        flat = language.transition.reshape(v**c, v)
        for j in range(c, length):
            out[:, j] = _inverse_cdf(flat[context], u[:, j - c + 1])
            context = (context * v + out[:, j]) % v**c
        return out[:, :length]
    hmm = language.as_hmm()
    u = draw(arrays(np.float64, (num, length, 2), elements=_UNIFORMS))
    out = np.empty((num, length), dtype=np.int64)
    state = _inverse_cdf(np.broadcast_to(hmm.initial, (num, hmm.num_states)), u[:, 0, 0])
    for j in range(length):
        if j:
            state = _inverse_cdf(hmm.transition[state], u[:, j, 0])
        out[:, j] = _inverse_cdf(hmm.emission[state], u[:, j, 1])
    return out


@st.composite
def masked_sequences(
    draw,
    language: Language,
    length: int | SearchStrategy[int],
    batch: int | SearchStrategy[int] = _BATCHES,
    arbitrary_tokens: bool = True,
) -> np.ndarray:
    """(batch, length) int64 arrays with ``MASK = -1`` at some positions.

    Each row starts from a sequence of positive probability under ``language`` (drawn from
    arrays of uniforms along its chain), so its revealed tokens are in the support; then none,
    all or an array-drawn subset of the positions is masked. With ``arbitrary_tokens=True``
    some examples also get revealed tokens replaced by arbitrary ones (``MASK`` included), which
    may be impossible under q: use ``posterior`` (which reports ``valid``) rather than
    ``posterior_marginals`` on them.

    Example::

        @given(st.data())
        def test_revealed_positions_are_one_hot(data):
            language = data.draw(ngrams())
            x = data.draw(masked_sequences(language, 5))
            post = mdm_exact.posterior(language, x)
            rows, cols = np.nonzero((x >= 0) & post.valid[:, None])
            assert (post.marginals[rows, cols, x[rows, cols]] == 1).all()
    """
    n = draw(_strategy(batch))
    size = draw(_strategy(length))
    x = _support_sequences(draw, language, n, size)
    # "none" first: it is both the first choice and the one with no further draws, so the
    # shrinker (which prefers fewer and smaller choices) settles on unmasked support sequences
    # whichever path it starts from.
    pattern = draw(st.sampled_from(("none", "some", "all")))
    if pattern == "some":
        x[draw(arrays(np.bool_, x.shape))] = MASK
    elif pattern == "all":
        x[:] = MASK
    if arbitrary_tokens and draw(st.booleans()):
        changed = draw(arrays(np.bool_, x.shape))
        tokens = st.integers(MASK, language.vocab_size - 1)
        x[changed] = draw(arrays(np.int64, int(changed.sum()), elements=tokens))
    return x


@st.composite
def alpha_grids(draw, num_steps: int | SearchStrategy[int] = _STEPS) -> np.ndarray:
    """(N+1,) masking-schedule grids alpha(t_0..t_N): non-increasing from 1 to 0, possibly with
    flat stretches (empty steps). Feed them to ``Schedule.from_alpha``."""
    n = draw(_strategy(num_steps))
    inner = draw(arrays(np.float64, n - 1, elements=st.floats(0.0, 1.0, allow_subnormal=False)))
    cuts = np.sort(inner)[::-1]
    if n > 2 and draw(st.booleans()):
        i = draw(st.integers(1, n - 2))
        cuts[i] = cuts[i - 1]  # a flat stretch: an empty step
    return np.concatenate([[1.0], cuts, [0.0]])


@st.composite
def schedules(
    draw, num_steps: int | SearchStrategy[int] = _STEPS, zeros: bool = True
) -> Schedule:
    """``Schedule`` objects of ``num_steps`` steps whose generation-order masses p^(k) are an
    array of integer weights divided by their sum; with ``zeros=True`` some steps (never all)
    may have mass exactly 0, the empty steps a sampler skips.

    Example::

        @given(schedules(num_steps=st.integers(1, 8)))
        def test_expected_nfe_is_at_most_the_nonempty_steps(schedule):
            assert schedule.expected_nfe(4) <= np.count_nonzero(schedule.masses)
    """
    n = draw(_strategy(num_steps))
    return Schedule(_stochastic(draw, (n,), zeros, dyadic=False), "schedules")


@st.composite
def plans(draw, length: int, num_steps: int | SearchStrategy[int] = _STEPS):
    """Any plan for sequences of ``length``: a schedule family (linear, cosine, polynomial), a
    random alpha grid, random step masses (``schedules``), a fixed-count plan or a deterministic
    plan with random (possibly empty) position sets.

    Example::

        @given(st.data())
        def test_kl_below_jensen(data):
            language = data.draw(small_languages())
            plan = data.draw(plans(4))
            m = mdm_exact.exact_metrics(language, plan, 4)
            assert m.kl <= m.jensen_bound + 1e-12
    """
    n = draw(_strategy(num_steps))
    kind = draw(st.sampled_from(
        ("linear", "cosine", "polynomial", "alpha", "masses", "fixed", "sets")))
    if kind == "linear":
        return Schedule.linear(n)
    if kind == "cosine":
        return Schedule.cosine(n)
    if kind == "polynomial":
        return Schedule.polynomial(n, draw(st.sampled_from((0.5, 2.0, 3.0))))
    if kind == "alpha":
        return Schedule.from_alpha(draw(alpha_grids(n)))
    if kind == "masses":
        return draw(schedules(n))
    if kind == "fixed":
        return FixedCountPlan.even(length, n)
    steps = draw(arrays(np.int64, length, elements=st.integers(0, n - 1)))
    return DeterministicPlan([np.flatnonzero(steps == k).tolist() for k in range(n)])


def eps_learnings(max_value: float = 0.5) -> SearchStrategy[float]:
    """Learning errors for ``PerturbedOracle`` (nats): 0 (the oracle) or a value in
    [1e-4, ``max_value``]."""
    return st.one_of(st.just(0.0), st.floats(1e-4, max_value, allow_nan=False))
