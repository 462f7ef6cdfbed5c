"""Masking schedules and unmasking plans (conventions: docs/concepts.md, docs/theory/labels.md).

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
import numbers
import reprlib
from collections.abc import Callable, Sequence
from fractions import Fraction

import numba
import numpy as np

from ._utils import (
    as_rng,
    check_memory,
    check_positive_int,
    format_count,
    int_times,
    run_lengths,
)
from .errors import ArgumentError, ArgumentTypeError, BudgetError

MASS_ATOL = 1e-12
"""How far the masses of a schedule may sum from 1."""

PLAN_FORMAT = "mdm_exact.plan/1"
"""The ``"format"`` key of every plan and policy dict (``to_dict`` / ``from_dict``, plan files;
docs/cli.md)."""

BYTES_PER_STEP = 32
"""Peak bytes per step while a schedule is built: the (N,) float64 masses, the validated copy
and the temporaries of the checks and of ``alphas`` / ``revealed_before``."""

MAX_DIGITS = 4000
"""Largest exact integer (in decimal digits) computed for Lemma B.12's M and L_0: Python prints
no int beyond 4300 digits by default, and the exact rationals behind them grow with it."""

MAX_RATIONAL_BITS = 2**23
"""Largest denominator (in bits) of eps^n in the exact computation of M (~1 MiB, well under a
second); n log2(denominator of eps) beyond it is refused."""


def _check_eps(eps) -> float:
    ok = isinstance(eps, numbers.Real) and not isinstance(eps, bool | np.bool_)
    if not (ok and 0 < eps < 1):
        raise ArgumentError(f"eps must lie in (0, 1), got {eps!r}")
    return float(_exact_eps(eps))  # np.float32(0.1) means 0.1, as its decimal string says


def _check_order(n) -> int:
    return check_positive_int("n", n, 2)


def _exact_eps(eps) -> Fraction:
    """eps as an exact rational, read through its shortest decimal string (0.1 means 1/10,
    np.float32(0.1) too)."""
    return eps if isinstance(eps, Fraction) else Fraction(str(eps))


def _steps_bytes(num_steps: int) -> float:
    """``BYTES_PER_STEP * num_steps`` as a float, inf beyond float range."""
    return int_times(int(num_steps), float(BYTES_PER_STEP))


def _check_steps_memory(what: str, num_steps: int, argument: str | None = "num_steps") -> None:
    check_memory(f"{what} with {format_count(num_steps)} steps", _steps_bytes(num_steps),
                 argument=argument)


def _check_draws(what: str, num, length: int, bytes_per_entry: int) -> int:
    """``num`` as an int >= 0, refused when the (num, length) draws would exceed the budget."""
    num = check_positive_int("num", num, 0)
    check_memory(f"{what} of {format_count(num)} x {format_count(length)} steps",
                 int_times(num, float(length) * bytes_per_entry), argument="num")
    return num


def _real_array(name: str, values) -> np.ndarray:
    """``values`` as a float64 array, refusing bool, complex, text and non-numeric objects
    (``np.asarray(..., dtype=float)`` would turn True into 1.0 or drop imaginary parts)."""
    arr = np.asarray(values)
    if arr.dtype == object:
        flat = arr.ravel()
        bad = [v for v in flat if isinstance(v, bool | np.bool_) or not isinstance(v, numbers.Real)]
        if bad:
            raise ArgumentTypeError(f"{name} must hold real numbers, got {bad[0]!r}")
        return np.array([float(v) for v in flat], dtype=np.float64).reshape(arr.shape)
    if arr.dtype.kind not in "iuf":
        raise ArgumentTypeError(f"{name} must hold real numbers, got dtype {arr.dtype}")
    return np.array(arr, dtype=np.float64)


def _integer_array(name: str, values) -> np.ndarray:
    """``values`` as an int64 array: integer dtypes within int64, and floats only where they are
    whole numbers; bool, complex and fractional entries are refused, never truncated."""
    arr = np.asarray(values)
    if arr.size == 0:
        return np.zeros(arr.shape, dtype=np.int64)
    if arr.dtype == object:
        items = arr.ravel().tolist()
        if all(isinstance(v, int) and not isinstance(v, bool) for v in items):
            big = [v for v in items if not -(2**63) <= v < 2**63]
            if big:
                raise ArgumentError(f"{name} must fit in int64, got {big[0]}")
            return np.array(items, dtype=np.int64).reshape(arr.shape)
        arr = _real_array(name, arr)
    if arr.dtype.kind not in "iuf":
        raise ArgumentTypeError(f"{name} must hold integers, got dtype {arr.dtype}")
    if arr.dtype.kind == "u" and int(arr.max()) >= 2**63:
        raise ArgumentError(f"{name} must fit in int64, got {int(arr.max())}")
    if arr.dtype.kind == "f":
        bad = ~np.isfinite(arr) | (arr != np.round(arr)) | (np.abs(arr) >= 2.0**63)
        if np.any(bad):
            raise ArgumentError(f"{name} must hold integers, got {float(arr[bad].ravel()[0])!r}")
    return arr.astype(np.int64)


def plan_fields(data, kind: str, required: tuple[str, ...], optional: tuple[str, ...] = ()
                ) -> dict:
    """``data``, a plan or policy dict (``to_dict``'s form), checked: a dict with ``"format"`` =
    ``PLAN_FORMAT``, ``"kind"`` = ``kind``, every ``required`` key and no key beyond ``required``
    and ``optional``. Refusals name the key."""
    if not isinstance(data, dict):
        raise ArgumentTypeError(f"plan must be a dict (a JSON object), got {type(data).__name__}")
    for key, wanted in (("format", PLAN_FORMAT), ("kind", kind)):
        if key not in data:
            raise ArgumentError(f"plan key {key!r} is missing (expected {wanted!r})")
        if data[key] != wanted:
            raise ArgumentError(f"plan key {key!r} must be {wanted!r}, got {data[key]!r}")
    missing = [key for key in required if key not in data]
    if missing:
        raise ArgumentError(f"plan key {missing[0]!r} is missing (kind {kind!r})")
    unknown = sorted(str(key) for key in data if key not in ("format", "kind", *required,
                                                             *optional))
    if unknown:
        raise ArgumentError(f"plan key {unknown[0]!r} is not known for kind {kind!r}")
    return data


def _json_list(key: str, value) -> list:
    if not isinstance(value, list | tuple):
        raise ArgumentTypeError(f"plan key {key!r} must be a list, got {type(value).__name__}")
    return list(value)


def _json_int(key: str, value, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise ArgumentTypeError(f"plan key {key!r} must hold integers, got {value!r}")
    if value < minimum:
        raise ArgumentError(f"plan key {key!r} must hold integers >= {minimum}, got {value}")
    return int(value)


def _masses_from_runs(runs: list) -> np.ndarray:
    """(N,) masses from run-length entries ``{"mass": m, "count": c}``, the memory of the
    expanded masses checked before they are built."""
    masses, counts = [], []
    for i, run in enumerate(runs):
        if not isinstance(run, dict) or set(run) != {"mass", "count"}:
            raise ArgumentError(f"plan key 'masses' entry {i} must be a run "
                                f"{{'mass': m, 'count': c}} as the others are, got "
                                f"{reprlib.repr(run)}")
        masses.append(run["mass"])
        counts.append(_json_int(f"masses[{i}].count", run["count"], 1))
    _check_steps_memory("Schedule from a plan dict", sum(counts), argument=None)
    return np.repeat(_real_array("masses", masses), counts)


class Schedule:
    """Independent-step schedule: position i is revealed at step k with probability p^(k).

    ``masses``: (N,) generation-order masses, finite, >= 0, summing to 1 within ``MASS_ATOL``.
    """

    def __init__(self, masses, name: str = "custom"):
        p = _real_array("masses", masses).ravel()
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

    @property
    def num_runs(self) -> int:
        """Number of runs of equal consecutive masses (the length of ``runs()``)."""
        return int(np.count_nonzero(self._masses[1:] != self._masses[:-1])) + 1

    def runs(self, limit: int | None = None) -> list[tuple[float, int]]:
        """The masses compressed into runs of equal values: [(mass, count), ...]; only the
        first ``limit`` runs when given (a schedule of distinct masses has N runs)."""
        keep = None if limit is None else check_positive_int("limit", limit, 0)
        values, counts = run_lengths(self._masses)
        return [(float(m), int(c)) for m, c in zip(values[:keep], counts[:keep], strict=True)]

    def expected_nfe(self, length: int) -> float:
        """Appendix D: expected number of non-empty steps, sum_k [1 - (1 - p^(k))^L]; this is
        what ddpm_cache pays in network calls. Always <= min(N, L). Each term is
        -expm1(L log1p(-p^(k))), exact to rounding for any L (also beyond float range)."""
        length = check_positive_int("length", length)
        with np.errstate(divide="ignore"):  # a step of mass 1: log1p(-1) = -inf, term 1
            log_kept = np.log1p(-np.minimum(self._masses, 1.0))
        value = float(-np.expm1(int_times(length, log_kept)).sum())
        # rounding of masses summing to 1 + 2e-16 must not break the bound min(N, L)
        return min(value, float(min(np.count_nonzero(self._masses), length)))

    def check_length(self, length: int) -> int:
        """``length`` as an int (any positive length suits an independent-step schedule)."""
        return check_positive_int("length", length)

    def draw_steps(self, num: int, length: int, rng=None) -> np.ndarray:
        """(num, length) independent step indices in [0, N) with probabilities ``masses``."""
        length = self.check_length(length)
        num = _check_draws("Schedule.draw_steps", num, length, 24)
        gen = as_rng(rng)
        cdf = np.cumsum(self._masses)
        u = gen.random((num, length)) * cdf[-1]
        return np.searchsorted(cdf, u, side="right").astype(np.int64)

    def __repr__(self) -> str:
        return f"Schedule({self.name!r}, num_steps={self.num_steps})"

    def to_dict(self) -> dict:
        """JSON-ready description (docs/cli.md, "Plan files"): format, kind, name and the
        masses as runs ``[{"mass": m, "count": c}, ...]`` (``runs()``); floats exactly as
        stored, so ``from_dict(json.loads(json.dumps(d)))`` has the same masses bit for bit."""
        return {"format": PLAN_FORMAT, "kind": "schedule", "name": self.name,
                "masses": [{"mass": m, "count": c} for m, c in self.runs()]}

    @classmethod
    def from_dict(cls, data: dict) -> Schedule:
        """Inverse of ``to_dict``; ``"masses"`` may also be a plain list of numbers. Malformed
        input is refused naming the key."""
        data = plan_fields(data, "schedule", ("masses",), ("name",))
        name = data.get("name", "custom")
        if not isinstance(name, str):
            raise ArgumentTypeError(f"plan key 'name' must be a string, got {name!r}")
        entries = _json_list("masses", data["masses"])
        if any(isinstance(v, dict) for v in entries):
            return cls(_masses_from_runs(entries), name)
        return cls(_real_array("masses", entries), name)

    # ------------------------------------------------------------------ construction

    @classmethod
    def from_alpha(cls, alpha: Callable[[np.ndarray], np.ndarray] | Sequence[float],
                   num_steps: int | None = None, name: str = "alpha") -> Schedule:
        """From a masking schedule alpha (a callable on [0, 1], or its N+1 grid values
        alpha(t_0..t_N)); p^(k) = alpha(t_{N-k}) - alpha(t_{N-k+1}).

        alpha must be non-increasing with alpha(0) = 1. Where alpha(1) > 0, that remaining mass
        is revealed at the last step (like MDLM's final denoising step).
        """
        if callable(alpha):
            n = check_positive_int("num_steps", num_steps)
            _check_steps_memory(f"Schedule {name!r}", n)
            grid = _real_array("alpha(t)", alpha(np.arange(n + 1) / n))
            if grid.shape != (n + 1,):
                raise ArgumentError(f"alpha(t) must return one value per grid point t_0..t_N, "
                                    f"shape ({n + 1},), got shape {grid.shape}")
        else:
            grid = _real_array("alpha", alpha).ravel()
            if num_steps is not None:
                num_steps = check_positive_int("num_steps", num_steps)
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
        real = isinstance(a, numbers.Real) and not isinstance(a, bool | np.bool_)
        if not (real and np.isfinite(a) and a > 0):
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
        M = ceil(4 (n-1) (1-eps)^2 / eps^n), computed in exact rationals from the decimal eps.

        Refused (``BudgetError``) when its M + 1 steps would not fit the memory budget."""
        n, e = _check_order(n), _check_eps(eps)
        m = paper_ngram_extra_steps(n, eps)
        _check_steps_memory(f"Schedule A (Lemma B.12) for n={n}, eps={e:g} (raise eps or lower n)",
                            m + 1, argument=None)
        masses = np.full(m + 1, (1.0 - e) / m)
        masses[0] = e
        return cls(masses, f"paper_ngram(n={n}, eps={e:g})")

    @classmethod
    def adaptive_ngram(cls, n: int, eps) -> Schedule:
        """Lemma B.12, Schedule B [ours]: p^(1) = eps, p^(k) = min(eps (P^(k))^(n-1) / (4(n-1)),
        1 - P^(k)) until everything is revealed.

        Its number of steps is bounded in closed form first (``adaptive_ngram_steps_bound``) and
        refused (``BudgetError``) above the memory budget; the recurrence runs compiled."""
        n, e = _check_order(n), _check_eps(eps)
        bound = adaptive_ngram_steps_bound(n, e)
        what = f"Schedule B (Lemma B.12) for n={n}, eps={e:g} (raise eps or lower n)"
        if not math.isfinite(bound):
            check_memory(f"{what} with more than 10^300 steps", math.inf)
        capacity = int(bound)
        _check_steps_memory(what, capacity, argument=None)
        masses = np.empty(capacity)
        size = _adaptive_masses(e, e / (4 * (n - 1)), float(n - 1), masses)
        if size < 0:
            raise BudgetError(f"{what}: the recurrence stalls in float64 (its steps fall below "
                              "the rounding of P^(k))")
        return cls(masses[:size], f"adaptive_ngram(n={n}, eps={e:g})")

    @classmethod
    def named(cls, name: str, num_steps: int) -> Schedule:
        """A family by name: ``linear``, ``cosine``, ``loglinear``, ``polynomial:A`` (e.g.
        ``polynomial:2``)."""
        if not isinstance(name, str):
            raise ArgumentTypeError(f"schedule must be a name such as 'linear', got {name!r}")
        base, _, arg = name.partition(":")
        try:
            value = float(arg) if arg else None
        except ValueError:
            value = math.nan  # refused below, naming the whole text
        if base == "linear" and not arg:
            return cls.linear(num_steps)
        if base == "cosine" and not arg:
            return cls.cosine(num_steps)
        if base == "loglinear" and not (arg and math.isnan(value)):
            return cls.loglinear(num_steps, 1e-3 if value is None else value)
        if base == "polynomial" and arg and not math.isnan(value):
            return cls.polynomial(num_steps, value)
        raise ArgumentError(
            f"schedule must be linear, cosine, loglinear[:EPS] or polynomial:A, got {name!r}"
        )


def paper_ngram_extra_steps(n: int, eps) -> int:
    """Lemma B.12: M = ceil(4 (n-1) (1-eps)^2 / eps^n) in exact rationals (Schedule A has
    N = M + 1 steps).

    ``eps`` is read through its decimal string so that 0.1 means 1/10 exactly. Refused
    (``BudgetError``) when M would exceed ``MAX_DIGITS`` decimal digits or eps^n would need a
    denominator of more than ``MAX_RATIONAL_BITS`` bits.
    """
    n = _check_order(n)
    e_float = _check_eps(eps)
    e = _exact_eps(eps)
    digits = (math.log10(4 * (n - 1)) + 2 * math.log10(1 - e_float)
              - n * math.log10(e_float))
    if digits > MAX_DIGITS:
        raise BudgetError(f"Lemma B.12's M = ceil(4(n-1)(1-eps)^2/eps^n) for n={n}, "
                          f"eps={eps!r} would have about {digits:.3g} decimal digits, above "
                          f"{MAX_DIGITS} (raise eps or lower n)")
    bits = n * e.denominator.bit_length()
    if bits > MAX_RATIONAL_BITS:
        raise BudgetError(f"Lemma B.12's M for n={n}, eps={eps!r} needs eps^n in exact "
                          f"rationals with a {bits}-bit denominator, above {MAX_RATIONAL_BITS} "
                          "(lower n or give eps with fewer decimals)")
    return math.ceil(4 * (n - 1) * (1 - e) ** 2 / e**n)


def adaptive_ngram_steps_bound(n: int, eps) -> float:
    """Lemma B.12, Schedule B [ours]: an upper bound on its number of steps, in closed form.

    The recurrence P <- P + c P^(n-1) (c = eps / (4(n-1))) is Euler's method for dP/dk =
    c P^(n-1); each step covers between (1 + c)^-(n-1) and 1 of the ODE's time
    T = int_eps^1 dP / (c P^(n-1)) (= ln(1/eps) / c for n = 2, (eps^-(n-2) - 1) / ((n-2) c)
    otherwise), so N <= T (1 + c)^(n-1) + 2 (and N >= T). Computed in logs: inf beyond float
    range.
    """
    n = _check_order(n)
    e = _check_eps(eps)
    c = e / (4 * (n - 1))
    if n == 2:
        log_t = math.log(-math.log(e)) - math.log(c)
    else:
        # eps^-(n-2) - 1 = eps^-(n-2) (1 - eps^(n-2)), in logs
        k = (n - 2) * math.log(e)
        log_t = -k + math.log(-math.expm1(k)) - math.log(n - 2) - math.log(c)
    log_bound = log_t + (n - 1) * math.log1p(c)
    if log_bound > 700:
        return math.inf
    return math.exp(log_bound) + 2.0 + 16.0  # 16: slack for rounding in the float recurrence


@numba.njit(cache=True)
def _adaptive_masses(eps, coef, power, out):
    """Fills ``out`` with Schedule B's masses; returns their number, or -1 if the recurrence
    needs more than ``out.size`` steps or stalls (a step below the rounding of P)."""
    out[0] = eps
    revealed = eps
    size = 1
    while revealed < 1.0:
        if size >= out.size:
            return -1
        step = coef * revealed**power
        if step >= 1.0 - revealed:
            out[size] = 1.0 - revealed
            return size + 1
        if revealed + step == revealed:
            return -1
        out[size] = step
        revealed += step
        size += 1
    return size


class FixedCountPlan:
    """Exactly ``counts[k]`` positions revealed at step k, uniformly among those still masked.

    ``counts``: (N,) non-negative ints; the plan is for sequences of length ``sum(counts)``.
    """

    def __init__(self, counts):
        raw = np.asarray(counts)
        if raw.ndim != 1 or raw.size == 0:
            raise ArgumentError(f"counts must be a non-empty 1-D list of integers, got {counts!r}")
        if raw.dtype.kind == "f":  # whole floats such as 2.0 are not counts either
            raise ArgumentError(f"counts must hold integers, got dtype {raw.dtype}")
        c = _integer_array("counts", raw)
        if np.any(c < 0):
            raise ArgumentError(f"counts must be >= 0, got {int(c[c < 0][0])}")
        # a float total first: an int64 sum of large counts would wrap around silently
        if c.sum(dtype=np.float64) >= 2.0**62:
            raise ArgumentError(f"counts must sum to less than 2**62, got about "
                                f"{c.sum(dtype=np.float64):.3g}")
        if c.sum() < 1:
            raise ArgumentError("counts must reveal at least one position")
        self.counts = c
        self.counts.setflags(write=False)
        self.name = f"fixed-count({c.size})"

    @classmethod
    def even(cls, length: int, num_steps: int) -> FixedCountPlan:
        """floor(L/N) per step, plus one for the first L mod N steps."""
        length = check_positive_int("length", length)
        num_steps = check_positive_int("num_steps", num_steps)
        _check_steps_memory("FixedCountPlan.even", num_steps)
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
        num = _check_draws("FixedCountPlan.draw_steps", num, length, 40)
        gen = as_rng(rng)
        ranks = np.argsort(gen.random((num, length)), axis=1)
        ranks = np.argsort(ranks, axis=1)
        return np.searchsorted(np.cumsum(self.counts), ranks, side="right").astype(np.int64)

    def expected_nfe(self, length: int) -> float:
        """Number of non-empty steps (deterministic)."""
        self.check_length(length)
        return float(np.count_nonzero(self.counts))

    def __repr__(self) -> str:
        return f"FixedCountPlan(counts={self.counts.tolist()})"

    def to_dict(self) -> dict:
        """JSON-ready description (docs/cli.md, "Plan files"): format, kind and the counts."""
        return {"format": PLAN_FORMAT, "kind": "fixed_count", "counts": self.counts.tolist()}

    @classmethod
    def from_dict(cls, data: dict) -> FixedCountPlan:
        """Inverse of ``to_dict``; malformed input is refused naming the key."""
        data = plan_fields(data, "fixed_count", ("counts",))
        return cls([_json_int("counts", c, 0) for c in _json_list("counts", data["counts"])])


class DeterministicPlan:
    """Explicit position sets tau_1 .. tau_N (0-based positions), disjoint and covering
    0 .. L-1; empty steps are allowed."""

    def __init__(self, sets: Sequence[Sequence[int]]):
        steps = [_integer_array("sets", s).ravel() for s in sets]
        if not steps:
            raise ArgumentError("sets must hold at least one step")
        flat = np.concatenate(steps)
        if flat.size == 0:
            raise ArgumentError("sets must reveal at least one position")
        if flat.min() < 0:
            raise ArgumentError(f"sets hold a negative position {int(flat.min())}")
        # sorted positions must be exactly 0, 1, ..., L-1: no table of size max(position)
        ordered = np.sort(flat)
        repeated = np.flatnonzero(ordered[1:] == ordered[:-1])
        if repeated.size:
            raise ArgumentError(f"sets overlap: position {int(ordered[repeated[0]])} "
                             "appears in more than one step")
        gaps = np.flatnonzero(ordered != np.arange(flat.size))
        if gaps.size:
            raise ArgumentError(f"sets miss position {int(gaps[0])} "
                             f"(they must cover 0..{int(ordered[-1])})")
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
        # one small array per step (~100 bytes each) and 8 bytes per position, twice
        check_memory(f"DeterministicPlan.left_to_right with {format_count(length)} positions and "
                     f"{format_count(n)} steps", int_times(n, 128.0) + int_times(length, 16.0),
                     argument="length" if num_steps is None or length >= 8 * n else "num_steps")
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
        num = _check_draws("DeterministicPlan.draw_steps", num, length, 8)
        return np.broadcast_to(self._steps, (num, length)).copy()

    def expected_nfe(self, length: int) -> float:
        """Number of non-empty steps (deterministic; Appendix D)."""
        self.check_length(length)
        return float(sum(1 for s in self.sets if s.size))

    def __repr__(self) -> str:
        return f"DeterministicPlan(num_steps={self.num_steps}, length={self.length})"

    def to_dict(self) -> dict:
        """JSON-ready description (docs/cli.md, "Plan files"): format, kind and the position
        sets."""
        return {"format": PLAN_FORMAT, "kind": "deterministic",
                "sets": [s.tolist() for s in self.sets]}

    @classmethod
    def from_dict(cls, data: dict) -> DeterministicPlan:
        """Inverse of ``to_dict``; malformed input is refused naming the key."""
        data = plan_fields(data, "deterministic", ("sets",))
        sets = [[_json_int("sets", j, 0) for j in _json_list("sets", step)]
                for step in _json_list("sets", data["sets"])]
        return cls(sets)


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
