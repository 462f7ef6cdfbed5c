"""Appendix C, first part, and Appendix D: Lemmas C.1, C.2, Theorem C.3 (= 4.3), ddpm_cache NFE.

Theorem 4.3: with enough steps no two positions share a step (C.1), and one-at-a-time generation
stays in the support with probability >= exp(-L eps_learning) (C.2), for any HMM (in fact any q).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .._utils import check_memory, check_positive_int, format_count, int_times
from ..errors import ArgumentError
from ..estimate import Estimate, mean_interval
from ..schedules import check_plan
from ._common import check_nonnegative, masses_of
from .interval import _schedule_validity


def _finite(value: float, length: int, what: str) -> float:
    """``value``, or a refusal naming ``length`` when the bound leaves float range."""
    if not math.isfinite(value):
        raise ArgumentError(f"length={format_count(length)} is too large: {what} exceeds the "
                            "float range")
    return value


def collision_probability(schedule, length: int) -> float:
    """Lemma C.1 (exact value) [derived]: Pr[exists k: |tau_k| >= 2] = 1 - L! e_L(p^(1..N)).

    ``schedule``: a ``Schedule`` or its (N,) masses. O(N L) or O(L^2 log N) for equal masses
    (see ``distinct_steps_probability``; the equal-mass path keeps the relative precision of a
    tiny collision probability); 1 when L exceeds the number of steps of positive mass."""
    length = check_positive_int("length", length, 1)
    what = f"collision_probability at length={format_count(length)}"
    return _schedule_validity(masses_of(schedule), length, 1.0, what)[1]


def collision_union_bound(schedule, length: int) -> float:
    """Lemma C.1 (union bound) [derived]: Pr[collision] <= C(L, 2) sum_k (p^(k))^2."""
    length = check_positive_int("length", length, 1)
    p = masses_of(schedule)
    return _finite(int_times(math.comb(length, 2), float(np.sum(p**2))), length, "C(L, 2) sum p^2")


def collision_max_bound(schedule, length: int) -> float:
    """Lemma C.1 (max form) [derived]: Pr[collision] <= C(L, 2) max_k p^(k), which -> 0 as
    N -> infinity for a continuous alpha (and only then: a jump in alpha keeps it large)."""
    length = check_positive_int("length", length, 1)
    value = int_times(math.comb(length, 2), float(np.max(masses_of(schedule))))
    return _finite(value, length, "C(L, 2) max p")


def acceptance_lower_bound(length: int, eps_learning: float) -> float:
    """Lemma C.2 [derived]: with |tau_k| <= 1 for all k, under Assumption 4.1,
    p_acc = Pr[output in supp q] >= exp(-L eps_learning) (>= 1 - L eps_learning)."""
    length = check_positive_int("length", length, 1)
    eps = check_nonnegative("eps_learning", eps_learning)
    return math.exp(-int_times(length, eps))


@dataclass(frozen=True)
class SERUpperBound:
    """Theorem C.3 for one schedule: ``collision`` = exact Pr[collision] (C.1), ``acceptance`` =
    exp(-L eps_learning) (C.2), ``bound`` = 1 - (1 - collision) acceptance, and ``paper_bound``
    = collision + 1 - acceptance >= ``bound``."""

    collision: float
    acceptance: float
    bound: float
    paper_bound: float


def ser_upper_bound(schedule, length: int, eps_learning: float) -> SERUpperBound:
    """Theorem C.3 (= 4.3) [derived]: SER <= 1 - (1 - Pr[collision]) exp(-L eps_learning)
    <= Pr[collision] + 1 - exp(-L eps_learning).

    Conditioning on the instance: without a collision every step reveals at most one token and
    C.2 applies. ``schedule``: a ``Schedule`` or its (N,) masses."""
    collision = collision_probability(schedule, length)
    acceptance = acceptance_lower_bound(length, eps_learning)
    return SERUpperBound(
        collision, acceptance, 1.0 - (1.0 - collision) * acceptance, collision + 1.0 - acceptance
    )


def expected_nfe(plan, length: int) -> float:
    """Appendix D [derived]: expected number of non-empty steps (network calls of ddpm_cache),
    sum_k [1 - (1 - p^(k))^L] <= min(N, L); delegates to the plan's ``expected_nfe``."""
    return check_plan(plan).expected_nfe(length)


def nfe_monte_carlo(
    plan, length: int, *, num_samples: int = 2000, seed=None, confidence: float = 0.95
) -> Estimate:
    """Appendix D [derived]: Monte Carlo of the number of non-empty steps over instances of
    ``plan`` (Student-t interval), to check ``expected_nfe``."""
    plan = check_plan(plan)
    length = check_positive_int("length", length, 1)
    num = check_positive_int("num_samples", num_samples, 2)
    # draws, their sort and the differences: about 40 bytes per drawn position
    check_memory(f"nfe_monte_carlo of {num} instances at length={format_count(length)}",
                 int_times(length, 40.0 * num), argument="num_samples or length")
    steps = plan.draw_steps(num, length, np.random.default_rng(seed))
    ordered = np.sort(steps, axis=1)
    nonempty = 1 + np.count_nonzero(np.diff(ordered, axis=1), axis=1)
    return mean_interval(nonempty, confidence)
