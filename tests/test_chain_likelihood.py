"""The interval DP (``mdm_exact.chain_likelihood``): exact log p(x) of random-order unmasking on
first-order chains, checked against the exact engine, against enumerations written here
(step assignments, oracle conditionals from the dense joint), exact rationals, and a log-space
sum at L = 1024."""

from __future__ import annotations

import itertools
import math
import warnings
from fractions import Fraction

import numpy as np
import pytest

from mdm_exact import (
    HMM,
    ArgumentError,
    ArgumentTypeError,
    BudgetError,
    DeterministicPlan,
    FixedCountPlan,
    NGram,
    Oracle,
    PerturbedOracle,
    Schedule,
    exact_metrics,
    output_distribution,
    preset,
    random_hmm,
    random_ngram,
)
from mdm_exact.chain_likelihood import chain_log_likelihood, first_order_chain
from mdm_exact.sampling import UnreachedLearningErrorWarning

V = 3
BIGRAM = random_ngram(2, V, threshold=0.2, seed=1)

SCHEDULES = {
    "linear": Schedule.linear(4),
    "cosine": Schedule.cosine(3),
    "polynomial": Schedule.polynomial(5, 2.0),
    "alpha-list": Schedule.from_alpha([1.0, 0.7, 0.65, 0.2, 0.0]),
    "paper_ngram": Schedule.paper_ngram(2, 0.5),
    "adaptive_ngram": Schedule.adaptive_ngram(2, 0.4),
    "empty-step": Schedule([0.3, 0.0, 0.45, 0.25]),
}


def all_sequences(vocab: int, length: int) -> np.ndarray:
    return np.array(list(itertools.product(range(vocab), repeat=length)), dtype=np.int64)


def assert_log_close(got: np.ndarray, want: np.ndarray, rtol: float = 1e-12) -> None:
    """Equal -inf entries, and |got - want| <= rtol * max(1, |want|) elsewhere."""
    got, want = np.asarray(got), np.asarray(want)
    assert np.array_equal(np.isneginf(got), np.isneginf(want))
    fin = np.isfinite(want)
    assert np.all(np.isfinite(got[fin]))
    err = np.abs(got[fin] - want[fin]) / np.maximum(1.0, np.abs(want[fin]))
    assert err.max(initial=0.0) <= rtol, f"max relative log error {err.max():.3g}"


def test_bigram_has_zeros():
    assert np.any(BIGRAM.transition == 0)


# ------------------------------------------------------------------------- the exact engine


@pytest.mark.parametrize("name", sorted(SCHEDULES))
@pytest.mark.parametrize("length", [2, 3, 4, 5, 6])
def test_equals_exact_engine(name, length):
    schedule = SCHEDULES[name]
    xs = all_sequences(V, length)
    want = np.log(output_distribution(BIGRAM, schedule, length).ravel())
    got = chain_log_likelihood(BIGRAM, schedule, xs)
    assert_log_close(got, want)
    # Off the support too: the DP must carry the oracle's uniform fallback.
    off = ~BIGRAM.in_support(xs)
    assert off.any() and np.all(np.isfinite(got[off]))


@pytest.mark.parametrize("direction", ["uniform", "random"])
@pytest.mark.parametrize("length", [2, 4, 5])
def test_perturbed_oracle_equals_exact_engine(direction, length):
    den = PerturbedOracle(BIGRAM, 0.1, direction, seed=3)
    schedule = Schedule.cosine(3)
    xs = all_sequences(V, length)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnreachedLearningErrorWarning)
        want = np.log(output_distribution(BIGRAM, schedule, length, den).ravel())
        got = chain_log_likelihood(BIGRAM, schedule, xs, den)
    assert_log_close(got, want)


def test_permutation_hmm_is_its_bigram():
    perm = np.array([2, 0, 1])
    emission = np.eye(V)[perm]  # state s emits token perm[s]
    hmm = HMM(BIGRAM.initial[perm], BIGRAM.transition[np.ix_(perm, perm)], emission)
    assert np.allclose(hmm.joint(4), BIGRAM.joint(4))
    xs = all_sequences(V, 4)
    schedule = Schedule.linear(3)
    assert_log_close(chain_log_likelihood(hmm, schedule, xs),
                     chain_log_likelihood(BIGRAM, schedule, xs))
    init, trans = first_order_chain(hmm)
    assert np.array_equal(init, BIGRAM.initial) and np.array_equal(trans, BIGRAM.transition)


# ------------------------------------------------------------- an enumeration written here


def brute_force_log_p(joint: np.ndarray, masses: np.ndarray, x: np.ndarray, model=None) -> float:
    """log p(x) by enumerating every step assignment (each position's step drawn from the
    masses) and multiplying the denoiser's conditionals at x_j: the oracle's q(. | revealed
    tokens), read off the dense joint (uniform where the revealed tokens are impossible), passed
    through ``model`` (a map of that vector, e.g. a perturbation) when given."""
    length, vocab = x.size, joint.shape[0]
    model = model or (lambda vec: vec)
    # q(x_R, x_j = v) for every subset R (bitmask) of positions and every (j, v).
    tables = {}

    def conditional(before: int, j: int) -> np.ndarray:
        if (before, j) not in tables:
            idx = tuple(int(x[i]) if before >> i & 1 else slice(None) for i in range(length))
            sub = joint[idx]
            kept = [i for i in range(length) if not before >> i & 1]
            vec = sub.sum(axis=tuple(a for a, i in enumerate(kept) if i != j))
            total = vec.sum()
            vec = vec / total if total > 0 else np.full(vocab, 1.0 / vocab)
            tables[before, j] = model(vec)
        return tables[before, j]

    total = 0.0
    for steps in itertools.product(range(masses.size), repeat=length):
        weight = math.prod(masses[s] for s in steps)
        if weight == 0:
            continue
        for j, s in enumerate(steps):
            before = sum(1 << i for i in range(length) if steps[i] < s)
            weight *= conditional(before, j)[x[j]]
        total += weight
    return math.log(total) if total > 0 else -math.inf


@pytest.mark.parametrize("length", [3, 5, 7])
def test_equals_step_assignment_enumeration(length):
    schedule = Schedule.from_alpha([1.0, 0.6, 0.25, 0.0])
    joint = BIGRAM.joint(length)
    rng = np.random.default_rng(length)
    on = BIGRAM.sample(3, length, rng)
    off = rng.integers(0, V, (8, length))
    off = off[~BIGRAM.in_support(off)][:3]
    xs = np.concatenate([on, off])
    want = np.array([brute_force_log_p(joint, schedule.masses, x) for x in xs])
    assert_log_close(chain_log_likelihood(BIGRAM, schedule, xs), want)


def test_perturbed_oracle_equals_step_assignment_enumeration():
    """The PerturbedOracle's marginal is perturb_toward applied to the oracle's, whatever the
    state: the enumeration applies it to the conditionals it reads off the joint."""
    from mdm_exact.sampling import perturb_toward

    length, schedule = 5, Schedule.from_alpha([1.0, 0.5, 0.0])
    den = PerturbedOracle(BIGRAM, 0.08, "random", seed=2)
    rng = np.random.default_rng(9)
    xs = np.concatenate([BIGRAM.sample(2, length, rng), rng.integers(0, V, (2, length))])
    joint = BIGRAM.joint(length)

    def model(vec):
        return perturb_toward(vec, den.eps_learning, den.direction)[0]

    want = np.array([brute_force_log_p(joint, schedule.masses, x, model) for x in xs])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnreachedLearningErrorWarning)
        got = chain_log_likelihood(BIGRAM, schedule, xs, den)
    assert_log_close(got, want)


def test_equals_direct_sum_at_length_12():
    """L = 12, N = 3: all 3^12 step assignments summed in numpy; the conditional of a position
    given the revealed tokens is q(x_j | x_l, x_r) of its nearest revealed neighbours (Markov
    property), each read off the dense joint of the 12 tokens."""
    length, schedule = 12, Schedule.from_alpha([1.0, 0.55, 0.3, 0.0])
    joint = BIGRAM.joint(length)
    x = BIGRAM.sample(1, length, 7)[0]
    # cond[l + 1, j, r + 1] = q(x_j | x_l, x_r) with -1 and L meaning "no neighbour".
    cond = np.zeros((length + 2, length, length + 2))
    axes = range(length)
    for j in axes:
        for left in range(-1, j):
            for right in range(j + 1, length + 1):
                keep = [i for i in (left, j, right) if 0 <= i < length]
                marg = joint.sum(axis=tuple(i for i in axes if i not in keep))
                tokens = tuple(int(x[i]) for i in keep)
                given = tuple(int(x[i]) for i in keep if i != j)
                pos_j = keep.index(j)
                denom = marg.sum(axis=pos_j)[given] if given else 1.0
                cond[left + 1, j, right + 1] = marg[tokens] / denom
    steps = np.array(list(itertools.product(range(3), repeat=length)))
    log_w = np.log(schedule.masses)[steps].sum(axis=1)
    for j in axes:
        before = steps < steps[:, [j]]
        left = np.full(steps.shape[0], -1)
        for i in range(j):
            left = np.where(before[:, i], i, left)
        right = np.full(steps.shape[0], length)
        for i in range(length - 1, j, -1):
            right = np.where(before[:, i], i, right)
        log_w += np.log(cond[left + 1, j, right + 1])
    want = np.logaddexp.reduce(log_w)
    assert_log_close(chain_log_likelihood(BIGRAM, schedule, x), np.array([want]))


def test_exact_rationals_on_a_dyadic_chain():
    """Dyadic chain and masses: p(x) summed over all 2^12 step assignments in Fractions."""
    half, quarter = Fraction(1, 2), Fraction(1, 4)
    init = [half, half]
    trans = [[half, half], [quarter, 1 - quarter]]
    masses = [quarter, 1 - quarter]
    length = 12
    lang = NGram(2, np.array([float(v) for v in init]),
                 np.array([[float(v) for v in row] for row in trans]))

    def matmul(a, b):
        return [[sum(a[i][k] * b[k][j] for k in range(2)) for j in range(2)] for i in range(2)]

    powers = [[[Fraction(1), Fraction(0)], [Fraction(0), Fraction(1)]]]
    for _ in range(length + 1):
        powers.append(matmul(powers[-1], trans))
    x = [0, 1, 1, 0, 1, 1, 1, 0, 0, 1, 1, 1]

    def reach(left, right):  # A(l, r) of the recursion's notation, in Fractions
        if right == length:
            return Fraction(1)
        if left == -1:
            return sum(init[v] * powers[right][v][x[right]] for v in range(2))
        return powers[right - left][x[left]][x[right]]

    total = Fraction(0)
    for first in itertools.product((0, 1), repeat=length):
        weight = Fraction(1)
        revealed = [i for i in range(length) if first[i] == 0]
        for j in range(length):
            weight *= masses[first[j]]
            if first[j] == 0:
                weight *= reach(-1, j) * reach(j, length)
            else:
                left = max((i for i in revealed if i < j), default=-1)
                right = min((i for i in revealed if i > j), default=length)
                weight *= reach(left, j) * reach(j, right) / reach(left, right)
        total += weight
    got = chain_log_likelihood(lang, Schedule([float(m) for m in masses]), np.array(x))
    want = math.log(total.numerator) - math.log(total.denominator)
    assert_log_close(got, np.array([want]))


# ------------------------------------------------------------------------- long sequences


def two_step_log_p(lang: NGram, p_first: float, x: np.ndarray) -> float:
    """N = 2 in log space, O(L^2): positions revealed at step 1 (the set T) take their
    unconditional marginal, the others q(x_j | nearest positions of T); a left-to-right sum over
    the last position of T, with the gaps' log conditionals from prefix sums."""
    length = x.size
    init, trans = lang.initial, lang.transition
    powers = [np.eye(trans.shape[0])]
    for _ in range(length + 1):
        powers.append(powers[-1] @ trans)
    log_a = np.full((length + 2, length + 2), -np.inf)  # shifted: index = position + 1
    with np.errstate(divide="ignore"):
        for li in range(length + 1):
            for ri in range(li + 1, length + 2):
                if ri == length + 1:
                    log_a[li, ri] = 0.0
                elif li == 0:
                    log_a[li, ri] = np.log(init @ powers[ri - 1][:, x[ri - 1]])
                else:
                    log_a[li, ri] = np.log(powers[ri - li][x[li - 1], x[ri - 1]])
    left_cum = np.zeros_like(log_a)  # sum_{c < j <= t} log A(c, j)
    right_cum = np.zeros_like(log_a)  # sum_{c <= j < t} log A(j, t)
    for c in range(length + 2):
        left_cum[c, c + 1:] = np.cumsum(log_a[c, c + 1:])
    for t in range(length + 2):
        right_cum[:t, t] = np.cumsum(log_a[:t, t][::-1])[::-1]
    log_first, log_second = math.log(p_first), math.log1p(-p_first)
    best = np.full(length + 2, -np.inf)
    best[0] = 0.0
    for t in range(1, length + 2):
        c = np.arange(t)
        inner = t - c - 1
        gap = (inner * log_second + (left_cum[c, t - 1] - left_cum[c, c])
               + (right_cum[c + 1, t] - right_cum[t, t]) - inner * log_a[c, t])
        gap = np.where(inner > 0, gap, 0.0)
        total = np.logaddexp.reduce(best[:t] + gap)
        best[t] = total if t == length + 1 else total + log_first + log_a[0, t]
    return float(best[-1])


def test_length_1024_is_finite_and_matches_a_log_space_sum():
    lang = preset("2-gram")
    x = lang.sample(2, 1024, 11)
    got = chain_log_likelihood(lang, Schedule([0.3, 0.7]), x)
    assert np.all(np.isfinite(got)) and np.all(got < -500)  # far below exp(-745): underflow
    want = np.array([two_step_log_p(lang, 0.3, row) for row in x])
    assert_log_close(got, want, 1e-11)


def test_two_step_sum_matches_the_engine():
    """The reference of the long test, checked itself on short sequences."""
    xs = all_sequences(V, 5)
    want = np.log(output_distribution(BIGRAM, Schedule([0.3, 0.7]), 5).ravel())
    on = BIGRAM.in_support(xs)
    got = np.array([two_step_log_p(BIGRAM, 0.3, x) for x in xs[on]])
    assert_log_close(got, want[on])


def test_independent_tokens_are_sampled_exactly_at_length_200():
    """Identical rows (i.i.d. tokens): every oracle marginal is that row whatever is revealed,
    so p = q for any schedule; the DP must sum the probabilities of all reveal patterns to 1."""
    row = np.array([0.5, 0.3, 0.2])
    lang = NGram(2, row, np.tile(row, (V, 1)))
    x = lang.sample(2, 200, 3)
    got = chain_log_likelihood(lang, Schedule.cosine(16), x)
    assert_log_close(got, lang.log_prob(x), 1e-12)


def test_many_steps_at_length_256_stay_in_range():
    lang = preset("2-gram")
    x = lang.sample(1, 256, 5)
    got = chain_log_likelihood(lang, Schedule.linear(16), x)
    log_q = lang.log_prob(x)
    # p(x) < 1 and factorized sampling loses some likelihood, but not hundreds of nats per token.
    assert np.all(np.isfinite(got)) and np.all(got < 0)
    assert np.all(np.abs(got - log_q) < 0.5 * 256)


# ------------------------------------------------------------------------------ KL and bounds


def test_ser_lower_bound_below_exact_kl():
    for name in ("linear", "cosine", "paper_ngram"):
        m = exact_metrics(BIGRAM, SCHEDULES[name], 5)
        assert -math.log1p(-m.ser) <= m.kl + 1e-12


def test_kl_at_length_64_against_jensen_and_ser_bounds():
    likelihood = pytest.importorskip("mdm_exact.likelihood")
    from mdm_exact.metrics import jensen_bound, sequence_error_rate
    from mdm_exact.sampling import sample

    lang, schedule, length, num = preset("2-gram"), Schedule.linear(16), 64, 200
    est = likelihood.kl_estimate(lang, schedule, length, num, rng=np.random.default_rng(4))
    # The same draws, scored here: kl_estimate is the mean of exact per-sample values.
    x = lang.sample(num, length, np.random.default_rng(4))
    per_sample = lang.log_prob(x) - chain_log_likelihood(lang, schedule, x)
    assert est.kl.value == pytest.approx(max(per_sample.mean(), 0.0), rel=1e-12, abs=1e-12)
    assert est.kl_per_token.value == pytest.approx(est.kl.value / length, rel=1e-12)
    jensen = jensen_bound(lang, schedule, length, 400, rng=np.random.default_rng(5))
    assert est.kl.low <= jensen.high  # KL <= E_tau KL(q || p_tau) (Lemma B.2)
    ser = sequence_error_rate(lang, sample(lang, schedule, length, 400, rng=6).tokens)
    lower = likelihood.ser_kl_lower_bound(ser)
    assert lower.low <= est.kl.high  # KL >= -log(1 - SER)


# ------------------------------------------------------------------------------ bad inputs


def test_refusals_name_the_supported_cases():
    x = np.zeros((1, 4), dtype=np.int64)
    with pytest.raises(ArgumentError, match="couples the segments"):
        chain_log_likelihood(BIGRAM, FixedCountPlan.even(4, 2), x)
    with pytest.raises(ArgumentError, match="order 2"):
        chain_log_likelihood(random_ngram(3, V, seed=0), Schedule.linear(2), x)
    with pytest.raises(ArgumentError, match="permutation"):
        chain_log_likelihood(random_hmm(4, V, seed=0), Schedule.linear(2), x)
    with pytest.raises(ArgumentTypeError, match="deterministic-policy"):
        chain_log_likelihood(BIGRAM, Schedule.linear(2), x, lambda s: Oracle(BIGRAM)(s))
    with pytest.raises(ArgumentError, match="token 3"):
        chain_log_likelihood(BIGRAM, Schedule.linear(2), np.array([[0, 3, 1, 1]]))
    with pytest.raises(ArgumentError, match="token -1"):
        chain_log_likelihood(BIGRAM, Schedule.linear(2), np.array([[0, -1, 1, 1]]))
    with pytest.raises(BudgetError, match="interval DP"):
        chain_log_likelihood(BIGRAM, Schedule.linear(2), np.zeros((1, 600), dtype=np.int64),
                             max_bytes=1e6)


def test_deterministic_plan_goes_to_the_trajectory_product():
    plan = DeterministicPlan([[1, 3], [0], [2]])
    x = all_sequences(V, 4)
    with np.errstate(divide="ignore"):
        want = np.log(output_distribution(BIGRAM, plan, 4).ravel())
    assert_log_close(chain_log_likelihood(BIGRAM, plan, x), want)


@pytest.mark.parametrize("num_steps", [1, 2, 3])
def test_sequences_the_sampler_cannot_produce_are_minus_inf(num_steps):
    """Token 0 has probability 0 everywhere and 2 -> 2 is impossible: with one step p(x) = 0
    wherever x holds a 0; with more, a 0 can follow an impossible state (uniform fallback)."""
    lang = NGram(2, np.array([0.0, 0.5, 0.5]),
                 np.array([[0.5, 0.5, 0.0], [0.0, 0.5, 0.5], [0.0, 1.0, 0.0]]))
    xs = all_sequences(V, 4)
    schedule = Schedule.linear(num_steps)
    with np.errstate(divide="ignore"):
        want = np.log(output_distribution(lang, schedule, 4).ravel())
    got = chain_log_likelihood(lang, schedule, xs)
    assert not np.any(np.isnan(got))
    assert_log_close(got, want)
    has_zero = np.any(xs == 0, axis=1)
    assert np.all(np.isneginf(got[has_zero])) == (num_steps == 1)
