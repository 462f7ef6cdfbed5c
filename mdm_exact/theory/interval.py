"""Appendix C, interval setting: Lemmas C.5, C.6, Example C.7 and Theorem C.9 (= 4.4).

A sequence of length L = K l is cut into K intervals of l positions (Definition C.4). Under an
independent-step ``Schedule`` every position picks its step k with probability p^(k), so the l
positions of an interval fall into steps with multinomial counts (c_1, ..., c_N). Every exact
quantity here is a multinomial expectation E[prod_k w(c_k)] (= l! [z^l] prod_k sum_c w(c)
(p^(k) z)^c / c!), computed without factorials, which leave float range from l = 171 on:

    v_S(j) = E[prod_{k in S} w(c_k) | j given positions all fall in the steps S],

a vector over j = 0..l for every group S of steps. A single step has v(j) = w(j); two disjoint
groups of masses x and y merge by v(j) = sum_i Bin(i; j, x / (x+y)) v_A(i) v_B(j - i), and the
failure 1 - v merges by f(j) = sum_i Bin(i; j, x/(x+y)) (f_A(i) + v_A(i) f_B(j - i)), so both
are sums of non-negative terms between 0 and 1 (no overflow, no cancellation; a tiny failure
keeps its relative precision). The binomial weights come row by row from Pascal's rule. Cost
O(l^2) per merge: O(N l^2) in general and O(l^2 log N) for equal masses (repeated squaring);
every call estimates its operations first and refuses above ``WORK_BUDGET``.

- w(c) = 1[c <= 1] gives Lemma C.5's P_j = l! e_l(p) (all l positions at different steps);
- w(c) = (1 - p_e)^(c(c-1)/2) gives Pr[interval valid] for Example C.7 when every pair of its
  positions revealed in the same step is wrong independently with probability p_e (the exact
  oracle: p_e = 1/2).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction

import numba
import numpy as np

from .._utils import (
    check_memory,
    check_positive_int,
    first_true,
    format_count,
    int_times,
    run_lengths,
)
from ..errors import ArgumentError, ArgumentTypeError, BudgetError
from ..schedules import DeterministicPlan, FixedCountPlan, Plan, Schedule
from ._common import check_probability, masses_of

WORK_BUDGET = 1e9
"""Most inner-loop operations one exact interval computation (or one ``min_steps_for_ser``
search) may take, about one to a few seconds; above it the call is refused with the estimate."""

MAX_EXACT_STEPS = 2**62
"""Largest number of equal steps the compiled kernels take (int64 counts)."""


def _check_work(what: str, operations: float, argument: str) -> None:
    if operations > WORK_BUDGET:
        amount = f"{operations:.3g}" if math.isfinite(operations) else "over 1e308"
        raise BudgetError(f"{what} would take about {amount} operations, above the "
                          f"budget of {WORK_BUDGET:.3g} (lower {argument})")


@numba.njit(cache=True)
def _merge(val_a, fail_a, val_b, fail_b, x, y, finite, pmf, val, fail):
    """Validity and failure vectors of two disjoint groups of steps A and B, merged into
    ``val`` and ``fail`` (which must not alias the inputs; ``pmf`` is work space).

    Multinomial (``finite`` False): x, y are the groups' masses, and of j positions in A or B,
    Bin(j, x / (x+y)) are in A. Hypergeometric (``finite`` True, a fixed-count plan): x, y are
    the groups' numbers of slots, and the j positions are j distinct slots drawn uniformly."""
    ell = val_a.size - 1
    total = x + y
    share_a = x / total
    share_b = y / total
    pmf[:] = 0.0
    pmf[0] = 1.0
    val[:] = 0.0
    fail[:] = 0.0
    for n in range(ell + 1):
        if n > 0:
            if finite:
                left = total - (n - 1)
                if left <= 0.0:
                    break  # more positions than slots: never conditioned on
                for j in range(n, 0, -1):
                    pmf[j] = (pmf[j - 1] * (x - (j - 1)) + pmf[j] * (y - (n - 1 - j))) / left
                pmf[0] = pmf[0] * (y - (n - 1)) / left
            else:
                for j in range(n, 0, -1):
                    pmf[j] = share_a * pmf[j - 1] + share_b * pmf[j]
                pmf[0] *= share_b
        sv = 0.0
        sf = 0.0
        for j in range(n + 1):
            w = pmf[j]
            if w > 0.0:
                sv += w * val_a[j] * val_b[n - j]
                sf += w * (fail_a[j] + val_a[j] * fail_b[n - j])
        val[n] = sv
        fail[n] = sf


@numba.njit(cache=True)
def _group_validity(values, counts, keep, lose, finite):
    """(v(l), f(l)) over every step: run r holds counts[r] steps of mass (or slots) values[r]
    (all > 0); each run is raised to its count by repeated squaring, then merged in."""
    ell = keep.size - 1
    pmf = np.empty(ell + 1)
    acc_v, acc_f = keep.copy(), lose.copy()
    tmp_v, tmp_f = np.empty(ell + 1), np.empty(ell + 1)
    base_v, base_f = np.empty(ell + 1), np.empty(ell + 1)
    sq_v, sq_f = np.empty(ell + 1), np.empty(ell + 1)
    acc_x = 0.0
    for r in range(values.size):
        base_v[:] = keep
        base_f[:] = lose
        base_x = values[r]
        e = counts[r]
        while e > 0:
            if e & 1:
                if acc_x == 0.0:
                    acc_v[:] = base_v
                    acc_f[:] = base_f
                else:
                    _merge(acc_v, acc_f, base_v, base_f, acc_x, base_x, finite, pmf, tmp_v, tmp_f)
                    acc_v, tmp_v = tmp_v, acc_v
                    acc_f, tmp_f = tmp_f, acc_f
                acc_x += base_x
            e >>= 1
            if e > 0:
                _merge(base_v, base_f, base_v, base_f, base_x, base_x, finite, pmf, sq_v, sq_f)
                base_v, sq_v = sq_v, base_v
                base_f, sq_f = sq_f, base_f
                base_x *= 2.0
    return acc_v[ell], acc_f[ell]


def _merges(counts: np.ndarray) -> float:
    """Number of merges of ``_group_validity`` for runs of these counts (<= 2 log2 per run)."""
    c = np.asarray(counts, dtype=np.float64)
    return float(np.sum(2.0 * np.floor(np.log2(c)) + 1.0))


def _series_ops(ell: int, merges: float) -> float:
    """Operations of ``_group_validity``: (l+1)^2 + 2(l+1) + 150 per merge, the last terms for
    its fixed cost (inf beyond float range)."""
    return int_times((ell + 1) ** 2 + 2 * (ell + 1) + 150, merges)


def _pair_weights(interval: int, p_e: float) -> tuple[np.ndarray, np.ndarray]:
    """(l+1,) w(c) = (1 - p_e)^(c(c-1)/2) and 1 - w(c), each from exp / expm1 of
    c(c-1)/2 log1p(-p_e), so a tiny 1 - w keeps its relative precision."""
    c = np.arange(interval + 1, dtype=np.float64)
    pairs = c * (c - 1.0) / 2.0
    with np.errstate(divide="ignore", invalid="ignore"):
        exponent = np.where(pairs > 0, pairs * math.log1p(-p_e) if p_e < 1 else -np.inf, 0.0)
    return np.exp(exponent), -np.expm1(exponent)


def _schedule_validity(masses: np.ndarray, ell: int, p_e: float, what: str
                       ) -> tuple[float, float]:
    """(Pr[an interval of ``ell`` positions is valid], Pr[it is not]) under independent steps
    with ``masses``, each pair of same-step positions failing with probability ``p_e``."""
    p = masses[masses > 0]
    if p_e == 1.0 and ell > p.size:  # pigeonhole: two positions share a step
        return 0.0, 1.0
    values, counts = run_lengths(p)
    series = _series_ops(ell, _merges(counts))
    if p_e == 1.0 and int_times(ell, p.size) < series:
        _check_work(what, int_times(ell, p.size), "interval or the number of steps")
        valid = min(1.0, _distinct_kernel(p, ell))
        return valid, 1.0 - valid
    _check_work(what, series, "interval or the number of distinct masses")
    keep, lose = _pair_weights(ell, p_e)
    valid, fail = _group_validity(values, counts, keep, lose, False)
    return min(1.0, valid), min(1.0, fail)


# ------------------------------------------------------------------------------ Lemma C.5


@numba.njit(cache=True)
def _distinct_kernel(masses, ell):
    # g[j] = j! e_j(p_1..p_k) = Pr[j given positions land in pairwise different steps <= k];
    # every g[j] <= 1, so no factorial ever overflows.
    g = np.zeros(ell + 1)
    g[0] = 1.0
    for p in masses:
        for j in range(ell, 0, -1):
            g[j] += j * p * g[j - 1]
    return g[ell]


def distinct_steps_probability(schedule, interval: int) -> float:
    """Lemma C.5 (exact value) [derived]: P_j = l! e_l(p^(1), ..., p^(N)).

    The probability that ``interval`` = l given positions are revealed at pairwise different
    steps. ``schedule``: a ``Schedule`` or its (N,) masses. In float64 through g_j = j! e_j
    (each g_j is a probability, so it neither overflows nor cancels), O(N l), or by the merge
    of the module docstring with w(c) = 1[c <= 1] where that is cheaper (equal masses); 0 when
    l exceeds the number of steps of positive mass.
    """
    ell = check_positive_int("interval", interval, 1)
    what = f"distinct_steps_probability at interval={format_count(ell)}"
    return _schedule_validity(masses_of(schedule), ell, 1.0, what)[0]


def distinct_steps_probability_exact(masses, interval: int) -> Fraction:
    """Lemma C.5 (exact value, rational arithmetic) [derived]: P_j = l! e_l(p) as a Fraction.

    ``masses``: (N,) ints, Fractions or floats (floats are converted exactly). Meant for tiny
    cases and as a reference for ``distinct_steps_probability``; if the masses do not sum to 1
    the result is l! e_l(masses), not a probability.
    """
    ell = check_positive_int("interval", interval, 1)
    ps = [m if isinstance(m, Fraction) else Fraction(m) for m in np.asarray(masses).ravel()]
    g = [Fraction(1)] + [Fraction(0)] * ell
    for p in ps:
        for j in range(ell, 0, -1):
            g[j] += j * p * g[j - 1]
    return g[ell]


def distinct_steps_tight_bound(num_steps, interval: int) -> float:
    """Lemma C.5 (tight bound) [derived]: P_j <= prod_{r=1}^{l-1} (1 - r/N), the value at the
    uniform schedule (Schur concavity of e_l); 0 when N < l."""
    n = _real_steps(num_steps)
    ell = check_positive_int("interval", interval, 1)
    if ell - 1 >= n:  # the factor r = ceil(N) is <= 0
        return 0.0
    check_memory(f"distinct_steps_tight_bound at interval={format_count(ell)}", 16.0 * ell,
                 argument="interval")
    r = np.arange(1, ell)
    return float(np.prod(np.clip(1.0 - r / n, 0.0, None)))


def distinct_steps_paper_bound(num_steps, interval: int) -> float:
    """Lemma C.5 (the paper's statement) [derived]: P_j <= (1 - 1/N)^(l-1)."""
    n = _real_steps(num_steps)
    ell = check_positive_int("interval", interval, 1)
    return math.exp(_log_paper_factor(n, ell))


def _real_steps(num_steps) -> float:
    """``num_steps`` as a real N >= 1 within float range."""
    try:
        n = float(num_steps)
    except (TypeError, ValueError, OverflowError):
        n = math.nan
    if isinstance(num_steps, bool) or not (math.isfinite(n) and n >= 1):
        given = format_count(num_steps) if isinstance(num_steps, int) else repr(num_steps)
        raise ArgumentError(f"num_steps must be a finite number >= 1, got {given}")
    return n


def _log_paper_factor(n: float, ell: int) -> float:
    """log (1 - 1/N)^(l-1) = (l-1) log1p(-1/N) (-inf at N = 1 < l), for any int l."""
    with np.errstate(divide="ignore"):
        return float(int_times(ell - 1, float(np.log1p(-1.0 / n))))


def jensen_intermediate(schedule, interval: int) -> float:
    """Lemma C.5, the proof's intermediate quantity [derived]: sum_k p_k (1 - p_k)^(l-1).

    The proof bounds it by N f(1/N) with f(x) = x (1-x)^(l-1) "by Jensen"; f is concave only on
    [0, 2/l], and for N < l the intermediate can exceed (1 - 1/N)^(l-1) (l = 5, N = 2: 1/12 >
    1/16; Ambiguity 2, docs/theory/lemma-c5.md). It is an upper bound on P_j, but the Jensen step
    is not valid in general.
    """
    ell = check_positive_int("interval", interval, 1)
    p = masses_of(schedule)
    with np.errstate(divide="ignore"):  # a mass of 1: log1p(-1) = -inf, term 0
        terms = p * np.exp(int_times(ell - 1, np.log1p(-np.minimum(p, 1.0))))
    # <= sum p = 1; masses summing to 1 + 2e-16 must not give a value above 1
    return float(min(1.0, terms.sum()))


# ------------------------------------------------------------------------------ Lemma C.6


def _check_interval_length(interval, length) -> tuple[int, int]:
    ell = check_positive_int("interval", interval, 1)
    length = check_positive_int("length", length, 1)
    if length % ell:
        raise ArgumentError(f"length must be a multiple of interval={ell} (Def. C.4), got {length}")
    return ell, length


def _ser_from_failure(failure: float, num_intervals: int) -> float:
    """1 - (1 - failure)^K = -expm1(K log1p(-failure)): no digit lost when ``failure`` is tiny,
    and K may be any int (beyond float range the SER is 1 unless failure is 0)."""
    if failure >= 1.0:
        return 1.0
    return float(-np.expm1(int_times(num_intervals, math.log1p(-failure))))


def ser_lower_bound(num_steps, interval: int, length: int, p_e: float) -> float:
    """Lemma C.6 (paper form) [derived]: SER >= 1 - (1 - p_e (1 - (1 - 1/N)^(l-1)))^(L/l).

    ``num_steps`` may be any real N >= 1 (Theorem C.9 evaluates it at N = C L); the bound is
    non-increasing in N. Holds for every schedule when each same-step pair inside an interval
    makes it invalid with probability >= ``p_e`` given the past, and errors are never repaired.
    """
    ell, length = _check_interval_length(interval, length)
    p_e = check_probability("p_e", p_e)
    n = _real_steps(num_steps)
    # 1 - (1 - 1/N)^(l-1) as -expm1(...): no cancellation at large N
    miss = p_e * -math.expm1(_log_paper_factor(n, ell))
    return _ser_from_failure(miss, length // ell)


def ser_lower_bound_tight(schedule, interval: int, length: int, p_e: float) -> float:
    """Lemma C.6 (tight form) [derived]: SER >= 1 - prod_j (1 - p_e (1 - P_j)) with the exact
    P_j = l! e_l(p) of Lemma C.5; all K = L/l intervals share P_j under a ``Schedule``."""
    ell, length = _check_interval_length(interval, length)
    p_e = check_probability("p_e", p_e)
    what = f"ser_lower_bound_tight at interval={format_count(ell)}"
    miss = p_e * _schedule_validity(masses_of(schedule), ell, 1.0, what)[1]
    return _ser_from_failure(miss, length // ell)


# ------------------------------------------------------------------------------ Example C.7


def pair_error_probability(a, b):
    """Example C.7 [derived]: two positions revealed together draw their shared bit as 1 with
    probabilities a and b; they disagree with probability a (1 - b) + b (1 - a) = a + b - 2ab.
    Broadcasts over arrays."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    out = a + b - 2.0 * a * b
    return float(out) if out.ndim == 0 else out


def bit_bias_bound(eps_learning: float) -> float:
    """Example C.7 [derived]: eta = sqrt(eps_learning / 2), the largest |delta - 1/2| a model
    within KL eps_learning of the oracle can put on one shared bit (Pinsker, Lemma A.3, plus data
    processing)."""
    eps = check_probability("eps_learning", eps_learning)
    return math.sqrt(eps / 2.0)


def collision_error_probability(eps_learning: float) -> float:
    """Example C.7 [derived]: p_e = min over a, b in [1/2 - eta, 1/2 + eta] of a + b - 2ab
    = 1/2 - 2 eta^2 = 1/2 - eps_learning (eta = sqrt(eps_learning / 2); needs eps <= 1/2).

    At eps_learning < 1/128 this exceeds 63/128, the constant of Theorem C.9.
    """
    eps = check_probability("eps_learning", eps_learning)
    if eps > 0.5:
        raise ArgumentError(f"eps_learning must be <= 1/2 (so that eta <= 1/2)"
            f", got {eps_learning!r}")
    return 0.5 - eps


def _fixed_count_validity(plan: FixedCountPlan, ell: int, p_e: float) -> tuple[float, float]:
    """(valid, failure) of one interval under a fixed-count plan: its l positions take l
    distinct slots of the L = sum(counts) uniformly (multivariate hypergeometric counts)."""
    counts = plan.counts[plan.counts > 0]
    values, runs = run_lengths(counts)
    _check_work(f"interval_valid_probability at interval={ell}", _series_ops(ell, _merges(runs)),
                "interval or the number of distinct counts")
    keep, lose = _pair_weights(ell, p_e)
    valid, fail = _group_validity(values.astype(np.float64), runs, keep, lose, True)
    return min(1.0, valid), min(1.0, fail)


def _colliding_pairs(plan: DeterministicPlan, ell: int) -> np.ndarray:
    """(K,) number of same-step pairs inside each interval of a deterministic plan: within each
    sorted block, a position whose step repeats the one before closes (its rank in the run)
    pairs. O(L log l) time, O(L) memory."""
    blocks = np.sort(plan.draw_steps(1, plan.length)[0].reshape(-1, ell), axis=1)
    index = np.arange(ell)
    new_run = np.ones(blocks.shape, dtype=bool)
    new_run[:, 1:] = blocks[:, 1:] != blocks[:, :-1]
    run_start = np.maximum.accumulate(np.where(new_run, index, 0), axis=1)
    return (index - run_start).sum(axis=1)


def _deterministic_failure(plan: DeterministicPlan, ell: int, p_e: float) -> np.ndarray:
    """(K,) 1 - (1 - p_e)^pairs per interval, by expm1 (exact 0 without pairs)."""
    pairs = _colliding_pairs(plan, ell).astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        exponent = np.where(pairs > 0, pairs * math.log1p(-p_e) if p_e < 1 else -np.inf, 0.0)
    return -np.expm1(exponent)


def interval_valid_probability(plan, interval: int, *, p_e: float = 0.5):
    """Example C.7 [derived]: Pr[an interval is valid] = E[prod_k (1 - p_e)^(c_k (c_k - 1)/2)].

    c_k is the number of the interval's l positions revealed at step k; every pair revealed in
    the same step is wrong independently with probability ``p_e`` (the exact oracle has
    p_e = 1/2: Pr[valid | tau] = 2^-#colliding pairs). Pairs revealed at different steps are
    always consistent.

    ``plan``: a ``Schedule`` (or its (N,) masses): multinomial counts, O(N l^2), O(l^2 log N)
    for equal masses; a ``FixedCountPlan``: multivariate hypergeometric counts, exact, the same
    for every interval; a ``DeterministicPlan``: returns the (K,) per-interval values. See the
    module docstring for the factorial-free evaluation; refused above ``WORK_BUDGET``.
    """
    ell = check_positive_int("interval", interval, 1)
    p_e = check_probability("p_e", p_e)
    if isinstance(plan, FixedCountPlan):
        _check_interval_length(ell, plan.length)
        return _fixed_count_validity(plan, ell, p_e)[0]
    if isinstance(plan, DeterministicPlan):
        _check_interval_length(ell, plan.length)
        return 1.0 - _deterministic_failure(plan, ell, p_e)
    what = f"interval_valid_probability at interval={format_count(ell)}"
    return _schedule_validity(masses_of(plan), ell, p_e, what)[0]


def oracle_ser(plan, interval: int, length: int, *, p_e: float = 0.5) -> float:
    """Example C.7 [derived]: exact SER of the factorized sampler, 1 - Pr[all L/l intervals
    valid], for the oracle (p_e = 1/2) or a model whose same-step pairs err with probability p_e.

    ``Schedule`` (or masses): intervals are independent, SER = 1 - v^(L/l) with
    v = ``interval_valid_probability``. ``DeterministicPlan``: SER = 1 - prod_j v_j.
    A ``FixedCountPlan`` couples the intervals (their counts share the step totals m_k), so the
    product form is not exact there and it is refused.
    """
    ell, length = _check_interval_length(interval, length)
    if isinstance(plan, FixedCountPlan):
        raise ArgumentTypeError(
            "plan must be a Schedule or a DeterministicPlan: under a FixedCountPlan the intervals "
            "are not independent; use interval_valid_probability for one interval"
        )
    p_e = check_probability("p_e", p_e)
    if isinstance(plan, DeterministicPlan):
        if plan.length != length:
            raise ArgumentError(f"length must equal the plan's length {plan.length}, got {length}")
        with np.errstate(divide="ignore"):
            log_all_valid = np.log1p(-_deterministic_failure(plan, ell, p_e)).sum()
        return float(-np.expm1(log_all_valid))
    what = f"oracle_ser at interval={format_count(ell)}"
    failure = _schedule_validity(masses_of(plan), ell, p_e, what)[1]
    return _ser_from_failure(failure, length // ell)


# ------------------------------------------------------------------------------ Theorem C.9


def theorem_c9_bound(C: float, length: int, p_e: float = 63 / 128, interval: int = 5) -> float:
    """Theorem C.9 (= 4.4), explicit form [derived]: for every schedule with N <= C L steps,
    SER >= 1 - exp(-((l-1) p_e / (l C)) (1 - (l-2) / (2 C L))); for l = 5 this is
    1 - exp(-(4 p_e / (5 C)) (1 - 1.5 / (C L))).

    From Lemma C.6 with 1 - (1 - 1/N)^(l-1) >= ((l-1)/N)(1 - (l-2)/(2N)) (Bonferroni) and
    (1 - x)^K <= e^(-x K). Needs C L >= 1. Weaker than ``ser_lower_bound`` at N = C L.

    Returns 0.0 where the explicit form is vacuous: C L <= (l-2)/2 (1.5 for l = 5), where the
    formula goes negative (a lower bound below 0 says nothing), or p_e = 0
    (``theorem_c9_is_vacuous``).
    """
    ell = check_positive_int("interval", interval, 2)
    length = check_positive_int("length", length, 1)
    p_e = check_probability("p_e", p_e)
    c = _check_c(C, length)
    if theorem_c9_is_vacuous(c, length, p_e, ell):
        return 0.0
    # 1 - (l-2)/(2 C L) in (0, 1]; (l-1)/l = 1 - 1/l for an int l of any size
    shrink = 1.0 - (1.0 - 2.0 / ell) * int_times(ell, 0.5 / int_times(length, c))
    with np.errstate(over="ignore"):
        rate = float(np.float64(1.0 - 1.0 / ell) * p_e / c * shrink)  # inf at tiny C: bound 1
    return float(-math.expm1(-rate))


def _check_c(C, length: int) -> float:
    try:
        c = float(C)
    except (TypeError, ValueError, OverflowError):
        c = math.nan
    # C L >= 1 up to the rounding of C = N / L
    if isinstance(C, bool) or not (math.isfinite(c) and c > 0
                                   and int_times(length, c) >= 1.0 - 1e-12):
        raise ArgumentError(f"C must be a finite number with C * length >= 1, got C={C!r}")
    return c


def theorem_c9_is_vacuous(C: float, length: int, p_e: float = 63 / 128, interval: int = 5
                          ) -> bool:
    """Theorem C.9's explicit form says nothing (``theorem_c9_bound`` returns 0.0) when
    C L <= (l-2)/2, where 1 - (l-2)/(2 C L) <= 0, or when p_e = 0."""
    ell = check_positive_int("interval", interval, 2)
    length = check_positive_int("length", length, 1)
    p_e = check_probability("p_e", p_e)
    c = _check_c(C, length)
    return p_e == 0.0 or 2.0 * int_times(length, c) <= ell - 2


def c9_max_constant(p_e: float = 63 / 128, interval: int = 5) -> float:
    """Theorem C.9 [derived]: the L -> infinity limit of the bound, 1 - exp(-(l-1) p_e / (l C)),
    is >= 1/2 iff C <= (l-1) p_e / (l ln 2); 4 p_e / (5 ln 2) ~ 0.568 for l = 5, p_e = 63/128."""
    ell = check_positive_int("interval", interval, 2)
    p_e = check_probability("p_e", p_e)
    return (1.0 - 1.0 / ell) * p_e / math.log(2.0)


@dataclass(frozen=True)
class C9Check:
    """Result of ``c9_finite_length_check``: the smallest Lemma C.6 bound at N = C L over the
    scanned lengths, where it is attained, and whether it is >= 1/2."""

    min_bound: float
    argmin_length: int
    holds: bool
    num_lengths: int


def c9_finite_length_check(
    C: float = 0.5,
    p_e: float = 63 / 128,
    interval: int = 5,
    min_length: int = 15,
    max_length: int = 200_000,
) -> C9Check:
    """Theorem C.9 [derived]: "C = 1/2 works for all L >= 15 with 5 | L", checked by scanning
    every multiple of l in [min_length, max_length] and evaluating Lemma C.6's paper form at
    the worst case N = C L (real; the bound is non-increasing in N)."""
    ell = check_positive_int("interval", interval, 2)
    p_e = check_probability("p_e", p_e)
    lo = check_positive_int("min_length", min_length, 1)
    hi = check_positive_int("max_length", max_length, lo)
    first = -(-lo // ell) * ell
    if first > hi:
        raise ArgumentError(f"no multiple of interval={ell} in [{lo}, {hi}]")
    count = (hi - first) // ell + 1
    check_memory(f"c9_finite_length_check over {format_count(count)} lengths",
                 int_times(count, 48.0), argument="max_length")
    lengths = np.arange(first, hi + 1, ell)
    n = float(C) * lengths
    if not np.all(n >= 1):
        raise ArgumentError(f"C * min_length must be >= 1, got C={C!r}")
    # 1 - (1 - 1/N)^(l-1) by expm1 / log1p: no cancellation at large N
    miss = p_e * -np.expm1((ell - 1) * np.log1p(-1.0 / n))
    with np.errstate(divide="ignore"):
        bounds = -np.expm1((lengths // ell) * np.log1p(-miss))
    i = int(np.argmin(bounds))
    return C9Check(float(bounds[i]), int(lengths[i]), bool(bounds[i] >= 0.5), int(lengths.size))


def oracle_ser_family(family: str, num_steps: int, interval: int, length: int, *,
                      p_e: float = 0.5) -> float:
    """Example C.7 [derived]: ``oracle_ser`` under ``Schedule.named(family, num_steps)``.

    ``linear`` (N equal masses 1/N) is one run of N steps: O(l^2 log N) and never an (N,)
    array, so any N < 2**62 is answered; other families build their masses (refused above the
    memory budget) and cost O(N l^2)."""
    n = check_positive_int("num_steps", num_steps, 1)
    ell, length = _check_interval_length(interval, length)
    p_e = check_probability("p_e", p_e)
    if family != "linear":
        return oracle_ser(Schedule.named(family, n), ell, length, p_e=p_e)
    if n >= MAX_EXACT_STEPS:
        raise ArgumentError(f"num_steps must be below 2**62, got {format_count(n)}")
    _check_work(f"oracle_ser at interval={format_count(ell)}", _series_ops(ell, _merges([n])),
                "interval")
    keep, lose = _pair_weights(ell, p_e)
    failure = _group_validity(np.ones(1), np.array([n], dtype=np.int64), keep, lose, False)[1]
    return _ser_from_failure(min(1.0, failure), length // ell)


def _search_cost(family: str, n: int, ell: int) -> float:
    """Operations of one ``oracle_ser_family`` evaluation (its merges times (l+1)^2)."""
    return _series_ops(ell, _merges([n]) if family == "linear" else float(n))


LOWER_BOUND_MAX_STEPS = 2**62
"""Search limit of ``min_steps_lower_bound`` (a target of 0 is never reached)."""


def min_steps_lower_bound(interval: int, length: int, target: float, *, p_e: float = 0.5) -> int:
    """Lemma C.6 inverted [derived]: the smallest N at which the paper-form bound
    1 - (1 - p_e (1 - (1 - 1/N)^(l-1)))^(L/l) drops to ``target``. Every schedule with fewer
    steps has SER > ``target`` (the bound holds for all schedules and is non-increasing in N);
    Theorem 4.4's "N = Omega(L)" in numbers."""
    ell, length = _check_interval_length(interval, length)
    target = check_probability("target", target)
    p_e = check_probability("p_e", p_e)
    n = first_true(lambda k: ser_lower_bound(k, ell, length, p_e) <= target, LOWER_BOUND_MAX_STEPS)
    if n is None:
        raise ArgumentError(f"target SER {target} is below Lemma C.6's bound even at "
                         f"N = {LOWER_BOUND_MAX_STEPS} steps")
    return n


def min_steps_for_ser(
    interval: int,
    length: int,
    target: float,
    *,
    p_e: float = 0.5,
    family: str = "linear",
    max_steps: int = 10**9,
) -> int:
    """Example C.7 / Theorem C.9 in reverse [ours]: the smallest N whose exact SER
    (``oracle_ser_family``; p_e = 1/2 is the exact oracle) is <= ``target`` under the
    ``family`` schedule with N steps, by doubling then bisection.

    [ours] Assumes the SER is non-increasing in N (true for ``linear``, i.e. equal masses 1/N,
    which costs O(l^2 log N) per evaluation; other families cost O(N l^2)). The search starts
    at Lemma C.6's floor (``min_steps_lower_bound``: no schedule does better), so a target that
    needs more than ``max_steps`` steps is refused before any exact evaluation; a search whose
    evaluations would add up to more than ``WORK_BUDGET`` operations is refused (``BudgetError``)
    when it gets there. Raises ``ValueError`` if even ``max_steps`` steps miss the target.
    """
    ell, length = _check_interval_length(interval, length)
    target = check_probability("target", target)
    p_e = check_probability("p_e", p_e)
    max_steps = check_positive_int("max_steps", max_steps, 1)
    if not isinstance(family, str):
        raise ArgumentTypeError(f"family must be a schedule name such as 'linear', got {family!r}")
    try:
        floor = min_steps_lower_bound(ell, length, target, p_e=p_e)
    except ArgumentError:
        floor = LOWER_BOUND_MAX_STEPS
    if floor > max_steps:
        raise ArgumentError(
            f"target SER {target} is not reached with max_steps={max_steps} steps: Lemma C.6 "
            f"needs N >= {format_count(floor)} for every schedule"
        )
    # the bisection alone evaluates about log2(floor) times at N >= floor: refuse up front
    least = _search_cost(family, floor, ell) * (floor.bit_length() + 1)
    if least > WORK_BUDGET:
        raise BudgetError(
            f"the search for the smallest N ({family}) starts at Lemma C.6's floor N = "
            f"{floor} and would take at least {least:.3g} operations, above the budget of "
            f"{WORK_BUDGET:.3g} (use family linear, a larger target or a shorter interval)"
        )
    spent = 0.0
    sers: dict[int, float] = {}

    def reached(n: int) -> bool:
        nonlocal spent
        spent += _search_cost(family, n, ell)
        if spent > WORK_BUDGET:
            raise BudgetError(
                f"the search for the smallest N ({family}) reached N = {n}, where its exact "
                f"evaluations add up to about {spent:.3g} operations, above the budget of "
                f"{WORK_BUDGET:.3g} (use family linear, a larger target or a shorter interval)"
            )
        sers[n] = oracle_ser_family(family, n, ell, length, p_e=p_e)
        return sers[n] <= target

    # every N below the floor misses: the search starts there
    n = first_true(reached, max_steps, start=floor)
    if n is None:
        raise ArgumentError(f"target SER {target} is not reached with max_steps={max_steps} "
                            f"steps (SER there: {sers[max_steps]:.6g})")
    return n


def interval_parity_ser(interval: int, length: int, schedule: Plan, *,
                        eps_learning: float = 0.0) -> float:
    """Exact SER of Example C.7 at any length, O(N l^2) (L = 10^6, N = 10^5 in milliseconds).

    ``eps_learning = 0`` is the oracle (a colliding pair is wrong with probability 1/2); a
    positive value is Example C.7's worst model under Assumption 4.1, whose pair bits are biased
    by sqrt(eps_learning / 2) so that a colliding pair errs with probability 1/2 - eps_learning.
    Computed by ``oracle_ser``.
    """
    p_e = 0.5 if eps_learning == 0 else collision_error_probability(eps_learning)
    return oracle_ser(schedule, interval, length, p_e=p_e)
