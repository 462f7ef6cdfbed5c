"""Appendix B: Lemmas B.8-B.12 and Theorem 4.2 (= B.13), TER of n-gram generation.

Step indices in arrays are 0-based (entry s is the paper's generation-order step k = s + 1).
All quantities are in nats unless a ``base`` is given.

Lemma B.10 needs (n-1) | L; otherwise (Ambiguity 13) the aligned blocks are the
floor(L / (n-1)) complete ones, which keeps every bound here rigorous, and the formulas reduce to
the paper's when (n-1) | L (docs/theory/lemma-b10.md).
"""

from __future__ import annotations

import math
import reprlib
import warnings
from dataclasses import dataclass
from fractions import Fraction

import numpy as np

from .._utils import check_memory, check_positive_int, format_count, int_times, progress_bar
from ..errors import ArgumentError, ArgumentTypeError
from ..estimate import Estimate, mean_interval, wilson_interval
from ..schedules import Schedule, paper_ngram_extra_steps
from ._common import check_nonnegative, check_probability, schedule_of, step_sizes
from .dependencies import separators, total_dependencies

DRAW_BUDGET = 2**23
"""Positions drawn at once by the Monte-Carlo helpers (bounds their memory to ~200 MiB)."""

BYTES_PER_DRAWN_POSITION = 96
"""Peak bytes per drawn position of the Monte-Carlo helpers: the uniforms and step indices of
``draw_steps`` and the int64 work arrays of the separator / dependency kernel."""


def _all_finite(value, length: int, what: str):
    """``value``, or a refusal naming ``length`` when some entry leaves float range."""
    if not np.all(np.isfinite(value)):
        raise ArgumentError(f"length={format_count(length)} is too large: {what} exceeds the "
                            "float range")
    return value


def _check_draw_memory(what: str, num: int, length: int) -> None:
    rows = max(1, min(num, DRAW_BUDGET // length))
    check_memory(f"{what} at length={format_count(length)}",
                 int_times(length, float(rows * BYTES_PER_DRAWN_POSITION)), argument="length")


def dependency_kl_bound(dependencies, length: int, vocab_size: int, eps_learning: float):
    """Lemmas B.8 and B.9 [derived]: KL(q || p_tau) <= D_tau log|V| + L eps_learning for one
    instance (``dependencies`` = D_tau, excess reading), and KL(q || p) <= E[D_tau] log|V|
    + L eps_learning for a schedule (``dependencies`` = E[D_tau]). Broadcasts; nats."""
    length = check_positive_int("length", length, 1)
    v = check_positive_int("vocab_size", vocab_size, 1)
    eps = check_nonnegative("eps_learning", eps_learning)
    d = _nonnegative_array("dependencies", dependencies)
    out = _all_finite(d * math.log(v) + int_times(length, eps), length, "L eps_learning")
    return float(out) if out.ndim == 0 else out


def _nonnegative_array(name: str, values) -> np.ndarray:
    try:
        arr = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError, OverflowError):
        raise ArgumentError(f"{name} must be finite numbers >= 0, got "
                            f"{reprlib.repr(values)}") from None
    if not np.all(np.isfinite(arr) & (arr >= 0)):
        raise ArgumentError(f"{name} must be finite numbers >= 0, got {reprlib.repr(values)}")
    return arr


# ------------------------------------------------------------------------------ Lemma B.10


@dataclass(frozen=True)
class ChernoffTail:
    """A tail event and its Chernoff bound (Lemma A.2); fields broadcast over steps.

    ``threshold``: the event's cut-off; ``bound``: the upper bound on its probability.
    """

    threshold: np.ndarray
    bound: np.ndarray


def _blocks(length: int, n: int) -> int:
    return length // (n - 1)


def separator_tail_bound(length: int, n: int, revealed_before) -> ChernoffTail:
    """Lemma B.10, first bound [derived]: Pr[s_k <= L (P^(k))^(n-1) / (2(n-1))]
    <= exp(-L (P^(k))^(n-1) / (8(n-1))), with L/(n-1) read as floor(L/(n-1)) aligned blocks.

    ``revealed_before``: P^(k), scalar or (N,)."""
    length = check_positive_int("length", length, 1)
    n = check_positive_int("n", n, 2)
    powers = np.asarray(revealed_before, dtype=np.float64) ** (n - 1)
    mean = _all_finite(int_times(_blocks(length, n), powers), length, "L (P^(k))^(n-1)")
    return ChernoffTail(mean / 2.0, np.exp(-mean / 8.0))


def new_location_tail_bound(length: int, mass) -> ChernoffTail:
    """Lemma B.10, second bound [derived]: Pr[m_k >= 2 L p^(k)] <= exp(-L p^(k) / 3),
    m_k ~ Bin(L, p^(k)). ``mass``: p^(k), scalar or (N,)."""
    length = check_positive_int("length", length, 1)
    mu = int_times(length, np.asarray(mass, dtype=np.float64))
    return ChernoffTail(_all_finite(2.0 * mu, length, "2 L p^(k)"), np.exp(-mu / 3.0))


@dataclass(frozen=True)
class ChernoffCheck:
    """Monte-Carlo check of Lemma B.10 for every step of a schedule; (N,) arrays.

    ``separator_event``: estimated Pr[s_k <= threshold] with [``separator_low``,
    ``separator_high``] its Wilson interval; ``count_event``: the exact binomial
    Pr[m_k >= 2 L p^(k)] and ``count_monte_carlo`` its estimate from the same draws;
    ``*_bound``: Lemma B.10.
    """

    separator_event: np.ndarray
    separator_low: np.ndarray
    separator_high: np.ndarray
    separator_bound: np.ndarray
    count_event: np.ndarray
    count_monte_carlo: np.ndarray
    count_bound: np.ndarray
    num_samples: int


def chernoff_check(
    schedule, length: int, n: int, *, num_samples: int = 2000, seed=None,
    confidence: float = 0.95,
) -> ChernoffCheck:
    """Lemma B.10 [derived] against the real masking process: draws ``num_samples`` instances of
    ``schedule`` (a ``Schedule``), counts s_k exactly (``separators``) and m_k, and compares the
    event frequencies with both Chernoff bounds. Cost O(num_samples L log L)."""
    if not isinstance(schedule, Schedule):
        raise ArgumentTypeError(f"schedule must be a Schedule, got {type(schedule).__name__}")
    length = check_positive_int("length", length, 1)
    n = check_positive_int("n", n, 2)
    num = check_positive_int("num_samples", num_samples, 1)
    _check_draw_memory("chernoff_check", num, length)
    rng = np.random.default_rng(seed)
    p, big_p = schedule.masses, schedule.revealed_before
    sep = separator_tail_bound(length, n, big_p)
    cnt = new_location_tail_bound(length, p)
    sep_hits = np.zeros(p.size, dtype=np.int64)
    cnt_hits = np.zeros(p.size, dtype=np.int64)
    chunk = max(1, DRAW_BUDGET // length)
    done = 0
    while done < num:
        steps = schedule.draw_steps(min(chunk, num - done), length, rng)
        s = separators(steps, n, num_steps=p.size)
        m = step_sizes(steps, p.size)
        sep_hits += (s <= sep.threshold).sum(axis=0)
        cnt_hits += (m >= cnt.threshold).sum(axis=0)
        done += steps.shape[0]
    wilson = [wilson_interval(int(h), num, confidence) for h in sep_hits]
    from scipy import stats  # deferred: scipy.stats costs ~0.5 s to import

    exact_tail = stats.binom.sf(np.ceil(cnt.threshold) - 1, length, p)
    return ChernoffCheck(
        np.array([w.value for w in wilson]),
        np.array([w.low for w in wilson]),
        np.array([w.high for w in wilson]),
        sep.bound,
        exact_tail,
        cnt_hits / num,
        cnt.bound,
        num,
    )


# ------------------------------------------------------------------------------ Lemma B.11


def case3_expected_dependencies(separators, new_locations):
    """Lemma B.11, Case 3 identity [derived]: with s separators and m new locations in a
    uniformly random relative order, E[D | s, m] = m (m - 1) / (s + m) (0 when m <= 1).

    The uniform-order assumption is a heuristic (Ambiguity 3); it matches the real process
    within about 1% (docs/theory/lemma-b11.md). Broadcasts."""
    s = _nonnegative_array("separators", separators)
    m = _nonnegative_array("new_locations", new_locations)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        # m (m-1) / (s+m) = (m-1) * (m / (s+m)): no overflow of m^2 for large counts
        out = np.where(m > 1, (m - 1) * (m / np.maximum(s + m, 1.0)), 0.0)
    return float(out) if out.ndim == 0 else out


@dataclass(frozen=True)
class DependencyBound:
    """Lemma B.11's bound on E[D_k] per step; (N,) arrays, in positions (not per token).

    ``main``: Case 3, (2 mu)^2 / s_0 = 8 (n-1) L p^2 / P^(n-1); ``separator_tail``: Case 1,
    2 mu exp(-L P^(n-1) / (8(n-1))); ``count_tail``: Case 2, (2 mu + 3) exp(-mu / 3);
    ``bound``: min(main + separator_tail + count_tail, mu) (the first step, P = 0, gets mu).
    """

    main: np.ndarray
    separator_tail: np.ndarray
    count_tail: np.ndarray
    bound: np.ndarray


def step_dependency_bound(schedule, length: int, n: int) -> DependencyBound:
    """Lemma B.11 [derived]: E[D_k] <= 8(n-1) L (p^(k))^2 / (P^(k))^(n-1)
    + 2 mu e^(-L (P^(k))^(n-1) / (8(n-1))) + (2 mu + 3) e^(-mu/3), and E[D_k] <= mu = L p^(k).

    ``schedule``: a ``Schedule`` or its (N,) masses; L/(n-1) is floor(L/(n-1)) (Ambiguity 13).
    Returns (N,) arrays (see ``DependencyBound``)."""
    length = check_positive_int("length", length, 1)
    n = check_positive_int("n", n, 2)
    sched = schedule_of(schedule)
    p, big_p = sched.masses, sched.revealed_before
    mu = _all_finite(int_times(length, p), length, "L p^(k)")
    sep = separator_tail_bound(length, n, big_p)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        main = np.where(mu > 0, (2.0 * mu) ** 2 / sep.threshold, 0.0)
    separator_tail = 2.0 * mu * sep.bound
    count_tail = (2.0 * mu + 3.0) * np.exp(-mu / 3.0)
    # inf where P^(k) = 0 (the first step) is the bound's own value; elsewhere it is overflow
    _all_finite(main[sep.threshold > 0], length, "Lemma B.11's main term 8(n-1) L p^2 / P^(n-1)")
    bound = np.minimum(main + separator_tail + count_tail, mu)
    return DependencyBound(main, separator_tail, count_tail, bound)


# ------------------------------------------------------------------------------ Lemma B.12


def min_length(n: int, eps) -> int:
    """Lemma B.12 [ours, Schedule A]: L_0 = ceil(max{8(n-1) ln(4/eps) / eps^(n-1),
    3 ln(10/eps) M / (1 - eps), M}) with M = ceil(4(n-1)(1-eps)^2 / eps^n); L_0 =
    O((n-1) / eps^(n+1/2)) (<= 27.7 (n-1) / eps^(n+1/2) up to rounding).

    An exact int of any size (refused where M is, see ``paper_ngram_extra_steps``): eps and its
    powers are exact rationals of the decimal eps, only the two logarithms are floats."""
    n = check_positive_int("n", n, 2)
    m = paper_ngram_extra_steps(n, eps)
    exact = eps if isinstance(eps, Fraction) else Fraction(str(eps))
    e = float(exact)
    # ln(4 / eps) as ln 4 - ln eps: 4 / eps overflows for a subnormal eps
    first = Fraction(8 * (n - 1) * (math.log(4) - math.log(e))) / exact ** (n - 1)
    second = Fraction(3 * (math.log(10) - math.log(e))) * m / (1 - exact)
    return math.ceil(max(first, second, m))


SCHEDULES = ("A", "B")
"""Lemma B.12 constructions: A = ``Schedule.paper_ngram``, B = ``Schedule.adaptive_ngram``."""


def b12_schedule(n: int, eps, which: str = "A") -> Schedule:
    """Lemma B.12 [ours]: Schedule A (p^(1) = eps, then M equal steps) or Schedule B (adaptive,
    p^(k) = min(eps (P^(k))^(n-1) / (4(n-1)), 1 - P^(k)))."""
    if which == "A":
        return Schedule.paper_ngram(n, eps)
    if which == "B":
        return Schedule.adaptive_ngram(n, eps)
    raise ArgumentError(f"which must be one of {SCHEDULES}, got {which!r}")


def b12_num_steps(n: int, eps, which: str = "A") -> int:
    """Lemma B.12 [ours]: number of steps N of Schedule A (N = M + 1 with
    M = ceil(4(n-1)(1-eps)^2 / eps^n) in exact rationals, Theta((n-1)/eps^n)) or of Schedule B."""
    if which == "A":
        return paper_ngram_extra_steps(n, eps) + 1
    return b12_schedule(n, eps, which).num_steps


def excess_bound_per_token(schedule, length: int, n: int) -> float:
    """Lemma B.12 [derived]: analytic bound on E[D_tau] / L = sum_k E[D_k] / L, the factor of
    log|V| in Lemma B.9: L p^(1) for the first step (no separators; A.1) plus Lemma B.11's
    capped bound for every later step, over L. Target: <= 4 eps at L >= L_0."""
    length = check_positive_int("length", length, 1)
    return float(step_dependency_bound(schedule, length, n).bound.sum() / length)


def excess_monte_carlo(
    schedule, length: int, n: int, *, num_samples: int = 10, seed=None,
    confidence: float = 0.95, progress: bool = False,
) -> Estimate:
    """Lemma B.12 / Definition B.7 [derived]: Monte Carlo of the exact excess D_tau / L over
    instances of ``schedule`` (any plan with ``draw_steps``), with a Student-t interval
    (``mean_interval``). O(num_samples L log L); L = 3e6 takes about a second per instance.
    ``progress``: a tqdm bar over the instances on stderr (after 2 s)."""
    length = check_positive_int("length", length, 1)
    n = check_positive_int("n", n, 2)
    num = check_positive_int("num_samples", num_samples, 2)
    _check_draw_memory("excess_monte_carlo", num, length)
    rng = np.random.default_rng(seed)
    chunk = max(1, DRAW_BUDGET // length)
    values = []
    with progress_bar(progress, total=num, desc="excess instances") as bar:
        while len(values) < num:
            steps = schedule.draw_steps(min(chunk, num - len(values)), length, rng)
            values.extend(total_dependencies(steps, n) / length)
            bar.update(steps.shape[0])
    return mean_interval(values, confidence, domain=(0.0, math.inf))  # D_tau >= 0


# ------------------------------------------------------------------------------ Theorem 4.2


@dataclass(frozen=True)
class TERBound:
    """Theorem 4.2 / B.13: ``log_ter_gap_bound`` bounds the TER gap log TER(p) - log TER(q)
    = KL(q || p) / L (per token, in the unit of ``ter_bound``'s ``base``) once
    L >= ``min_length`` (tokens), with Schedule A's ``num_steps`` steps. ``gap`` is the
    deprecated name of ``log_ter_gap_bound``."""

    log_ter_gap_bound: float
    min_length: int
    num_steps: int

    @property
    def gap(self) -> float:
        """Deprecated: ``log_ter_gap_bound``."""
        warnings.warn("TERBound.gap is deprecated: use log_ter_gap_bound (a bound on log TER(p) "
                      "- log TER(q), per token)", DeprecationWarning, stacklevel=2)
        return self.log_ter_gap_bound


def ter_bound(
    n: int, eps, vocab_size: int, eps_learning: float, *, base: float = math.e
) -> TERBound:
    """Theorem 4.2 (= B.13) [recalled; constants derived]: log TER(p) <= log TER(q)
    + eps_learning + 4 eps log|V|, for L >= L_0 (``min_length``) with N = M + 1 steps.

    The bound is per token, in the unit of ``base`` (nats by default, ``base=2`` for bits);
    eps_learning must be given in that same unit. log TER(p) = log TER(q) + KL(q || p)/L
    (Theorem B.13)."""
    e = check_probability("eps", eps, open_low=True, open_high=True)
    v = check_positive_int("vocab_size", vocab_size, 1)
    eps_l = check_nonnegative("eps_learning", eps_learning)
    if isinstance(base, bool) or not (isinstance(base, int | float | np.integer | np.floating)
                                      and math.isfinite(base) and base > 1):
        raise ArgumentError(f"base must be a finite number > 1, got {base!r}")
    bound = eps_l + 4.0 * e * math.log(v) / math.log(base)
    return TERBound(bound, min_length(n, eps), b12_num_steps(n, eps))
