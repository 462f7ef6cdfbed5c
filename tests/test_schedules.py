"""Schedules and plans (docs/concepts.md; Lemma B.12 and Appendix D pages under docs/theory/)."""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from mdm_exact.schedules import (
    DeterministicPlan,
    FixedCountPlan,
    Schedule,
    check_plan,
    paper_ngram_extra_steps,
)

FAMILIES = {
    "linear": lambda: Schedule.linear(7),
    "cosine": lambda: Schedule.cosine(9),
    "polynomial": lambda: Schedule.polynomial(6, 2.5),
    "loglinear": lambda: Schedule.loglinear(5, 0.1),
    "paper_ngram": lambda: Schedule.paper_ngram(2, 0.3),
    "adaptive_ngram": lambda: Schedule.adaptive_ngram(3, 0.4),
    "custom": lambda: Schedule([0.1, 0.0, 0.6, 0.3]),
    "alpha-list": lambda: Schedule.from_alpha([1.0, 0.9, 0.9, 0.2, 0.0]),
}


def one_line(err) -> str:
    msg = str(err.value)
    assert "\n" not in msg
    return msg


# ------------------------------------------------------------------------------ families


def test_family_masses_follow_alpha():
    """p^(k) = alpha(t_{N-k}) - alpha(t_{N-k+1}) on t_i = i/N (docs/theory/labels.md)."""
    n = 8
    t = np.arange(n + 1) / n
    for schedule, alpha in [
        (Schedule.linear(n), 1 - t),
        (Schedule.cosine(n), np.cos(np.pi * t / 2)),
        (Schedule.polynomial(n, 3.0), 1 - t**3),
    ]:
        want = np.array([alpha[n - k] - alpha[n - k + 1] for k in range(1, n + 1)])
        np.testing.assert_allclose(schedule.masses, want, rtol=0, atol=1e-15)
        np.testing.assert_allclose(schedule.alphas, alpha, rtol=0, atol=1e-15)
    np.testing.assert_allclose(Schedule.linear(5).masses, np.full(5, 0.2), atol=1e-15)
    # Cosine reveals the most at the first generation step (alpha is steepest near t = 1).
    assert np.all(np.diff(Schedule.cosine(n).masses) < 0)


def test_loglinear_reveals_the_rest_at_the_last_step():
    eps = 0.1
    s = Schedule.loglinear(4, eps)
    np.testing.assert_allclose(s.masses[:-1], np.full(3, (1 - eps) / 4), atol=1e-15)
    assert s.masses[-1] == pytest.approx((1 - eps) / 4 + eps, abs=1e-15)
    assert s.masses.sum() == pytest.approx(1.0, abs=1e-15)


@pytest.mark.parametrize("name", list(FAMILIES))
def test_alpha_round_trip_and_views(name):
    s = FAMILIES[name]()
    assert s.masses.sum() == pytest.approx(1.0, abs=1e-12)
    assert np.all(s.masses >= 0)
    alphas = s.alphas
    assert alphas.shape == (s.num_steps + 1,)
    assert alphas[0] == pytest.approx(1.0, abs=1e-12) and alphas[-1] == 0.0
    assert np.all(np.diff(alphas) <= 1e-15)
    back = Schedule.from_alpha(alphas)
    np.testing.assert_allclose(back.masses, s.masses, rtol=0, atol=1e-12)
    np.testing.assert_allclose(s.revealed_before, np.concatenate([[0], np.cumsum(s.masses)[:-1]]),
                               atol=1e-15)
    assert s.revealed_before[0] == 0.0


@pytest.mark.parametrize("name", list(FAMILIES))
def test_hazards_telescope_to_masses(name):
    """Lemma B.10 telescoping: p^(k) = h_k prod_{j<k} (1 - h_j)."""
    s = FAMILIES[name]()
    h = s.hazards
    assert np.all((h >= 0) & (h <= 1))
    survive = np.concatenate([[1.0], np.cumprod(1 - h)[:-1]])
    np.testing.assert_allclose(h * survive, s.masses, rtol=0, atol=1e-12)
    last = np.flatnonzero(s.masses > 0)[-1]
    assert h[last] == 1.0  # nothing is still masked after the last non-empty step


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(0, 1), min_size=1, max_size=12), st.floats(0, 1))
def test_from_alpha_grid_property(cuts, tail):
    """Any non-increasing grid from 1: masses are its decrements (the tail alpha(1) > 0 at the
    last step), they round-trip, and hazards telescope."""
    grid = np.array([1.0, *sorted(cuts, reverse=True), 0.0])
    grid[-1] = min(tail, grid[-2]) if tail < 0.5 else 0.0
    s = Schedule.from_alpha(grid)
    want = -np.diff(grid)[::-1]
    want[-1] += grid[-1]
    np.testing.assert_allclose(s.masses, want / want.sum(), rtol=0, atol=1e-12)
    np.testing.assert_allclose(Schedule.from_alpha(s.alphas).masses, s.masses, atol=1e-12)
    survive = np.concatenate([[1.0], np.cumprod(1 - s.hazards)[:-1]])
    np.testing.assert_allclose(s.hazards * survive, s.masses, rtol=0, atol=1e-12)


def _paper_masses(alpha_values) -> list[Fraction]:
    """Generation-order masses from alpha(t_0..t_N) in the paper's indexing
    (docs/theory/labels.md): paper step i runs t_i -> t_{i-1} and reveals
    p_i = alpha(t_{i-1}) - alpha(t_i); the sampler executes i = N first, so generation step k
    is paper step i = N - k + 1, and a tail alpha(t_N) > 0 joins the last executed step (i = 1)."""
    a = [Fraction(v) for v in alpha_values]
    n = len(a) - 1
    paper = {i: a[i - 1] - a[i] for i in range(1, n + 1)}
    paper[1] += a[n]
    return [paper[n - k + 1] for k in range(1, n + 1)]


@pytest.mark.parametrize("grid", [
    [1.0, 0.5, 0.0],
    [1.0, 0.75, 0.75, 0.125, 0.0],
    [1.0, 0.875, 0.5, 0.25],  # alpha(1) = 1/4 > 0: revealed at the last step
    [1.0, 0.0, 0.0, 0.0],  # everything at paper step 1 = the last executed step
    [1.0, 1.0, 1.0, 0.0],  # everything at paper step N = the first executed step
])
def test_from_alpha_grid_in_exact_rationals(grid):
    want = _paper_masses(grid)
    got = Schedule.from_alpha(grid).masses
    assert [Fraction(float(m)) for m in got] == want  # dyadic grids: no rounding anywhere


@pytest.mark.parametrize("num_steps", [1, 3, 8])
@pytest.mark.parametrize("name,alpha", [
    ("linear", lambda t: 1 - t),
    ("polynomial:3", lambda t: 1 - t**3),
    ("cosine", lambda t: math.cos(math.pi * t / 2)),
    ("loglinear:0.25", lambda t: 1 - (1 - 0.25) * t),
])
def test_named_families_follow_the_paper_indexing(num_steps, name, alpha):
    """alpha evaluated here on t_i = i/N (Fractions where alpha is polynomial)."""
    values = [alpha(Fraction(i, num_steps)) if name != "cosine" else alpha(i / num_steps)
              for i in range(num_steps + 1)]
    want = [float(m) for m in _paper_masses(values)]
    np.testing.assert_allclose(Schedule.named(name, num_steps).masses, want, rtol=0, atol=1e-15)
    callable_alpha = Schedule.from_alpha(lambda t: np.array([float(alpha(x)) for x in t]),
                                         num_steps)
    np.testing.assert_allclose(callable_alpha.masses, want, rtol=0, atol=1e-15)


def test_named():
    np.testing.assert_array_equal(Schedule.named("linear", 5).masses, Schedule.linear(5).masses)
    np.testing.assert_array_equal(Schedule.named("cosine", 5).masses, Schedule.cosine(5).masses)
    np.testing.assert_array_equal(Schedule.named("polynomial:2", 5).masses,
                                  Schedule.polynomial(5, 2.0).masses)
    np.testing.assert_array_equal(Schedule.named("loglinear:0.2", 5).masses,
                                  Schedule.loglinear(5, 0.2).masses)
    np.testing.assert_array_equal(Schedule.named("loglinear", 5).masses,
                                  Schedule.loglinear(5).masses)


# ------------------------------------------------------------------------------ Lemma B.12


@pytest.mark.parametrize(
    ("n", "eps", "n_a", "n_b"),
    [(2, 0.1, 325, 95), (2, 0.05, 1445, 243), (3, 0.1, 6481, 724), (3, 0.05, 57761, 3044),
     (4, 0.1, 97201, 5945), (4, 0.05, 1732801, 47886)],
)
def test_lemma_b12_step_counts(n, eps, n_a, n_b):
    """Lemma B.12 (docs/theory/lemma-b12.md): N_A = M + 1 with M = ceil(4(n-1)(1-eps)^2/eps^n)
    in exact rationals, and the adaptive Schedule B's N_B."""
    a = Schedule.paper_ngram(n, eps)
    assert a.num_steps == n_a
    assert paper_ngram_extra_steps(n, eps) == n_a - 1
    assert a.masses[0] == pytest.approx(eps, abs=1e-15)
    np.testing.assert_allclose(a.masses[1:], (1 - eps) / (n_a - 1), rtol=1e-12)
    assert a.masses.sum() == pytest.approx(1.0, abs=1e-12)
    b = Schedule.adaptive_ngram(n, eps)
    assert b.num_steps == n_b
    assert b.masses[0] == pytest.approx(eps, abs=1e-15)
    assert b.masses.sum() == pytest.approx(1.0, abs=1e-12)
    before = b.revealed_before[1:-1]
    want = eps * before ** (n - 1) / (4 * (n - 1))
    np.testing.assert_allclose(b.masses[1:-1], want, rtol=1e-9)
    assert b.masses[-1] <= eps * b.revealed_before[-1] ** (n - 1) / (4 * (n - 1)) + 1e-15


# ------------------------------------------------------------------------------ Appendix D


def test_expected_nfe_appendix_d():
    """Appendix D (docs/theory/appendix-d.md): L = 512, N = 4096 gives 481.35 <= min(N, L);
    Monte Carlo agrees."""
    s = Schedule.linear(4096)
    nfe = s.expected_nfe(512)
    assert nfe == pytest.approx(481.35, abs=0.005)
    assert nfe <= 512
    steps = s.draw_steps(400, 512, np.random.default_rng(0))
    distinct = np.array([np.unique(row).size for row in steps])
    se = distinct.std(ddof=1) / math.sqrt(distinct.size)
    assert abs(distinct.mean() - nfe) < 4 * se + 1e-9


@pytest.mark.parametrize("name", list(FAMILIES))
@pytest.mark.parametrize("length", [1, 3, 20])
def test_expected_nfe_matches_monte_carlo(name, length):
    s = FAMILIES[name]()
    nfe = s.expected_nfe(length)
    assert nfe == pytest.approx(float(np.sum(1 - (1 - s.masses) ** length)), rel=1e-12)
    assert nfe <= min(s.num_steps, length) + 1e-12
    steps = s.draw_steps(4000, length, np.random.default_rng(1))
    distinct = (np.diff(np.sort(steps, axis=1), axis=1) != 0).sum(axis=1) + 1
    se = max(distinct.std(ddof=1), 1e-3) / math.sqrt(distinct.size)
    assert abs(distinct.mean() - nfe) < 5 * se


def test_expected_nfe_of_plans():
    assert FixedCountPlan([2, 0, 1, 3]).expected_nfe(6) == 3.0
    assert DeterministicPlan([[0], [], [1, 2]]).expected_nfe(3) == 2.0
    assert Schedule.linear(1).expected_nfe(10) == pytest.approx(1.0)


# ------------------------------------------------------------------------------ plans


@pytest.mark.parametrize(("length", "steps"), [(10, 3), (3, 10), (7, 7), (512, 64), (5, 1)])
def test_even_split(length, steps):
    counts = FixedCountPlan.even(length, steps).counts
    base, extra = divmod(length, steps)
    want = np.array([base + 1] * extra + [base] * (steps - extra))
    np.testing.assert_array_equal(counts, want)
    assert counts.sum() == length
    assert FixedCountPlan.even(length, steps).length == length


def test_fixed_count_draw_steps():
    plan = FixedCountPlan([3, 0, 2, 5])
    steps = plan.draw_steps(5000, 10, np.random.default_rng(2))
    assert steps.shape == (5000, 10) and steps.dtype == np.int64
    per_row = np.stack([np.bincount(r, minlength=4) for r in steps])
    assert np.all(per_row == plan.counts)
    # Uniform among positions: each position lands at step k with probability counts[k] / L.
    freq = np.stack([(steps == k).mean(axis=0) for k in range(4)])
    expected = plan.counts[:, None] / 10
    assert np.max(np.abs(freq - expected)) < 4 * math.sqrt(0.25 / 5000)
    # Exchangeable: the step of position 0 and of position 9 are distributed alike and the
    # pair (0, 9) shares a step with probability sum m(m-1) / (L(L-1)).
    same = (steps[:, 0] == steps[:, 9]).mean()
    want = float((plan.counts * (plan.counts - 1)).sum()) / 90
    assert abs(same - want) < 4 * math.sqrt(want * (1 - want) / 5000)


def test_schedule_draw_steps_frequencies():
    s = Schedule([0.1, 0.0, 0.6, 0.3])
    steps = s.draw_steps(4000, 25, np.random.default_rng(3))
    assert steps.shape == (4000, 25)
    counts = np.bincount(steps.ravel(), minlength=4)
    assert counts[1] == 0 and counts.size == 4
    nz = s.masses > 0
    chi2 = stats.chisquare(counts[nz], counts.sum() * s.masses[nz])
    assert chi2.pvalue > 1e-4
    # Positions are independent: step of position 0 vs position 1 (contingency table).
    table = np.zeros((4, 4))
    np.add.at(table, (steps[:, 0], steps[:, 1]), 1)
    table = table[nz][:, nz]
    assert stats.chi2_contingency(table).pvalue > 1e-4


def test_draw_steps_seeded():
    for plan in (Schedule.cosine(5), FixedCountPlan.even(8, 3)):
        a = plan.draw_steps(10, 8, np.random.default_rng(5))
        b = plan.draw_steps(10, 8, np.random.default_rng(5))
        np.testing.assert_array_equal(a, b)
        assert a.min() >= 0 and a.max() < plan.num_steps


def test_deterministic_plan():
    plan = DeterministicPlan([[2, 0], [], [1], [3, 4]])
    np.testing.assert_array_equal(plan.draw_steps(3, 5), np.tile([0, 2, 0, 3, 3], (3, 1)))
    assert plan.num_steps == 4 and plan.length == 5
    ltr = DeterministicPlan.left_to_right(7, 3)
    assert [s.tolist() for s in ltr.sets] == [[0, 1, 2], [3, 4], [5, 6]]
    ar = DeterministicPlan.left_to_right(4)
    assert [s.tolist() for s in ar.sets] == [[0], [1], [2], [3]]
    wide = DeterministicPlan.left_to_right(3, 5)
    assert [s.tolist() for s in wide.sets] == [[0], [1], [2], [], []]


def test_to_dict():
    fmt = "mdm_exact.plan/1"  # the plan-file format (docs/cli.md); round trips: test_plan_files
    assert Schedule([0.25, 0.75], "x").to_dict() == {
        "format": fmt, "kind": "schedule", "name": "x",
        "masses": [{"mass": 0.25, "count": 1}, {"mass": 0.75, "count": 1}]}
    assert FixedCountPlan([1, 2]).to_dict() == {"format": fmt, "kind": "fixed_count",
                                                "counts": [1, 2]}
    assert DeterministicPlan([[1], [0]]).to_dict() == {"format": fmt, "kind": "deterministic",
                                                        "sets": [[1], [0]]}


# ------------------------------------------------------------------------------ bad inputs


def test_schedule_rejects_bad_masses():
    with pytest.raises(ValueError, match="masses must sum to 1") as err:
        Schedule([0.5, 0.4])
    assert "0.9" in one_line(err)
    with pytest.raises(ValueError, match="masses must be >= 0") as err:
        Schedule([1.2, -0.2])
    assert "-0.2" in one_line(err)
    with pytest.raises(ValueError, match="masses must be finite") as err:
        Schedule([float("nan"), 1.0])
    assert "nan" in one_line(err)
    with pytest.raises(ValueError, match="masses must be finite"):
        Schedule([float("inf"), 0.0])
    with pytest.raises(ValueError, match="masses"):
        Schedule([])


def test_from_alpha_rejects_bad_grids():
    with pytest.raises(ValueError, match="non-increasing") as err:
        Schedule.from_alpha([1.0, 0.3, 0.5, 0.0])
    assert "alpha" in one_line(err)
    with pytest.raises(ValueError, match=r"alpha\(0\) must be 1") as err:
        Schedule.from_alpha([0.9, 0.5, 0.0])
    assert "0.9" in one_line(err)
    with pytest.raises(ValueError, match=r"alpha\(0\) must be 1"):
        Schedule.from_alpha(lambda t: 0.5 - 0.5 * t, 4)
    with pytest.raises(ValueError, match="alpha must be finite"):
        Schedule.from_alpha([1.0, float("nan"), 0.0])
    with pytest.raises(ValueError, match="alpha"):
        Schedule.from_alpha([1.0, 0.5, -0.5])
    with pytest.raises(ValueError, match="num_steps"):
        Schedule.from_alpha([1.0, 0.5, 0.0], num_steps=3)
    with pytest.raises(TypeError, match="num_steps"):
        Schedule.from_alpha(lambda t: 1 - t)


def test_named_rejects_unknown():
    with pytest.raises(ValueError, match="schedule must be") as err:
        Schedule.named("geometric", 4)
    assert "'geometric'" in one_line(err)
    with pytest.raises(ValueError, match="schedule"):
        Schedule.named("linear:2", 4)


def test_family_argument_errors():
    with pytest.raises(ValueError, match="eps"):
        Schedule.paper_ngram(3, 1.5)
    with pytest.raises(ValueError, match="eps"):
        Schedule.adaptive_ngram(3, 0.0)
    with pytest.raises(ValueError, match="n must be >= 2"):
        Schedule.paper_ngram(1, 0.1)
    with pytest.raises(ValueError, match="a must be"):
        Schedule.polynomial(4, -1.0)
    with pytest.raises(ValueError, match="num_steps"):
        Schedule.linear(0)
    with pytest.raises(TypeError, match="num_steps"):
        Schedule.linear(2.5)


def test_plan_errors():
    with pytest.raises(ValueError, match="sets overlap: position 1") as err:
        DeterministicPlan([[0, 1], [1, 2]])
    one_line(err)
    with pytest.raises(ValueError, match="sets miss position 1") as err:
        DeterministicPlan([[0], [2]])
    one_line(err)
    with pytest.raises(ValueError, match="sets"):
        DeterministicPlan([[0], [-1]])
    with pytest.raises(ValueError, match="sets"):
        DeterministicPlan([])
    with pytest.raises(ValueError, match="counts must be >= 0"):
        FixedCountPlan([2, -1])
    with pytest.raises(ValueError, match="counts"):
        FixedCountPlan([0.5, 0.5])
    with pytest.raises(ValueError, match="counts"):
        FixedCountPlan([0, 0])
    with pytest.raises(ValueError, match=r"length must equal sum\(counts\) = 3, got 4") as err:
        FixedCountPlan([1, 2]).draw_steps(2, 4)
    one_line(err)
    with pytest.raises(ValueError, match="length must equal"):
        DeterministicPlan([[0], [1]]).check_length(3)
    with pytest.raises(TypeError, match="schedule must be"):
        check_plan([0.5, 0.5])
