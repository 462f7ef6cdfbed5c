"""Extreme-but-legal arguments of the schedules and the theory (issue 10, items 5, 6, 8, 13).

Every formula rewritten in log space (or without factorials) is checked here against an
independent evaluation: exact rationals (``fractions.Fraction``) by enumeration or closed form,
or the previous direct formula, reimplemented here, at moderate arguments where it was fine.
Agreement is asked to rel 1e-12. Lengths beyond float range (10**400) must give the exact
limit or a named one-line refusal (rows in tests/test_bad_inputs.py).
"""

from __future__ import annotations

import itertools
import json
import math
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mdm_exact import DeterministicPlan, FixedCountPlan, MdmExactError, Schedule
from mdm_exact.cli import main
from mdm_exact.schedules import adaptive_ngram_steps_bound, paper_ngram_extra_steps
from mdm_exact.theory import (
    acceptance_lower_bound,
    collision_probability,
    dependency_kl_bound,
    distinct_steps_paper_bound,
    distinct_steps_probability,
    expected_nfe,
    interval_valid_probability,
    jensen_intermediate,
    li_cai_bound,
    min_length,
    min_steps_for_ser,
    oracle_ser,
    oracle_ser_family,
    ser_lower_bound,
    ser_lower_bound_tight,
    theorem_c9_bound,
    theorem_c9_is_vacuous,
)
from mdm_exact.theory.ngram import separator_tail_bound

BIG = 10**400
REL = 1e-12


def close(value: float, exact, rel: float = REL) -> bool:
    exact = float(exact)
    return abs(value - exact) <= rel * abs(exact)


# ------------------------------------------------------------------------------ references


def fraction_validity(masses, ell: int, p_e: Fraction) -> Fraction:
    """E[(1 - p_e)^(same-step pairs)] over every assignment of ell positions to steps."""
    total = Fraction(0)
    for steps in itertools.product(range(len(masses)), repeat=ell):
        prob = math.prod((masses[s] for s in steps), start=Fraction(1))
        pairs = sum(math.comb(steps.count(k), 2) for k in set(steps))
        total += prob * (1 - p_e) ** pairs
    return total


def fraction_fixed_count(counts, ell: int, p_e: Fraction) -> Fraction:
    """The same over the ell positions' slots, a uniform ell-subset of the sum(counts) slots."""
    slots = [k for k, m in enumerate(counts) for _ in range(m)]
    subsets = list(itertools.combinations(range(len(slots)), ell))
    total = Fraction(0)
    for subset in subsets:
        steps = [slots[i] for i in subset]
        total += (1 - p_e) ** sum(math.comb(steps.count(k), 2) for k in set(steps))
    return total / len(subsets)


def series_validity(masses, ell: int, p_e: float) -> float:
    """The previous evaluation: l! [z^l] prod_k sum_c w(c) (p_k z)^c / c! (fine below l = 171)."""
    c = np.arange(ell + 1)
    weights = (1 - p_e) ** (c * (c - 1) // 2) / np.array([math.factorial(int(i)) for i in c],
                                                         dtype=np.float64)
    out = np.zeros(ell + 1)
    out[0] = 1.0
    for p in masses:
        out = np.convolve(out, weights * p**c)[: ell + 1]
    return float(out[ell] * math.factorial(ell))


def set_partitions(items):
    if not items:
        yield []
        return
    first, rest = items[0], items[1:]
    for part in set_partitions(rest):
        yield [[first], *part]
        for i in range(len(part)):
            yield [*part[:i], [first, *part[i]], *part[i + 1:]]


def uniform_validity(num_steps: int, ell: int, p_e: Fraction) -> Fraction:
    """Exact Pr[valid] under N equal masses: a set partition of the ell positions with b blocks
    has probability N (N-1) ... (N-b+1) / N^ell."""
    total = Fraction(0)
    for part in set_partitions(list(range(ell))):
        falling = math.prod(num_steps - i for i in range(len(part)))
        pairs = sum(math.comb(len(block), 2) for block in part)
        total += Fraction(falling, num_steps**ell) * (1 - p_e) ** pairs
    return total


# ------------------------------------------------------------------------------ Example C.7


@pytest.mark.parametrize("masses, ell, p_e", [
    ([Fraction(1, 2), Fraction(1, 2)], 4, Fraction(1, 2)),
    ([Fraction(1, 5), Fraction(3, 10), Fraction(1, 2)], 5, Fraction(1, 3)),
    ([Fraction(1, 4)] * 4, 6, Fraction(1, 2)),
    ([Fraction(7, 10), Fraction(1, 10), Fraction(1, 10), Fraction(1, 10)], 3, Fraction(1)),
    ([Fraction(1, 3), Fraction(0), Fraction(2, 3)], 4, Fraction(9, 10)),
])
def test_validity_matches_exact_rationals(masses, ell, p_e):
    exact = fraction_validity(masses, ell, p_e)
    floats = np.array([float(m) for m in masses])
    assert close(interval_valid_probability(floats, ell, p_e=float(p_e)), exact)
    assert close(oracle_ser(floats, ell, 3 * ell, p_e=float(p_e)), 1 - exact**3)


@pytest.mark.parametrize("counts, ell, p_e", [
    ([2, 1, 3], 3, Fraction(1, 2)), ([1, 1, 1, 1], 2, Fraction(1, 2)),
    ([4, 0, 4], 4, Fraction(1, 3)), ([3, 3], 3, Fraction(1)),
])
def test_fixed_count_matches_exact_rationals(counts, ell, p_e):
    exact = fraction_fixed_count(counts, ell, p_e)
    assert close(interval_valid_probability(FixedCountPlan(counts), ell, p_e=float(p_e)), exact)


def test_fixed_count_closed_form_at_large_interval():
    """p_e = 1: valid iff the 60 positions take 60 different steps; with 100 steps of 3 slots
    that is C(100, 60) 3^60 / C(300, 60)."""
    exact = Fraction(math.comb(100, 60) * 3**60, math.comb(300, 60))
    assert close(interval_valid_probability(FixedCountPlan([3] * 100), 60, p_e=1.0), exact)


@pytest.mark.parametrize("seed", range(6))
def test_validity_matches_previous_series_at_moderate_sizes(seed):
    rng = np.random.default_rng(seed)
    ell = int(rng.integers(2, 120))
    masses = rng.dirichlet(np.full(int(rng.integers(1, 30)), rng.uniform(0.3, 3.0)))
    masses = np.concatenate([masses, masses]) / 2  # equal masses: runs of two
    p_e = float(rng.uniform(0.05, 0.95))
    reference = series_validity(masses, ell, p_e)
    if reference > 1e-250:
        assert close(interval_valid_probability(masses, ell, p_e=p_e), reference)


@pytest.mark.parametrize("num_steps", [10**6, 10**12, 10**15])
def test_tiny_failure_keeps_its_digits(num_steps):
    """1 - valid ~ 5/N: computed as a failure, not as 1 minus a number next to 1."""
    valid = uniform_validity(num_steps, 5, Fraction(1, 2))
    assert close(oracle_ser_family("linear", num_steps, 5, 5), 1 - valid)
    assert close(oracle_ser_family("linear", num_steps, 5, 15), 1 - valid**3)


def test_interval_171_and_beyond():
    """Beyond 170! (the old factorial overflow): p_e = 1 has the closed form prod (1 - r/N)."""
    for ell, n in [(171, 10**6), (400, 10**7)]:
        exact = math.prod((Fraction(n - r, n) for r in range(ell)), start=Fraction(1))
        assert close(oracle_ser_family("linear", n, ell, ell, p_e=1.0), 1 - exact)
        assert close(distinct_steps_probability(Schedule.linear(ell), ell),
                     math.prod((Fraction(ell - r, ell) for r in range(ell)), start=Fraction(1)),
                     rel=1e-11)
    assert oracle_ser_family("linear", 10, 171, 171) == 1.0
    assert 0.0 < oracle_ser_family("linear", 10**9, 500, 5000) < 1.0


def test_collision_probability_keeps_relative_precision():
    """Equal masses (one run, repeated squaring) keep the digits of a collision probability of
    3e-6; masses that all differ take the O(N L) path, accurate to 1e-16 in absolute terms."""
    n = 10**6
    exact = 1 - Fraction(n - 1, n) * Fraction(n - 2, n)
    assert close(collision_probability(np.full(n, 1.0 / n), 3), exact)
    assert abs(collision_probability(Schedule.linear(n), 3) - float(exact)) < 1e-14
    assert collision_probability(Schedule.linear(4), BIG) == 1.0


def test_deterministic_plan_pairs_without_a_cube():
    plan = DeterministicPlan([[0, 1, 2], [3], [4, 5]])  # intervals of 3: (0,1,2), (3,4,5)
    assert list(interval_valid_probability(plan, 3, p_e=0.5)) == [0.125, 0.5]
    assert close(oracle_ser(plan, 3, 6), 1 - Fraction(1, 8) * Fraction(1, 2))


# ------------------------------------------------------------------------------ Lemma C.5, C.6


def test_paper_forms_match_exact_rationals():
    for n, ell in [(3, 5), (10**13, 5), (7.5, 4)]:
        exact = (1 - 1 / Fraction(n)) ** (ell - 1)
        assert close(distinct_steps_paper_bound(n, ell), exact)
    n, ell, k, p_e = 10**13, 5, 4, Fraction(1, 2)
    miss = p_e * (1 - (1 - Fraction(1, n)) ** (ell - 1))
    assert close(ser_lower_bound(n, ell, ell * k, 0.5), 1 - (1 - miss) ** k)


def test_jensen_intermediate_matches_direct_formula():
    p = np.array([0.1, 0.2, 0.3, 0.4])
    for ell in [1, 2, 7, 40]:
        exact = sum(Fraction(m) * (1 - Fraction(m)) ** (ell - 1) for m in p)
        assert close(jensen_intermediate(p, ell), exact)
    assert jensen_intermediate(p, BIG) == 0.0
    assert jensen_intermediate([1.0], 1) == 1.0


def test_lengths_beyond_float_range():
    s = Schedule.linear(4)
    assert ser_lower_bound(4, 5, 5 * BIG, 0.5) == 1.0
    assert ser_lower_bound(4, 5, 5 * BIG, 0.0) == 0.0
    assert ser_lower_bound_tight(s, 5, 5 * BIG, 0.5) == 1.0
    assert oracle_ser(s, 5, 5 * BIG) == 1.0
    assert acceptance_lower_bound(BIG, 0.0) == 1.0
    assert acceptance_lower_bound(BIG, 1e-3) == 0.0
    assert expected_nfe(s, BIG) == 4.0
    assert Schedule([0.5, 0.0, 0.5]).expected_nfe(BIG) == 2.0
    assert li_cai_bound(2.0, BIG, 3) == 0.0  # 3 * 2 / 10^400 rounds to 0
    # ceil(log2 s_max) exactly: math.log2(2**60 + 1) rounds to 60.0
    assert li_cai_bound(1.0, 2**61, 2**60 + 1) == (2**61 - 1) / 2**61


# ------------------------------------------------------------------------------ property


LENGTHS = st.one_of(st.integers(1, 10**6), st.integers(1, 10**40), st.integers(10**300, 10**320),
                    st.just(BIG))
MASSES = st.lists(st.floats(0.0, 1.0), min_size=1, max_size=6).filter(lambda m: sum(m) > 0)


@settings(max_examples=80, deadline=None)
@given(raw=MASSES, ell=st.integers(1, 250), intervals=LENGTHS, length=LENGTHS,
       p_e=st.floats(0.0, 1.0), eps=st.floats(0.0, 10.0), c=st.floats(1e-300, 1e3),
       real_n=st.floats(1.0, 1e300))
def test_extreme_arguments_answer_in_domain_or_refuse(raw, ell, intervals, length, p_e, eps, c,
                                                       real_n):
    """Probabilities in [0, 1], other bounds finite and >= 0, or a one-line library refusal:
    never an OverflowError, a NaN or an inf."""
    masses = np.array(raw) / sum(raw)
    masses[-1] = max(0.0, 1.0 - masses[:-1].sum())
    probability = [
        lambda: oracle_ser(masses, ell, ell * intervals, p_e=p_e),
        lambda: interval_valid_probability(masses, ell, p_e=p_e),
        lambda: ser_lower_bound(real_n, ell, ell * intervals, p_e),
        lambda: ser_lower_bound_tight(masses, ell, ell * intervals, p_e),
        lambda: distinct_steps_probability(masses, ell),
        lambda: distinct_steps_paper_bound(real_n, length),
        lambda: collision_probability(masses, length),
        lambda: acceptance_lower_bound(length, eps),
        lambda: theorem_c9_bound(c, length, p_e),
        lambda: jensen_intermediate(masses, length),
        lambda: float(separator_tail_bound(length, 3, masses).bound.max()),
    ]
    other = [
        lambda: expected_nfe(Schedule(masses), length),
        lambda: li_cai_bound(eps, length, ell),
        lambda: dependency_kl_bound(3, length, 4, eps),
        lambda: min(min_length(2, float(masses[0])), 10**20) if 0 < masses[0] < 1 else 1,
    ]
    for kind, calls in (("probability", probability), ("bound", other)):
        for call in calls:
            try:
                value = call()
            except MdmExactError as err:
                assert "\n" not in str(err)
                continue
            assert math.isfinite(value) and value >= 0, (kind, value)
            if kind == "probability":
                assert value <= 1.0, value
    assert expected_nfe(Schedule(masses), length) <= min(np.count_nonzero(masses), length)


# ------------------------------------------------------------------------------ Theorem C.9


@pytest.mark.parametrize("c, length, p_e", [(0.5, 15, 63 / 128), (0.2, 50_000, 63 / 128),
                                            (2.0, 100, 0.3), (0.05, 40, 0.5)])
def test_c9_matches_direct_formula(c, length, p_e):
    rate = 4 * p_e / (5 * c) * (1 - 1.5 / (c * length))
    assert close(theorem_c9_bound(c, length, p_e), -math.expm1(-rate))
    assert not theorem_c9_is_vacuous(c, length, p_e)


def test_c9_vacuous_is_zero_and_labelled():
    assert theorem_c9_bound(1e-5, 100_000) == 0.0  # C L = 1: was an OverflowError
    assert theorem_c9_is_vacuous(1e-5, 100_000)
    assert theorem_c9_bound(0.3, 5) == 0.0  # C L = 1.5 exactly
    assert theorem_c9_is_vacuous(0.3, 5)
    assert theorem_c9_bound(0.32, 5) > 0.0 and not theorem_c9_is_vacuous(0.32, 5)
    assert theorem_c9_bound(0.5, 10, p_e=0.0) == 0.0 and theorem_c9_is_vacuous(0.5, 10, 0.0)
    assert theorem_c9_bound(1e-300, BIG) == 1.0
    assert close(theorem_c9_bound(0.5, BIG), -math.expm1(-4 * (63 / 128) / 2.5))


# ------------------------------------------------------------------------------ searches


def test_min_steps_search_starts_at_the_floor():
    n = min_steps_for_ser(5, 1000, 0.1, family="cosine")
    assert oracle_ser(Schedule.cosine(n), 5, 1000) <= 0.1 < oracle_ser(Schedule.cosine(n - 1), 5,
                                                                         1000)
    n = min_steps_for_ser(200, 200, 0.5)  # interval 200: the old factorials overflowed
    assert oracle_ser_family("linear", n, 200, 200) <= 0.5 < oracle_ser_family("linear", n - 1,
                                                                               200, 200)


# ------------------------------------------------------------------------------ Lemma B.12


def old_min_length(n: int, eps: float) -> int:
    m = paper_ngram_extra_steps(n, eps)
    return math.ceil(max(8 * (n - 1) * math.log(4 / eps) / eps ** (n - 1),
                         3 * math.log(10 / eps) * m / (1 - eps), m))


@pytest.mark.parametrize("n", [2, 3, 4, 7])
@pytest.mark.parametrize("eps", [0.5, 0.3, 0.1, 0.05, 0.01, 0.001])
def test_min_length_matches_previous_formula(n, eps):
    """Equal where the old float formula was exact (below 2**53), else to rel 1e-12."""
    new, old = min_length(n, eps), old_min_length(n, eps)
    if old < 2**53:
        assert new == old
    else:
        assert abs(new - old) <= 1e-12 * old


def test_min_length_beyond_float_range():
    m = paper_ngram_extra_steps(2, 1e-300)
    l0 = min_length(2, 1e-300)
    ratio = Fraction(l0, m)  # the middle term wins: 3 ln(10 / eps) / (1 - eps)
    assert close(float(ratio), 3 * math.log(1e301))
    assert min_length(2, np.float32(0.1)) == min_length(2, 0.1)


def adaptive_reference(n: int, eps: float) -> list[float]:
    masses, revealed, coef = [eps], eps, eps / (4 * (n - 1))
    while revealed < 1.0:
        step = coef * revealed ** (n - 1)
        if step >= 1.0 - revealed:
            masses.append(1.0 - revealed)
            break
        masses.append(step)
        revealed += step
    return masses


@pytest.mark.parametrize("n, eps", [(2, 0.3), (2, 0.01), (3, 0.1), (4, 0.2), (9, 0.9),
                                    (3, 0.003)])
def test_adaptive_ngram_matches_python_recurrence(n, eps):
    masses = Schedule.adaptive_ngram(n, eps).masses
    assert masses.tolist() == adaptive_reference(n, eps)
    c = eps / (4 * (n - 1))
    ode_time = (math.log(1 / eps) / c if n == 2
                else (eps ** -(n - 2) - 1) / ((n - 2) * c))
    assert ode_time <= masses.size <= adaptive_ngram_steps_bound(n, eps)


def test_schedule_runs_and_numpy_eps():
    s = Schedule.paper_ngram(2, np.float32(0.1))
    assert s.num_steps == Schedule.paper_ngram(2, 0.1).num_steps == 325
    assert s.runs() == [(0.1, 1), (float(s.masses[1]), 324)]
    assert Schedule([0.25, 0.25, 0.5]).runs() == [(0.25, 2), (0.5, 1)]
    assert Schedule(np.array([0.5, 0.5], dtype=object)).num_steps == 2
    assert FixedCountPlan(np.array([2, 3], dtype=np.uint64)).length == 5
    assert DeterministicPlan([[1.0], [0.0]]).length == 2


# ------------------------------------------------------------------------------ CLI


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_ser_says_vacuous(capsys):
    code, out, _ = run(capsys, "ser", "--interval", "5", "--length", "100000", "--steps", "1")
    assert code == 0 and "vacuous" in out
    code, out, _ = run(capsys, "ser", "--interval", "5", "--length", "100000", "--steps", "1",
                       "--json")
    data = json.loads(out)
    assert data["theorem_4_4_lower_bound"] == 0.0 and data["theorem_4_4_vacuous"] is True
    assert data["ser"] == 1.0


def test_cli_ser_many_steps_is_exact(capsys):
    code, out, _ = run(capsys, "ser", "--interval", "5", "--length", "5", "--steps",
                       str(10**12), "--json")
    assert code == 0
    assert close(json.loads(out)["ser"], 1 - uniform_validity(10**12, 5, Fraction(1, 2)))


@pytest.mark.parametrize("argv, needle", [
    (["steps", "--interval", "5", "--length", "10", "--ser", "0.5", "--preset", "2-gram"],
     "--preset"),
    (["steps", "--interval", "5", "--length", "10", "--ser", "0.5", "--kl-per-token", "1"],
     "--kl-per-token"),
    (["steps", "--length", "4", "--preset", "2-gram", "--kl-per-token", "nan"], "nan"),
    (["steps", "--length", "4", "--preset", "2-gram", "--kl-per-token", "-1"], "--kl-per-token"),
    (["steps", "--length", "4", "--preset", "2-gram", "--kl-per-token", "1", "--ser", "0.1"],
     "--ser"),
    (["bound", "--n", "2", "--eps", "0.3", "--samples", "3"], "--samples"),
    (["bound", "--n", "2", "--eps", "0.3", "--verify", "--length", "3"], "L_0"),
    (["bound", "--n", "2", "--eps", "0.3", "--verify", "--length", str(10**11)], "--length"),
    (["bound", "--n", "2", "--eps", "1e-5"], "eps"),
    (["bound", "--n", "3", "--eps", "1e-6", "--schedule", "adaptive"], "eps"),
    (["bound", "--n", "1000000", "--eps", "0.5"], "digits"),
    (["ser", "--interval", "1000000", "--length", "1000000", "--steps", "10"], "operations"),
    (["steps", "--interval", "5", "--length", "1000", "--ser", "1e-9", "--schedule", "cosine"],
     "Lemma C.6"),
])
def test_cli_refuses_in_one_line(capsys, argv, needle):
    code, out, err = run(capsys, *argv)
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and needle in err


def test_cli_bound_json_listing_is_budgeted(capsys, monkeypatch):
    s = Schedule.adaptive_ngram(3, 0.05)
    assert s.num_runs == len(s.runs()) and s.runs(2) == s.runs()[:2]
    listing = 700 * s.num_runs + 80 * s.num_steps
    assert 32 * s.num_steps < 1e6 < listing  # the schedule fits 1 MB, its listing does not
    monkeypatch.setenv("MDM_EXACT_MAX_MEMORY", "1MB")
    code, out, err = run(capsys, "bound", "--n", "3", "--eps", "0.05", "--schedule", "adaptive",
                         "--json")
    assert code == 2 and out == "" and "--json listing" in err
    code, out, _ = run(capsys, "bound", "--n", "3", "--eps", "0.05", "--schedule", "adaptive")
    assert code == 0 and f"({s.num_runs} runs)" in out


def test_cli_bound_verify_without_preset(capsys):
    code, out, _ = run(capsys, "bound", "--n", "5", "--eps", "0.5", "--verify", "--samples", "2")
    assert code == 0 and "n/a (no Table 1 preset" in out


def test_cli_kl_search_shows_progress(capsys, monkeypatch):
    monkeypatch.setattr("mdm_exact._utils.PROGRESS_DELAY", 0)
    code, out, err = run(capsys, "steps", "--length", "3", "--preset", "2-gram",
                         "--kl-per-token", "0.5", "--samples", "20")
    assert code == 0 and "smallest N" in out
    assert "steps search" in err
