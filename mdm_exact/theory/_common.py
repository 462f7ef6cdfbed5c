"""Private helpers of the theory subpackage: argument checks and truncated power series."""

from __future__ import annotations

import math

import numba
import numpy as np

from ..errors import ArgumentError, ArgumentTypeError
from ..schedules import MASS_ATOL, DeterministicPlan, FixedCountPlan, Schedule


def check_probability(name: str, value, *, open_low: bool = False, open_high: bool = False):
    """``value`` as a float in [0, 1] (ends excluded on request); ``ValueError`` otherwise."""
    v = float(value)
    low_bad = v <= 0 if open_low else v < 0
    high_bad = v >= 1 if open_high else v > 1
    if not math.isfinite(v) or low_bad or high_bad:
        lo = "(" if open_low else "["
        hi = ")" if open_high else "]"
        raise ArgumentError(f"{name} must lie in {lo}0, 1{hi}, got {value!r}")
    return v


def check_nonnegative(name: str, value) -> float:
    v = float(value)
    if not (math.isfinite(v) and v >= 0):
        raise ArgumentError(f"{name} must be a finite number >= 0, got {value!r}")
    return v




def masses_of(schedule) -> np.ndarray:
    """(N,) generation-order masses p^(k) of a ``Schedule`` or of an array summing to 1."""
    if isinstance(schedule, Schedule):
        return schedule.masses
    if isinstance(schedule, FixedCountPlan | DeterministicPlan):
        raise ArgumentTypeError(
            f"schedule must be a Schedule or an array of masses here, got {type(schedule).__name__}"
            " (positions of a fixed-count or deterministic plan do not choose steps independently)"
        )
    p = np.asarray(schedule, dtype=np.float64).ravel()
    if p.size == 0 or not np.all(np.isfinite(p)) or np.any(p < 0):
        raise ArgumentError("masses must be a non-empty array of finite numbers >= 0")
    if abs(p.sum() - 1.0) > MASS_ATOL:
        raise ArgumentError(f"masses must sum to 1, got {p.sum()!r}")
    return p


def step_sizes(steps: np.ndarray, num_steps: int) -> np.ndarray:
    """(num, N) |tau_k| of every instance of ``steps`` (num, L), in one bincount."""
    num = steps.shape[0]
    flat = (steps + num_steps * np.arange(num)[:, None]).ravel()
    return np.bincount(flat, minlength=num * num_steps).reshape(num, num_steps)


def run_lengths(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Values compressed into runs of exactly equal entries: (values (R,), counts (R,))."""
    v = np.asarray(values)
    if v.size == 0:
        return v, np.zeros(0, dtype=np.int64)
    starts = np.flatnonzero(np.concatenate([[True], v[1:] != v[:-1]]))
    counts = np.diff(np.concatenate([starts, [v.size]]))
    return v[starts], counts.astype(np.int64)


@numba.njit(cache=True)
def _truncated_mul(a, b):
    degree = a.size - 1
    out = np.zeros(degree + 1)
    for i in range(degree + 1):
        if a[i] == 0.0:
            continue
        for j in range(degree + 1 - i):
            out[i + j] += a[i] * b[j]
    return out


@numba.njit(cache=True)
def _times_power(out, base, e):
    """out * base^e modulo z^(d+1), by repeated squaring."""
    base = base.copy()
    while e > 0:
        if e & 1:
            out = _truncated_mul(out, base)
        e >>= 1
        if e > 0:
            base = _truncated_mul(base, base)
    return out


@numba.njit(cache=True)
def truncated_product(factors, powers):
    """prod_r factors[r](z) ** powers[r] modulo z^(d+1), by repeated squaring per row.

    factors: (R, d+1) power-series coefficients, all >= 0 (so nothing cancels); powers: (R,).
    """
    out = np.zeros(factors.shape[1])
    out[0] = 1.0
    for r in range(factors.shape[0]):
        out = _times_power(out, factors[r], powers[r])
    return out


@numba.njit(cache=True)
def schedule_series(masses, powers, weights):
    """prod_k (sum_c weights[c] (p_k z)^c) ** powers[k] modulo z^(d+1), d = weights.size - 1.

    Builds each factor inside the loop so that an (N, d+1) table is never materialised.
    """
    degree = weights.size - 1
    out = np.zeros(degree + 1)
    out[0] = 1.0
    factor = np.empty(degree + 1)
    for r in range(masses.size):
        pc = 1.0
        for c in range(degree + 1):
            factor[c] = weights[c] * pc
            pc *= masses[r]
        out = _times_power(out, factor, powers[r])
    return out
