"""Masking schedules and unmasking plans (THEORY.md §0, §11).

Three kinds of plan decide which positions are revealed at which of the N executed steps; each is
accepted wherever a schedule is:

- ``Schedule``: every position independently picks its step k with probability p^(k) (the
  generation-order masses; ``sum_k p^(k) = 1``). This is the paper's alpha_t process: with
  t_i = i / N, p^(k) = alpha(t_{N-k}) - alpha(t_{N-k+1}) (Lemma B.10's telescoping).
- ``FixedCountPlan``: exactly m_k positions at step k, uniformly among those still masked
  (LLaDA / "random" remasking).
- ``DeterministicPlan``: the position sets tau_1 .. tau_N are given.

Every plan implements ``num_steps``, ``draw_steps(num, length, rng)`` -> (num, length) int step
indices in [0, N) and ``check_length(length)``. Lemma B.12's constructions are
``Schedule.paper_ngram`` (Schedule A) and ``Schedule.adaptive_ngram`` (Schedule B).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from fractions import Fraction

import numpy as np

from ._utils import as_rng, check_positive_int
from .errors import ArgumentError, ArgumentTypeError

MASS_ATOL = 1e-12
"""How far the masses of a schedule may sum from 1."""


def _check_eps(eps) -> float:
    if not (isinstance(eps, int | float | Fraction) and 0 < eps < 1):
        raise ArgumentError(f"eps must lie in (0, 1), got {eps!r}")
    return float(eps)


def _check_order(n) -> int:
    return check_positive_int("n", n, 2)


class Schedule:
    """Independent-step schedule: position i is revealed at step k with probability p^(k).

    ``masses``: (N,) generation-order masses, finite, >= 0, summing to 1 within ``MASS_ATOL``.
    """

    def __init__(self, masses, name: str = "custom"):
        p = np.array(masses, dtype=np.float64).ravel()
        if p.size == 0:
            raise ArgumentError("masses must hold at least one step")
        if not np.all(np.isfinite(p)):
            raise ArgumentError(f"masses must be finite, got {p[~np.isfinite(p)][0]!r} at step "
                             f"{int(np.flatnonzero(~np.isfinite(p))[0]) + 1}")
        if np.any(p < 0):
            k = int(np.flatnonzero(p < 0)[0])
            raise ArgumentError(f"masses must be >= 0, got {p[k]!r} at step {k + 1}")
        if abs(p.sum() - 1.0) > MASS_ATOL:
            raise ArgumentError(f"masses must sum to 1, got {p.sum()!r}")
        p.setflags(write=False)
        self._masses = p
        self.name = name

    # ------------------------------------------------------------------ views

    @property
    def masses(self) -> np.ndarray:
        """(N,) p^(k): probability that a position is revealed at the k-th executed step."""
        return self._masses

    @property
    def num_steps(self) -> int:
        """Number of executed steps N."""
        return self._masses.size

    @property
    def revealed_before(self) -> np.ndarray:
        """(N,) P^(k) = sum_{j<k} p^(j), so P^(1) = 0."""
        return np.concatenate([[0.0], np.cumsum(self._masses)[:-1]])

    @property
    def alphas(self) -> np.ndarray:
        """(N+1,) alpha(t_i) on the grid t_i = i/N: alpha(t_0) = 1, alpha(t_N) = 0."""
        cum = np.concatenate([[0.0], np.cumsum(self._masses)])
        # Dividing by the float total makes alpha(t_0) exactly 1 despite rounding in the sum.
        return (cum / cum[-1])[::-1].copy()

    @property
    def hazards(self) -> np.ndarray:
        """(N,) p^(k) / (1 - P^(k)): the probability that a still-masked position is revealed at
        step k (the reverse step's (alpha_s - alpha_t) / (1 - alpha_t))."""
        # Suffix sums rather than 1 - P^(k): the last non-empty step gets hazard exactly 1.
        remaining = np.cumsum(self._masses[::-1])[::-1]
        with np.errstate(divide="ignore", invalid="ignore"):
            h = np.where(remaining > 0, self._masses / remaining, 1.0)
        return np.clip(h, 0.0, 1.0)

    def runs(self) -> list[tuple[float, int]]:
        """The masses compressed into runs of equal values: [(mass, count), ...]."""
        out: list[tuple[float, int]] = []
        for m in self._masses:
            if out and out[-1][0] == m:
                out[-1] = (m, out[-1][1] + 1)
            else:
                out.append((float(m), 1))
        return out

    def expected_nfe(self, length: int) -> float:
        """Appendix D: expected number of non-empty steps, sum_k [1 - (1 - p^(k))^L]; this is
        what ddpm_cache pays in network calls. Always <= min(N, L)."""
        length = check_positive_int("length", length)
        with np.errstate(divide="ignore"):  # a step of mass 1: log1p(-1) = -inf, term 1
            return float(-np.expm1(length * np.log1p(-np.minimum(self._masses, 1.0))).sum())

    def check_length(self, length: int) -> int:
        """``length`` as an int (any positive length suits an independent-step schedule)."""
        return check_positive_int("length", length)

    def draw_steps(self, num: int, length: int, rng=None) -> np.ndarray:
        """(num, length) independent step indices in [0, N) with probabilities ``masses``."""
        length = self.check_length(length)
        gen = as_rng(rng)
        cdf = np.cumsum(self._masses)
        u = gen.random((check_positive_int("num", num, 0), length)) * cdf[-1]
        return np.searchsorted(cdf, u, side="right").astype(np.int64)

    def __repr__(self) -> str:
        return f"Schedule({self.name!r}, num_steps={self.num_steps})"

    def to_dict(self) -> dict:
        """JSON-ready description: name and masses."""
        return {"kind": "schedule", "name": self.name, "masses": self._masses.tolist()}

    # ------------------------------------------------------------------ construction

    @classmethod
    def from_alpha(cls, alpha: Callable[[np.ndarray], np.ndarray] | Sequence[float],
                   num_steps: int | None = None, name: str = "alpha") -> Schedule:
        """From a masking schedule alpha (a callable on [0, 1], or its N+1 grid values
        alpha(t_0..t_N)); p^(k) = alpha(t_{N-k}) - alpha(t_{N-k+1}).

        alpha must be non-increasing with alpha(0) = 1. Where alpha(1) > 0, that remaining mass
        is revealed at the last step (THEORY.md §11, like MDLM's final denoising step).
        """
        if callable(alpha):
            n = check_positive_int("num_steps", num_steps)
            grid = np.asarray(alpha(np.arange(n + 1) / n), dtype=np.float64)
        else:
            grid = np.asarray(alpha, dtype=np.float64).ravel()
            if num_steps is not None and grid.size != num_steps + 1:
                raise ArgumentError(f"alpha must hold num_steps + 1 = {num_steps + 1} grid values, "
                                 f"got {grid.size}")
            if grid.size < 2:
                raise ArgumentError(f"alpha must hold at least 2 grid values, got {grid.size}")
        if not np.all(np.isfinite(grid)):
            raise ArgumentError("alpha must be finite on the grid")
        if abs(grid[0] - 1.0) > MASS_ATOL:
            raise ArgumentError(f"alpha(0) must be 1, got {grid[0]!r}")
        if np.any(np.diff(grid) > MASS_ATOL) or grid[-1] < -MASS_ATOL or grid.max() > 1 + MASS_ATOL:
            raise ArgumentError("alpha must be non-increasing from 1 to a value in [0, 1]")
        # Step k runs t_{N-k+1} -> t_{N-k}: its mass is alpha(t_{N-k}) - alpha(t_{N-k+1}).
        masses = np.clip(grid[::-1][1:] - grid[::-1][:-1], 0.0, None)
        masses[-1] += max(grid[-1], 0.0)
        return cls(masses / masses.sum(), name)

    @classmethod
    def linear(cls, num_steps: int) -> Schedule:
        """alpha_t = 1 - t: equal masses 1/N."""
        return cls.from_alpha(lambda t: 1.0 - t, num_steps, "linear")

    @classmethod
    def cosine(cls, num_steps: int) -> Schedule:
        """alpha_t = cos(pi t / 2)."""
        return cls.from_alpha(lambda t: np.cos(np.pi * t / 2), num_steps, "cosine")

    @classmethod
    def polynomial(cls, num_steps: int, a: float) -> Schedule:
        """alpha_t = 1 - t^a (a > 0)."""
        if not (np.isfinite(a) and a > 0):
            raise ArgumentError(f"a must be a positive number, got {a!r}")
        return cls.from_alpha(lambda t: 1.0 - t**a, num_steps, f"polynomial({a:g})")

    @classmethod
    def loglinear(cls, num_steps: int, eps: float = 1e-3) -> Schedule:
        """MDLM's alpha_t = 1 - (1 - eps) t; what is still masked is revealed at the last step."""
        eps = _check_eps(eps)
        return cls.from_alpha(lambda t: 1.0 - (1.0 - eps) * t, num_steps, f"loglinear({eps:g})")

    @classmethod
    def paper_ngram(cls, n: int, eps) -> Schedule:
        """Lemma B.12, Schedule A [ours]: p^(1) = eps, then M equal steps (1 - eps) / M with
        M = ceil(4 (n-1) (1-eps)^2 / eps^n), computed in exact rationals from the decimal eps."""
        n, _ = _check_order(n), _check_eps(eps)
        m = paper_ngram_extra_steps(n, eps)
        e = float(eps)
        masses = np.full(m + 1, (1.0 - e) / m)
        masses[0] = e
        return cls(masses, f"paper_ngram(n={n}, eps={e:g})")

    @classmethod
    def adaptive_ngram(cls, n: int, eps) -> Schedule:
        """Lemma B.12, Schedule B [ours]: p^(1) = eps, p^(k) = min(eps (P^(k))^(n-1) / (4(n-1)),
        1 - P^(k)) until everything is revealed."""
        n, e = _check_order(n), _check_eps(eps)
        masses = [e]
        revealed = e
        coef = e / (4 * (n - 1))
        while revealed < 1.0:
            step = coef * revealed ** (n - 1)
            if step >= 1.0 - revealed:
                masses.append(1.0 - revealed)
                break
            masses.append(step)
            revealed += step
        return cls(np.array(masses), f"adaptive_ngram(n={n}, eps={e:g})")

    @classmethod
    def named(cls, name: str, num_steps: int) -> Schedule:
        """A family by name: ``linear``, ``cosine``, ``loglinear``, ``polynomial:A`` (e.g.
        ``polynomial:2``)."""
        base, _, arg = name.partition(":")
        if base == "linear" and not arg:
            return cls.linear(num_steps)
        if base == "cosine" and not arg:
            return cls.cosine(num_steps)
        if base == "loglinear":
            return cls.loglinear(num_steps, float(arg) if arg else 1e-3)
        if base == "polynomial" and arg:
            return cls.polynomial(num_steps, float(arg))
        raise ArgumentError(
            f"schedule must be linear, cosine, loglinear[:EPS] or polynomial:A, got {name!r}"
        )


def paper_ngram_extra_steps(n: int, eps) -> int:
    """M = ceil(4 (n-1) (1-eps)^2 / eps^n) in exact rationals (Schedule A has N = M + 1 steps).

    ``eps`` is read through its decimal string so that 0.1 means 1/10 exactly.
    """
    n = _check_order(n)
    _check_eps(eps)
    e = eps if isinstance(eps, Fraction) else Fraction(str(eps))
    return math.ceil(4 * (n - 1) * (1 - e) ** 2 / e**n)


class FixedCountPlan:
    """Exactly ``counts[k]`` positions revealed at step k, uniformly among those still masked.

    ``counts``: (N,) non-negative ints; the plan is for sequences of length ``sum(counts)``.
    """

    def __init__(self, counts):
        c = np.asarray(counts)
        if c.ndim != 1 or c.size == 0 or not np.issubdtype(c.dtype, np.integer):
            raise ArgumentError(f"counts must be a non-empty 1-D list of integers, got {counts!r}")
        if np.any(c < 0):
            raise ArgumentError(f"counts must be >= 0, got {int(c[c < 0][0])}")
        if c.sum() < 1:
            raise ArgumentError("counts must reveal at least one position")
        self.counts = c.astype(np.int64)
        self.counts.setflags(write=False)
        self.name = f"fixed-count({c.size})"

    @classmethod
    def even(cls, length: int, num_steps: int) -> FixedCountPlan:
        """floor(L/N) per step, plus one for the first L mod N steps (THEORY.md §11)."""
        length = check_positive_int("length", length)
        num_steps = check_positive_int("num_steps", num_steps)
        counts = np.full(num_steps, length // num_steps, dtype=np.int64)
        counts[: length % num_steps] += 1
        return cls(counts)

    @property
    def num_steps(self) -> int:
        """Number of steps N (empty steps included)."""
        return self.counts.size

    @property
    def length(self) -> int:
        """The sequence length L = sum(counts) the plan is for."""
        return int(self.counts.sum())

    def check_length(self, length: int) -> int:
        """``length``, refused unless it equals ``sum(counts)``."""
        length = check_positive_int("length", length)
        if length != self.length:
            raise ArgumentError(f"length must equal sum(counts) = {self.length}, got {length}")
        return length

    def draw_steps(self, num: int, length: int, rng=None) -> np.ndarray:
        """(num, length): a uniformly random ordering of positions, cut into the counts."""
        length = self.check_length(length)
        gen = as_rng(rng)
        ranks = np.argsort(gen.random((check_positive_int("num", num, 0), length)), axis=1)
        ranks = np.argsort(ranks, axis=1)
        return np.searchsorted(np.cumsum(self.counts), ranks, side="right").astype(np.int64)

    def expected_nfe(self, length: int) -> float:
        """Number of non-empty steps (deterministic)."""
        self.check_length(length)
        return float(np.count_nonzero(self.counts))

    def __repr__(self) -> str:
        return f"FixedCountPlan(counts={self.counts.tolist()})"

    def to_dict(self) -> dict:
        """JSON-ready description: the counts."""
        return {"kind": "fixed_count", "counts": self.counts.tolist()}


class DeterministicPlan:
    """Explicit position sets tau_1 .. tau_N (0-based positions), disjoint and covering
    0 .. L-1; empty steps are allowed."""

    def __init__(self, sets: Sequence[Sequence[int]]):
        steps = [np.asarray(s, dtype=np.int64).ravel() for s in sets]
        if not steps:
            raise ArgumentError("sets must hold at least one step")
        flat = np.concatenate(steps) if steps else np.zeros(0, dtype=np.int64)
        if flat.size == 0:
            raise ArgumentError("sets must reveal at least one position")
        if flat.min() < 0:
            raise ArgumentError(f"sets hold a negative position {int(flat.min())}")
        counts = np.bincount(flat)
        if np.any(counts > 1):
            raise ArgumentError(f"sets overlap: position {int(np.flatnonzero(counts > 1)[0])} "
                             "appears in more than one step")
        if np.any(counts == 0):
            raise ArgumentError(f"sets miss position {int(np.flatnonzero(counts == 0)[0])} "
                             f"(they must cover 0..{flat.max()})")
        self.sets = tuple(steps)
        self._steps = np.empty(flat.size, dtype=np.int64)
        for k, s in enumerate(steps):
            self._steps[s] = k
        self.name = f"deterministic({len(steps)})"

    @classmethod
    def left_to_right(cls, length: int, num_steps: int | None = None) -> DeterministicPlan:
        """Contiguous blocks in reading order (autoregressive when num_steps = length)."""
        length = check_positive_int("length", length)
        n = length if num_steps is None else check_positive_int("num_steps", num_steps)
        counts = FixedCountPlan.even(length, n).counts
        edges = np.concatenate([[0], np.cumsum(counts)])
        return cls([np.arange(edges[k], edges[k + 1]) for k in range(n)])

    @property
    def num_steps(self) -> int:
        """Number of steps N (empty steps included)."""
        return len(self.sets)

    @property
    def length(self) -> int:
        """The sequence length L the sets cover."""
        return self._steps.size

    def check_length(self, length: int) -> int:
        """``length``, refused unless it equals the number of planned positions."""
        length = check_positive_int("length", length)
        if length != self.length:
            raise ArgumentError(f"length must equal the number of planned positions {self.length}, "
                             f"got {length}")
        return length

    def draw_steps(self, num: int, length: int, rng=None) -> np.ndarray:
        """(num, length): the same planned step of every position in every row."""
        self.check_length(length)
        return np.broadcast_to(self._steps, (check_positive_int("num", num, 0), length)).copy()

    def expected_nfe(self, length: int) -> float:
        """Number of non-empty steps (deterministic; Appendix D)."""
        self.check_length(length)
        return float(sum(1 for s in self.sets if s.size))

    def __repr__(self) -> str:
        return f"DeterministicPlan(num_steps={self.num_steps}, length={self.length})"

    def to_dict(self) -> dict:
        """JSON-ready description: the position sets."""
        return {"kind": "deterministic", "sets": [s.tolist() for s in self.sets]}


Plan = Schedule | FixedCountPlan | DeterministicPlan
"""Anything that assigns positions to steps."""


def check_plan(plan) -> Plan:
    """``plan`` itself, or a ``TypeError`` naming what was passed."""
    if not isinstance(plan, Schedule | FixedCountPlan | DeterministicPlan):
        raise ArgumentTypeError(
            "schedule must be a Schedule, FixedCountPlan or DeterministicPlan, "
            f"got {type(plan).__name__}"
        )
    return plan
