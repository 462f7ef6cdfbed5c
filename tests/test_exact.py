"""The exact engine (``output_distribution``, ``exact_metrics``) against brute force.

The brute force here is written independently of ``mdm_exact.exact`` and ``mdm_exact.posterior``:
q is computed straight from the language's tables (n-gram chain rule, HMM sum over every hidden
path, Example C.7's pair-bit rule), the oracle conditionals by slicing that joint, and the sampler
by enumerating every step assignment tau with its probability (N^L for a ``Schedule``, all L!
orderings for a ``FixedCountPlan``, the single one of a ``DeterministicPlan``):

    p(x) = sum_tau P(tau) p_tau(x),
    p_tau(x) = prod_j d(x_j | the tokens of x revealed before j's step)

where d is the denoiser. The Jensen bound of Lemma B.2 is sum_tau P(tau) KL(q || p_tau).
"""

from __future__ import annotations

import itertools
import math
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mdm_exact import HMM, IntervalParity, NGram, preset, random_hmm, random_ngram
from mdm_exact.exact import exact_metrics, output_distribution
from mdm_exact.sampling import Oracle, PerturbedOracle
from mdm_exact.schedules import DeterministicPlan, FixedCountPlan, Schedule
from mdm_exact.theory.interval import interval_parity_ser, oracle_ser

MASK = -1
TOL = 1e-10


# ------------------------------------------------------------------------------ brute force


def brute_joint(language, length: int, exact: bool = False) -> dict:
    """{x: q(x)} over all V^L sequences, from the tables (Fractions when ``exact``)."""
    conv = Fraction if exact else float
    v = language.vocab_size
    out = {}
    for x in itertools.product(range(v), repeat=length):
        if isinstance(language, NGram):
            c = language.order - 1
            p = conv(language.initial[x[:c]])
            for j in range(c, length):
                p *= conv(language.transition[x[j - c:j + 1]])
        elif isinstance(language, HMM):
            k = language.num_states
            p = conv(0)
            for path in itertools.product(range(k), repeat=length):
                term = conv(language.initial[path[0]]) * conv(language.emission[path[0], x[0]])
                for j in range(1, length):
                    term *= conv(language.transition[path[j - 1], path[j]])
                    term *= conv(language.emission[path[j], x[j]])
                p += term
        elif isinstance(language, IntervalParity):
            p = conv(1 if parity_valid(language.interval, x) else 0)
            p *= Fraction(1, 2 ** (language.num_pairs * (length // language.interval)))
            p = conv(p)
        else:
            raise TypeError(language)
        out[x] = p
    return out


def parity_valid(interval: int, x) -> bool:
    """Example C.7: for 1-based a < b in one interval, bit b-1 of x_a equals bit a of x_b."""
    for start in range(0, len(x), interval):
        block = x[start:start + interval]
        for a in range(1, interval + 1):
            for b in range(a + 1, interval + 1):
                if (block[a - 1] >> (b - 2)) & 1 != (block[b - 1] >> (a - 1)) & 1:
                    return False
    return True


def brute_oracle(joint: dict, vocab_size: int, exact: bool = False):
    """partial -> (L, V) nested lists of q(x_j = v | revealed tokens); uniform where the
    revealed tokens are impossible (the Oracle's documented convention)."""
    zero = Fraction(0) if exact else 0.0

    def denoise(partial):
        length = len(partial)
        table = [[zero] * vocab_size for _ in range(length)]
        evidence = zero
        for x, q in joint.items():
            if all(t == MASK or t == s for t, s in zip(partial, x, strict=True)):
                evidence += q
                for j in range(length):
                    table[j][x[j]] += q
        if evidence == 0:
            u = Fraction(1, vocab_size) if exact else 1.0 / vocab_size
            return [[u] * vocab_size for _ in range(length)]
        return [[t / evidence for t in row] for row in table]

    return denoise


def from_callable(fn, vocab_size: int, length: int):
    """partial -> (L, V) from a batched denoiser callable (a pure function of each row),
    evaluated once on every partial sequence."""
    partials = list(itertools.product(range(MASK, vocab_size), repeat=length))
    out = np.asarray(fn(np.array(partials, dtype=np.int64)), dtype=np.float64)
    table = dict(zip(partials, out, strict=True))
    return table.__getitem__


def reference_denoiser(joint: dict, language, length: int, denoiser):
    """The brute-force oracle for ``None``, else the given callable."""
    if denoiser is None:
        return brute_oracle(joint, language.vocab_size)
    return from_callable(denoiser, language.vocab_size, length)


def step_assignments(plan, length: int, exact: bool = False):
    """Every step assignment tau (a tuple: position -> step) with its probability."""
    conv = Fraction if exact else float
    if isinstance(plan, Schedule):
        for steps in itertools.product(range(plan.num_steps), repeat=length):
            prob = conv(1)
            for k in steps:
                prob *= conv(plan.masses[k])
            if prob > 0:
                yield prob, steps
    elif isinstance(plan, FixedCountPlan):
        bounds = np.cumsum(plan.counts)
        weight = Fraction(1, math.factorial(length)) if exact else 1.0 / math.factorial(length)
        for perm in itertools.permutations(range(length)):
            steps = [0] * length
            for rank, pos in enumerate(perm):
                steps[pos] = int(np.searchsorted(bounds, rank, side="right"))
            yield weight, tuple(steps)
    else:
        steps = [0] * length
        for k, tau in enumerate(plan.sets):
            for pos in tau:
                steps[int(pos)] = k
        yield conv(1), tuple(steps)


def brute_force(joint: dict, denoise, plan, length: int, exact: bool = False):
    """(p, jensen) with p = {x: sum_tau P(tau) p_tau(x)} and jensen = sum_tau P(tau)
    KL(q || p_tau) (float; +inf if some p_tau misses supp q). Partial-state outputs are cached."""
    cache: dict = {}

    def d(partial):
        if partial not in cache:
            cache[partial] = denoise(partial)
        return cache[partial]

    zero = Fraction(0) if exact else 0.0
    p = dict.fromkeys(joint, zero)
    jensen = 0.0
    for prob, steps in step_assignments(plan, length, exact):
        kl_tau = 0.0
        for x in joint:
            p_tau = Fraction(1) if exact else 1.0
            for j in range(length):
                partial = tuple(x[i] if steps[i] < steps[j] else MASK for i in range(length))
                p_tau *= d(partial)[j][x[j]]
            p[x] += prob * p_tau
            q = float(joint[x])
            if q > 0:
                kl_tau += math.inf if p_tau == 0 else q * (math.log(q) - math.log(float(p_tau)))
        jensen += float(prob) * kl_tau
    return p, jensen


def brute_metrics(joint: dict, p: dict, length: int) -> dict:
    """KL, SER, entropy and generative log-perplexity from the two tables."""
    kl = entropy = 0.0
    valid_mass = 0.0
    gen = 0.0
    for x, q in joint.items():
        q, px = float(q), float(p[x])
        if q > 0:
            entropy -= q * math.log(q)
            kl += math.inf if px == 0 else q * (math.log(q) - math.log(px))
            valid_mass += px
            gen -= px * math.log(q) / length
        elif px > 0:
            gen = math.inf
    return {"kl": kl, "ser": 1.0 - valid_mass, "entropy": entropy, "gen_log_ppl": gen}


def as_array(p: dict, vocab_size: int, length: int) -> np.ndarray:
    out = np.zeros((vocab_size,) * length)
    for x, val in p.items():
        out[x] = float(val)
    return out


# ------------------------------------------------------------------------------ fixtures


class ContextDenoiser:
    """A user callable whose marginals depend on the revealed context (how many tokens are
    revealed and their sum mod 3), so a wrong conditioning set in the engine shows up. With
    ``zeros`` some entries are exactly 0 (one entry per row always stays positive)."""

    def __init__(self, vocab_size: int, length: int, seed: int, zeros: bool = False):
        rng = np.random.default_rng(seed)
        table = rng.random((length, length + 1, 3, vocab_size)) + 0.05
        if zeros:
            drop = rng.random(table.shape) < 0.3
            drop[..., int(rng.integers(vocab_size))] = False
            table[drop] = 0.0
        self.table = table / table.sum(axis=-1, keepdims=True)
        self.length = length

    def __call__(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x)
        count = (x != MASK).sum(axis=1)
        residue = np.where(x != MASK, x, 0).sum(axis=1) % 3
        return self.table[np.arange(self.length)[None, :], count[:, None], residue[:, None]]


def small_languages():
    """Random n-grams and HMMs with pruned (exactly zero) entries."""
    langs = {
        "2gram-V3": random_ngram(2, 3, temperature=1.0, threshold=0.12, seed=3),
        "3gram-V2": random_ngram(3, 2, temperature=1.0, threshold=0.2, seed=1),
        "hmm-K3-V2": random_hmm(3, 2, randomness=1.0, threshold=0.2, seed=0),
        "hmm-K3-V3": random_hmm(3, 3, randomness=1.0, threshold=0.12, seed=3),
    }
    for lang in langs.values():
        pruned = [v for k, v in lang.metadata.items() if k.startswith("pruned_fraction")]
        assert max(pruned) > 0, "the test languages must hold exact zeros"
    return langs


LANGUAGES = small_languages()


def plans(length: int) -> dict:
    return {
        "linear3": Schedule.linear(3),
        "cosine2": Schedule.cosine(2),
        "alpha-list": Schedule.from_alpha([1.0, 0.7, 0.55, 0.0]),
        "alpha-list-tail": Schedule.from_alpha([1.0, 0.6, 0.2]),  # alpha(1) > 0: last step
        "fixed-even": FixedCountPlan.even(length, 2),
        "fixed-gap": FixedCountPlan([1, 0, length - 1]),
        "deterministic": DeterministicPlan([[length - 1], [], list(range(length - 1))]),
        "deterministic-blocks": DeterministicPlan.left_to_right(length, 2),
    }


def lengths_of(name: str) -> int:
    return 3 if name.endswith("V3") else 4


def denoisers(lang, length: int) -> dict:
    return {
        "oracle": None,
        "perturbed-uniform": PerturbedOracle(lang, 0.05),
        "perturbed-random": PerturbedOracle(lang, 0.2, direction="random", seed=7),
        "custom": ContextDenoiser(lang.vocab_size, length, seed=11),
    }


CASES = [
    (lang_name, plan_name, den_name)
    for lang_name in LANGUAGES
    for plan_name in plans(4)
    for den_name in ("oracle", "perturbed-uniform", "perturbed-random", "custom")
]


@pytest.fixture(scope="module")
def joints():
    return {name: brute_joint(lang, lengths_of(name)) for name, lang in LANGUAGES.items()}


# ------------------------------------------------------------------------------ item 1


@pytest.mark.parametrize(("lang_name", "plan_name", "den_name"), CASES)
def test_engine_matches_brute_force(joints, lang_name, plan_name, den_name):
    lang = LANGUAGES[lang_name]
    length = lengths_of(lang_name)
    plan = plans(length)[plan_name]
    den = denoisers(lang, length)[den_name]
    joint = joints[lang_name]
    denoise = reference_denoiser(joint, lang, length, den)
    p_ref, jensen_ref = brute_force(joint, denoise, plan, length)

    p = output_distribution(lang, plan, length, den)
    assert p.shape == (lang.vocab_size,) * length
    np.testing.assert_allclose(p, as_array(p_ref, lang.vocab_size, length), rtol=0, atol=TOL)
    assert p.sum() == pytest.approx(1.0, abs=1e-12)
    assert np.all(p >= 0)

    m = exact_metrics(lang, plan, length, den)
    ref = brute_metrics(joint, p_ref, length)
    assert m.total_mass == pytest.approx(1.0, abs=1e-12)
    assert m.kl == pytest.approx(ref["kl"], abs=TOL)
    assert m.ser == pytest.approx(ref["ser"], abs=TOL)
    assert m.entropy == pytest.approx(ref["entropy"], abs=TOL)
    assert m.gen_log_ppl == pytest.approx(ref["gen_log_ppl"], abs=TOL)
    assert m.log_ter == pytest.approx((ref["entropy"] + ref["kl"]) / length, abs=TOL)
    assert m.log_ter_q == pytest.approx(ref["entropy"] / length, abs=TOL)
    assert m.jensen_bound == pytest.approx(jensen_ref, abs=TOL)
    assert m.jensen_gap == pytest.approx(m.jensen_bound - m.kl, abs=1e-12)
    assert m.kl <= m.jensen_bound + 1e-12
    if isinstance(plan, DeterministicPlan):
        assert m.kl == pytest.approx(m.jensen_bound, abs=1e-12)


def test_brute_oracle_agrees_with_oracle(joints):
    """The brute-force conditionals are the Oracle's (a check of the reference itself)."""
    for name, lang in LANGUAGES.items():
        length = lengths_of(name)
        denoise = brute_oracle(joints[name], lang.vocab_size)
        partials = np.array(list(itertools.product(range(-1, lang.vocab_size), repeat=length)))
        got = Oracle(lang)(partials)
        want = np.array([denoise(tuple(int(t) for t in row)) for row in partials])
        masked = partials == MASK
        np.testing.assert_allclose(got[masked], want[masked], rtol=0, atol=1e-12)


@pytest.mark.parametrize("lang_name", list(LANGUAGES))
def test_engine_matches_brute_force_with_zero_denoiser(joints, lang_name):
    """A callable with exact zeros: p gets exact zeros where every tau does."""
    lang = LANGUAGES[lang_name]
    length = lengths_of(lang_name)
    den = ContextDenoiser(lang.vocab_size, length, seed=5, zeros=True)
    for plan in (Schedule.linear(2), FixedCountPlan.even(length, 2)):
        denoise = from_callable(den, lang.vocab_size, length)
        p_ref, jensen_ref = brute_force(joints[lang_name], denoise, plan, length)
        ref = as_array(p_ref, lang.vocab_size, length)
        p = output_distribution(lang, plan, length, den)
        np.testing.assert_allclose(p, ref, rtol=0, atol=TOL)
        np.testing.assert_array_equal(p == 0, ref == 0)
        m = exact_metrics(lang, plan, length, den)
        assert m.jensen_bound == pytest.approx(jensen_ref, abs=TOL) or (
            math.isinf(m.jensen_bound) and math.isinf(jensen_ref)
        )
        assert m.kl <= m.jensen_bound


def test_exact_rationals():
    """A bigram with rational tables (thirds, a zero): the brute force in Fractions gives p
    exactly; the float engine agrees to rounding, p sums to 1 exactly, and the autoregressive
    plan reproduces q exactly."""
    third = Fraction(1, 3)
    initial = [Fraction(1, 2), Fraction(1, 2), Fraction(0)]
    transition = [[third, 2 * third, 0], [Fraction(1, 4), 0, Fraction(3, 4)], [third] * 3]
    lang = NGram(2, [float(v) for v in initial], [[float(v) for v in r] for r in transition])
    length = 3
    joint = {}
    for x in itertools.product(range(3), repeat=length):
        q = initial[x[0]]
        for j in range(1, length):
            q *= Fraction(transition[x[j - 1]][x[j]])
        joint[x] = Fraction(q)
    assert sum(joint.values()) == 1
    denoise = brute_oracle(joint, 3, exact=True)

    plan = Schedule([0.5, 0.25, 0.25])  # dyadic masses: exact in float and as Fractions
    p_ref, _ = brute_force(joint, denoise, plan, length, exact=True)
    assert sum(p_ref.values()) == 1
    p = output_distribution(lang, plan, length)
    for x, val in p_ref.items():
        assert isinstance(val, Fraction)
        assert abs(Fraction(p[x]) - val) <= Fraction(1, 10**15)
    ser_ref = 1 - sum(v for x, v in p_ref.items() if joint[x] > 0)
    assert ser_ref > 0
    assert exact_metrics(lang, plan, length).ser == pytest.approx(float(ser_ref), abs=1e-15)

    ar, _ = brute_force(joint, denoise, DeterministicPlan.left_to_right(length), length, True)
    assert ar == joint

    fixed, _ = brute_force(joint, denoise, FixedCountPlan([2, 1]), length, exact=True)
    assert sum(fixed.values()) == 1
    p_fixed = output_distribution(lang, FixedCountPlan([2, 1]), length)
    for x, val in fixed.items():
        assert abs(Fraction(p_fixed[x]) - val) <= Fraction(1, 10**15)


# ------------------------------------------------------------------------------ properties


@st.composite
def exact_cases(draw):
    seed = draw(st.integers(0, 2**32 - 1))
    kind = draw(st.sampled_from(["ngram2", "ngram3", "hmm"]))
    v = draw(st.sampled_from([2, 3]))
    if kind == "ngram2":
        lang = random_ngram(2, v, temperature=1.5, threshold=0.9 / (v + 1), seed=seed)
    elif kind == "ngram3":
        lang = random_ngram(3, 2, temperature=1.5, threshold=0.3, seed=seed)
        v = 2
    else:
        lang = random_hmm(3, v, randomness=1.5, threshold=0.9 / max(v + 1, 4), seed=seed)
    length = draw(st.integers(2, 4 if v == 2 else 3))
    plan_kind = draw(st.sampled_from(["masses", "alpha", "fixed", "deterministic"]))
    steps = draw(st.integers(1, 3))
    if plan_kind == "masses":
        weights = draw(st.lists(st.integers(0, 4), min_size=steps, max_size=steps)
                       .filter(lambda w: sum(w) > 0))
        plan = Schedule(np.array(weights) / sum(weights))
    elif plan_kind == "alpha":
        cuts = sorted(draw(st.lists(st.floats(0, 1), min_size=steps - 1, max_size=steps - 1)),
                      reverse=True)
        plan = Schedule.from_alpha([1.0, *cuts, 0.0])
    elif plan_kind == "fixed":
        cut = draw(st.integers(0, length))
        plan = FixedCountPlan([cut, length - cut]) if steps > 1 else FixedCountPlan([length])
    else:
        order = draw(st.permutations(range(length)))
        labels = draw(st.lists(st.integers(0, steps - 1), min_size=length, max_size=length))
        sets = [[p for p, lab in zip(order, labels, strict=True) if lab == k]
                for k in range(steps)]
        plan = DeterministicPlan(sets)
    den_kind = draw(st.sampled_from(["oracle", "perturbed", "custom"]))
    if den_kind == "oracle":
        den = None
    elif den_kind == "perturbed":
        den = PerturbedOracle(lang, draw(st.sampled_from([0.0, 0.01, 0.3])))
    else:
        den = ContextDenoiser(lang.vocab_size, length, seed=seed % 1000)
    return lang, length, plan, den


@settings(max_examples=30, deadline=None)
@given(exact_cases())
def test_kl_below_jensen_bound_and_matches_brute_force(case):
    """Lemma B.2: KL(q||p) <= E_tau KL(q||p_tau), both exact, on random languages and plans;
    both agree with the brute force; equality for a deterministic plan."""
    lang, length, plan, den = case
    m = exact_metrics(lang, plan, length, den)
    assert m.total_mass == pytest.approx(1.0, abs=1e-12)
    assert -1e-12 <= m.ser <= 1.0 + 1e-12
    assert m.kl >= -1e-12
    assert m.kl <= m.jensen_bound + 1e-12
    assert m.jensen_gap >= -1e-12
    if isinstance(plan, DeterministicPlan):
        assert m.kl == pytest.approx(m.jensen_bound, abs=1e-12)
    joint = brute_joint(lang, length)
    denoise = reference_denoiser(joint, lang, length, den)
    p_ref, jensen_ref = brute_force(joint, denoise, plan, length)
    np.testing.assert_allclose(output_distribution(lang, plan, length, den),
                               as_array(p_ref, lang.vocab_size, length), rtol=0, atol=TOL)
    assert m.jensen_bound == pytest.approx(jensen_ref, abs=TOL)


# ------------------------------------------------------------------------------ item 2


@pytest.mark.parametrize("lang_name", list(LANGUAGES))
@pytest.mark.parametrize("extra_steps", [0, 2])
def test_one_position_per_step_is_exact(lang_name, extra_steps):
    """N >= L and one position per step, oracle: p = q, so KL = SER = 0, log TER = log TER(q)
    and the generative log-perplexity is H / L."""
    lang = LANGUAGES[lang_name]
    length = lengths_of(lang_name)
    plan = DeterministicPlan.left_to_right(length, length + extra_steps)
    assert plan.num_steps >= length and all(s.size <= 1 for s in plan.sets)
    m = exact_metrics(lang, plan, length)
    assert m.ser == pytest.approx(0.0, abs=1e-12)
    assert m.kl == pytest.approx(0.0, abs=1e-12)
    assert m.jensen_bound == pytest.approx(0.0, abs=1e-12)
    assert m.log_ter == pytest.approx(m.log_ter_q, abs=1e-12)
    assert m.gen_log_ppl == pytest.approx(m.entropy / length, abs=1e-12)
    q = as_array(brute_joint(lang, length), lang.vocab_size, length)
    np.testing.assert_allclose(output_distribution(lang, plan, length), q, rtol=0, atol=1e-12)


@pytest.mark.parametrize("lang_name", list(LANGUAGES))
def test_any_order_one_per_step_is_exact(lang_name):
    """The chain rule holds in every order: a shuffled singleton plan and the random-order
    FixedCountPlan with one position per step are exact too."""
    lang = LANGUAGES[lang_name]
    length = lengths_of(lang_name)
    perm = np.random.default_rng(0).permutation(length)
    for plan in (DeterministicPlan([[int(i)] for i in perm]),
                 FixedCountPlan.even(length, length), FixedCountPlan([1] * length + [0])):
        m = exact_metrics(lang, plan, length)
        assert m.ser == pytest.approx(0.0, abs=1e-12)
        assert m.kl == pytest.approx(0.0, abs=1e-12)
        assert m.jensen_bound == pytest.approx(0.0, abs=1e-12)


def test_parallel_step_is_not_exact():
    """Control for the test above: revealing everything at once with the oracle is not exact
    on a language with dependencies (KL = total correlation > 0, SER > 0 with zeros)."""
    lang = LANGUAGES["2gram-V3"]
    m = exact_metrics(lang, DeterministicPlan([[0, 1, 2]]), 3)
    assert m.kl > 1e-3
    assert m.ser > 1e-3


# ------------------------------------------------------------------------------ item 4


def interval_valid_probability(masses: np.ndarray, interval: int) -> float:
    """E[2^{-#colliding pairs}] over independent step choices of the interval's positions."""
    total = 0.0
    for steps in itertools.product(range(masses.size), repeat=interval):
        pairs = itertools.combinations(range(interval), 2)
        collisions = sum(steps[a] == steps[b] for a, b in pairs)
        total += float(np.prod(masses[list(steps)])) * 2.0**-collisions
    return total


@pytest.mark.parametrize("length", [3, 6])
def test_interval_parity_closed_form(length):
    """Example C.7 with the oracle: SER = 1 - (E[2^{-#colliding pairs}])^(L/l), and SER falls
    strictly as the uniform schedule gets more steps."""
    lang = IntervalParity(3)
    sers = []
    for n in range(1, 9):
        schedule = Schedule.linear(n)
        m = exact_metrics(lang, schedule, length)
        valid = interval_valid_probability(schedule.masses, 3)
        assert m.ser == pytest.approx(1.0 - valid ** (length // 3), abs=1e-12)
        sers.append(m.ser)
    assert sers[0] == pytest.approx(1.0 - 8.0 ** -(length // 3), abs=1e-12)
    assert all(a > b for a, b in zip(sers, sers[1:], strict=False))


def test_interval_parity_closed_form_non_uniform():
    lang = IntervalParity(3)
    schedule = Schedule.cosine(4)
    valid = interval_valid_probability(schedule.masses, 3)
    assert exact_metrics(lang, schedule, 6).ser == pytest.approx(1.0 - valid**2, abs=1e-12)


def biased_parity_denoiser(interval: int, bias: float):
    """Batched token-level model of Example C.7: a pair bit shared with a revealed partner is
    copied, an undetermined one is drawn 1 with probability ``bias`` (1/2: the oracle)."""
    v = 2 ** (interval - 1)

    def bit_index(a: int, b: int) -> int:  # 0-based bit of 1-based position a shared with b
        return b - 2 if a < b else b - 1

    def denoise(x):
        out = np.zeros((*x.shape, v))
        for r, row in enumerate(x):
            for pos, tok in enumerate(row):
                if tok >= 0:
                    out[r, pos, tok] = 1.0
                    continue
                base, a = pos - pos % interval, pos % interval + 1
                for cand in range(v):
                    pr = 1.0
                    for b in range(1, interval + 1):
                        if b == a:
                            continue
                        bit = (cand >> bit_index(a, b)) & 1
                        partner = int(row[base + b - 1])
                        if partner >= 0:
                            pr *= float(bit == (partner >> bit_index(b, a)) & 1)
                        else:
                            pr *= bias if bit else 1.0 - bias
                    out[r, pos, cand] = pr
        return out

    return denoise


def parity_ser_fraction(masses, interval: int, length: int, p_e: Fraction) -> Fraction:
    """1 - E[(1 - p_e)^#same-step pairs]^(L/l), every step choice of one interval enumerated."""
    ps = [Fraction(m) for m in masses]
    valid = Fraction(0)
    for steps in itertools.product(range(len(ps)), repeat=interval):
        pairs = sum(steps[a] == steps[b] for a, b in itertools.combinations(range(interval), 2))
        valid += math.prod((ps[k] for k in steps), start=Fraction(1)) * (1 - p_e) ** pairs
    return 1 - valid ** (length // interval)


@pytest.mark.parametrize("masses", [[0.5, 0.5], [0.25, 0.125, 0.625], [1.0]])
@pytest.mark.parametrize("length", [3, 6])
def test_interval_parity_ser_of_the_oracle(masses, length):
    """Against the token-level exact engine, the enumeration in rationals and the theory
    engine (``oracle_ser``)."""
    schedule = Schedule(masses)
    got = interval_parity_ser(3, length, schedule)
    want = float(parity_ser_fraction(masses, 3, length, Fraction(1, 2)))
    assert got == pytest.approx(want, rel=1e-13, abs=1e-15)
    assert got == pytest.approx(exact_metrics(IntervalParity(3), schedule, length).ser, abs=1e-12)
    assert got == oracle_ser(schedule, 3, length, p_e=0.5)


@pytest.mark.parametrize("eps", [1 / 128, 0.0625, 0.25])
def test_interval_parity_ser_of_the_worst_model(eps):
    """eps_learning > 0: pair bits biased by eta = sqrt(eps / 2) make a same-step pair err with
    probability 2 (1/2 + eta)(1/2 - eta) = 1/2 - eps; checked against the enumeration with
    p_e = 1/2 - eps in rationals and against the token-level engine with that biased model."""
    masses, length = [0.25, 0.125, 0.625], 6
    schedule = Schedule(masses)
    got = interval_parity_ser(3, length, schedule, eps_learning=eps)
    want = parity_ser_fraction(masses, 3, length, Fraction(1, 2) - Fraction(eps))
    assert got == pytest.approx(float(want), rel=1e-13)
    model = biased_parity_denoiser(3, 0.5 + math.sqrt(eps / 2))
    token_level = exact_metrics(IntervalParity(3), schedule, length, model).ser
    assert got == pytest.approx(token_level, abs=1e-12)
    assert got < interval_parity_ser(3, length, schedule)  # fewer errors than the oracle


def test_interval_parity_ser_of_a_deterministic_plan():
    plan = DeterministicPlan([[0, 1, 3], [2, 4, 5]])  # 1 pair in each interval: 1 - (1/2)^2
    assert interval_parity_ser(3, 6, plan) == pytest.approx(0.75, abs=1e-15)
    assert interval_parity_ser(3, 6, plan) == pytest.approx(
        exact_metrics(IntervalParity(3), plan, 6).ser, abs=1e-12)


# ------------------------------------------------------------------------------ item 5


def test_refuses_large_sizes_with_estimate():
    lang = preset("3-gram")
    with pytest.raises(ValueError, match=r"about [0-9.e+]+ GiB") as err:
        output_distribution(lang, Schedule.linear(4), 12)
    assert "\n" not in str(err.value)
    assert "max_bytes" in str(err.value)
    with pytest.raises(ValueError, match="GiB"):
        exact_metrics(lang, Schedule.linear(4), 12)
    small = LANGUAGES["2gram-V3"]
    with pytest.raises(ValueError, match=r"about [0-9.e+-]+ GiB"):
        exact_metrics(small, Schedule.linear(2), 3, max_bytes=1000)
    assert exact_metrics(small, Schedule.linear(2), 3, max_bytes=2**30).total_mass == (
        pytest.approx(1.0))


def test_rejects_bad_arguments():
    lang = LANGUAGES["2gram-V3"]
    with pytest.raises(TypeError, match="schedule"):
        output_distribution(lang, "linear", 3)
    with pytest.raises(ValueError, match="length"):
        output_distribution(lang, FixedCountPlan([1, 1]), 3)
    with pytest.raises(ValueError, match="length"):
        exact_metrics(lang, DeterministicPlan([[0], [1]]), 3)
    with pytest.raises(TypeError, match="denoiser"):
        output_distribution(lang, Schedule.linear(2), 3, denoiser=3)
