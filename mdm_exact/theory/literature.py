"""Other published bounds placed beside the paper's (docs/theory/literature.md).

- Li & Cai (arXiv 2505.21400, restated by a secondary source) [recalled]:
  E_tau KL(q || p_tau) <= (2^ceil(log2 s_max) - 1) / L * sum_i I(X_i; X_-i) + eps_train.
- The one-step factorization floor (ParallelBench, arXiv 2510.04767) [ours, from B.3 + A.1]:
  the oracle sampler's KL(q || p_tau) = sum_k E[TC(X_tau_k | X_<k)], the least KL any factorized
  denoiser can reach with that plan.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np

from .._utils import (
    check_joint,
    check_memory,
    check_positive_int,
    format_count,
    int_times,
    shannon_entropy,
)
from ..errors import ArgumentError, ArgumentTypeError
from ..estimate import Estimate, exact, mean_interval
from ..languages import Language, check_language
from ..posterior import posterior_marginals
from ..schedules import DeterministicPlan, FixedCountPlan, Schedule
from ._common import check_nonnegative

METHODS = ("auto", "exact", "monte-carlo")
EXACT_MAX_ENTRIES = 2**20
"""``method="auto"`` enumerates the joint when V^L is at most this many sequences."""
INSTANCES_MAX = 200_000
"""Most instances ``expected_factorization_floor`` enumerates."""


@dataclass(frozen=True)
class MutualInformationProfile:
    """I(X_i; X_-i) = H(X_i) - H(X_i | X_-i) for every position; (L,) arrays, nats.

    ``marginal_entropy`` is exact; ``conditional_entropy`` is exact for ``method == "exact"`` and
    a Monte-Carlo mean for ``"monte-carlo"``; ``total`` is sum_i I(X_i; X_-i) with its interval
    (zero width when exact).
    """

    marginal_entropy: np.ndarray
    conditional_entropy: np.ndarray
    mutual_information: np.ndarray
    total: Estimate
    method: str


def mutual_information_profile(
    language: Language,
    length: int,
    *,
    method: str = "auto",
    num_samples: int = 2000,
    seed=None,
    confidence: float = 0.95,
) -> MutualInformationProfile:
    """Li & Cai's information profile [recalled]: I(X_i; X_-i) = H(X_i) - H(X_i | X_-i), i = 1..L.

    ``exact``: enumerates the dense joint, H(X_i | X_-i) = H(X) - H(X_-i) (O(L V^L)).
    ``monte-carlo``: H(X_i) exactly from the all-masked posterior, and
    H(X_i | X_-i) = E_x[-log q(x_i | x_-i)] over ``num_samples`` draws x ~ q, each term one masked
    forward-backward (``posterior_marginals`` with only position i masked); the interval of the
    total is a Student-t interval over draws of sum_i -log q(x_i | x_-i).
    ``auto``: exact when V^L <= ``EXACT_MAX_ENTRIES``.
    """
    check_language(language)
    length = check_positive_int("length", length, 1)
    if method not in METHODS:
        raise ArgumentError(f"method must be one of {METHODS}, got {method!r}")
    if method == "auto":
        # in logs: V**L itself would be a gigantic int at a long length
        small = int_times(length, math.log2(language.vocab_size)) <= math.log2(EXACT_MAX_ENTRIES)
        method = "exact" if small else "monte-carlo"
    if method == "exact":
        joint = language.joint(length)
        axes = tuple(range(length))
        h_all = shannon_entropy(joint, axis=None)
        h_i = np.array([shannon_entropy(joint.sum(axis=axes[:i] + axes[i + 1 :])) for i in axes])
        h_rest = np.array([shannon_entropy(joint.sum(axis=i), axis=None) for i in axes])
        cond = h_all - h_rest
        # I >= 0; independent positions would otherwise show rounding noise like -4e-16
        mi = np.maximum(h_i - cond, 0.0)
        return MutualInformationProfile(h_i, cond, mi, exact(mi.sum()), "exact")
    num = check_positive_int("num_samples", num_samples, 2)
    # the draws, one masked copy and its (num, L, V) posterior at a time, twice for temporaries
    check_memory(f"mutual_information_profile by Monte Carlo at length={format_count(length)}",
                 int_times(length, 8.0 * num * (4 + 2 * language.vocab_size)),
                 argument="length or num_samples")
    masked = np.full((1, length), -1, dtype=np.int64)
    marg = posterior_marginals(language, masked)[0]
    h_i = shannon_entropy(marg)
    x = language.sample(num, length, np.random.default_rng(seed))
    surprisal = np.empty((num, length))
    for i in range(length):
        rows = x.copy()
        rows[:, i] = -1
        post = posterior_marginals(language, rows)[:, i, :]
        surprisal[:, i] = -np.log(post[np.arange(num), x[:, i]])
    cond = surprisal.mean(axis=0)
    total_cond = mean_interval(surprisal.sum(axis=1), confidence)
    offset = float(h_i.sum())
    total = Estimate(
        offset - total_cond.value, offset - total_cond.high, offset - total_cond.low,
        total_cond.method, total_cond.confidence, total_cond.num_samples,
    )
    return MutualInformationProfile(h_i, cond, h_i - cond, total, "monte-carlo")


def li_cai_bound(
    mutual_information_sum: float, length: int, max_revealed: int, eps_train: float = 0.0
) -> float:
    """Li & Cai (arXiv 2505.21400) [recalled]: E_tau KL(q || p_tau) <= (2^ceil(log2 s_max) - 1)
    / L * sum_i I(X_i; X_-i) + eps_train, with s_max = ``max_revealed`` the largest number of
    positions revealed in one step (at most L). Nats (the unit of the inputs).

    ceil(log2 s_max) is taken exactly from the bit length of s_max - 1, and the factor
    (2^ceil(log2 s_max) - 1) / L < 2 as an exact ratio of ints, so any L is fine."""
    total = check_nonnegative("mutual_information_sum", mutual_information_sum)
    length = check_positive_int("length", length, 1)
    s_max = check_positive_int("max_revealed", max_revealed, 1)
    if s_max > length:
        raise ArgumentError(f"max_revealed must be <= length={format_count(length)} (a step "
                            f"reveals at most L positions), got {format_count(s_max)}")
    eps = check_nonnegative("eps_train", eps_train)
    factor = 2 ** (s_max - 1).bit_length() - 1
    value = factor / length * total + eps
    if not math.isfinite(value):
        raise ArgumentError(f"mutual_information_sum={total!r} makes the bound exceed the float "
                            "range")
    return value


class _SubsetEntropy:
    """H(X_S) of a dense joint, cached by the subset S of axes."""

    def __init__(self, joint: np.ndarray):
        self.joint = joint
        self.cache: dict[frozenset[int], float] = {frozenset(): 0.0}

    def __call__(self, subset) -> float:
        key = frozenset(int(i) for i in subset)
        if key not in self.cache:
            rest = tuple(a for a in range(self.joint.ndim) if a not in key)
            self.cache[key] = shannon_entropy(self.joint.sum(axis=rest), axis=None)
        return self.cache[key]


def _floor(entropy: _SubsetEntropy, steps: np.ndarray) -> float:
    total = 0.0
    for k in np.unique(steps):
        before = set(np.flatnonzero(steps < k).tolist())
        now = np.flatnonzero(steps == k).tolist()
        h_before = entropy(before)
        # TC(X_tau | X_<k) = sum_j H(X_j | X_<k) - H(X_tau | X_<k)
        total += sum(entropy(before | {j}) - h_before for j in now)
        total -= entropy(before | set(now)) - h_before
    return total


def factorization_floor(joint, steps) -> float:
    """One-step factorization floor (ParallelBench) [ours, from Lemma B.3 and A.1's identity]:
    KL(q || p_tau) of the oracle sampler = sum_k E_{X_<k}[TC(X_tau_k | X_<k)], the least KL
    any factorized denoiser reaches on instance tau.

    ``joint``: dense (V,)*L q; ``steps``: (L,) 0-based step of every position. Exact, O(N V^L).
    """
    q = check_joint(joint)
    st = np.asarray(steps, dtype=np.int64).ravel()
    if st.size != q.ndim or (st.size and st.min() < 0):
        raise ArgumentError(f"steps must hold {q.ndim} step indices >= 0, got {steps!r}")
    return _floor(_SubsetEntropy(q), st)


def _multiset_permutations(counts: list[int]):
    """Every sequence holding label k exactly counts[k] times (each once)."""
    if not any(counts):
        yield ()
        return
    for k, c in enumerate(counts):
        if c:
            counts[k] -= 1
            for rest in _multiset_permutations(counts):
                yield (k, *rest)
            counts[k] += 1


def _instances(plan, length: int):
    """Every instance of ``plan`` with its probability."""
    if isinstance(plan, DeterministicPlan):
        yield plan.draw_steps(1, length)[0], 1.0
    elif isinstance(plan, FixedCountPlan):
        plan.check_length(length)
        arrangements = list(_multiset_permutations(plan.counts.tolist()))
        for arrangement in arrangements:
            yield np.array(arrangement), 1.0 / len(arrangements)
    elif isinstance(plan, Schedule):
        p = plan.masses
        for arrangement in itertools.product(range(p.size), repeat=length):
            weight = float(np.prod(p[list(arrangement)]))
            if weight > 0:
                yield np.array(arrangement), weight
    else:
        raise ArgumentTypeError(f"plan must be a Schedule, FixedCountPlan or DeterministicPlan, "
                        f"got {type(plan).__name__}")


def expected_factorization_floor(joint, plan) -> float:
    """One-step factorization floor over a plan [ours, Lemma B.2 + B.3]: E_tau of
    ``factorization_floor`` over every instance of ``plan`` (enumerated) = the Lemma B.2 upper
    bound E_tau KL(q || p_tau) for the oracle denoiser (eps_learning = 0), exactly.

    Refuses plans with more than ``INSTANCES_MAX`` instances (N^L for a ``Schedule``,
    L! / prod_k m_k! for a ``FixedCountPlan``)."""
    q = check_joint(joint)
    length = q.ndim
    if isinstance(plan, Schedule):
        count = plan.num_steps**length
    elif isinstance(plan, FixedCountPlan):
        count = math.factorial(length) // math.prod(math.factorial(int(m)) for m in plan.counts)
    else:
        count = 1
    if count > INSTANCES_MAX:
        raise ArgumentError(f"plan has {count} instances at length {length}, above "
                         f"INSTANCES_MAX={INSTANCES_MAX}")
    entropy = _SubsetEntropy(q)
    return float(sum(w * _floor(entropy, st) for st, w in _instances(plan, length)))
