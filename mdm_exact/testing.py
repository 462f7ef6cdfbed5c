"""Hypothesis strategies for property tests of code built on mdm_exact.

Needs the ``test`` extra (``pip install mdm_exact[test]``); the package itself never imports this
module. Every language strategy draws a seed and builds its tables with
``numpy.random.default_rng(seed)``, so a failing example is reproducible from hypothesis' report.
Tables may hold exact zeros (in the initial distribution, the transition and the emission) but are
always valid: every row is non-negative and sums to 1.

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
from hypothesis.strategies import SearchStrategy

from ._utils import MASK
from .languages import HMM, IntervalParity, Language, NGram

__all__ = [
    "alpha_grids",
    "eps_learnings",
    "hmms",
    "interval_parity",
    "masked_sequences",
    "ngrams",
    "plans",
    "small_languages",
]

_SEEDS = st.integers(0, 2**32 - 1)
_ORDERS = st.integers(2, 4)
_VOCAB_SIZES = st.integers(2, 3)
_NUM_STATES = st.integers(1, 4)
_INTERVALS = st.integers(2, 4)
_BATCHES = st.integers(1, 4)
_STEPS = st.integers(1, 5)
_ZERO_RATES = (0.0, 0.3, 0.6)
"""Per-entry probabilities of an exact zero; high rates make supports small and irregular."""
DYADIC_DENOMINATOR = 64
"""With ``dyadic=True`` every table entry is a multiple of 1/64."""


def _strategy(value) -> SearchStrategy:
    return value if isinstance(value, SearchStrategy) else st.just(value)


def _rows(
    rng: np.random.Generator, shape: tuple[int, ...], zero_rate: float, dyadic: bool
) -> np.ndarray:
    """Random stochastic rows along the last axis; about ``zero_rate`` of the entries are exactly
    0, but each row keeps at least one positive entry. Dyadic rows are multinomial counts over
    ``DYADIC_DENOMINATOR``, so they are exact in binary floating point and sum to exactly 1."""
    width = shape[-1]
    weights = rng.exponential(size=(int(np.prod(shape[:-1])), width))
    weights[rng.random(weights.shape) < zero_rate] = 0.0
    empty = np.flatnonzero(weights.sum(axis=1) == 0)
    weights[empty, rng.integers(0, width, size=empty.size)] = 1.0
    rows = weights / weights.sum(axis=1, keepdims=True)
    if dyadic:
        rows = rng.multinomial(DYADIC_DENOMINATOR, rows) / DYADIC_DENOMINATOR
    return rows.reshape(shape)


def _zero_rate(draw, zeros: bool) -> float:
    return draw(st.sampled_from(_ZERO_RATES)) if zeros else 0.0


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
    rate = _zero_rate(draw, zeros)
    rng = np.random.default_rng(draw(_SEEDS))
    initial = _rows(rng, (v ** (n - 1),), rate, dyadic).reshape((v,) * (n - 1))
    transition = _rows(rng, (v,) * n, rate, dyadic)
    return NGram(n, initial, transition, {"strategy": "ngrams", "zero_rate": rate})


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
    rate = _zero_rate(draw, zeros)
    rng = np.random.default_rng(draw(_SEEDS))
    return HMM(
        _rows(rng, (k,), rate, dyadic),
        _rows(rng, (k, k), rate, dyadic),
        _rows(rng, (k, v), rate, dyadic),
        {"strategy": "hmms", "zero_rate": rate},
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


@st.composite
def masked_sequences(
    draw,
    language: Language,
    length: int | SearchStrategy[int],
    batch: int | SearchStrategy[int] = _BATCHES,
    arbitrary_tokens: bool = True,
) -> np.ndarray:
    """(batch, length) int64 arrays with ``MASK = -1`` at some positions.

    Each row starts from a real sample of ``language``, so its revealed tokens are in the support;
    a random subset of positions (from none to all) is then masked. With ``arbitrary_tokens=True``
    some rows also get a few revealed tokens replaced by arbitrary ones, which may be impossible
    under q: use ``posterior`` (which reports ``valid``) rather than ``posterior_marginals`` on
    them.

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
    rng = np.random.default_rng(draw(_SEEDS))
    x = language.sample(n, size, rng)
    rate = draw(st.sampled_from((0.0, 0.3, 0.6, 1.0)))
    x[rng.random(x.shape) < rate] = MASK
    if arbitrary_tokens and draw(st.booleans()):
        changed = (rng.random(x.shape) < 0.3) & (rng.random((n, 1)) < 0.5)
        x[changed] = rng.integers(MASK, language.vocab_size, size=int(changed.sum()))
    return x


@st.composite
def alpha_grids(draw, num_steps: int | SearchStrategy[int] = _STEPS) -> np.ndarray:
    """(N+1,) masking-schedule grids alpha(t_0..t_N): non-increasing from 1 to 0, possibly with
    flat stretches (empty steps). Feed them to ``Schedule.from_alpha``."""
    n = draw(_strategy(num_steps))
    rng = np.random.default_rng(draw(_SEEDS))
    cuts = np.sort(rng.random(n - 1))[::-1]
    if draw(st.booleans()) and n > 2:
        i = rng.integers(1, n - 1)
        cuts[i] = cuts[i - 1]  # a flat stretch: an empty step
    return np.concatenate([[1.0], cuts, [0.0]])


@st.composite
def plans(draw, length: int, num_steps: int | SearchStrategy[int] = _STEPS):
    """Any plan for sequences of ``length``: a schedule family (linear, cosine, polynomial), a
    random alpha grid, a fixed-count plan or a deterministic plan with random (possibly empty)
    position sets.

    Example::

        @given(st.data())
        def test_kl_below_jensen(data):
            language = data.draw(small_languages())
            plan = data.draw(plans(4))
            m = mdm_exact.exact_metrics(language, plan, 4)
            assert m.kl <= m.jensen_bound + 1e-12
    """
    from .schedules import DeterministicPlan, FixedCountPlan, Schedule

    n = draw(_strategy(num_steps))
    kind = draw(st.sampled_from(("linear", "cosine", "polynomial", "alpha", "fixed", "sets")))
    if kind == "linear":
        return Schedule.linear(n)
    if kind == "cosine":
        return Schedule.cosine(n)
    if kind == "polynomial":
        return Schedule.polynomial(n, draw(st.sampled_from((0.5, 2.0, 3.0))))
    if kind == "alpha":
        return Schedule.from_alpha(draw(alpha_grids(n)))
    if kind == "fixed":
        return FixedCountPlan.even(length, n)
    steps = draw(st.lists(st.integers(0, n - 1), min_size=length, max_size=length))
    return DeterministicPlan([[j for j in range(length) if steps[j] == k] for k in range(n)])


def eps_learnings(max_value: float = 0.5) -> SearchStrategy[float]:
    """Learning errors for ``PerturbedOracle`` (nats): 0 (the oracle) or a value in
    [1e-4, ``max_value``]."""
    return st.one_of(st.just(0.0), st.floats(1e-4, max_value, allow_nan=False))
