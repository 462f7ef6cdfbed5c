"""Adaptive unmasking policies (mdm_exact.policies) in the exact engine and the sampler.

The reference below never calls ``policies.select`` nor the package's inference: the oracle
marginals come from a dict of q over all V^L sequences (``Reference.prob_function`` of the
conftest, from the tables), the scores, the rounding, the ranking and each rule are written
again in plain Python, and the output distribution is a recursion over trajectories.
"""

from __future__ import annotations

import itertools
import json
import math
from fractions import Fraction

import numpy as np
import pytest
from scipy import stats

from mdm_exact import MASK, FixedCountPlan, NGram, Schedule, exact_metrics, output_distribution
from mdm_exact.errors import MdmExactError
from mdm_exact.metrics import jensen_bound
from mdm_exact.policies import (
    EntropyBounded,
    Factor,
    RandomTopK,
    Threshold,
    TopK,
    is_policy,
    parse_policy,
)
from mdm_exact.sampling import sample

TOL = 1e-12


# ------------------------------------------------------------------------------ brute force


def joint_dict(ref, language, length: int, exact: bool = False) -> dict:
    prob = ref.prob_function(language, exact)
    return {x: prob(x) for x in itertools.product(range(language.vocab_size), repeat=length)}


def oracle(joint: dict, vocab_size: int, partial, exact: bool = False):
    """(L, V) lists of q(x_j = v | revealed tokens); uniform where they are impossible."""
    zero = Fraction(0) if exact else 0.0
    table = [[zero] * vocab_size for _ in partial]
    evidence = zero
    for x, q in joint.items():
        if all(t == MASK or t == s for t, s in zip(partial, x, strict=True)):
            evidence += q
            for j, s in enumerate(x):
                table[j][s] += q
    if evidence == 0:
        u = Fraction(1, vocab_size) if exact else 1.0 / vocab_size
        return [[u] * vocab_size for _ in partial]
    return [[t / evidence for t in row] for row in table]


def score_of(p, name: str):
    if name == "confidence":
        return max(p)
    if name == "margin":
        top = sorted(p, reverse=True) + [0]
        return top[0] - top[1]
    return sum(v * math.log(v) for v in p if v > 0)


def rounded(value):
    return round(value, 12)


def visible(partial, block_length):
    masked = [j for j, t in enumerate(partial) if t == MASK]
    if block_length is None or not masked:
        return masked
    block = masked[0] // block_length
    return [j for j in masked if j // block_length == block]


def even(total: int, parts: int) -> list[int]:
    return [total // parts + (1 if k < total % parts else 0) for k in range(parts)]


def step_counts(num_steps: int, length: int, block_length) -> list[int]:
    if block_length is None:
        return even(length, num_steps)
    starts = list(range(0, length, block_length))
    out = []
    for s in starts:
        out += even(min(block_length, length - s), num_steps // len(starts))
    return out


def ranking(marg, seen, name):
    keys = {j: rounded(score_of(marg[j], name)) for j in seen}
    return sorted(seen, key=lambda j: (-keys[j], j)), keys


def choices(rule: dict, marg, partial, step: int, length: int, exact: bool = False):
    """[(probability, chosen positions)]: the rule's choice written out by hand."""
    one = Fraction(1) if exact else 1.0
    seen = visible(partial, rule.get("block"))
    kind = rule["kind"]
    if kind in ("topk", "random"):
        m = min(step_counts(rule["n"], length, rule.get("block"))[step], len(seen))
        if kind == "random":
            subsets = list(itertools.combinations(seen, m))
            return [(one / len(subsets), list(s)) for s in subsets]
        order, _ = ranking(marg, seen, rule["score"])
        return [(one, order[:m])]
    if kind == "threshold":
        order, keys = ranking(marg, seen, "confidence")
        return [(one, order[:1] + [j for j in order[1:] if keys[j] >= rule["tau"]])]
    if kind == "eb":
        order, keys = ranking(marg, seen, "entropy")
        h = [-keys[j] for j in order]
        best = max(n for n in range(1, len(order) + 1) if sum(h[:n]) - max(h[:n]) <= rule["gamma"])
        return [(one, order[:best])]
    order, keys = ranking(marg, seen, "confidence")
    chosen = order[:1]
    for n in range(2, len(order) + 1):
        if keys[order[n - 1]] < 1 - rule["f"] / (n + 1):
            break
        chosen.append(order[n - 1])
    return [(one, chosen)]


def brute_distribution(joint: dict, vocab_size: int, length: int, rule: dict,
                       exact: bool = False, denoise=None) -> dict:
    """{x: p(x)} by recursion over every trajectory of the rule (each step: the rule's positions,
    then every token value at them, weighted by the product of the marginals of ``denoise``,
    partial -> (L, V), by default the oracle)."""
    zero, one = (Fraction(0), Fraction(1)) if exact else (0.0, 1.0)
    out = dict.fromkeys(joint, zero)
    seen: dict = {}  # partial state -> its oracle marginals (states recur across trajectories)

    def walk(partial, step, weight):
        if MASK not in partial:
            out[tuple(partial)] += weight
            return
        key = tuple(partial)
        if key not in seen:
            seen[key] = (oracle(joint, vocab_size, partial, exact) if denoise is None
                         else denoise(partial))
        marg = seen[key]
        for prob, chosen in choices(rule, marg, partial, step, length, exact):
            for values in itertools.product(range(vocab_size), repeat=len(chosen)):
                w = weight * prob
                new = list(partial)
                for j, v in zip(chosen, values, strict=True):
                    w *= marg[j][v]
                    new[j] = v
                if w > 0:
                    walk(new, step + 1, w)

    walk([MASK] * length, 0, one)
    return out


def as_array(p: dict, vocab_size: int, length: int) -> np.ndarray:
    out = np.zeros((vocab_size,) * length)
    for x, v in p.items():
        out[x] = float(v)
    return out


# ------------------------------------------------------------------------------ the cases


def policy_of(rule: dict):
    block = rule.get("block")
    kind = rule["kind"]
    if kind == "topk":
        return TopK(rule["score"], rule["n"], block)
    if kind == "random":
        return RandomTopK(rule["n"], block)
    if kind == "threshold":
        return Threshold(rule["tau"], block)
    if kind == "eb":
        return EntropyBounded(rule["gamma"], block)
    return Factor(rule["f"], block)


def rules(length: int, block: int) -> list[dict]:
    """Every rule, without and with blocks of ``block`` positions (2 blocks)."""
    base = [
        {"kind": "topk", "score": "confidence", "n": length},
        {"kind": "topk", "score": "confidence", "n": 2},
        {"kind": "topk", "score": "margin", "n": 2},
        {"kind": "topk", "score": "entropy", "n": length + 2},  # empty last steps
        {"kind": "random", "n": 2},
        {"kind": "threshold", "tau": 0.5},
        {"kind": "threshold", "tau": 0.9},
        {"kind": "eb", "gamma": 0.0},
        {"kind": "eb", "gamma": 0.7},
        {"kind": "factor", "f": 0.5},
        {"kind": "factor", "f": 2.0},
    ]
    blocked = [
        {"kind": "topk", "score": "confidence", "n": 2, "block": block},
        {"kind": "topk", "score": "entropy", "n": 4, "block": block},
        {"kind": "random", "n": 2, "block": block},
        {"kind": "threshold", "tau": 0.5, "block": block},
        {"kind": "eb", "gamma": 0.7, "block": block},
        {"kind": "factor", "f": 1.0, "block": block},
    ]
    if length <= 4:  # 2 random steps per block (the recursion grows too fast at L = 6)
        blocked.append({"kind": "random", "n": 4, "block": block})
    return base + blocked


def rule_id(rule: dict) -> str:
    return "-".join(f"{k}={v}" for k, v in rule.items())


@pytest.fixture(scope="module")
def languages(bigram, zero_hmm, parity3):
    return {"bigram": (bigram, 4, 2), "hmm": (zero_hmm, 4, 2), "parity-L3": (parity3, 3, 2),
            "parity-L6": (parity3, 6, 3)}


CASES = [(name, rule) for name, length, block in
         [("bigram", 4, 2), ("hmm", 4, 2), ("parity-L3", 3, 2), ("parity-L6", 6, 3)]
         for rule in rules(length, block)]


@pytest.mark.parametrize(("lang_name", "rule"), CASES,
                         ids=[f"{n}-{rule_id(r)}" for n, r in CASES])
def test_exact_distribution_matches_brute_force(ref, languages, lang_name, rule):
    lang, length, _ = languages[lang_name]
    joint = joint_dict(ref, lang, length)
    expected = as_array(brute_distribution(joint, lang.vocab_size, length, rule),
                        lang.vocab_size, length)
    got = output_distribution(lang, policy_of(rule), length)
    assert expected.sum() == pytest.approx(1.0, abs=TOL)
    np.testing.assert_allclose(got, expected, rtol=0, atol=TOL)


@pytest.mark.parametrize("rule", [{"kind": "topk", "score": "margin", "n": 2},
                                  {"kind": "threshold", "tau": 0.6, "block": 2},
                                  {"kind": "eb", "gamma": 0.4},
                                  {"kind": "factor", "f": 1.5}], ids=rule_id)
def test_exact_distribution_with_a_learned_like_denoiser(ref, zero_hmm, rule):
    """A denoiser that is not the oracle (PerturbedOracle toward a random direction): the
    engine's distribution equals the recursion fed with that denoiser's outputs row by row."""
    from mdm_exact import PerturbedOracle

    den = PerturbedOracle(zero_hmm, 0.05, direction="random", seed=1)
    length = 4
    joint = joint_dict(ref, zero_hmm, length)
    expected = brute_distribution(joint, 3, length, rule,
                                  denoise=lambda partial: den(np.array([partial]))[0].tolist())
    got = output_distribution(zero_hmm, policy_of(rule), length, denoiser=den)
    np.testing.assert_allclose(got, as_array(expected, 3, length), rtol=0, atol=TOL)


def test_example_c7_ties_are_exact(ref, parity3):
    """Example C.7 under the oracle: at the start every position has confidence exactly 1/4 (a
    tie), so TopK reveals the leftmost m_k; with blocks of 3 at L = 6 the first block is the
    whole interval and the output is exact."""
    joint = joint_dict(ref, parity3, 6)
    x = np.full((1, 6), MASK)
    rule = {"kind": "topk", "score": "confidence", "n": 3}
    marg = oracle(joint, parity3.vocab_size, [MASK] * 6)
    assert {rounded(score_of(m, "confidence")) for m in marg} == {0.25}  # 2 uniform bits
    assert choices(rule, marg, [MASK] * 6, 0, 6) == [(1.0, [0, 1])]
    from mdm_exact.sampling import Oracle

    chosen = TopK("confidence", 3).select(Oracle(parity3)(x), x, 0)
    assert np.flatnonzero(chosen[0]).tolist() == [0, 1]
    metrics = exact_metrics(parity3, TopK("confidence", 2, block_length=3), 6)
    assert metrics.ser > 0  # two parallel halves of 3 positions each can collide


def test_exact_rationals_on_a_dyadic_bigram():
    """A bigram with dyadic tables and zeros: the brute force in Fractions (confidence, margin,
    threshold and factor rules: no logarithms) against the float engine to 1e-15."""
    half, quarter = Fraction(1, 2), Fraction(1, 4)
    initial = [half, quarter, quarter]
    transition = [[half, half, 0], [quarter, 0, 3 * quarter], [quarter, quarter, half]]
    lang = NGram(2, [float(v) for v in initial], [[float(v) for v in r] for r in transition])
    length = 4
    joint = {}
    for x in itertools.product(range(3), repeat=length):
        q = initial[x[0]]
        for j in range(1, length):
            q *= transition[x[j - 1]][x[j]]
        joint[x] = Fraction(q)
    for rule in [{"kind": "topk", "score": "confidence", "n": 2},
                 {"kind": "topk", "score": "margin", "n": 4, "block": 2},
                 {"kind": "threshold", "tau": 0.5},
                 {"kind": "factor", "f": 1.0, "block": 2},
                 {"kind": "random", "n": 2, "block": 2}]:
        p = brute_distribution(joint, 3, length, rule, exact=True)
        assert sum(p.values()) == 1
        got = output_distribution(lang, policy_of(rule), length)
        for x, val in p.items():
            assert isinstance(val, Fraction)
            assert abs(Fraction(float(got[x])) - val) <= Fraction(1, 10**15), (rule, x)


# ------------------------------------------------------------------------------ metrics


def test_exact_metrics_under_a_policy(ref, bigram):
    length = 4
    joint = joint_dict(ref, bigram, length)
    rule = {"kind": "threshold", "tau": 0.5}
    p = brute_distribution(joint, 3, length, rule)
    m = exact_metrics(bigram, policy_of(rule), length)
    kl = sum(q * math.log(q / p[x]) for x, q in joint.items() if q > 0)
    ser = sum(v for x, v in p.items() if joint[x] == 0)
    assert m.kl == pytest.approx(kl, abs=1e-12)
    assert m.ser == pytest.approx(ser, abs=1e-12)
    assert m.jensen_bound is None and m.jensen_gap is None
    assert json.loads(json.dumps(m.as_dict()))["jensen_bound"] is None


def test_random_topk_equals_fixed_count_plan_in_law(ref, bigram, zero_hmm):
    for lang in (bigram, zero_hmm):
        joint = joint_dict(ref, lang, 4)
        for n in (1, 2, 3, 4, 6):
            brute = as_array(brute_distribution(joint, 3, 4, {"kind": "random", "n": n}), 3, 4)
            plan = output_distribution(lang, FixedCountPlan.even(4, n), 4)
            np.testing.assert_allclose(plan, brute, rtol=0, atol=TOL)
            np.testing.assert_allclose(output_distribution(lang, RandomTopK(n), 4), plan,
                                       rtol=0, atol=TOL)


# ------------------------------------------------------------------------------ sampler


def chisquare_pvalue(tokens: np.ndarray, dist: np.ndarray) -> float:
    """Pearson chi-square of the sample against ``dist``, cells of expected count < 5 pooled;
    a sample in a cell of probability 0 gives p-value 0."""
    v, length = dist.shape[0], dist.ndim
    codes = np.ravel_multi_index(tuple(tokens.T), (v,) * length)
    observed = np.bincount(codes, minlength=v**length).astype(float)
    expected = dist.ravel() * tokens.shape[0]
    if np.any(observed[expected == 0] > 0):
        return 0.0
    small = expected < 5
    obs = np.append(observed[~small], observed[small].sum())
    exp = np.append(expected[~small], expected[small].sum())
    keep = exp > 0
    return float(stats.chisquare(obs[keep], exp[keep] * obs[keep].sum() / exp[keep].sum()).pvalue)


SAMPLED = [
    TopK("confidence", 4, block_length=2),
    TopK("margin", 2),
    TopK("entropy", 6),
    RandomTopK(2, block_length=2),
    Threshold(0.5),
    EntropyBounded(0.7, block_length=2),
    Factor(2.0),
]


@pytest.mark.parametrize("policy", SAMPLED, ids=[p.name for p in SAMPLED])
def test_sample_matches_exact_distribution(bigram, policy):
    length, num = 4, 20000
    exact = output_distribution(bigram, policy, length)
    res = sample(bigram, policy, length, num, rng=np.random.default_rng(7))
    assert chisquare_pvalue(res.tokens, exact) > 1e-4


def test_chisquare_rejects_a_wrong_distribution(bigram):
    """Negative control: the same test rejects the sample against another rule's distribution
    (Threshold(0.5) sampled, TopK margin with 2 steps as the claimed law)."""
    length = 4
    res = sample(bigram, Threshold(0.5), length, 20000, rng=np.random.default_rng(7))
    wrong = output_distribution(bigram, TopK("margin", 2), length)
    right = output_distribution(bigram, Threshold(0.5), length)
    assert np.abs(wrong - right).sum() > 0.05
    assert chisquare_pvalue(res.tokens, wrong) < 1e-6


def test_random_topk_samples_like_fixed_count_plan(zero_hmm):
    res = sample(zero_hmm, RandomTopK(2), 4, 20000, rng=3)
    assert chisquare_pvalue(res.tokens, output_distribution(zero_hmm, FixedCountPlan.even(4, 2),
                                                           4)) > 1e-4


@pytest.mark.parametrize("policy", [Threshold(0.9), EntropyBounded(0.5), Factor(1.0, 4),
                                    TopK("confidence", 20), TopK("margin", 4, 4),
                                    RandomTopK(5)], ids=lambda p: p.name)
def test_nfe_per_row_is_the_number_of_steps(policy):
    from mdm_exact import preset

    lang = preset("2-gram")
    length = 16
    res = sample(lang, policy, length, 50, rng=0)
    assert np.all(res.tokens >= 0) and np.all(res.reveal_step >= 0)
    steps = [np.unique(row).size for row in res.reveal_step]
    np.testing.assert_array_equal(res.nfe_per_row, steps)
    np.testing.assert_array_equal(res.nfe_cache, res.nfe_per_row)
    assert res.nfe == res.reveal_step.max() + 1 - (
        sum(policy.step_is_empty(k, length) for k in range(res.reveal_step.max() + 1)))
    if isinstance(policy, TopK | RandomTopK):
        counts = np.count_nonzero(policy.counts(length))
        assert np.all(res.nfe_per_row == counts)
        for k, m in enumerate(policy.counts(length)):
            assert np.all((res.reveal_step == k).sum(axis=1) == m)
    if policy.block_length is not None:  # blocks are revealed left to right
        blocks = res.reveal_step.reshape(50, -1, policy.block_length)
        assert np.all(blocks[:, :-1].max(axis=2) < blocks[:, 1:].min(axis=2))


def test_calls_only_unfinished_rows():
    from mdm_exact import preset
    from mdm_exact.sampling import Oracle

    lang = preset("2-gram")
    inner = Oracle(lang)
    rows = []

    def counting(x):
        rows.append(x.shape[0])
        assert np.all((x == MASK).any(axis=1))  # only rows with something left to reveal
        return inner(x)

    res = sample(lang, Threshold(0.7), 12, 30, denoiser=counting, rng=1)
    assert len(rows) == res.nfe
    assert sum(rows) == res.nfe_per_row.sum()


def test_select_contract():
    rng = np.random.default_rng(0)
    marg = rng.dirichlet(np.ones(4), size=(5, 8))
    x = np.full((5, 8), MASK)
    x[1, :5] = 0
    x[2] = 1  # nothing masked
    for policy in [TopK("confidence", 8), RandomTopK(8), Threshold(1.0), EntropyBounded(0.0),
                   Factor(1e-9), Threshold(0.3, 3), Factor(3.0, 2)]:
        chosen = policy.select(marg, x, 0, rng=rng)
        assert chosen.shape == (5, 8) and chosen.dtype == bool
        assert not np.any(chosen & (x != MASK))
        assert np.all(chosen.sum(axis=1)[[0, 1, 3, 4]] >= 1) and not chosen[2].any()
    assert not TopK("confidence", 10).select(marg, x, 9).any()  # m_9 = 0: an empty step


@pytest.mark.parametrize("seed", range(40))
def test_select_matches_the_hand_written_rules(seed):
    """``select`` on random states and marginals with many exact ties (probabilities in
    multiples of 1/8) against the rules written out in plain Python."""
    rng = np.random.default_rng(seed)
    v, length = int(rng.integers(2, 5)), int(rng.integers(1, 8))
    marg = rng.multinomial(8, np.ones(v) / v, size=(3, length)) / 8.0
    x = np.where(rng.random((3, length)) < 0.6, MASK, rng.integers(0, v, (3, length)))
    block = None if rng.random() < 0.4 else int(rng.integers(1, length + 1))
    blocks = -(-length // block) if block else 1
    n = blocks * int(rng.integers(1, 4))
    for rule in [{"kind": "topk", "score": "confidence", "n": n},
                 {"kind": "topk", "score": "margin", "n": n},
                 {"kind": "topk", "score": "entropy", "n": n},
                 {"kind": "threshold", "tau": float(rng.choice([0.25, 0.5, 0.6, 1.0]))},
                 {"kind": "eb", "gamma": float(rng.choice([0.0, 0.5, 1.0, 3.0]))},
                 {"kind": "factor", "f": float(rng.choice([0.25, 1.0, 2.0, 4.0]))}]:
        rule["block"] = block
        policy = policy_of(rule)
        step = int(rng.integers(0, policy.max_steps(length)))
        got = policy.select(marg, x, step)
        for r in range(3):
            row = [int(t) for t in x[r]]
            if MASK not in row:
                assert not got[r].any()
                continue
            [(_, want)] = choices(rule, marg[r].tolist(), row, step, length)
            assert sorted(np.flatnonzero(got[r]).tolist()) == sorted(want), (rule, row, step)


def test_ties_rank_by_position_off_support():
    """Uniform marginals (the Oracle's output off the support): every score ties."""
    marg = np.full((1, 6, 4), 0.25)
    x = np.full((1, 6), MASK)
    assert np.flatnonzero(TopK("margin", 3).select(marg, x, 0)).tolist() == [0, 1]
    assert np.flatnonzero(Threshold(0.5).select(marg, x, 0)).tolist() == [0]
    assert np.flatnonzero(Threshold(0.25).select(marg, x, 0)).tolist() == list(range(6))
    assert np.flatnonzero(Factor(1.0).select(marg, x, 0)).tolist() == [0]
    assert np.flatnonzero(EntropyBounded(1.5).select(marg, x, 0)).tolist() == [0, 1]  # log 4


def test_parse_policy_and_descriptions():
    assert parse_policy("topk-margin:8") == TopK("margin", 8)
    assert parse_policy("random-topk:4", 2) == RandomTopK(4, 2)
    assert parse_policy("threshold:0.9") == Threshold(0.9)
    assert parse_policy("eb:0.1", block_length=4) == EntropyBounded(0.1, 4)
    assert parse_policy("factor:1") == Factor(1.0)
    for spec in ["topk-confidence:8", "topk-entropy:3", "random-topk:2", "threshold:0.5",
                 "eb:0", "factor:2.5"]:
        policy = parse_policy(spec)
        assert policy.spec == spec and is_policy(policy)
        json.dumps(policy.to_dict())
        assert policy.deterministic == (not spec.startswith("random"))
    assert not is_policy(Schedule.linear(3))
    assert TopK("confidence", 6, 4).counts(10).tolist() == [2, 2, 2, 2, 1, 1]
    assert TopK("confidence", 5).counts(3).tolist() == [1, 1, 1, 0, 0]
    assert Threshold(0.5).max_steps(7) == 7 and TopK("entropy", 3).max_steps(7) == 3


# ------------------------------------------------------------------------------ bad inputs


@pytest.mark.parametrize(("make", "name"), [
    (lambda: parse_policy("nonsense:3"), "policy"),
    (lambda: parse_policy("threshold"), "policy"),
    (lambda: parse_policy("topk-confidence:2.5"), "num_steps"),
    (lambda: parse_policy("eb:abc"), "gamma"),
    (lambda: parse_policy(3), "policy"),
    (lambda: Threshold(0.0), "tau"),
    (lambda: Threshold(1.5), "tau"),
    (lambda: Threshold(float("nan")), "tau"),
    (lambda: parse_policy("threshold:-0.1"), "tau"),
    (lambda: EntropyBounded(-1e-3), "gamma"),
    (lambda: Factor(0.0), "f"),
    (lambda: Factor(-2), "f"),
    (lambda: TopK("prob", 4), "score"),
    (lambda: TopK("confidence", 0), "num_steps"),
    (lambda: TopK("confidence", 2.0), "num_steps"),
    (lambda: RandomTopK(3, block_length=1.5), "block_length"),
    (lambda: TopK("confidence", 3, 2).check_length(4), "num_steps"),
    (lambda: Threshold(0.5, 5).check_length(4), "block_length"),
    (lambda: RandomTopK(2, 8).max_steps(4), "block_length"),
    (lambda: TopK("confidence").check_length(4), "num_steps"),
])
def test_bad_policy_arguments(make, name):
    with pytest.raises(MdmExactError, match=name) as info:
        make()
    assert "\n" not in str(info.value)


def test_policy_refused_where_only_plans_make_sense(bigram):
    from mdm_exact.theory import hmm, interval, ngram
    from mdm_exact.theory.interval import interval_parity_ser

    policy = Threshold(0.5)
    with pytest.raises(MdmExactError, match="schedule") as info:
        jensen_bound(bigram, policy, 4, 10, rng=0)
    assert "\n" not in str(info.value)
    with pytest.raises(MdmExactError, match="schedule"):
        interval_parity_ser(3, 6, policy)
    with pytest.raises(MdmExactError, match="schedule"):
        output_distribution(bigram, "threshold:0.5", 4)
    with pytest.raises(MdmExactError, match="block_length"):
        sample(bigram, Threshold(0.5, 5), 4, 3, rng=0)
    with pytest.raises(MdmExactError, match="block_length"):
        exact_metrics(bigram, TopK("margin", 2, 5), 4)
    for fn, args in [(interval.distinct_steps_probability, (policy, 3)),
                     (interval.jensen_intermediate, (policy, 3)),
                     (interval.interval_valid_probability, (policy, 3)),
                     (hmm.collision_union_bound, (policy, 4)),
                     (ngram.step_dependency_bound, (policy, 4, 2))]:
        with pytest.raises(MdmExactError, match="schedule") as info:
            fn(*args)
        assert "\n" not in str(info.value)


# ------------------------------------------------------------------------------ command line


def run_cli(capsys, *argv) -> tuple[int, str, str]:
    from mdm_exact.cli import main

    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_exact_with_a_policy(capsys, bigram, tmp_path):
    from mdm_exact import save_language

    path = tmp_path / "bigram.json"
    save_language(bigram, path)
    code, out, err = run_cli(capsys, "exact", "--language", str(path), "--length", "4",
                             "--policy", "factor:1", "--block-length", "2", "--json")
    assert code == 0, err
    data = json.loads(out)
    m = exact_metrics(bigram, Factor(1.0, 2), 4)
    assert data["kl"] == pytest.approx(m.kl, abs=1e-12) and data["ser"] == pytest.approx(m.ser)
    assert data["jensen_bound"] is None and data["jensen_gap"] is None
    code, out, _ = run_cli(capsys, "exact", "--language", str(path), "--length", "4",
                           "--policy", "threshold:0.5")
    assert code == 0 and "n/a" in out


def test_cli_simulate_with_a_policy(capsys):
    code, out, err = run_cli(capsys, "simulate", "--preset", "2-gram", "--length", "16",
                             "--samples", "40", "--policy", "threshold:0.8", "--json")
    assert code == 0, err
    data = json.loads(out)
    res = sample(__import__("mdm_exact").preset("2-gram"), Threshold(0.8), 16, 40,
                 rng=np.random.default_rng(0))
    assert data["nfe_mean"] == pytest.approx(res.nfe_per_row.mean())
    assert data["nfe_quantiles"] == {str(q): pytest.approx(np.percentile(res.nfe_per_row, q))
                                     for q in (5, 50, 95)}
    for key in ("ser", "gen_log_ppl", "kl_per_token", "log_ter"):
        est = data[key]
        assert est["low"] <= est["value"] <= est["high"], key
    assert data["kl_per_token"]["value"] >= 0
    code, out, err = run_cli(capsys, "simulate", "--preset", "2-gram", "--length", "16",
                             "--samples", "10", "--policy", "random-topk:4", "--json")
    assert code == 0, err
    data = json.loads(out)
    assert data["kl_per_token"] is None and data["log_ter"] is None
    assert data["nfe_quantiles"] == {"5": 4.0, "50": 4.0, "95": 4.0}


@pytest.mark.parametrize(("argv", "needle"), [
    (("--policy", "topk-confidence:4", "--steps", "4"), "--steps"),
    (("--policy", "threshold:2"), "tau"),
    (("--policy", "sometimes:3"), "policy"),
    (("--policy", "topk-margin:3", "--block-length", "4"), "num_steps"),
    (("--policy", "eb:0.1", "--block-length", "9"), "block_length"),
    (("--steps", "4", "--block-length", "2"), "--block-length"),
])
def test_cli_refuses_bad_policy_arguments(capsys, argv, needle):
    code, _, err = run_cli(capsys, "exact", "--preset", "2-gram", "--length", "8", *argv)
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("mdm-exact: error:")
    assert needle in lines[0]
