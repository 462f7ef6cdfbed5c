"""Private helpers of the theory subpackage: argument checks, masses and step sizes."""

from __future__ import annotations

import math
import reprlib

import numpy as np

from .._utils import real_number
from ..errors import ArgumentError, ArgumentTypeError
from ..policies import is_policy
from ..schedules import DeterministicPlan, FixedCountPlan, Schedule


def check_probability(name: str, value, *, open_low: bool = False, open_high: bool = False):
    """``value`` as a float in [0, 1] (ends excluded on request); ``ValueError`` otherwise."""
    v = real_number(name, value)
    low_bad = v <= 0 if open_low else v < 0
    high_bad = v >= 1 if open_high else v > 1
    if not math.isfinite(v) or low_bad or high_bad:
        lo = "(" if open_low else "["
        hi = ")" if open_high else "]"
        raise ArgumentError(f"{name} must lie in {lo}0, 1{hi}, got {value!r}")
    return v


def check_nonnegative(name: str, value) -> float:
    v = real_number(name, value)
    if not (math.isfinite(v) and v >= 0):
        raise ArgumentError(f"{name} must be a finite number >= 0, got {reprlib.repr(value)}")
    return v


def schedule_of(schedule) -> Schedule:
    """The ``Schedule`` itself, or the one whose masses p^(k) are the given array summing to 1."""
    if isinstance(schedule, Schedule):
        return schedule
    if is_policy(schedule):
        raise ArgumentTypeError(
            f"schedule must be a Schedule or an array of masses here, got the adaptive policy "
            f"{schedule.name} (it chooses positions from the state; these statements are about "
            "state-independent schedules)"
        )
    if isinstance(schedule, FixedCountPlan | DeterministicPlan):
        raise ArgumentTypeError(
            f"schedule must be a Schedule or an array of masses here, got {type(schedule).__name__}"
            " (positions of a fixed-count or deterministic plan do not choose steps independently)"
        )
    return Schedule(schedule)  # the same checks: real, finite, >= 0, summing to 1


def masses_of(schedule) -> np.ndarray:
    """(N,) generation-order masses p^(k) of a ``Schedule`` or of an array summing to 1."""
    return schedule_of(schedule).masses


def step_sizes(steps: np.ndarray, num_steps: int) -> np.ndarray:
    """(num, N) |tau_k| of every instance of ``steps`` (num, L), in one bincount."""
    num = steps.shape[0]
    flat = (steps + num_steps * np.arange(num)[:, None]).ravel()
    return np.bincount(flat, minlength=num * num_steps).reshape(num, num_steps)
