"""Issue 10, the numerical core: extreme-but-legal inputs give correct, in-domain numbers.

Every expected value here is computed independently of the code under test: by hand in exact
rationals, by a log-space forward pass written in this file, or by brute force over all
sequences.
"""

from __future__ import annotations

import itertools
import math
import os
import subprocess
import sys
import time
import warnings

import numpy as np
import pytest

import mdm_exact as me
from mdm_exact import exact as ex
from mdm_exact.estimate import mean_interval
from mdm_exact.sampling import UnreachedLearningErrorWarning, call_denoiser, perturb_toward

MASK = -1


# ------------------------------------------------------------------------------ item 1


@pytest.mark.parametrize("name", ["2-gram", "3-gram", "hmm"])
def test_empty_batch_agrees_across_functions(name):
    """A batch of zero rows is legal: every function returns shape (0,) (or (0, L, V))."""
    lang = me.preset(name)
    x = np.zeros((0, 5), dtype=np.int64)
    post = me.posterior(lang, x)
    assert post.marginals.shape == (0, 5, lang.vocab_size)
    assert post.log_evidence.shape == post.valid.shape == (0,)
    assert me.log_prob(lang, x).shape == (0,)
    assert me.in_support(lang, x).shape == (0,)


def test_integral_floats_and_unsigned_tokens_are_read_exactly():
    lang = me.preset("2-gram")
    x = np.array([[0, 3, -1, 7]])
    ref = me.log_prob(lang, x)
    np.testing.assert_array_equal(me.log_prob(lang, x.astype(float)), ref)
    y = np.array([[0, 3, 5, 7]], dtype=np.uint64)
    np.testing.assert_array_equal(me.log_prob(lang, y), me.log_prob(lang, y.astype(np.int64)))


def test_read_only_tokens_are_accepted():
    lang = me.preset("hmm")
    x = lang.sample(3, 6, 0)
    x.setflags(write=False)
    np.testing.assert_array_equal(me.in_support(lang, x), [True, True, True])


# ------------------------------------------------------------------------------ item 2


def _log_forward(initial, transition, emission, x):
    """log q(revealed tokens of x) by a plain log-space forward pass (math.fsum per state)."""
    def lg(v):
        return -math.inf if v == 0 else math.log(v)

    k = len(initial)
    alpha = [lg(initial[s]) + (0.0 if x[0] < 0 else lg(emission[s][x[0]])) for s in range(k)]
    for tok in x[1:]:
        new = []
        for t in range(k):
            terms = [a + lg(transition[s][t]) for s, a in enumerate(alpha)]
            top = max(terms)
            val = -math.inf if top == -math.inf else top + math.log(
                math.fsum(math.exp(v - top) for v in terms))
            new.append(val + (0.0 if tok < 0 else lg(emission[t][tok])))
        alpha = new
    top = max(alpha)
    return -math.inf if top == -math.inf else top + math.log(
        math.fsum(math.exp(v - top) for v in alpha))


def test_subnormal_transition_gives_exact_marginals():
    """NGram(2, [1, 0], [[1, 1e-310], [.5, .5]]), x = [0, -1, 1]: the middle token is 0 with
    weight 1 * 1e-310 and 1 with weight 1e-310 * 0.5, so its marginal is [2/3, 1/3]."""
    lang = me.NGram(2, [1, 0], [[1, 1e-310], [0.5, 0.5]])
    post = me.posterior(lang, [[0, -1, 1]])
    assert post.valid[0]
    np.testing.assert_allclose(post.marginals[0, 1], [2 / 3, 1 / 3], rtol=1e-12)
    assert post.log_evidence[0] == pytest.approx(math.log(1.5) + math.log(1e-310), rel=1e-12)
    assert me.log_prob(lang, [[0, -1, 1]])[0] == pytest.approx(post.log_evidence[0], rel=1e-12)


@pytest.mark.parametrize("tiny", [1e-300, 1e-310, 5e-324])
def test_tiny_entries_support_and_log_prob_agree(tiny):
    """Wherever in_support is True, log_prob is finite and equals an independent log-space
    forward pass; for masked rows too (the scaled kernels hand these rows to log space)."""
    lang = me.NGram(2, [1 - tiny, tiny], [[1 - tiny, tiny], [0.5, 0.5]])
    hmm = lang.as_hmm()
    rows = [list(x) for x in itertools.product([-1, 0, 1], repeat=4)]
    lp = me.log_prob(lang, rows)
    lp_hmm = me.log_prob(hmm, rows)
    sup = me.in_support(lang, rows)
    assert np.all(sup == np.isfinite(lp))
    assert np.all(sup == np.isfinite(lp_hmm))
    for x, got, got_hmm in zip(rows, lp, lp_hmm, strict=True):
        ref = _log_forward(hmm.initial, hmm.transition, hmm.emission, x)
        assert got == pytest.approx(ref, rel=1e-12, abs=1e-12)
        assert got_hmm == pytest.approx(ref, rel=1e-12, abs=1e-12)
    post = me.posterior(lang, rows)
    assert np.all(post.valid == sup)
    marg = post.marginals[post.valid]
    assert np.all(np.isfinite(marg)) and np.all(marg >= 0)
    np.testing.assert_allclose(marg.sum(axis=-1), 1.0, atol=1e-12)


def test_long_row_whose_state_mass_decays_geometrically():
    """State B loses a factor 4 per position relative to A; after 600 positions only B can emit
    the last token. q = 0.5^(2L - 1) exactly (start in B, emit 0 and stay L - 2 times, move to
    C, emit 2): the scaled kernels underflow there and must fall back to log space."""
    a = [[1, 0, 0], [0, 0.5, 0.5], [0, 0, 1.0]]
    e = [[1, 0, 0], [0.5, 0.5, 0], [0, 0, 1.0]]
    hmm = me.HMM([0.5, 0.5, 0], a, e)
    length = 600
    x = np.zeros((1, length), dtype=np.int64)
    x[0, -1] = 2
    truth = -(2 * length - 1) * math.log(2)
    assert me.in_support(hmm, x)[0]
    assert me.log_prob(hmm, x)[0] == pytest.approx(truth, rel=1e-12)
    post = me.posterior(hmm, x)
    assert post.valid[0] and post.log_evidence[0] == pytest.approx(truth, rel=1e-12)
    partial = x.copy()
    partial[0, 1:-2] = MASK
    post = me.posterior(hmm, partial)
    ref = _log_forward(hmm.initial, hmm.transition, hmm.emission, list(partial[0]))
    assert post.valid[0] and post.log_evidence[0] == pytest.approx(ref, rel=1e-12)
    assert np.all(np.isfinite(post.marginals)) and np.all(post.marginals >= 0)
    # Given the end, the chain sits in B before it: masked tokens are 0 or 1 with 1/2 each.
    np.testing.assert_allclose(post.marginals[0, 1:-2], [[0.5, 0.5, 0.0]] * (length - 3),
                               atol=1e-12)


@pytest.mark.parametrize("suffix", [".json", ".npz"])
def test_tiny_entries_survive_a_file_round_trip(tmp_path, suffix):
    lang = me.NGram(2, [1, 0], [[1, 1e-310], [0.5, 0.5]])
    lang.save(tmp_path / f"tiny{suffix}")
    back = me.load_language(tmp_path / f"tiny{suffix}")
    assert back.transition[0, 1] == 1e-310
    np.testing.assert_allclose(me.posterior(back, [[0, -1, 1]]).marginals[0, 1],
                               [2 / 3, 1 / 3], rtol=1e-12)


def test_exact_metrics_with_tiny_language_entries_are_finite():
    """A 1e-300 transition entry: the oracle revealing one token per step has KL = Jensen
    bound = 0 exactly, and revealing all at once gives KL(q || prod of marginals), computed
    here by brute force in log space."""
    lang = me.NGram(2, [0.5, 0.5], [[1 - 1e-300, 1e-300], [0.5, 0.5]])
    one = me.exact_metrics(lang, me.DeterministicPlan([[0], [1], [2]]), 3)
    assert one.kl == 0.0 and one.jensen_bound == 0.0 and one.ser == 0.0
    assert math.isfinite(one.entropy) and one.entropy > 0
    joint = {x: _log_forward(lang.initial, lang.transition, np.eye(2), list(x))
             for x in itertools.product(range(2), repeat=3)}
    marg = [[math.fsum(math.exp(lq) for x, lq in joint.items() if x[j] == v) for v in range(2)]
            for j in range(3)]
    kl = math.fsum(math.exp(lq) * (lq - sum(math.log(marg[j][x[j]]) for j in range(3)))
                   for x, lq in joint.items() if lq > -math.inf)
    m = me.exact_metrics(lang, me.DeterministicPlan([[0, 1, 2]]), 3)
    assert m.kl == pytest.approx(kl, rel=1e-9, abs=1e-15)
    for value in (m.kl, m.jensen_bound, m.jensen_gap, m.entropy, m.gen_log_ppl):
        assert math.isfinite(value) and value >= 0


def test_exact_engine_log_space_when_products_underflow():
    """A context-free denoiser giving 1e-200 to token 1: p(x) = prod_j d(x_j) for any plan
    (down to 1e-600, below float range). With q uniform over {0, 1}^3,
    KL = sum_x q(x) (log q(x) - log p(x)) = -3 log 2 + 1.5 * 200 log 10 - 1.5 log(1 - 1e-200)."""
    lang = me.NGram(2, [0.5, 0.5], [[0.5, 0.5], [0.5, 0.5]])

    def den(x):
        return np.broadcast_to(np.array([1 - 1e-200, 1e-200]), (*x.shape, 2)).copy()

    truth = -3 * math.log(2) + 1.5 * 200 * math.log(10)
    for plan in (me.Schedule.linear(3), me.FixedCountPlan([1, 2]),
                 me.DeterministicPlan([[0], [1, 2]])):
        m = me.exact_metrics(lang, plan, 3, den)
        assert m.kl == pytest.approx(truth, rel=1e-12)
        assert m.ser == 0.0 and m.total_mass == pytest.approx(1.0, abs=1e-12)
        assert m.jensen_bound == pytest.approx(truth, rel=1e-12)
        assert 0 <= m.jensen_gap <= 1e-9


# ------------------------------------------------------------------------------ item 3


def _random_language(rng, kind: str):
    seed = int(rng.integers(1 << 30))
    if kind == "ngram":
        order, v = [(2, 2), (2, 3), (3, 2)][int(rng.integers(3))]
        return me.random_ngram(order, v, temperature=1.0, threshold=float(rng.uniform(0, 0.2)),
                               seed=seed)
    if kind == "one-state":
        e = rng.dirichlet(np.ones(3))
        e[int(rng.integers(3))] = 0.0
        return me.HMM([1.0], [[1.0]], [e / e.sum()])
    return me.random_hmm(int(rng.integers(2, 4)), int(rng.integers(2, 4)), randomness=1.0,
                         threshold=float(rng.uniform(0, 0.15)), seed=seed)


def _plans(length: int):
    return {
        "linear2": me.Schedule.linear(2),
        "cosine5": me.Schedule.cosine(5),
        "many-steps": me.Schedule.linear(2**length + 3),
        "fixed": me.FixedCountPlan.even(length, 2),
        "one-at-a-time": me.DeterministicPlan([[j] for j in range(length)]),
        "all-at-once": me.DeterministicPlan([list(range(length))]),
    }


def _in_domain(m: me.ExactMetrics) -> None:
    fields = m.as_dict()
    for key in ("kl", "log_ter", "log_ter_q", "gen_log_ppl", "ser", "jensen_bound", "jensen_gap",
                "entropy", "total_mass"):
        assert not math.isnan(fields[key]), key
        assert fields[key] >= 0, (key, fields[key])
    assert m.ser <= 1 and m.total_mass <= 1
    assert m.total_mass == pytest.approx(1.0, abs=1e-9)
    assert m.kl <= m.jensen_bound and m.log_ter >= m.log_ter_q
    assert math.isfinite(m.entropy)


class _ZeroingDenoiser:
    """Context-dependent rows with exact zeros (a pure function of each row, seeded)."""

    def __init__(self, vocab: int, length: int, seed: int):
        rng = np.random.default_rng(seed)
        table = rng.dirichlet(np.ones(vocab), size=(length, length + 1))
        table[rng.random(table.shape) < 0.3] = 0.0
        table[..., 0] += table.sum(axis=-1) == 0
        self.table = table / table.sum(axis=-1, keepdims=True)

    def __call__(self, x):
        count = (x != MASK).sum(axis=1)
        return self.table[np.arange(x.shape[1])[None, :], count[:, None]]


def test_every_exact_field_in_its_domain_over_a_scan():
    """486 configurations (random n-grams and HMMs with exact zeros, one-state HMMs, six plans,
    the oracle, a perturbed oracle and a denoiser with exact zeros): every field in its domain;
    the exact zeros come out as 0.0 (one token per step with the oracle: KL, Jensen bound,
    Jensen gap and SER; a one-state HMM with the oracle: SER, since tokens are independent and
    the oracle never leaves the support)."""
    rng = np.random.default_rng(2026)
    count = 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnreachedLearningErrorWarning)
        for trial in range(27):
            kind = ["ngram", "hmm", "one-state"][trial % 3]
            lang = _random_language(rng, kind)
            length = int(rng.integers(2, 5))
            for den_name in ("oracle", "perturbed", "zeros"):
                den = {"oracle": None, "perturbed": me.PerturbedOracle(lang, 0.05),
                       "zeros": _ZeroingDenoiser(lang.vocab_size, length, trial)}[den_name]
                for plan_name, plan in _plans(length).items():
                    m = me.exact_metrics(lang, plan, length, den)
                    _in_domain(m)
                    count += 1
                    if den is None and plan_name == "one-at-a-time":
                        assert (m.kl, m.jensen_bound, m.jensen_gap, m.ser) == (0.0, 0.0, 0.0, 0.0)
                    if den is None and kind == "one-state":
                        assert m.ser == 0.0
    assert count == 27 * 3 * 6


def test_cli_case_hmm_length_4_steps_2_in_domain():
    """The issue's `exact --preset hmm --length 4 --steps 2`: SER was -2.2e-16 and the mass
    1.0000000000000002."""
    m = me.exact_metrics(me.preset("hmm"), me.Schedule.linear(2), 4)
    _in_domain(m)
    assert m.ser == 0.0  # the oracle on an HMM whose emissions are all positive
    assert m.total_mass <= 1.0


def test_identical_p_and_q_give_kl_exactly_zero():
    """Per-entry KL terms vanish exactly where p == q, and are >= 0 elsewhere."""
    rng = np.random.default_rng(0)
    q = rng.dirichlet(np.ones(6), size=50)
    with np.errstate(divide="ignore"):
        terms = ex._kl_terms(q, q.copy(), np.log(q), np.log(q))
    assert np.all(terms == 0.0)
    p = rng.dirichlet(np.ones(6), size=50)
    terms = ex._kl_terms(q, p, np.log(q), np.log(p)).sum(axis=1)
    ref = (q * np.log(q / p)).sum(axis=1)
    np.testing.assert_allclose(terms, ref, rtol=1e-10)


def test_mean_interval_is_clipped_to_its_domain():
    values = np.array([-1.0, 0.1, 0.2, 3.0])
    raw = mean_interval(values)
    assert raw.low < 0
    clipped = mean_interval(values, domain=(0.0, math.inf))
    assert clipped.low == 0.0 and clipped.high == raw.high and clipped.value == raw.value
    capped = mean_interval(values, domain=(0.0, 0.5))
    assert capped.high == 0.5 and 0.0 <= capped.low <= capped.value <= 0.5


def test_jensen_bound_estimate_never_below_zero():
    """A plan revealing one token per step with the oracle has an exact bound of 0: the
    Monte-Carlo interval (whose raw lower end is below 0) is clipped at 0."""
    lang = me.preset("2-gram")
    plan = me.DeterministicPlan([[0], [1], [2], [3]])
    est = me.jensen_bound(lang, plan, 4, 200, rng=1)
    assert est.low >= 0 and est.value >= 0 and est.contains(0.0)


# ------------------------------------------------------------------------------ item 4 and 15


def test_denoiser_gets_a_read_only_copy():
    calls = []

    def spy(x):
        calls.append(x)
        with pytest.raises(ValueError):
            x[0, 0] = 0
        return np.full((*x.shape, 2), 0.5)

    x = np.full((2, 3), MASK)
    call_denoiser(spy, x, 2)
    assert calls[0] is not x and np.all(x == MASK)
    lang = me.NGram(2, [0.5, 0.5], [[0.9, 0.1], [0.4, 0.6]])
    m = me.exact_metrics(lang, me.Schedule.linear(2), 3, spy)
    _in_domain(m)


def test_denoiser_rows_within_tolerance_are_renormalised():
    out = call_denoiser(lambda x: np.full((*x.shape, 2), 0.5 + 4e-7), np.full((1, 2), MASK), 2)
    assert np.all(out == 0.5)
    f32 = call_denoiser(lambda x: np.full((*x.shape, 3), 1 / 3, dtype=np.float32),
                        np.full((1, 2), MASK), 3)
    assert f32.dtype == np.float64
    np.testing.assert_allclose(f32.sum(axis=-1), 1.0, atol=1e-15)


def test_one_hot_direction_never_gives_nan():
    """A one-hot direction d = e_0: KL(q || d) is infinite wherever q leaves token 0, and the
    model still reaches eps_learning exactly, with no NaN and no zero where q is positive."""
    lang = me.preset("3-gram")
    x = lang.sample(20, 8, 3)
    x[:, 2:6] = MASK
    q = me.Oracle(lang)(x)
    for eps in (1e-3, 0.5, 5.0):
        model = me.PerturbedOracle(lang, eps, direction=np.eye(8)[0])
        p = model(x)
        assert np.all(np.isfinite(p))
        np.testing.assert_allclose(p.sum(axis=-1), 1.0, atol=1e-12)
        masked = x == MASK
        assert np.all(p[masked][q[masked] > 0] > 0)
        with np.errstate(divide="ignore", invalid="ignore"):
            kl = np.where(q > 0, q * np.log(q / p), 0.0).sum(axis=-1)
        np.testing.assert_allclose(kl[masked], eps, atol=1e-9)


def test_perturb_toward_blocked_rows_reach_eps():
    q = np.array([[0.2, 0.3, 0.5], [1.0, 0.0, 0.0]])
    d = np.array([0.0, 0.0, 1.0])
    p, got = perturb_toward(q, 0.3, d)
    np.testing.assert_allclose(got, 0.3, atol=1e-12)
    with np.errstate(divide="ignore", invalid="ignore"):
        ref = [np.where(row > 0, row * np.log(row / pr), 0.0).sum()
               for row, pr in zip(q, p, strict=True)]
    np.testing.assert_allclose(ref, 0.3, atol=1e-12)


def test_unreachable_rows_warn_once_with_their_count():
    """Item 15: the rows with KL(q || direction) < eps_learning are counted in one warning."""
    lang = me.NGram(2, [0.5, 0.5], [[0.5, 0.5], [0.9, 0.1]])
    model = me.PerturbedOracle(lang, 0.2)
    x = np.array([[0, MASK, MASK]])
    q = me.Oracle(lang)(x)[0, 1:]
    reach = (q * np.log(q / 0.5)).sum(axis=1) >= 0.2
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        kl = model.achieved_kl(x)
    hits = [w for w in caught if issubclass(w.category, UnreachedLearningErrorWarning)]
    assert len(hits) == 1
    assert f"{int((~reach).sum())} of 2 masked positions" in str(hits[0].message)
    assert np.all(kl[0, 1:][~reach] < 0.2)


# ------------------------------------------------------------------------------ steps and memory


def test_many_step_schedule_matches_step_by_step_propagation():
    """The composition walk and the step-by-step chain give the same p, in linear and in log
    space (a brute force of both orders over one small case)."""
    lang = me.random_hmm(2, 2, randomness=1.0, threshold=0.1, seed=4)
    plan = me.Schedule.cosine(40)
    length = 4
    tables = ex._tables(lang, length, me.Oracle(lang), None)
    size = tables.states.shape[0]
    out = {}
    for log in (False, True):
        pairs = ex._pairs(tables, 2, log)
        for name, run in (("steps", ex._by_steps), ("comp", ex._by_compositions)):
            vec = run(plan, pairs, size, length, False)
            out[name, log] = np.exp(vec) if log else vec
    ref = out["steps", False]
    full = tables.open_count == 0
    assert ref[full].sum() == pytest.approx(1.0, abs=1e-12)
    for key, vec in out.items():
        np.testing.assert_allclose(vec[full], ref[full], rtol=1e-10, atol=1e-15, err_msg=key)


def test_exact_with_100000_steps_is_fast_and_in_domain():
    """`exact --length 4 --steps 100000` took 155 s."""
    start = time.perf_counter()
    m = me.exact_metrics(me.preset("2-gram"), me.Schedule.linear(100000), 4, progress=True)
    assert time.perf_counter() - start < 20
    _in_domain(m)
    # With 10^5 steps two positions rarely share a step: p is close to q.
    assert m.kl < 1e-4 and m.ser < 1e-4


_RSS_SCRIPT = """
import sys, numpy as np, mdm_exact as me
from mdm_exact import exact as ex
kind, v, length = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
lang = me.random_hmm(3, v, seed=0) if kind == "hmm" else me.random_ngram(2, v, seed=0)
den = me.PerturbedOracle(lang, 0.1) if kind == "hmm" else None
plan = me.FixedCountPlan.even(length, 3)
import warnings; warnings.simplefilter("ignore")
me.exact_metrics(lang, me.FixedCountPlan.even(2, 2), 2, den)  # compile and warm up

def status(key):
    for line in open("/proc/self/status"):
        if line.startswith(key):
            return int(line.split()[1]) * 1024

try:
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # resets VmHWM to the current RSS
except OSError:
    print("skip")
    sys.exit(0)
base = status("VmRSS")
me.exact_metrics(lang, plan, length, den, max_bytes=2**40)
print(status("VmHWM") - base, ex.output_distribution_bytes(v, length))
"""


@pytest.mark.skipif(not os.path.exists("/proc/self/clear_refs"), reason="needs Linux /proc")
@pytest.mark.parametrize("kind, vocab, length", [("hmm", 3, 7), ("hmm", 2, 9), ("ngram", 4, 6),
                                                 ("ngram", 2, 10)])
def test_exact_engine_memory_estimate_bounds_the_peak(kind, vocab, length):
    """Item 7: the peak RSS of exact_metrics (above the warmed-up baseline, in a fresh process)
    stays below ``output_distribution_bytes``."""
    env = dict(os.environ, NUMBA_NUM_THREADS="1")
    res = subprocess.run([sys.executable, "-c", _RSS_SCRIPT, kind, str(vocab), str(length)],
                         capture_output=True, text=True, env=env, timeout=120)
    assert res.returncode == 0, res.stderr
    if res.stdout.strip() == "skip":
        pytest.skip("/proc/self/clear_refs is not writable here")
    peak, estimate = (float(t) for t in res.stdout.split())
    assert peak > 0
    assert peak <= estimate, (peak / 2**20, estimate / 2**20)


def test_misspelt_entropy_keyword_is_refused_for_every_language():
    """Item 13: exact entropies take exactly HMM.entropy's keywords (no ``**_ignored`` sink)."""
    for lang in (me.preset("2-gram"), me.IntervalParity(3), me.preset("hmm")):
        with pytest.raises(TypeError, match="num_sample"):
            lang.entropy(3, num_sample=10)
        assert lang.entropy(3, num_samples=10, seed=0, confidence=0.9).value > 0
