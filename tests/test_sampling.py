"""The Monte-Carlo sampler and the denoisers (eq. 3, Assumption 4.1, Appendix D)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from mdm_exact import MASK, IntervalParity, preset, random_hmm, random_ngram
from mdm_exact.exact import output_distribution
from mdm_exact.sampling import Oracle, PerturbedOracle, SampleResult, call_denoiser, sample
from mdm_exact.schedules import DeterministicPlan, FixedCountPlan, Schedule

BIGRAM = random_ngram(2, 3, temperature=1.0, threshold=0.12, seed=3)
HMM_V2 = random_hmm(3, 2, randomness=1.0, threshold=0.2, seed=0)


class ContextDenoiser:
    """Marginals that depend on how many tokens are revealed and on their sum (mod 3)."""

    def __init__(self, vocab_size: int, length: int, seed: int):
        rng = np.random.default_rng(seed)
        table = rng.random((length, length + 1, 3, vocab_size)) + 0.05
        self.table = table / table.sum(axis=-1, keepdims=True)
        self.length = length

    def __call__(self, x):
        count = (x != MASK).sum(axis=1)
        residue = np.where(x != MASK, x, 0).sum(axis=1) % 3
        return self.table[np.arange(self.length)[None, :], count[:, None], residue[:, None]]


def kl(q: np.ndarray, p: np.ndarray) -> np.ndarray:
    """KL(q || p) along the last axis, written out here (0 log 0 = 0)."""
    out = np.zeros(q.shape[:-1])
    for v in range(q.shape[-1]):
        qv, pv = q[..., v], p[..., v]
        pos = qv > 0
        out[pos] += qv[pos] * np.log(qv[pos] / pv[pos])
    return out


def half_masked(lang, num: int, length: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = lang.sample(num, length, rng)
    x[rng.random(x.shape) < 0.5] = MASK
    return x


# ------------------------------------------------------------------------------ item 3


def empirical(tokens: np.ndarray, vocab_size: int) -> np.ndarray:
    codes = np.ravel_multi_index(tuple(tokens.T), (vocab_size,) * tokens.shape[1])
    return np.bincount(codes, minlength=vocab_size ** tokens.shape[1])


def assert_matches_distribution(counts: np.ndarray, p: np.ndarray) -> None:
    """Chi-square goodness of fit (cells with expected count < 5 pooled), no sample on a
    zero-probability cell, and total variation within sampling noise."""
    p = p.ravel()
    n = counts.sum()
    assert counts[p == 0].sum() == 0, "a sequence of exact probability 0 was sampled"
    big = p * n >= 5
    obs = np.append(counts[big], counts[~big & (p > 0)].sum())
    exp = np.append(p[big] * n, p[~big & (p > 0)].sum() * n)
    keep = exp > 0
    assert stats.chisquare(obs[keep], exp[keep]).pvalue > 1e-3
    tv = 0.5 * np.abs(counts / n - p).sum()
    assert tv < 2.0 * math.sqrt(p.size / n)


CASES = {
    "bigram-linear2": (BIGRAM, Schedule.linear(2), 3, None),
    "bigram-cosine3": (BIGRAM, Schedule.cosine(3), 3, None),
    "bigram-fixed": (BIGRAM, FixedCountPlan([2, 1]), 3, None),
    "bigram-parallel": (BIGRAM, DeterministicPlan([[0, 1, 2]]), 3, None),
    "hmm-alpha": (HMM_V2, Schedule.from_alpha([1.0, 0.5, 0.1, 0.0]), 4, None),
    "hmm-fixed-perturbed": (HMM_V2, FixedCountPlan([1, 3]), 4, "perturbed"),
    "hmm-deterministic-custom": (HMM_V2, DeterministicPlan([[3], [0, 2], [1]]), 4, "custom"),
    "parity-linear2": (IntervalParity(3), Schedule.linear(2), 3, None),
}


@pytest.mark.parametrize("name", list(CASES))
def test_sampler_reproduces_exact_distribution(name):
    lang, plan, length, den_kind = CASES[name]
    den = {None: None, "perturbed": PerturbedOracle(lang, 0.1),
           "custom": ContextDenoiser(lang.vocab_size, length, 4)}[den_kind]
    p = output_distribution(lang, plan, length, den)
    num = 30000 if den_kind == "perturbed" else 60000  # the bisection is the slow part
    res = sample(lang, plan, length, num, den, rng=np.random.default_rng(17))
    assert_matches_distribution(empirical(res.tokens, lang.vocab_size), p)


def test_sampler_is_not_the_language():
    """Control: the same goodness-of-fit check rejects q as the law of parallel samples."""
    q = BIGRAM.joint(3)
    res = sample(BIGRAM, DeterministicPlan([[0, 1, 2]]), 3, 60000, rng=0)
    counts = empirical(res.tokens, 3)
    with pytest.raises(AssertionError):
        assert_matches_distribution(counts, q)


def test_semantics_condition_on_earlier_steps_only():
    """A one-hot denoiser that outputs (number of revealed tokens) mod V: each token must equal
    the number of positions revealed at strictly earlier steps (same-step tokens are invisible,
    earlier ones are never re-masked)."""
    v = 5

    def counter(x):
        out = np.zeros((*x.shape, v))
        c = (x != MASK).sum(axis=1) % v
        out[:, :, :] = np.eye(v)[c][:, None, :]
        return out

    lang = random_ngram(2, v, threshold=0.0, seed=0)
    for plan, length in [(Schedule.cosine(6), 9), (FixedCountPlan([2, 0, 3, 4]), 9),
                         (DeterministicPlan([[4], [0, 1, 8], [2, 3, 5, 6, 7]]), 9)]:
        res = sample(lang, plan, length, 300, counter, rng=1)
        earlier = (res.reveal_step[:, None, :] < res.reveal_step[:, :, None]).sum(axis=2)
        np.testing.assert_array_equal(res.tokens, earlier % v)


# ------------------------------------------------------------------------------ item 8


class Spy:
    """Wraps a denoiser and records the batches it is called on."""

    def __init__(self, inner):
        self.inner = inner
        self.calls: list[np.ndarray] = []

    def __call__(self, x):
        self.calls.append(np.array(x))
        return self.inner(x)


@pytest.mark.parametrize("plan", [
    Schedule.linear(6), Schedule.cosine(40), Schedule.linear(1), FixedCountPlan([3, 0, 2, 3]),
    DeterministicPlan.left_to_right(8, 3),
])
def test_sample_result_fields(plan):
    lang = preset("3-gram")
    length = 8
    spy = Spy(Oracle(lang))
    res = sample(lang, plan, length, 500, spy, rng=np.random.default_rng(3))
    assert isinstance(res, SampleResult)
    assert res.tokens.shape == (500, length) and res.tokens.dtype == np.int64
    assert res.tokens.min() >= 0 and res.tokens.max() < lang.vocab_size
    assert res.reveal_step.shape == (500, length)
    assert res.reveal_step.min() >= 0 and res.reveal_step.max() < plan.num_steps
    assert res.nfe == plan.num_steps
    distinct = np.array([np.unique(r).size for r in res.reveal_step])
    np.testing.assert_array_equal(res.nfe_cache, distinct)
    assert np.all(res.nfe_cache <= min(plan.num_steps, length))
    assert np.all(res.nfe_cache >= 1)
    if isinstance(plan, DeterministicPlan):
        np.testing.assert_array_equal(res.reveal_step, plan.draw_steps(500, length))
    if isinstance(plan, FixedCountPlan):
        per_row = np.stack([np.bincount(r, minlength=plan.num_steps) for r in res.reveal_step])
        assert np.all(per_row == plan.counts)
    # One denoiser call per non-empty step, on exactly the rows revealing something there, with
    # exactly the positions of earlier steps revealed.
    used = np.unique(res.reveal_step)
    assert len(spy.calls) == used.size
    for k, batch in zip(used, spy.calls, strict=True):
        rows = np.flatnonzero((res.reveal_step == k).any(axis=1))
        assert batch.shape == (rows.size, length)
        before = res.reveal_step[rows] < k
        np.testing.assert_array_equal(batch != MASK, before)
        np.testing.assert_array_equal(batch[before], res.tokens[rows][before])


def test_schedule_reveal_steps_follow_masses():
    s = Schedule([0.2, 0.0, 0.5, 0.3])
    res = sample(BIGRAM, s, 6, 5000, rng=4)
    counts = np.bincount(res.reveal_step.ravel(), minlength=4)
    assert counts[1] == 0
    nz = s.masses > 0
    assert stats.chisquare(counts[nz], counts.sum() * s.masses[nz]).pvalue > 1e-4
    se = res.nfe_cache.std(ddof=1) / math.sqrt(res.nfe_cache.size)
    assert abs(res.nfe_cache.mean() - s.expected_nfe(6)) < 5 * se


def test_same_seed_same_output():
    lang = preset("2-gram")
    for den in (None, PerturbedOracle(lang, 0.05, direction="random", seed=3)):
        a = sample(lang, Schedule.cosine(5), 16, 50, den, rng=123)
        b = sample(lang, Schedule.cosine(5), 16, 50, den, rng=np.random.default_rng(123))
        c = sample(lang, Schedule.cosine(5), 16, 50, den, rng=124)
        np.testing.assert_array_equal(a.tokens, b.tokens)
        np.testing.assert_array_equal(a.reveal_step, b.reveal_step)
        np.testing.assert_array_equal(a.nfe_cache, b.nfe_cache)
        assert not np.array_equal(a.tokens, c.tokens)


def test_autoregressive_plan_never_errs():
    """N = L, one position per step, oracle: every sample lies in supp q (item 2, sampled)."""
    lang = preset("3-gram")
    assert lang.metadata["pruned_fraction"] > 0
    res = sample(lang, DeterministicPlan.left_to_right(40), 40, 300, rng=5)
    assert np.all(lang.in_support(res.tokens))
    parallel = sample(lang, Schedule.linear(2), 40, 300, rng=5)
    assert not np.all(lang.in_support(parallel.tokens))


def test_sample_argument_errors():
    with pytest.raises(ValueError, match="num_samples"):
        sample(BIGRAM, Schedule.linear(2), 3, 0)
    with pytest.raises(TypeError, match="num_samples"):
        sample(BIGRAM, Schedule.linear(2), 3, 2.0)
    with pytest.raises(ValueError, match=r"length must equal sum\(counts\) = 2, got 3"):
        sample(BIGRAM, FixedCountPlan([1, 1]), 3, 5)
    with pytest.raises(TypeError, match="schedule must be"):
        sample(BIGRAM, "linear", 3, 5)
    with pytest.raises(TypeError, match="denoiser must be callable"):
        sample(BIGRAM, Schedule.linear(2), 3, 5, denoiser="oracle")
    with pytest.raises(ValueError, match="denoiser returned shape"):
        sample(BIGRAM, Schedule.linear(2), 3, 5, denoiser=lambda x: np.ones((*x.shape, 2)))
    with pytest.raises(ValueError, match="denoiser returned negative"):
        call_denoiser(lambda x: -np.ones((*x.shape, 3)), np.full((1, 3), MASK), 3)
    with pytest.raises(TypeError, match="language"):
        Oracle("3-gram")


@pytest.mark.parametrize("off", [3e-7, -9e-7, 1e-9])
def test_call_denoiser_renormalises_rows_slightly_off(off):
    """Rows whose sums are off 1 by less than DENOISER_ATOL = 1e-6 come back divided by their
    own sums (float32 outputs included), the read-only input untouched."""
    rng = np.random.default_rng(0)
    base = rng.dirichlet(np.ones(3), size=(2, 4))
    scale = 1.0 + off * rng.uniform(0.2, 1.0, size=(2, 4, 1))
    rows = base * scale
    x = np.full((2, 4), MASK)
    x[0, 1] = 2
    seen = []

    def denoiser(view):
        seen.append(view.flags.writeable)
        return rows

    out = call_denoiser(denoiser, x, 3)
    assert seen == [False] and x[0, 1] == 2
    assert out.dtype == np.float64 and out.shape == (2, 4, 3)
    np.testing.assert_array_equal(out, rows / rows.sum(axis=-1, keepdims=True))
    np.testing.assert_allclose(out.sum(axis=-1), 1.0, rtol=0, atol=4e-16)
    single = call_denoiser(lambda v: rows.astype(np.float32), x, 3)
    wide = rows.astype(np.float32).astype(np.float64)
    np.testing.assert_array_equal(single, wide / wide.sum(axis=-1, keepdims=True))


@pytest.mark.parametrize("off", [2e-6, -1e-5, 0.5, -1.0])
def test_call_denoiser_refuses_rows_further_off(off):
    """Off by more than 1e-6 (an all-zero row at -1): refused in one line naming the row."""
    rows = np.full((1, 3, 2), 0.5)
    rows[0, 2] *= 1.0 + off
    with pytest.raises(ValueError, match=r"row \(0, 2\) sums to") as err:
        call_denoiser(lambda v: rows, np.full((1, 3), MASK), 2)
    assert "\n" not in str(err.value)


# ------------------------------------------------------------------------------ denoisers


def test_oracle_is_uniform_off_support():
    lang = random_ngram(2, 3, temperature=1.0, threshold=0.12, seed=3)
    bad = np.argwhere(lang.transition == 0)[0]
    x = np.array([[bad[0], bad[1], MASK], [bad[0], MASK, MASK]])
    out = Oracle(lang)(x)
    np.testing.assert_allclose(out[0], 1 / 3)
    np.testing.assert_allclose(out[1].sum(axis=-1), 1.0)
    assert not np.allclose(out[1, 1], 1 / 3)


@pytest.mark.parametrize("direction", ["uniform", "random", "vector"])
@pytest.mark.parametrize("eps", [1e-4, 0.05, 0.4])
def test_perturbed_oracle_hits_eps_learning(direction, eps):
    """Item 7: KL(oracle || model) = eps_learning to 1e-9 at every masked position where the
    direction is at least that far; elsewhere the model is the direction; revealed positions
    keep the oracle's one-hot."""
    lang = preset("3-gram")
    x = half_masked(lang, 64, 24, seed=8)
    d = {"uniform": "uniform", "random": "random",
         "vector": np.array([0.3, 0.2, 0.1, 0.1, 0.1, 0.1, 0.05, 0.05])}[direction]
    model = PerturbedOracle(lang, eps, direction=d, seed=2)
    q = Oracle(lang)(x)
    p = model(x)
    assert p.shape == q.shape
    np.testing.assert_allclose(p.sum(axis=-1), 1.0, atol=1e-12)
    masked = x == MASK
    revealed = ~masked
    np.testing.assert_array_equal(p[revealed], q[revealed])
    achieved = kl(q, p)
    reach = kl(q, np.broadcast_to(model.direction, q.shape)) > eps
    assert reach[masked].mean() > 0.5
    np.testing.assert_allclose(achieved[masked & reach], eps, rtol=0, atol=1e-9)
    unreached = masked & ~reach
    np.testing.assert_allclose(p[unreached], np.broadcast_to(model.direction, p.shape)[unreached],
                               atol=1e-15)
    assert np.all(achieved[unreached] <= eps + 1e-12)
    np.testing.assert_allclose(model.achieved_kl(x), np.where(masked, achieved, 0.0), atol=1e-12)
    # p is on the segment from q to the direction.
    lam = np.where(masked & reach)
    diff = (p - q)[lam]
    toward = (model.direction - q)[lam]
    ratio = (diff * toward).sum(-1) / (toward * toward).sum(-1)
    np.testing.assert_allclose(diff, ratio[:, None] * toward, atol=1e-12)
    assert np.all((ratio > 0) & (ratio <= 1))


def test_perturbed_oracle_reaches_small_eps_on_deterministic_positions():
    """A position the language fixes (one-hot oracle) still gets exactly eps_learning."""
    lang = preset("3-gram")
    x = lang.sample(1, 10, 0)
    x[0, 5] = MASK
    q = Oracle(lang)(x)
    model = PerturbedOracle(lang, 0.02)
    assert kl(q, model(x))[0, 5] == pytest.approx(0.02, abs=1e-9)


def test_perturbed_oracle_eps_zero_is_oracle():
    lang = HMM_V2
    x = half_masked(lang, 20, 6, seed=1)
    np.testing.assert_allclose(PerturbedOracle(lang, 0.0)(x), Oracle(lang)(x), atol=1e-15)


def test_perturbed_oracle_random_direction_is_seeded():
    lang = preset("2-gram")
    x = half_masked(lang, 8, 12, seed=3)
    a = PerturbedOracle(lang, 0.1, direction="random", seed=9)
    b = PerturbedOracle(lang, 0.1, direction="random", seed=9)
    c = PerturbedOracle(lang, 0.1, direction="random", seed=10)
    np.testing.assert_array_equal(a.direction, b.direction)
    np.testing.assert_array_equal(a(x), b(x))
    assert not np.allclose(a.direction, c.direction)
    assert a.direction.shape == (8,) and a.direction.sum() == pytest.approx(1.0)
    assert not np.allclose(a(x), c(x))


def test_perturbed_oracle_argument_errors():
    lang = preset("2-gram")
    with pytest.raises(ValueError, match="eps_learning must be a finite number >= 0") as err:
        PerturbedOracle(lang, -0.1)
    assert "-0.1" in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(ValueError, match="eps_learning"):
        PerturbedOracle(lang, float("nan"))
    with pytest.raises(ValueError, match="direction"):
        PerturbedOracle(lang, 0.1, direction="sideways")
    with pytest.raises(ValueError, match="direction"):
        PerturbedOracle(lang, 0.1, direction=np.ones(8))
    with pytest.raises(ValueError, match="direction"):
        PerturbedOracle(lang, 0.1, direction=np.full(3, 1 / 3))
