"""Exact log p(x) (``log_likelihood``), the KL / TER estimates and the SER lower bound.

Two references, both written here without ``mdm_exact.likelihood`` or the policies module:

- small L: q from the tables (``conftest.Reference``), the oracle conditionals by slicing that
  joint (uniform where the revealed tokens are impossible, the Oracle's convention), the rules of
  the policies re-implemented from their definitions, and p(x) summed over every step assignment
  (a ``Schedule``) or along the unique trajectory (deterministic rules and plans);
- L = 64: a per-position Python loop that calls the package's Oracle on one row at a time and
  ranks the masked positions by hand.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from mdm_exact import IntervalParity, NGram, preset, random_ngram
from mdm_exact.errors import ArgumentError, ArgumentTypeError, BudgetError
from mdm_exact.estimate import Estimate, wilson_interval
from mdm_exact.exact import exact_metrics, output_distribution
from mdm_exact.likelihood import (
    KL_METHOD,
    KLEstimate,
    kl_estimate,
    log_likelihood,
    ser_kl_lower_bound,
)
from mdm_exact.metrics import sequence_error_rate
from mdm_exact.policies import EntropyBounded, Factor, RandomTopK, Threshold, TopK
from mdm_exact.sampling import Oracle, PerturbedOracle, sample
from mdm_exact.schedules import DeterministicPlan, FixedCountPlan, Schedule

MASK = -1
REL = 1e-12


# ------------------------------------------------------------------------------ the rules by hand


def scores(marginal: np.ndarray, kind: str) -> float:
    """One position's score from its marginal (V,): larger is more certain."""
    p = sorted(float(v) for v in marginal)[::-1]
    if kind == "confidence":
        return p[0]
    if kind == "margin":
        return p[0] - p[1]
    return sum(v * math.log(v) for v in p if v > 0)


def hand_select(rule: dict, marg: np.ndarray, row: list[int], step: int) -> list[int]:
    """Positions revealed at ``step`` in one row, from the rule's definition.

    ``rule``: {"kind": "topk"|"threshold"|"eb"|"factor", "score", "n", "tau", "gamma", "f",
    "block"}; ``marg``: (L, V) the denoiser's marginals at the state ``row``."""
    length = len(row)
    block = rule.get("block") or length
    masked = [j for j in range(length) if row[j] == MASK]
    if not masked:
        return []
    if rule["kind"] == "topk":
        # N split evenly over the ceil(L / B) blocks, each block's length over its steps (the
        # last block is shorter when B does not divide L).
        per_block = rule["n"] // -(-length // block)
        first = (step // per_block) * block
        local = step % per_block
        size = min(block, length - first)
        count = size // per_block + (1 if local < size % per_block else 0)
    else:
        first = (masked[0] // block) * block
    cand = [j for j in masked if first <= j < first + block]
    kind = {"threshold": "confidence", "factor": "confidence", "eb": "entropy"}.get(
        rule["kind"], rule.get("score"))
    # Every decision reads the score rounded to 12 decimals (the policies' documented rule).
    score = {j: float(np.round(scores(marg[j], kind), 12)) for j in cand}
    rank = sorted(cand, key=lambda j: (-score[j], j))
    if rule["kind"] == "topk":
        return rank[:count]
    if rule["kind"] == "threshold":
        return [rank[0]] + [j for j in rank[1:] if score[j] >= rule["tau"]]
    if rule["kind"] == "factor":
        out = [rank[0]]
        for n, j in enumerate(rank[1:], start=2):
            if score[j] < 1 - rule["f"] / (n + 1):
                break
            out.append(j)
        return out
    out = [rank[0]]
    for n in range(2, len(rank) + 1):
        h = [-score[j] for j in rank[:n]]
        if sum(h) - max(h) > rule["gamma"]:
            break
        out.append(rank[n - 1])
    return out


def make_policy(rule: dict):
    block = rule.get("block")
    if rule["kind"] == "topk":
        return TopK(score=rule["score"], num_steps=rule["n"], block_length=block)
    if rule["kind"] == "threshold":
        return Threshold(rule["tau"], block_length=block)
    if rule["kind"] == "eb":
        return EntropyBounded(rule["gamma"], block_length=block)
    return Factor(rule["f"], block_length=block)


def hand_log_p(rule: dict, marginals_of, x) -> float:
    """log p(x) along the unique trajectory, ``marginals_of(state)`` -> (L, V)."""
    state = [MASK] * len(x)
    total = 0.0
    step = 0
    while MASK in state:
        marg = marginals_of(state)
        for j in hand_select(rule, marg, state, step):
            if marg[j][x[j]] == 0:
                return -math.inf
            total += math.log(marg[j][x[j]])
            state[j] = x[j]
        step += 1
    return total


class Brute:
    """q over V^L and its conditionals by slicing, cached per partial state."""

    def __init__(self, ref, language, length: int):
        self.joint = ref.joint(language, length)
        self.ref, self.v, self.length = ref, language.vocab_size, length
        self._cache: dict[tuple, np.ndarray] = {}

    def marginals(self, state) -> np.ndarray:
        key = tuple(state)
        if key not in self._cache:
            _, marg = self.ref.condition(self.joint, key)
            self._cache[key] = np.full((self.length, self.v), 1.0 / self.v) if marg is None \
                else marg
        return self._cache[key]

    def sequences(self) -> np.ndarray:
        return np.array(list(itertools.product(range(self.v), repeat=self.length)))

    def schedule_prob(self, masses, x) -> float:
        """sum over every step assignment tau of P(tau) prod_j q(x_j | x revealed before)."""
        n = len(masses)
        total = 0.0
        for tau in itertools.product(range(n), repeat=self.length):
            weight = math.prod(masses[k] for k in tau)
            if weight == 0:
                continue
            term = 1.0
            for k in sorted(set(tau)):
                state = [x[j] if tau[j] < k else MASK for j in range(self.length)]
                marg = self.marginals(state)
                term *= math.prod(marg[j][x[j]] for j in range(self.length) if tau[j] == k)
            total += weight * term
        return total

    def sets_prob(self, sets, x) -> float:
        state = [MASK] * self.length
        total = 1.0
        for s in sets:
            if len(s):
                marg = self.marginals(state)
                total *= math.prod(marg[j][x[j]] for j in s)
                for j in s:
                    state[j] = x[j]
        return total


def close_in_log(got: np.ndarray, want: np.ndarray) -> bool:
    got, want = np.asarray(got, dtype=float), np.asarray(want, dtype=float)
    finite = np.isfinite(want)
    if not np.array_equal(finite, np.isfinite(got)) or np.any(got[~finite] != want[~finite]):
        return False
    err = np.abs(got[finite] - want[finite]) / np.maximum(1.0, np.abs(want[finite]))
    return bool(np.all(err <= REL))


# ------------------------------------------------------------------------------ languages / rules


LANGUAGES = {
    "bigram": lambda bigram, trigram, zero_hmm: (bigram, 4),
    "trigram": lambda bigram, trigram, zero_hmm: (trigram, 5),
    "hmm-zeros": lambda bigram, trigram, zero_hmm: (zero_hmm, 4),
    "parity": lambda bigram, trigram, zero_hmm: (IntervalParity(3), 6),
}

RULES = [
    {"kind": "topk", "score": "confidence", "n": 2},
    {"kind": "topk", "score": "margin", "n": 3},
    {"kind": "topk", "score": "entropy", "n": 2},
    {"kind": "topk", "score": "confidence", "n": 9},
    {"kind": "topk", "score": "margin", "n": 6, "block": 2},
    {"kind": "threshold", "tau": 0.6},
    {"kind": "threshold", "tau": 0.3, "block": 2},
    {"kind": "eb", "gamma": 0.5},
    {"kind": "eb", "gamma": 2.0, "block": 2},
    {"kind": "factor", "f": 0.8},
    {"kind": "factor", "f": 3.0, "block": 2},
]


def rule_id(rule: dict) -> str:
    return "-".join(f"{k}={v}" for k, v in rule.items() if k != "kind") + f"-{rule['kind']}"


@pytest.fixture(scope="module")
def small(ref, bigram, trigram, zero_hmm):
    cases = {}
    for name, make in LANGUAGES.items():
        language, length = make(bigram, trigram, zero_hmm)
        cases[name] = (language, length, Brute(ref, language, length))
    return cases


# ------------------------------------------------------------------------------ log_likelihood


@pytest.mark.parametrize("lang_name", list(LANGUAGES))
@pytest.mark.parametrize("rule", RULES, ids=rule_id)
def test_policy_matches_brute_force_and_engine(small, lang_name, rule):
    language, length, brute = small[lang_name]
    xs = brute.sequences()
    want = np.array([hand_log_p(rule, brute.marginals, list(x)) for x in xs])
    assert math.isclose(np.exp(want).sum(), 1.0, rel_tol=1e-12)  # the reference is a law
    policy = make_policy(rule)
    got = log_likelihood(language, policy, xs)
    assert got.shape == (xs.shape[0],) and got.dtype == np.float64
    assert close_in_log(got, want)
    engine = output_distribution(language, policy, length)
    with np.errstate(divide="ignore"):
        assert close_in_log(got, np.log(engine[tuple(xs.T)]))


@pytest.mark.parametrize("lang_name", list(LANGUAGES))
def test_deterministic_plan_matches_brute_force(small, lang_name):
    language, length, brute = small[lang_name]
    sets = [[length - 1], [], list(range(0, length - 1, 2)), list(range(1, length - 1, 2))]
    plan = DeterministicPlan(sets)
    xs = brute.sequences()
    with np.errstate(divide="ignore"):
        want = np.log([brute.sets_prob(sets, list(x)) for x in xs])
        engine = np.log(output_distribution(language, plan, length)[tuple(xs.T)])
    got = log_likelihood(language, plan, xs)
    assert close_in_log(got, want)
    assert close_in_log(got, engine)


@pytest.mark.parametrize("masses", [[0.5, 0.25, 0.25], [0.0, 0.7, 0.3], [0.2, 0.0, 0.8]])
@pytest.mark.parametrize("lang_name", ["bigram", "hmm-zeros"])
def test_schedule_matches_brute_force_over_step_assignments(small, ref, lang_name, masses):
    language, _, _ = small[lang_name]
    length = 3
    brute = Brute(ref, language, length)
    xs = brute.sequences()
    with np.errstate(divide="ignore"):
        want = np.log([brute.schedule_prob(masses, list(x)) for x in xs])
    got = log_likelihood(language, Schedule(masses), xs)
    assert close_in_log(got, want)


def test_random_topk_has_the_law_of_fixed_counts(small):
    language, length, brute = small["bigram"]
    xs = brute.sequences()
    got = log_likelihood(language, RandomTopK(3), xs)
    assert close_in_log(got, log_likelihood(language, FixedCountPlan.even(length, 3), xs))
    assert np.isfinite(got).any()


@pytest.mark.parametrize("rule", [
    {"kind": "topk", "score": "confidence", "n": 8},
    {"kind": "topk", "score": "margin", "n": 16, "block": 16},
    {"kind": "topk", "score": "entropy", "n": 5},
    {"kind": "threshold", "tau": 0.7},
    {"kind": "eb", "gamma": 0.3, "block": 32},
    {"kind": "factor", "f": 1.0},
], ids=rule_id)
def test_policy_matches_a_per_position_loop_at_length_64(rule):
    language = random_ngram(order=3, vocab_size=4, temperature=2.0, threshold=0.05, seed=3)
    length = 64
    rng = np.random.default_rng(11)
    x = language.sample(2, length, rng)
    # One row off the support, where the oracle's uniform convention is in play.
    off = x[1].copy()
    off[10] = (off[10] + 1) % 4
    x = np.vstack([x, off, rng.integers(0, 4, size=(1, length))])
    oracle = Oracle(language)

    def marginals_of(state):
        return oracle(np.array([state]))[0]

    want = np.array([hand_log_p(rule, marginals_of, list(row)) for row in x])
    got = log_likelihood(language, make_policy(rule), x)
    assert close_in_log(got, want)
    assert np.all(np.isfinite(got[:2]))


# Near-uniform oracle marginals cannot be moved 0.05 nats away toward uniform; the model then
# outputs uniform there and warns, which changes nothing here.
@pytest.mark.filterwarnings("ignore::mdm_exact.sampling.UnreachedLearningErrorWarning")
def test_denoiser_is_used_and_off_support_rows_keep_their_finite_log_p(small):
    language, length, brute = small["bigram"]
    den = PerturbedOracle(language, 0.05)
    policy = TopK(score="confidence", num_steps=2)
    xs = brute.sequences()
    want = np.array([hand_log_p({"kind": "topk", "score": "confidence", "n": 2},
                                lambda s: den(np.array([s]))[0], list(x)) for x in xs])
    got = log_likelihood(language, policy, xs, den)
    assert close_in_log(got, want)
    off = ~np.asarray(language.in_support(xs))
    assert off.any() and np.all(np.isfinite(got[off]))
    # the perturbed model reaches every sequence: no -inf anywhere
    assert np.all(np.isfinite(got))


def test_one_position_per_step_gives_q_exactly():
    language = preset("3-gram")
    x = language.sample(5, 40, 0)
    got = log_likelihood(language, TopK(score="entropy", num_steps=40), x)
    assert np.allclose(got, language.log_prob(x), rtol=1e-12, atol=0)
    got = log_likelihood(language, DeterministicPlan.left_to_right(40), x)
    assert np.allclose(got, language.log_prob(x), rtol=1e-12, atol=0)


def test_length_512_is_finite_and_matches_sampler_support():
    language = preset("2-gram")
    res = sample(language, Threshold(0.9), 512, 8, rng=1)
    got = log_likelihood(language, Threshold(0.9), res.tokens)
    # every sampled sequence has positive probability under the sampler
    assert np.all(np.isfinite(got)) and np.all(got < 0)
    assert np.all(got > -700)  # below exp(-700) the product would underflow, the sum does not


# ------------------------------------------------------------------------------ kl_estimate


@pytest.mark.parametrize("plan_name", ["topk", "threshold", "schedule", "deterministic"])
def test_kl_estimate_matches_exact_per_sample_values(small, plan_name):
    language, length, brute = small["bigram"]
    plan = {"topk": TopK(score="margin", num_steps=2), "threshold": Threshold(0.5),
            "schedule": Schedule.linear(2),
            "deterministic": DeterministicPlan([[0, 3], [1], [2]])}[plan_name]
    xs = brute.sequences()
    p = np.exp(log_likelihood(language, plan, xs)).reshape(brute.joint.shape)
    q = brute.joint
    live = q > 0
    exact_kl = float((q[live] * (np.log(q[live]) - np.log(p[live]))).sum())
    est = kl_estimate(language, plan, length, 400, rng=5)
    draws = language.sample(400, length, np.random.default_rng(5))
    values = np.log(q[tuple(draws.T)]) - np.log(p[tuple(draws.T)])
    assert isinstance(est, KLEstimate)
    assert math.isclose(est.kl.value, max(values.mean(), 0.0), rel_tol=1e-10)
    assert math.isclose(est.log_ter.value, -np.log(p[tuple(draws.T)]).mean() / length,
                        rel_tol=1e-10)
    assert math.isclose(est.kl_per_token.value, est.kl.value / length, rel_tol=1e-12)
    assert est.kl.method == KL_METHOD and est.kl.num_samples == 400
    assert est.exact_kl is not None and math.isclose(est.exact_kl, exact_kl, rel_tol=1e-9)
    assert est.kl.contains(exact_kl)
    h = float(-(q[live] * np.log(q[live])).sum())
    assert est.log_ter.contains((h + exact_kl) / length)


@pytest.mark.parametrize("lang_name", list(LANGUAGES))
@pytest.mark.parametrize("plan_name", ["linear", "cosine", "fixed", "deterministic"])
def test_kl_below_jensen_bound_and_above_ser_bound(small, lang_name, plan_name):
    language, length, _ = small[lang_name]
    plan = {"linear": Schedule.linear(3), "cosine": Schedule.cosine(2),
            "fixed": FixedCountPlan.even(length, 2),
            "deterministic": DeterministicPlan.left_to_right(length, 2)}[plan_name]
    est = kl_estimate(language, plan, length, 50, rng=0)
    m = exact_metrics(language, plan, length)
    assert est.exact_kl is not None
    assert est.exact_kl <= m.jensen_bound + 1e-12
    assert ser_kl_lower_bound(m.ser).value <= est.exact_kl + 1e-12


@pytest.mark.parametrize("lang_name", list(LANGUAGES))
@pytest.mark.parametrize("rule", RULES, ids=rule_id)
def test_ser_bound_holds_for_policies(small, lang_name, rule):
    language, length, brute = small[lang_name]
    xs = brute.sequences()
    p = np.exp(log_likelihood(language, make_policy(rule), xs)).reshape(brute.joint.shape)
    q = brute.joint
    live = q > 0
    with np.errstate(divide="ignore"):
        kl = float((q[live] * (np.log(q[live]) - np.log(p[live]))).sum())
    ser = float(p[~live].sum())
    assert ser_kl_lower_bound(ser).value <= kl + 1e-12


def test_ser_bound_with_a_monte_carlo_interval():
    language = preset("2-gram")
    plan = TopK(score="confidence", num_steps=4)
    res = sample(language, plan, 32, 300, rng=2)
    ser = sequence_error_rate(language, res.tokens)
    bound = ser_kl_lower_bound(ser)
    assert bound.low <= bound.value <= bound.high
    assert math.isclose(bound.value, -math.log(1 - ser.value), rel_tol=1e-12)
    est = kl_estimate(language, plan, 32, 300, rng=3)
    assert ser.value > 0.05  # a case where the bound says something
    assert bound.low <= est.kl.high


def test_ser_bound_edges():
    assert ser_kl_lower_bound(0.0).value == 0.0
    assert ser_kl_lower_bound(1.0).value == math.inf
    assert ser_kl_lower_bound(1 - math.exp(-2.0)).value == pytest.approx(2.0, rel=1e-12)
    est = ser_kl_lower_bound(wilson_interval(0, 10))
    assert est.low == 0.0 and est.high > 0 and "wilson" in est.method
    assert ser_kl_lower_bound(0.5).exact


def test_kl_infinite_when_p_misses_the_support():
    # q is uniform on {0, 1}^2; a denoiser that never proposes token 1 gives p(x) = 0 on 3/4 of
    # supp q, so KL(q || p) and the log TER are infinite.
    language = NGram(2, [0.5, 0.5], [[0.5, 0.5], [0.5, 0.5]])

    def den(x):
        out = np.zeros((*x.shape, 2))
        out[..., 0] = 1.0
        return out

    est = kl_estimate(language, TopK(score="confidence", num_steps=2), 2, 20, denoiser=den, rng=0)
    assert est.kl.value == math.inf and est.log_ter.value == math.inf
    assert est.exact_kl == math.inf


def test_ar_order_has_zero_kl():
    language = preset("3-gram")
    est = kl_estimate(language, DeterministicPlan.left_to_right(128), 128, 30, rng=0)
    assert est.exact_kl is None
    assert est.kl.high < 1e-9 and est.kl.value >= 0
    h = language.entropy(128).value / 128
    assert est.log_ter.contains(h)  # p = q: the log TER is the entropy rate


# ------------------------------------------------------------------------------ bad inputs


def test_bad_inputs_name_the_argument(bigram):
    policy = TopK(score="confidence", num_steps=2)
    with pytest.raises(ArgumentError, match="x has token -1"):
        log_likelihood(bigram, policy, [[0, MASK, 1]])
    with pytest.raises(ArgumentError, match="x has token 3"):
        log_likelihood(bigram, policy, [[0, 3, 1]])
    with pytest.raises(ArgumentTypeError, match="x must hold integer"):
        log_likelihood(bigram, policy, [[0.5, 1.0]])
    with pytest.raises(ArgumentError, match="x must have length >= 1"):
        log_likelihood(bigram, policy, np.zeros((2, 0), dtype=int))
    with pytest.raises(ArgumentTypeError, match="plan must be"):
        log_likelihood(bigram, "linear", [[0, 1]])
    with pytest.raises(ArgumentTypeError, match="language must be"):
        log_likelihood("bigram", policy, [[0, 1]])
    with pytest.raises(ArgumentError, match="length must equal"):
        log_likelihood(bigram, DeterministicPlan([[0], [1]]), [[0, 1, 2]])
    with pytest.raises(ArgumentTypeError, match="denoiser must be callable"):
        log_likelihood(bigram, policy, [[0, 1]], denoiser=3)
    with pytest.raises(BudgetError, match="log_likelihood of .* deterministic policies"):
        log_likelihood(preset("3-gram"), Schedule.linear(4), np.zeros((1, 64), dtype=int))
    with pytest.raises(ArgumentTypeError, match="num_samples must be an integer"):
        kl_estimate(bigram, policy, 4, 2.5)
    with pytest.raises(ArgumentError, match="num_samples must be >= 2"):
        kl_estimate(bigram, policy, 4, 1)
    with pytest.raises(ArgumentError, match="confidence must lie in"):
        kl_estimate(bigram, policy, 4, 10, confidence=1.5)
    with pytest.raises(ArgumentError, match="ser must lie in"):
        ser_kl_lower_bound(1.5)
    with pytest.raises(ArgumentError, match="ser must lie in"):
        ser_kl_lower_bound(Estimate(0.5, -0.1, 0.6, "x"))
    with pytest.raises(ArgumentTypeError, match="ser must be an Estimate"):
        ser_kl_lower_bound("0.5")


def test_empty_batch_and_one_row(bigram):
    policy = Threshold(0.5)
    assert log_likelihood(bigram, policy, np.zeros((0, 3), dtype=int)).shape == (0,)
    one = log_likelihood(bigram, policy, [0, 1, 2])
    assert one.shape == (1,)
    assert one[0] == log_likelihood(bigram, policy, [[0, 1, 2], [2, 2, 2]])[0]


def test_refusals_name_the_reason_at_large_length():
    """Issue 12's bad inputs: a fixed-count plan couples segments, a 3-gram is no first-order
    chain; both are refused at L = 64 with the reason and what is supported."""
    bigram, trigram = preset("2-gram"), preset("3-gram")
    with pytest.raises(BudgetError, match="couples the segments"):
        log_likelihood(bigram, FixedCountPlan.even(64, 8), bigram.sample(2, 64, rng=0))
    with pytest.raises(BudgetError, match="first-order chain"):
        log_likelihood(trigram, Schedule.linear(8), trigram.sample(2, 64, rng=0))
