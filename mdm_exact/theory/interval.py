"""Appendix C, interval setting: Lemmas C.5, C.6, Example C.7 and Theorem C.9 (= 4.4).

A sequence of length L = K l is cut into K intervals of l positions (Definition C.4). Under an
independent-step ``Schedule`` every position picks its step k with probability p^(k), so the l
positions of an interval fall into steps with multinomial counts (c_1, ..., c_N). Every exact
quantity here is a multinomial expectation E[prod_k w(c_k)], computed as

    l! [z^l] prod_k sum_c w(c) (p^(k) z)^c / c!,

a product of N power series truncated at degree l: O(N l^2) in general and O(l^2 log N) for
equal masses (repeated squaring). All coefficients are non-negative, so nothing cancels and
float64 keeps full relative precision.

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

from .._utils import check_positive_int, first_true
from ..errors import ArgumentError, ArgumentTypeError
from ..schedules import DeterministicPlan, FixedCountPlan, Schedule
from ._common import (
    check_probability,
    masses_of,
    run_lengths,
    schedule_series,
    truncated_product,
)

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
    steps. ``schedule``: a ``Schedule`` or its (N,) masses. O(N l) in float64 through
    g_j = j! e_j (each g_j is a probability, so it neither overflows nor cancels).
    """
    ell = check_positive_int("interval", interval, 1)
    # masses summing to 1 + 1e-16 could otherwise give a "probability" just above 1
    return float(min(1.0, _distinct_kernel(masses_of(schedule), ell)))


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
    n = float(num_steps)
    ell = check_positive_int("interval", interval, 1)
    if not n >= 1:
        raise ArgumentError(f"num_steps must be >= 1, got {num_steps!r}")
    r = np.arange(1, ell)
    return float(np.prod(np.clip(1.0 - r / n, 0.0, None)))


def distinct_steps_paper_bound(num_steps, interval: int) -> float:
    """Lemma C.5 (the paper's statement) [derived]: P_j <= (1 - 1/N)^(l-1)."""
    n = float(num_steps)
    ell = check_positive_int("interval", interval, 1)
    if not n >= 1:
        raise ArgumentError(f"num_steps must be >= 1, got {num_steps!r}")
    return (1.0 - 1.0 / n) ** (ell - 1)


def jensen_intermediate(schedule, interval: int) -> float:
    """Lemma C.5, the proof's intermediate quantity [derived]: sum_k p_k (1 - p_k)^(l-1).

    The proof bounds it by N f(1/N) with f(x) = x (1-x)^(l-1) "by Jensen"; f is concave only on
    [0, 2/l], and for N < l the intermediate can exceed (1 - 1/N)^(l-1) (THEORY.md §10.2,
    Ambiguity 2). It is an upper bound on P_j, but the Jensen step is not valid in general.
    """
    ell = check_positive_int("interval", interval, 1)
    p = masses_of(schedule)
    return float(np.sum(p * (1.0 - p) ** (ell - 1)))


# ------------------------------------------------------------------------------ Lemma C.6


def _check_interval_length(interval, length) -> tuple[int, int]:
    ell = check_positive_int("interval", interval, 1)
    length = check_positive_int("length", length, 1)
    if length % ell:
        raise ArgumentError(f"length must be a multiple of interval={ell} (Def. C.4), got {length}")
    return ell, length


def _ser_from_failure(failure: float, num_intervals: int) -> float:
    """1 - (1 - failure)^K without losing digits when ``failure`` is tiny."""
    if failure >= 1.0:
        return 1.0
    return float(-np.expm1(num_intervals * np.log1p(-failure)))


def ser_lower_bound(num_steps, interval: int, length: int, p_e: float) -> float:
    """Lemma C.6 (paper form) [derived]: SER >= 1 - (1 - p_e (1 - (1 - 1/N)^(l-1)))^(L/l).

    ``num_steps`` may be any real N >= 1 (Theorem C.9 evaluates it at N = C L); the bound is
    non-increasing in N. Holds for every schedule when each same-step pair inside an interval
    makes it invalid with probability >= ``p_e`` given the past, and errors are never repaired.
    """
    ell, length = _check_interval_length(interval, length)
    p_e = check_probability("p_e", p_e)
    miss = p_e * (1.0 - distinct_steps_paper_bound(num_steps, ell))
    return _ser_from_failure(miss, length // ell)


def ser_lower_bound_tight(schedule, interval: int, length: int, p_e: float) -> float:
    """Lemma C.6 (tight form) [derived]: SER >= 1 - prod_j (1 - p_e (1 - P_j)) with the exact
    P_j = l! e_l(p) of Lemma C.5; all K = L/l intervals share P_j under a ``Schedule``."""
    ell, length = _check_interval_length(interval, length)
    p_e = check_probability("p_e", p_e)
    miss = p_e * (1.0 - distinct_steps_probability(schedule, ell))
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


def _pair_weights(interval: int, p_e: float) -> np.ndarray:
    """(l+1,) w(c) / c! with w(c) = (1 - p_e)^(c(c-1)/2)."""
    c = np.arange(interval + 1)
    keep = (1.0 - p_e) ** (c * (c - 1) // 2)
    return keep / np.array([math.factorial(int(i)) for i in c], dtype=np.float64)


def _valid_fixed_count(plan: FixedCountPlan, ell: int, p_e: float) -> float:
    """Multivariate hypergeometric: Pr(c) = prod_k C(m_k, c_k) / C(L, l)."""
    length = plan.length
    w = (1.0 - p_e) ** (np.arange(ell + 1) * (np.arange(ell + 1) - 1) // 2)
    values, counts = run_lengths(plan.counts)
    # z is scaled by 1/L so that every coefficient C(m, c) / L^c stays <= 1/c!.
    table = np.array(
        [[w[c] * math.comb(int(m), c) / float(length) ** c for c in range(ell + 1)]
         for m in values]
    )
    series = truncated_product(table, counts)
    scale = math.prod(length / (length - i) for i in range(ell)) * math.factorial(ell)
    return float(series[ell] * scale)


def _colliding_pairs(plan: DeterministicPlan, ell: int) -> np.ndarray:
    """(K,) number of same-step pairs inside each interval of a deterministic plan."""
    blocks = plan.draw_steps(1, plan.length)[0].reshape(-1, ell)
    same = blocks[:, :, None] == blocks[:, None, :]
    return np.triu(same, k=1).sum(axis=(1, 2))


def interval_valid_probability(plan, interval: int, *, p_e: float = 0.5):
    """Example C.7 [derived]: Pr[an interval is valid] = E[prod_k (1 - p_e)^(c_k (c_k - 1)/2)].

    c_k is the number of the interval's l positions revealed at step k; every pair revealed in
    the same step is wrong independently with probability ``p_e`` (the exact oracle has
    p_e = 1/2: Pr[valid | tau] = 2^-#colliding pairs). Pairs revealed at different steps are
    always consistent.

    ``plan``: a ``Schedule`` (or its (N,) masses): multinomial counts, O(N l^2), O(l^2 log N)
    for equal masses; a ``FixedCountPlan``: multivariate hypergeometric counts, exact, the same
    for every interval; a ``DeterministicPlan``: returns the (K,) per-interval values.
    """
    ell = check_positive_int("interval", interval, 1)
    p_e = check_probability("p_e", p_e)
    if isinstance(plan, FixedCountPlan):
        _check_interval_length(ell, plan.length)
        return _valid_fixed_count(plan, ell, p_e)
    if isinstance(plan, DeterministicPlan):
        _check_interval_length(ell, plan.length)
        return (1.0 - p_e) ** _colliding_pairs(plan, ell).astype(np.float64)
    values, counts = run_lengths(masses_of(plan))
    series = schedule_series(values, counts, _pair_weights(ell, p_e))
    return float(min(1.0, series[ell] * math.factorial(ell)))


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
    if isinstance(plan, DeterministicPlan):
        if plan.length != length:
            raise ArgumentError(f"length must equal the plan's length {plan.length}, got {length}")
        valid = interval_valid_probability(plan, ell, p_e=p_e)
        return float(1.0 - np.prod(valid))
    valid = interval_valid_probability(plan, ell, p_e=p_e)
    return _ser_from_failure(1.0 - valid, length // ell)


# ------------------------------------------------------------------------------ Theorem C.9


def theorem_c9_bound(C: float, length: int, p_e: float = 63 / 128, interval: int = 5) -> float:
    """Theorem C.9 (= 4.4), explicit form [derived]: for every schedule with N <= C L steps,
    SER >= 1 - exp(-((l-1) p_e / (l C)) (1 - (l-2) / (2 C L))); for l = 5 this is
    1 - exp(-(4 p_e / (5 C)) (1 - 1.5 / (C L))).

    From Lemma C.6 with 1 - (1 - 1/N)^(l-1) >= ((l-1)/N)(1 - (l-2)/(2N)) (Bonferroni) and
    (1 - x)^K <= e^(-x K). Needs C L >= 1. Weaker than ``ser_lower_bound`` at N = C L.
    """
    ell = check_positive_int("interval", interval, 2)
    length = check_positive_int("length", length, 1)
    p_e = check_probability("p_e", p_e)
    c = float(C)
    if not (math.isfinite(c) and c * length >= 1):
        raise ArgumentError(f"C must be a finite number with C * length >= 1, got C={C!r}")
    rate = (ell - 1) * p_e / (ell * c) * (1.0 - (ell - 2) / (2.0 * c * length))
    return float(-math.expm1(-rate))


def c9_max_constant(p_e: float = 63 / 128, interval: int = 5) -> float:
    """Theorem C.9 [derived]: the L -> infinity limit of the bound, 1 - exp(-(l-1) p_e / (l C)),
    is >= 1/2 iff C <= (l-1) p_e / (l ln 2); 4 p_e / (5 ln 2) ~ 0.568 for l = 5, p_e = 63/128."""
    ell = check_positive_int("interval", interval, 2)
    p_e = check_probability("p_e", p_e)
    return (ell - 1) * p_e / (ell * math.log(2.0))


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
    lengths = np.arange(-(-lo // ell) * ell, hi + 1, ell)
    if lengths.size == 0:
        raise ArgumentError(f"no multiple of interval={ell} in [{lo}, {hi}]")
    n = float(C) * lengths
    if np.any(n < 1):
        raise ArgumentError(f"C * min_length must be >= 1, got C={C!r}")
    miss = p_e * (1.0 - (1.0 - 1.0 / n) ** (ell - 1))
    bounds = -np.expm1((lengths // ell) * np.log1p(-miss))
    i = int(np.argmin(bounds))
    return C9Check(float(bounds[i]), int(lengths[i]), bool(bounds[i] >= 0.5), int(lengths.size))


def _ser_at(interval, length, p_e, family, n) -> float:
    if family == "linear":
        # N equal masses 1/N as one run: O(l^2 log N), never an (N,) array.
        one_run = np.array([1.0 / n]), np.array([n], dtype=np.int64)
        series = schedule_series(*one_run, _pair_weights(interval, p_e))
        valid = min(1.0, series[interval] * math.factorial(interval))
        return _ser_from_failure(1.0 - valid, length // interval)
    return oracle_ser(Schedule.named(family, n), interval, length, p_e=p_e)


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
    (``oracle_ser``; p_e = 1/2 is the exact oracle) is <= ``target`` under the ``family``
    schedule with N steps, by doubling then bisection.

    [ours] Assumes the SER is non-increasing in N (true for ``linear``, i.e. equal masses 1/N,
    which costs O(l^2 log N) per evaluation; other families cost O(N l^2)). Raises
    ``ValueError`` if even ``max_steps`` steps miss the target.
    """
    ell, length = _check_interval_length(interval, length)
    target = check_probability("target", target)
    p_e = check_probability("p_e", p_e)
    max_steps = check_positive_int("max_steps", max_steps, 1)
    n = first_true(lambda k: _ser_at(ell, length, p_e, family, k) <= target, max_steps)
    if n is None:
        raise ArgumentError(
            f"target SER {target} is not reached with max_steps={max_steps} steps "
            f"(SER there: {_ser_at(ell, length, p_e, family, max_steps):.6g})"
        )
    return n
