"""Appendix A, Definitions B.4-B.7 and Lemma B.9: multi-token sampling, the dependencies of
one step and their expectation E[D_tau] over a plan.

Dense information quantities (Lemma A.1) work on a joint array ``(V_1, ..., V_k)``; the
separator and dependency counts work BATCHED on sampled instances ``steps`` (num, L), the 0-based
step index of every position as returned by any plan's ``draw_steps`` (step index s is the
paper's generation-order step k = s + 1).

Separators and intervals (Definitions B.4, B.5) at step k. Let T_<k be the positions revealed
at earlier steps and R_1, R_2, ... its maximal contiguous runs. Each run holds floor(|R|/(n-1))
disjoint separators (blocks of exactly n-1 revealed positions, taken greedily from the left), so
s_k = sum_r floor(|R_r| / (n-1)); the separators cut [L] into intervals. A position of tau_k is
never revealed before k, so it lies strictly between runs, and two positions j' < j of tau_k
share an interval iff no run between them is >= n-1 long, i.e. iff no window of n-1
consecutive positions strictly between them is entirely in T_<k. The excess of the step is
D_k = |tau_k| - D#_k = number of consecutive (in position order) pairs of tau_k that share an
interval.

Algorithm, per instance (numba, O(L log L + N) time, O(L + N) memory):

- s_k: reveal the positions step by step (counting sort by step) and merge runs, keeping the
  run length at both ends of each run; a merge of runs a, b through a new position changes s by
  floor((a+b+1)/(n-1)) - floor(a/(n-1)) - floor(b/(n-1)).
- D_k: one left-to-right sweep. W(e) = max step over the window [e-n+2, e] (sliding maximum);
  the window is inside T_<k iff W(e) < k. For position j of step k with previous step-k
  position j', the pair is separated iff min_{j' < e < j} W(e) < k (windows that contain j' have
  W >= k automatically). A monotonic stack of W answers that suffix minimum by binary search.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numba
import numpy as np

from .._utils import (
    check_joint,
    check_memory,
    check_positive_int,
    format_count,
    int_times,
    kl_divergence,
    shannon_entropy,
)
from ..errors import ArgumentError, ArgumentTypeError, BudgetError
from ..estimate import Estimate, exact, mean_interval
from ..schedules import DeterministicPlan, FixedCountPlan, Schedule, check_plan
from ._common import step_sizes

READINGS = ("excess", "intervals")
"""Definition B.5 readings: ``excess`` D_k = |tau_k| - D#_k (what Lemma B.8 needs) and
``intervals`` D#_k = number of intervals holding a position of tau_k (the paper's wording;
Lemma B.8 is false with it, docs/theory/lemma-b8.md)."""


# ------------------------------------------------------------------------------ Lemma A.1


def _marginals(q: np.ndarray) -> list[np.ndarray]:
    axes = tuple(range(q.ndim))
    return [q.sum(axis=axes[:i] + axes[i + 1 :]) for i in range(q.ndim)]


def total_correlation(joint) -> float:
    """Total correlation [recalled, standard] (Lemma A.1's identity): TC(X) = sum_i H(X_i) - H(X).

    ``joint``: dense (V_1, ..., V_k) probabilities of X = (X_1, ..., X_k). Nats.
    0 <= TC <= (k - 1) log max_i V_i.
    """
    q = check_joint(joint)
    # TC >= 0; a product joint would otherwise show rounding noise like -2e-16.
    return max(0.0, sum(shannon_entropy(m) for m in _marginals(q)) - shannon_entropy(q, axis=None))


@dataclass(frozen=True)
class ProductKL:
    """Lemma A.1's exact identity KL(q || (x)_i p_i) = TC(X) + sum_i KL(q_i || p_i), all nats.

    ``kl``: left side computed directly from the joint; ``total_correlation``: TC(X);
    ``marginal_kl``: (k,) KL(q_i || p_i).
    """

    kl: float
    total_correlation: float
    marginal_kl: np.ndarray

    @property
    def identity_error(self) -> float:
        """|kl - (TC + sum_i KL(q_i || p_i))|, zero up to rounding."""
        return abs(self.kl - self.total_correlation - float(self.marginal_kl.sum()))


def product_kl(joint, factors) -> ProductKL:
    """Lemma A.1 [derived]: KL(q || p_1 x ... x p_k), directly and through its identity
    KL = TC(X) + sum_i KL(q_i || p_i).

    ``joint``: dense (V_1, ..., V_k) q; ``factors``: k probability vectors, factor i of length
    V_i (a (k, V) array or a list). Nats; ``inf`` when some q-possible x has product mass 0.
    """
    q = check_joint(joint)
    ps = [np.asarray(f, dtype=np.float64).ravel() for f in factors]
    if len(ps) != q.ndim or any(p.size != s for p, s in zip(ps, q.shape, strict=False)):
        raise ArgumentError(
            f"factors must be {q.ndim} vectors of lengths {q.shape}, got "
            f"{[p.size for p in ps]}"
        )
    for i, p in enumerate(ps):
        if not np.all(np.isfinite(p)) or np.any(p < 0) or abs(p.sum() - 1.0) > 1e-9:
            raise ArgumentError(f"factors[{i}] must be a probability vector")
    product = ps[0]
    for p in ps[1:]:
        product = np.multiply.outer(product, p)
    marginal_kl = np.array([kl_divergence(m, p) for m, p in zip(_marginals(q), ps, strict=True)])
    return ProductKL(kl_divergence(q, product, axis=None), total_correlation(q), marginal_kl)


def multi_token_kl_bound(num_tokens: int, vocab_size: int, marginal_kl) -> float:
    """Lemma A.1 [derived]: KL(q || (x)_i p_i) <= (k - 1) log |V| + sum_i KL(q_i || p_i)
    (<= (k - 1) log |V| + k delta with delta = max_i KL(q_i || p_i)).

    ``marginal_kl``: (k,) per-token KLs, or one number used for each of the k tokens. Nats.
    """
    k = check_positive_int("num_tokens", num_tokens, 1)
    v = check_positive_int("vocab_size", vocab_size, 1)
    kls = np.asarray(marginal_kl, dtype=np.float64)
    if not np.all(np.isfinite(kls) & (kls >= 0)):
        raise ArgumentError("marginal_kl must be finite and >= 0")
    if kls.ndim == 0:  # one number for each of the k tokens: k * delta, for any int k
        total = int_times(k - 1, math.log(v)) + int_times(k, float(kls))
    elif kls.shape == (k,):
        total = int_times(k - 1, math.log(v)) + float(kls.sum())
    else:
        raise ArgumentError(f"marginal_kl must be one number or have shape ({k},), got shape "
                            f"{kls.shape}")
    if not math.isfinite(total):
        raise ArgumentError(f"num_tokens={format_count(k)} is too large: the bound exceeds the "
                            "float range")
    return float(total)


# ------------------------------------------------------------------------------ B.4 - B.7


@numba.njit(cache=True)
def _row_counts(steps, n, num_steps, s_out, d_out):
    length = steps.size
    width = n - 1
    # --- s_k by revealing the steps in order and merging runs.
    start = np.zeros(num_steps + 1, dtype=np.int64)
    for j in range(length):
        start[steps[j] + 1] += 1
    for k in range(num_steps):
        start[k + 1] += start[k]
    fill = start[:num_steps].copy()
    order = np.empty(length, dtype=np.int64)
    for j in range(length):
        order[fill[steps[j]]] = j
        fill[steps[j]] += 1
    run = np.zeros(length, dtype=np.int64)
    revealed = np.zeros(length, dtype=np.bool_)
    s = 0
    for k in range(num_steps):
        s_out[k] = s
        for idx in range(start[k], start[k + 1]):
            j = order[idx]
            a = run[j - 1] if j > 0 and revealed[j - 1] else 0
            b = run[j + 1] if j + 1 < length and revealed[j + 1] else 0
            s += (a + b + 1) // width - a // width - b // width
            run[j - a] = a + b + 1
            run[j + b] = a + b + 1
            revealed[j] = True
    # --- excess D_k in one sweep.
    last = np.full(num_steps, -1, dtype=np.int64)
    stack_pos = np.empty(length, dtype=np.int64)
    stack_val = np.empty(length, dtype=np.int64)
    top = 0
    window = np.empty(length, dtype=np.int64)
    head = 0
    tail = 0
    for j in range(length):
        k = steps[j]
        prev = last[k]
        if prev >= 0:
            lo = 0
            hi = top
            while lo < hi:
                mid = (lo + hi) // 2
                if stack_pos[mid] <= prev:
                    lo = mid + 1
                else:
                    hi = mid
            if lo == top or stack_val[lo] >= k:
                d_out[k] += 1
        last[k] = j
        while tail > head and steps[window[tail - 1]] <= k:
            tail -= 1
        window[tail] = j
        tail += 1
        if window[head] <= j - width:
            head += 1
        if j >= width - 1:
            w = steps[window[head]]
            while top > 0 and stack_val[top - 1] >= w:
                top -= 1
            stack_pos[top] = j
            stack_val[top] = w
            top += 1


@numba.njit(parallel=True, cache=True)
def _batch_counts(steps, n, num_steps):
    num = steps.shape[0]
    s_out = np.zeros((num, num_steps), dtype=np.int64)
    d_out = np.zeros((num, num_steps), dtype=np.int64)
    for r in numba.prange(num):
        _row_counts(steps[r], n, num_steps, s_out[r], d_out[r])
    return s_out, d_out


def _check_steps(steps, num_steps) -> tuple[np.ndarray, int]:
    arr = np.asarray(steps)
    if not np.issubdtype(arr.dtype, np.integer):
        raise ArgumentTypeError(f"steps must hold integer step indices, got dtype {arr.dtype}")
    arr = np.ascontiguousarray(np.atleast_2d(arr), dtype=np.int64)
    if arr.ndim != 2 or arr.shape[1] == 0:
        raise ArgumentError(f"steps must have shape (num, length) with length >= 1"
            f", got {arr.shape}")
    if arr.size and arr.min() < 0:
        raise ArgumentError(f"steps must be >= 0, got {int(arr.min())}")
    top = int(arr.max()) + 1 if arr.size else 1
    if num_steps is None:
        return arr, top
    n = check_positive_int("num_steps", num_steps, 1)
    if n < top:
        raise ArgumentError(f"num_steps must exceed every step index ({top - 1}), got {num_steps}")
    return arr, n


def _counts(steps, n, num_steps):
    n = check_positive_int("n", n, 2)
    arr, num_steps = _check_steps(steps, num_steps)
    return arr, _batch_counts(arr, n, num_steps)


def separators(steps, n: int, *, num_steps: int | None = None) -> np.ndarray:
    """Definition B.4 [derived]: s_k = sum_r floor(|R_r| / (n-1)) over the maximal runs R_r of
    positions revealed before step k.

    steps: (num, L) int 0-based step of every position (a 1-D array is one instance);
    returns (num, N) int64 with N = ``num_steps`` (default max step + 1). O(L log L + N) per
    instance, numba, parallel over instances.
    """
    return _counts(steps, n, num_steps)[1][0]


def dependencies(
    steps, n: int, *, reading: str = "excess", num_steps: int | None = None
) -> np.ndarray:
    """Definition B.5 [derived]: per-step dependency counts of sampled instances.

    ``reading="excess"`` (default; the quantity Lemma B.8 needs):
    D_k = sum_j (|I_j cap tau_k| - 1)_+ = |tau_k| - D#_k;
    ``reading="intervals"`` (the paper's wording): D#_k = #{j : I_j cap tau_k nonempty}.
    steps: (num, L) int 0-based step of every position; returns (num, N) int64.
    """
    if reading not in READINGS:
        raise ArgumentError(f"reading must be one of {READINGS}, got {reading!r}")
    arr, (_, excess) = _counts(steps, n, num_steps)
    if reading == "excess":
        return excess
    return step_sizes(arr, excess.shape[1]) - excess


def total_dependencies(steps, n: int, *, reading: str = "excess") -> np.ndarray:
    """Definition B.7 [derived]: D_tau = sum_k D_k for each instance; (num,) int64.

    With the excess reading, D_tau = L - sum_k D#_k.
    """
    return dependencies(steps, n, reading=reading).sum(axis=1)


# ------------------------------------------------------------------------------ Lemma B.9

ENUMERATION_BUDGET = 2**22
"""Most positions (instances x L) ``expected_dependencies`` enumerates exactly."""

MONTE_CARLO_CHUNK = 2**22
"""Positions drawn at once by the Monte-Carlo option of ``expected_dependencies``."""


def _fixed_count_instances(counts, length: int):
    """Every assignment of the L positions to steps with |tau_k| = counts[k] (all equally
    likely under a ``FixedCountPlan``), as (length,) int64 arrays."""
    steps = np.empty(length, dtype=np.int64)

    def fill(k: int, free: tuple[int, ...]):
        if k == len(counts):
            yield steps.copy()
            return
        for chosen in itertools.combinations(free, int(counts[k])):
            steps[list(chosen)] = k
            rest = tuple(j for j in free if j not in chosen)
            yield from fill(k + 1, rest)

    yield from fill(0, tuple(range(length)))


def _schedule_expectation(masses: np.ndarray, length: int, n: int) -> float:
    """sum over the N+^L assignments to steps of positive mass of Pr(tau) D_tau."""
    steps_of = np.flatnonzero(masses > 0)
    p = masses[steps_of]
    base = steps_of.size
    chunk = max(1, ENUMERATION_BUDGET // (8 * length))
    powers = base ** np.arange(length, dtype=np.int64)
    total = 0.0
    count = base**length
    for start in range(0, count, chunk):
        index = np.arange(start, min(count, start + chunk), dtype=np.int64)
        digits = (index[:, None] // powers) % base
        weight = np.prod(p[digits], axis=1)
        d = total_dependencies(steps_of[digits], n)
        total += float(weight @ d)
    return total


def expected_dependencies(
    plan, length: int, order: int, *, method: str = "exact", num_samples: int = 2000,
    seed=None, confidence: float = 0.95,
) -> Estimate:
    """Lemma B.9 / Definition B.7 [derived]: E_tau[D_tau] = sum_tau Pr(tau) sum_k D_k(tau), the
    factor of log|V| in KL(q || p) <= E[D_tau] log|V| + L eps_learning (excess reading).

    ``plan``: a ``Schedule`` (Pr(tau) = prod_k (p^(k))^|tau_k|), a ``FixedCountPlan`` (every
    assignment with the counts equally likely) or a ``DeterministicPlan`` (one instance);
    ``order``: the n of the n-gram. ``method="exact"`` enumerates every instance (N+^L for a
    schedule with N+ steps of positive mass, L! / prod_k |tau_k|! for fixed counts) and refuses
    (``BudgetError``) above ``ENUMERATION_BUDGET`` positions; ``"monte-carlo"`` averages D_tau
    over ``num_samples`` drawn instances (``seed``) with a Student-t interval. Returns an
    ``Estimate`` (zero-width for the exact value).
    """
    plan = check_plan(plan)
    length = plan.check_length(length)
    n = check_positive_int("order", order, 2)
    if method == "monte-carlo":
        num = check_positive_int("num_samples", num_samples, 2)
        rows = max(1, min(num, MONTE_CARLO_CHUNK // length))
        check_memory(f"expected_dependencies (monte-carlo) at length={format_count(length)}",
                     int_times(length, 96.0 * rows), argument="length")
        rng = np.random.default_rng(seed)
        values: list[np.ndarray] = []
        drawn = 0
        while drawn < num:
            steps = plan.draw_steps(min(rows, num - drawn), length, rng)
            values.append(total_dependencies(steps, n))
            drawn += steps.shape[0]
        return mean_interval(np.concatenate(values), confidence, domain=(0.0, length - 1.0))
    if method != "exact":
        raise ArgumentError(f"method must be 'exact' or 'monte-carlo', got {method!r}")
    if isinstance(plan, DeterministicPlan):
        return exact(float(total_dependencies(plan.draw_steps(1, length), n)[0]))
    # log10 of the number of instances first: the count itself can have millions of digits
    if isinstance(plan, FixedCountPlan):
        log_count = (math.lgamma(length + 1) - sum(math.lgamma(c + 1) for c in plan.counts)
                     ) / math.log(10)
    else:
        log_count = length * math.log10(np.count_nonzero(plan.masses))
    if log_count + math.log10(length) > math.log10(ENUMERATION_BUDGET) + 1e-9:
        raise BudgetError(
            f"expected_dependencies (exact) at length={format_count(length)} would enumerate "
            f"about 10^{log_count:.1f} instances of {format_count(length)} positions, above the "
            f"budget of {ENUMERATION_BUDGET} positions (lower length or use "
            "method='monte-carlo')"
        )
    if isinstance(plan, Schedule):
        return exact(_schedule_expectation(plan.masses, length, n))
    rows = np.array(list(_fixed_count_instances(plan.counts, length)), dtype=np.int64)
    return exact(float(total_dependencies(rows, n).mean()))
