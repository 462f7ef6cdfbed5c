"""Monte-Carlo estimators with confidence intervals (eqs. 4-5, Lemma B.2) against the
exact engine: the stated intervals must cover the exact values at their stated rate."""

from __future__ import annotations

import contextlib
import math

import numba
import numpy as np
import pytest
from scipy import stats

from mdm_exact import MASK, preset, random_hmm, random_ngram
from mdm_exact.estimate import Estimate, exact, mean_interval, wilson_interval
from mdm_exact.exact import exact_metrics
from mdm_exact.metrics import (
    generative_log_perplexity,
    generative_perplexity,
    jensen_bound,
    sequence_error_rate,
)
from mdm_exact.sampling import PerturbedOracle, sample
from mdm_exact.schedules import DeterministicPlan, FixedCountPlan, Schedule

BIGRAM = random_ngram(2, 3, temperature=1.0, threshold=0.12, seed=3)  # has zeros: SER > 0
HMM_V2 = random_hmm(3, 2, randomness=1.0, threshold=0.2, seed=0)
FULL = random_ngram(2, 3, temperature=1.0, threshold=0.0, seed=4)  # no zeros: GenPPL finite

SEEDS = 300
SAMPLES = 400
NOMINAL = 0.95
COVERAGE_MIN = 0.90  # 0.95 - 4 binomial standard deviations at 300 seeds
COVERAGE_MAX = 0.985  # a much too wide interval covers nearly always


@contextlib.contextmanager
def one_numba_thread():
    """Thousands of tiny posterior calls: thread start-up would dominate on a busy machine."""
    old = numba.get_num_threads()
    numba.set_num_threads(1)
    try:
        yield
    finally:
        numba.set_num_threads(old)


COVERAGE_CASES = {
    "bigram-linear2": (BIGRAM, Schedule.linear(2), 3),
    "hmm-fixed": (HMM_V2, FixedCountPlan([2, 2]), 4),
    "full-cosine3": (FULL, Schedule.cosine(3), 3),
}


@pytest.mark.parametrize("name", list(COVERAGE_CASES))
def test_interval_coverage(name):
    """Item 3: over 300 seeds x 400 samples, the 95% Wilson interval of SER and the 95% t
    intervals of the Jensen bound and of the generative log-perplexity contain the exact values
    from ``exact_metrics`` at a rate compatible with 0.95 (an exact value of 0 or inf must be
    covered every time), and lose that coverage for a value about 3 standard errors off."""
    lang, plan, length = COVERAGE_CASES[name]
    m = exact_metrics(lang, plan, length)
    hits = {"ser": 0, "jensen": 0, "gen": 0}
    shifted_hits = {"ser": 0, "jensen": 0}
    jensen_values = []
    with one_numba_thread():
        for seed in range(SEEDS):
            rng = np.random.default_rng(seed)
            tokens = sample(lang, plan, length, SAMPLES, rng=rng).tokens
            ser = sequence_error_rate(lang, tokens)
            gen = generative_log_perplexity(lang, tokens)
            jb = jensen_bound(lang, plan, length, SAMPLES, rng=rng)
            assert ser.method == "wilson" and ser.confidence == NOMINAL
            assert ser.num_samples == SAMPLES and jb.num_samples == SAMPLES
            hits["ser"] += ser.contains(m.ser)
            hits["gen"] += gen.contains(m.gen_log_ppl)
            hits["jensen"] += jb.contains(m.jensen_bound)
            jensen_values.append(jb.value)
            # About 3 standard errors off: such a bias must show up as lost coverage. The
            # interval is clipped at 0 (a KL's domain), so its upper half gives the width.
            shifted_hits["jensen"] += jb.contains(m.jensen_bound + 1.5 * (jb.high - jb.value))
            shifted_hits["ser"] += ser.contains(m.ser + 0.75 * (ser.high - ser.low))
    rates = {key: val / SEEDS for key, val in hits.items()}
    assert COVERAGE_MIN <= rates["jensen"] <= COVERAGE_MAX, rates
    for key, value in (("ser", m.ser), ("gen", m.gen_log_ppl)):
        if value == 0 or math.isinf(value):
            assert rates[key] == 1.0, rates
        else:
            assert COVERAGE_MIN <= rates[key] <= COVERAGE_MAX, rates
    assert shifted_hits["jensen"] / SEEDS < 0.5
    if m.ser > 0:
        assert shifted_hits["ser"] / SEEDS < 0.5
    # The estimator is unbiased: the mean over all seeds is within 4 standard errors.
    values = np.array(jensen_values)
    assert abs(values.mean() - m.jensen_bound) < 4 * values.std(ddof=1) / math.sqrt(SEEDS)


def test_coverage_cases_are_informative():
    """The coverage cases span SER > 0, SER = 0 and a finite generative perplexity, and a
    strictly positive Jensen gap."""
    ms = {name: exact_metrics(*case) for name, case in COVERAGE_CASES.items()}
    assert ms["bigram-linear2"].ser > 0.05
    assert ms["hmm-fixed"].ser == 0.0
    assert math.isfinite(ms["full-cosine3"].gen_log_ppl)
    assert all(m.jensen_gap > 1e-4 for m in ms.values())


# ------------------------------------------------------------------------------ estimators


def test_sequence_error_rate_counts_and_wilson():
    lang = BIGRAM
    good = lang.sample(7, 3, 0)
    bad_pair = np.argwhere(lang.transition == 0)[0]
    bad = np.tile([bad_pair[0], bad_pair[1], 0], (3, 1))
    est = sequence_error_rate(lang, np.vstack([good, bad]))
    assert est.value == pytest.approx(0.3)
    for confidence in (0.95, 0.99, 0.5):
        est = sequence_error_rate(lang, np.vstack([good, bad]), confidence=confidence)
        ci = stats.binomtest(3, 10).proportion_ci(confidence_level=confidence, method="wilson")
        assert est.low == pytest.approx(ci.low, abs=1e-12)
        assert est.high == pytest.approx(ci.high, abs=1e-12)
        assert est.num_samples == 10 and est.confidence == confidence
    wide = sequence_error_rate(lang, np.vstack([good, bad]), confidence=0.99)
    narrow = sequence_error_rate(lang, np.vstack([good, bad]), confidence=0.95)
    assert wide.low < narrow.low and wide.high > narrow.high


@pytest.mark.parametrize("trials", [1, 2, 7, 50, 1000])
@pytest.mark.parametrize("confidence", [0.5, 0.9, 0.95, 0.999])
def test_wilson_interval_matches_scipy_and_the_score_equation(trials, confidence):
    """Against ``scipy.stats.binomtest(k, n).proportion_ci(method="wilson")``, and each inner
    endpoint e solves the score equation (k/n - e)^2 = z^2 e (1 - e) / n."""
    z = stats.norm.ppf(0.5 + confidence / 2)
    for k in sorted({0, 1, trials // 3, trials // 2, trials - 1, trials}):
        est = wilson_interval(k, trials, confidence)
        ci = stats.binomtest(k, trials).proportion_ci(confidence_level=confidence,
                                                      method="wilson")
        assert est.value == k / trials and est.num_samples == trials
        assert est.low == pytest.approx(ci.low, abs=1e-12)
        assert est.high == pytest.approx(ci.high, abs=1e-12)
        assert 0.0 <= est.low <= k / trials <= est.high <= 1.0
        for end in (est.low, est.high):
            assert (k / trials - end) ** 2 == pytest.approx(z * z * end * (1 - end) / trials,
                                                            rel=1e-9, abs=1e-15)


def test_wilson_edges_contain_zero_and_one():
    """All successes or none: the interval must still contain the true 0 or 1 (it did not, by
    a rounding error of 1e-19, before the fix)."""
    for n in (1, 10, 300, 1000, 4321):
        none, every = wilson_interval(0, n), wilson_interval(n, n)
        assert none.low == 0.0 and none.contains(0.0) and none.high > 0
        assert every.high == 1.0 and every.contains(1.0) and every.low < 1
    with pytest.raises(ValueError, match="trials"):
        wilson_interval(0, 0)
    with pytest.raises(ValueError, match="successes"):
        wilson_interval(5, 4)


def test_generative_log_perplexity():
    lang = FULL
    tokens = lang.sample(500, 6, 1)
    values = -np.array([lang.log_prob(t) for t in tokens]) / 6
    est = generative_log_perplexity(lang, tokens)
    assert est.value == pytest.approx(values.mean(), rel=1e-12)
    low, high = stats.t.interval(0.95, values.size - 1, loc=values.mean(),
                                 scale=values.std(ddof=1) / math.sqrt(values.size))
    assert est.low == pytest.approx(low, rel=1e-10) and est.high == pytest.approx(high, rel=1e-10)
    ppl = generative_perplexity(lang, tokens)
    assert ppl.value == pytest.approx(math.exp(est.value))
    assert ppl.low == pytest.approx(math.exp(est.low)) and ppl.high == pytest.approx(
        math.exp(est.high))
    # One impossible sample makes it infinite.
    bad_pair = np.argwhere(BIGRAM.transition == 0)[0]
    x = BIGRAM.sample(20, 3, 2)
    x[0] = [bad_pair[0], bad_pair[1], 0]
    assert math.isinf(generative_log_perplexity(BIGRAM, x).value)
    assert math.isinf(generative_perplexity(BIGRAM, x).value)


def test_jensen_bound_is_zero_for_autoregressive_oracle():
    """One position per step with the oracle: every score log q(x) - sum log q(x_j | x_<j) is 0."""
    lang = preset("3-gram")
    est = jensen_bound(lang, DeterministicPlan.left_to_right(30), 30, 50, rng=0)
    assert abs(est.value) < 1e-10 and abs(est.low) < 1e-10 and abs(est.high) < 1e-10
    shuffled = DeterministicPlan([[int(i)] for i in np.random.default_rng(1).permutation(30)])
    assert abs(jensen_bound(lang, shuffled, 30, 50, rng=0).value) < 1e-10
    parallel = jensen_bound(lang, Schedule.linear(3), 30, 50, rng=0)
    assert parallel.low > 0


def test_jensen_bound_with_perturbed_oracle_matches_exact():
    """Single check of the estimator with a non-oracle denoiser (and the eps_learning L term)."""
    den = PerturbedOracle(HMM_V2, 0.05)
    plan = DeterministicPlan.left_to_right(4)
    m = exact_metrics(HMM_V2, plan, 4, den)
    assert m.jensen_bound == pytest.approx(m.kl, abs=1e-12)
    assert m.jensen_bound <= 4 * 0.05 + 1e-12  # chain rule: at most L * eps_learning
    est = jensen_bound(HMM_V2, plan, 4, 4000, den, rng=3)
    assert est.contains(m.jensen_bound)


def test_jensen_bound_arguments():
    with pytest.raises(ValueError, match="num_samples"):
        jensen_bound(BIGRAM, Schedule.linear(2), 3, 1)
    with pytest.raises(ValueError, match="length"):
        jensen_bound(BIGRAM, FixedCountPlan([1, 1]), 3, 10)
    with pytest.raises(TypeError, match="schedule"):
        jensen_bound(BIGRAM, [0.5, 0.5], 3, 10)
    with pytest.raises(ValueError, match="x has token"):
        sequence_error_rate(BIGRAM, np.full((2, 3), MASK - 1))


def test_estimate_helpers():
    e = exact(0.25)
    assert e.exact and e.low == e.high == e.value == 0.25 and e.num_samples == 0
    assert e.contains(0.25) and not e.contains(0.2500001)
    assert "exact" in str(e)
    m = mean_interval([1.0, 2.0, 3.0])
    assert m.value == 2.0 and m.low < 2.0 < m.high
    assert isinstance(m, Estimate) and m.as_dict()["method"] == "monte-carlo t"
    with pytest.raises(ValueError, match="values"):
        mean_interval([1.0])


@pytest.mark.parametrize("name", ["2-gram", "3-gram", "hmm"])
def test_jensen_bound_asks_the_oracle_only_where_a_step_reveals(name):
    """The Oracle's fast path (marginals at the revealed positions only) scores exactly what the
    whole-row path scores: a plain callable wrapping the same Oracle takes the whole-row path."""
    from mdm_exact.sampling import Oracle

    lang = preset(name)
    oracle = Oracle(lang)
    plan = Schedule.linear(6)
    fast = jensen_bound(lang, plan, 40, 30, None, 3)
    whole = jensen_bound(lang, plan, 40, 30, lambda x: oracle(x), 3)
    assert fast.value == pytest.approx(whole.value, rel=1e-12, abs=1e-12)
    assert fast.high == pytest.approx(whole.high, rel=1e-12, abs=1e-12)
