"""The posterior engines against each other and against brute force (issue 16).

Every engine of ``mdm_exact.posterior.IMPLEMENTATIONS`` must give the marginals, log-evidence
and validity of the per-row ``sparse`` kernel (the reference engine of tests/test_posterior.py)
to 1e-12, with the same exact zeros, the same impossible rows and no NaN on a possible row: on
random languages with zeros (the ``mdm_exact.testing`` strategies), on enumeration, on long
rows (L up to 1e5) and on tables whose powers or messages leave the float range.
"""

from __future__ import annotations

import math

import numba
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from mdm_exact import HMM, MASK, ArgumentError, NGram, log_prob, posterior, preset
from mdm_exact.posterior import (
    IMPLEMENTATIONS,
    SERIAL_WORK,
    THREADS_ENV,
    _block_emit,
    _block_product,
    _first_order_kernel,
    _first_order_sizes,
    _Powers,
    _resolve,
    _threads_for,
)
from mdm_exact.testing import hmms, masked_sequences, ngrams

ENGINES = ("blocked", "dense", "first-order")


def permutation_hmm(bigram: NGram, perm: np.ndarray) -> HMM:
    """The HMM whose state s emits token perm[s] and moves like the bigram's tokens."""
    return HMM(bigram.initial[perm], bigram.transition[np.ix_(perm, perm)],
               np.eye(len(perm))[perm], {"name": "permutation"})


def assert_same(got, want, log_atol: float = 1e-12) -> None:
    """Two ``Posterior`` results agree: validity exactly, NaN rows exactly, zeros exactly,
    marginals to 1e-12 and log-evidence to 1e-12 relative (``log_atol`` absolute: the scaled
    kernels add one rounding per position to it)."""
    np.testing.assert_array_equal(got.valid, want.valid)
    np.testing.assert_array_equal(np.isnan(got.marginals), np.isnan(want.marginals))
    ok = want.valid
    assert not np.isnan(got.marginals[ok]).any()
    np.testing.assert_array_equal(got.marginals[ok] == 0.0, want.marginals[ok] == 0.0)
    np.testing.assert_allclose(got.marginals[ok], want.marginals[ok], rtol=0, atol=1e-12)
    np.testing.assert_array_equal(got.log_evidence[~ok], -np.inf)
    np.testing.assert_allclose(got.log_evidence[ok], want.log_evidence[ok], rtol=1e-12,
                               atol=log_atol)


def first_order_languages():
    """2-grams and HMMs with permutation emissions, with zeros."""
    bigrams = ngrams(order=2, vocab_size=st.integers(2, 4))
    perms = st.permutations(range(4))
    return st.one_of(
        bigrams,
        st.builds(lambda b, p: permutation_hmm(b, np.array([i for i in p if i < b.vocab_size])),
                  bigrams, perms),
    )


# ------------------------------------------------------------------ engines against each other


@given(st.data())
def test_first_order_equals_sparse_kernel(data):
    language = data.draw(first_order_languages())
    x = data.draw(masked_sequences(language, st.integers(1, 40), batch=st.integers(1, 6)))
    assert _resolve(language.chain_arrays, "auto", x, 1) == "first-order"
    want = posterior(language, x, implementation="sparse")
    assert_same(posterior(language, x, implementation="first-order"), want)
    assert_same(posterior(language, x), want)
    np.testing.assert_allclose(log_prob(language, x), want.log_evidence, rtol=1e-12,
                               atol=1e-12)


@given(st.data())
def test_blocked_and_dense_equal_sparse_kernel(data):
    language = data.draw(st.one_of(hmms(num_states=st.integers(1, 6),
                                        vocab_size=st.integers(2, 4)),
                                   ngrams(order=st.integers(2, 3), vocab_size=st.integers(2, 3))))
    x = data.draw(masked_sequences(language, st.integers(1, 30), batch=st.integers(1, 11)))
    want = posterior(language, x, implementation="sparse")
    for engine in ("blocked", "dense", "auto"):
        assert_same(posterior(language, x, implementation=engine), want)


def test_blocked_rows_of_several_blocks_and_threads(zero_hmm):
    """Batches that are not a multiple of the block, impossible rows among possible ones."""
    rng = np.random.default_rng(3)
    x = zero_hmm.sample(37, 25, rng)
    x[rng.random(x.shape) < 0.5] = MASK
    x[[4, 20], 0] = 1  # token 1 comes only from state 1, never initial: impossible rows
    want = posterior(zero_hmm, x, implementation="sparse")
    assert not want.valid[[4, 20]].any() and want.valid.sum() >= 30
    with numba_threads(2):
        assert_same(posterior(zero_hmm, x, implementation="blocked"), want)


@pytest.mark.parametrize(("states", "vocab", "batch", "length"), [(5, 3, 23, 40), (32, 8, 67, 512)])
def test_blocked_rows_do_not_depend_on_their_block(states, vocab, batch, length):
    """A row's result is bit for bit the same alone and at any place of a batch split into
    blocks of any size, on one thread or two: state and vocabulary counts that are not a
    multiple of the kernel's register tile, odd row counts, and a batch big enough for two
    threads."""
    rng = np.random.default_rng(states)
    hmm = HMM(rng.dirichlet(np.ones(states)), rng.dirichlet(np.ones(states), size=states),
              rng.dirichlet(np.ones(vocab), size=states))
    x = hmm.sample(batch, length, rng)
    x[rng.random(x.shape) < 0.5] = MASK
    alone = [posterior(hmm, x[b:b + 1], implementation="blocked") for b in (0, batch - 1)]
    for threads in (1, 2):
        for order in (np.arange(batch), rng.permutation(batch)):
            with numba_threads(threads):
                post = posterior(hmm, x[order], implementation="blocked")
            for b, want in zip((0, batch - 1), alone, strict=True):
                place = int(np.flatnonzero(order == b)[0])
                np.testing.assert_array_equal(post.marginals[place], want.marginals[0])
                np.testing.assert_array_equal(post.log_evidence[place], want.log_evidence[0])


def test_blocked_product_and_emission_take_the_row_sums():
    """The blocked kernel's product returns the column sums of its result with it, and the
    emission retakes them for the revealed rows only (numpy as the reference); an empty sums
    array asks for no sums."""
    rng = np.random.default_rng(5)
    states, rows, vocab = 8, 13, 3
    x, a = rng.random((states, rows)), rng.random((states, states))
    out, sums = np.empty((states, rows)), np.full(rows, np.nan)
    _block_product(x, a, out, sums)
    np.testing.assert_allclose(out, a.T @ x, rtol=1e-14)
    np.testing.assert_allclose(sums, out.sum(axis=0), rtol=1e-14)
    alone = np.empty((states, rows))
    _block_product(x, a, alone, np.empty(0))
    np.testing.assert_array_equal(alone, out)
    e_rows = np.vstack([rng.random((vocab, states)), np.ones(states)])
    toks = rng.integers(0, vocab + 1, rows)  # token ``vocab``: masked, factor 1
    before = sums.copy()
    _block_emit(out, e_rows, toks, vocab, sums)
    np.testing.assert_allclose(out, alone * e_rows[toks].T, rtol=1e-15)
    revealed = toks < vocab
    np.testing.assert_allclose(sums[revealed], out.sum(axis=0)[revealed], rtol=1e-14)
    np.testing.assert_array_equal(sums[~revealed], before[~revealed])


# ------------------------------------------------------------------------------ brute force


@pytest.mark.parametrize("engine", ENGINES)
def test_engines_match_enumeration(ref, bigram, zero_hmm, engine):
    """Every partial sequence of length 5 (3 tokens) against enumeration."""
    languages = [bigram, permutation_hmm(bigram, np.array([2, 0, 1]))]
    if engine != "first-order":
        languages.append(zero_hmm)
    for language in languages:
        length = 5
        joint = ref.joint(language, length)
        v = language.vocab_size
        grids = np.indices((v + 1,) * length).reshape(length, -1).T - 1
        post = posterior(language, grids, implementation=engine)
        for b, row in enumerate(grids):
            evidence, marg = ref.condition(joint, row)
            if marg is None:
                assert not post.valid[b] and np.isnan(post.marginals[b]).all()
            else:
                np.testing.assert_allclose(post.marginals[b], marg, rtol=0, atol=1e-12)
                np.testing.assert_allclose(post.log_evidence[b], math.log(evidence), rtol=0,
                                           atol=1e-12)


# ------------------------------------------------------------------------------ long rows


def test_long_first_order_rows():
    """L = 1e5: half masked, one fully masked row, one long masked gap."""
    language = preset("2-gram")
    rng = np.random.default_rng(0)
    x = language.sample(3, 100_000, rng)
    x[0, rng.random(100_000) < 0.5] = MASK
    x[1] = MASK
    x[2, 10:60_000] = MASK
    post = posterior(language, x, implementation="first-order")
    assert_same(post, posterior(language, x, implementation="sparse"), log_atol=1e-10)
    assert post.log_evidence[1] == 0.0


def test_long_blocked_rows():
    language = preset("hmm")
    rng = np.random.default_rng(1)
    x = language.sample(3, 20_000, rng)
    x[rng.random(x.shape) < 0.5] = MASK
    assert_same(posterior(language, x, implementation="blocked"),
                posterior(language, x, implementation="dense"), log_atol=1e-10)


@pytest.mark.parametrize("name", ["3-gram", "4-gram"])
def test_long_ngram_rows(name):
    """L = 1e5 on the n-gram kernel (vectorised with reassociated sums) against the dense
    kernel on the same chain as an HMM (``as_hmm``): half masked, one fully masked row, one
    long masked gap."""
    language = preset(name)
    rng = np.random.default_rng(2)
    length = 100_000 if name == "3-gram" else 20_000
    x = language.sample(3, length, rng)
    x[0, rng.random(length) < 0.5] = MASK
    x[1] = MASK
    x[2, 10:length - 10] = MASK
    post = posterior(language, x, implementation="sparse")
    assert_same(post, posterior(language.as_hmm(), x, implementation="dense"), log_atol=1e-9)
    assert post.log_evidence[1] == 0.0


# ------------------------------------------------------------------ out of the float range


def test_untrusted_powers_fall_back_exactly():
    """A transient token lost at rate 0.1 per step: P^401[0, 0] = 1e-401 underflows, and a
    token of probability 1e-200 makes P^k[0, 1] tiny. The first-order engine must hand those
    rows to the scaled/log-space engine, not report them impossible or NaN."""
    decay = NGram(2, np.array([1.0, 0.0]), np.array([[0.1, 0.9], [0.0, 1.0]]), {})
    x = np.full((3, 403), MASK)
    x[0, [0, 402]] = 0  # possible, probability 0.1 ** 402
    x[1, [0, 402]] = [0, 1]
    x[2, [0, 5, 402]] = [0, 1, 0]  # impossible: token 1 is absorbing
    post = posterior(decay, x, implementation="first-order")
    assert_same(post, posterior(decay, x, implementation="sparse"))
    np.testing.assert_array_equal(post.valid, [True, True, False])
    assert post.log_evidence[0] == pytest.approx(402 * math.log(0.1), rel=1e-12)
    assert (post.marginals[0, 1:402, 0] == 1.0).all()
    rare = NGram(2, np.array([0.5, 0.5]), np.array([[1 - 1e-200, 1e-200], [0.5, 0.5]]), {})
    y = np.full((2, 50), MASK)
    y[0, [0, 49]] = [0, 1]
    y[1, [0, 49]] = [0, 0]
    post = posterior(rare, y, implementation="first-order")
    assert_same(post, posterior(rare, y, implementation="sparse"))
    assert post.valid.all() and (post.marginals[0, 1:49, 1] > 0).all()


def test_blocked_underflow_goes_to_log_space():
    """Messages that leave the float range are redone in log space, as by the dense kernel."""
    k = 4
    a = np.full((k, k), 1e-90)
    np.fill_diagonal(a, 1 - 3e-90)
    hmm = HMM(np.full(k, 0.25), a, np.eye(k), {})
    x = np.full((2, 12), MASK)
    x[0, ::2] = [0, 1, 2, 3, 0, 1]
    x[1, 0] = 2
    post = posterior(hmm, x, implementation="blocked")
    assert_same(post, posterior(hmm, x, implementation="sparse"))
    assert post.valid.all() and np.isfinite(post.log_evidence).all()


# ------------------------------------------------------------------ dispatch and threads


def numba_threads(n: int):
    class _Threads:
        def __enter__(self):
            self.before = numba.get_num_threads()
            numba.set_num_threads(min(n, numba.config.NUMBA_NUM_THREADS))

        def __exit__(self, *exc):
            numba.set_num_threads(self.before)

    return _Threads()


def test_dispatch(bigram, zero_hmm, sparse_hmm, trigram):
    x = np.full((256, 64), MASK)
    assert _resolve(bigram.chain_arrays, "auto", x, 2) == "first-order"
    # a table of powers above the memory budget: the n-gram kernel instead
    assert _resolve(bigram.chain_arrays, "auto", x, 2, max_bytes=1e4) == "sparse"
    assert _resolve(trigram.chain_arrays, "auto", x, 2) == "sparse"
    assert _resolve(zero_hmm.chain_arrays, "auto", x, 2) == "blocked"
    assert _resolve(sparse_hmm.chain_arrays, "auto", x, 2) == "sparse"
    assert _resolve(zero_hmm.chain_arrays, "auto", np.full((2, 10**8), MASK), 2) == "dense"
    assert set(ENGINES) < set(IMPLEMENTATIONS)
    with pytest.raises(ArgumentError, match="implementation='first-order' needs"):
        posterior(trigram, x[:1, :5], implementation="first-order")


def test_threads_follow_the_work(monkeypatch):
    monkeypatch.delenv(THREADS_ENV, raising=False)
    with numba_threads(2):
        top = numba.get_num_threads()
        with _threads_for(SERIAL_WORK - 1) as n:
            assert n == numba.get_num_threads() == 1
        with _threads_for(SERIAL_WORK) as n:
            assert n == numba.get_num_threads() == top
        assert numba.get_num_threads() == top
        monkeypatch.setenv(THREADS_ENV, "1")
        with _threads_for(100 * SERIAL_WORK) as n:
            assert n == numba.get_num_threads() == 1
        monkeypatch.setenv(THREADS_ENV, "two")
        with pytest.raises(ArgumentError, match=THREADS_ENV), _threads_for(1):
            pass
        assert numba.get_num_threads() == top


def _tables_read(row: np.ndarray) -> tuple[int, int]:
    """(largest t of pi P^t, largest k of P^k) that the nearest-neighbour formula reads on one
    row, by its definition: a masked u between revealed l < u < r reads P^(u - l) and P^(r - u),
    one before the first revealed r reads pi P^u and P^(r - u), one after the last revealed l
    reads P^(u - l); a revealed r reads pi P^r (the first) or P^(r - l)."""
    revealed = [t for t, tok in enumerate(row) if tok >= 0]
    prior, power = 0, 0
    for u in range(row.size):
        left = max((t for t in revealed if t < u), default=None)
        right = min((t for t in revealed if t > u), default=None)
        if left is None:
            prior = max(prior, u)
        else:
            power = max(power, u - left)
        if right is not None and row[u] < 0:
            power = max(power, right - u)
    return prior, power


@given(st.lists(st.integers(-1, 2), min_size=1, max_size=40))
def test_first_order_tables_cover_every_entry_the_kernel_reads(tokens):
    """Regression: a masked prefix before the first revealed token r reads P^r, which the
    table size once left out (the kernel read past the table: intermittent inf marginals)."""
    x = np.array([tokens], dtype=np.int64)
    n_prior, n_powers = _first_order_sizes(x)
    prior, power = _tables_read(x[0])
    assert prior < n_prior and power < n_powers


@given(st.lists(st.integers(-1, 2), min_size=1, max_size=40), st.integers(1, 40),
       st.integers(1, 40), st.booleans())
def test_first_order_kernel_stops_exactly_where_the_tables_end(tokens, n_prior, n_powers,
                                                               with_marginals):
    """The kernel flags a row ``short`` (and reads nothing past the tables) iff
    ``_first_order_sizes`` asks for more than the tables hold."""
    x = np.array([tokens], dtype=np.int64)
    tables = _Powers.of(np.full(3, 1 / 3), np.full((3, 3), 1 / 3))
    tables.grow(n_prior, n_powers)
    no_requests = np.zeros(0, dtype=np.int64)
    *_, short = _first_order_kernel(
        x, tables.prior, tables.prior_ok, tables.powers, tables.powers_t, tables.row_ok,
        tables.prior_run, tables.row_run, tables.col_run, with_marginals, no_requests,
        no_requests)
    need_prior, need_powers = _first_order_sizes(x)
    assert short[0] == (need_prior > tables.prior.shape[0]
                        or need_powers > tables.powers.shape[0])


def test_first_order_masked_prefix_matches_the_sparse_kernel():
    lang = NGram(2, np.full(3, 1 / 3), np.array([[0.5, 0.25, 0.25], [0.2, 0.6, 0.2],
                                                [0.1, 0.1, 0.8]]))
    x = np.full((2, 32), MASK, dtype=np.int64)
    x[0, 28] = 2
    x[1, 15] = x[1, 17] = 0
    got = posterior(lang, x, implementation="first-order")
    want = posterior(lang, x, implementation="sparse")
    np.testing.assert_allclose(got.marginals, want.marginals, rtol=0, atol=1e-12)


@pytest.mark.parametrize("tiny", [1e-300, 1e-310, 5e-324])
@pytest.mark.parametrize("implementation", ["first-order", "blocked", "dense"])
def test_subnormal_entries_are_redone_not_lost(implementation, tiny):
    """Regression: the blocked kernel divided by a subnormal sum (1 / sum = inf) and reported
    -inf for possible rows; such a row must be redone in log space like in the sparse kernel."""
    import itertools

    hmm = NGram(2, [1 - tiny, tiny], [[1 - tiny, tiny], [0.5, 0.5]]).as_hmm()
    rows = np.array(list(itertools.product([-1, 0, 1], repeat=4)), dtype=np.int64)
    want = posterior(hmm, rows, implementation="sparse")
    got = posterior(hmm, rows, implementation=implementation)
    np.testing.assert_array_equal(got.valid, want.valid)
    np.testing.assert_allclose(got.log_evidence[got.valid], want.log_evidence[want.valid],
                               rtol=1e-12)
    np.testing.assert_allclose(got.marginals[got.valid], want.marginals[want.valid], rtol=0,
                               atol=1e-12)
