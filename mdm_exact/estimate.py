"""``Estimate``: a number with its confidence interval and how it was obtained."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

from .errors import ArgumentError, ArgumentTypeError


@dataclass(frozen=True)
class Estimate:
    """A value with a two-sided confidence interval.

    ``method`` is ``"exact"`` (then ``low == high == value``) or names the estimator
    (``"monte-carlo t"``, ``"wilson"``, ...). ``num_samples`` is 0 for exact values.
    """

    value: float
    low: float
    high: float
    method: str
    confidence: float = 0.95
    num_samples: int = 0

    @property
    def exact(self) -> bool:
        """Whether the value is exact (zero-width interval)."""
        return self.method == "exact"

    def __float__(self) -> float:
        return float(self.value)

    def scaled(self, factor: float) -> Estimate:
        """The same estimate times a positive ``factor`` (e.g. ``1 / L`` for per-token)."""
        if not factor > 0:
            raise ArgumentError(f"factor must be > 0, got {factor!r}")
        return replace(self, value=self.value * factor, low=self.low * factor,
                       high=self.high * factor)

    def contains(self, value: float) -> bool:
        """Whether ``value`` lies in the closed interval [low, high]."""
        return self.low <= value <= self.high

    def as_dict(self) -> dict:
        """The fields as a JSON-ready dict."""
        return {
            "value": self.value,
            "low": self.low,
            "high": self.high,
            "method": self.method,
            "confidence": self.confidence,
            "num_samples": self.num_samples,
        }

    def __str__(self) -> str:
        if self.exact:
            return f"{self.value:.6g} (exact)"
        pct = round(100 * self.confidence)
        return f"{self.value:.6g} [{self.low:.6g}, {self.high:.6g}] ({pct}% {self.method})"


def exact(value: float) -> Estimate:
    """An exact value as an ``Estimate`` with a zero-width interval."""
    v = float(value)
    return Estimate(v, v, v, "exact")


def check_confidence(confidence) -> float:
    """``confidence`` as a float in the open interval (0, 1), else a one-line refusal."""
    if isinstance(confidence, bool) or not isinstance(confidence, int | float | np.number) \
            or not 0 < confidence < 1:
        raise ArgumentError(f"confidence must lie in (0, 1), got {confidence!r}")
    return float(confidence)


def mean_interval(values, confidence: float = 0.95,
                  domain: tuple[float, float] = (-math.inf, math.inf)) -> Estimate:
    """Sample mean of ``values`` (n,) with Student-t interval ``mean ± t * sd / sqrt(n)``.

    ``domain = (lo, hi)``: the range the estimated quantity is known to lie in (e.g. (0, inf)
    for a KL); the value and both ends of the interval are clipped to it, since the true value
    is in it whatever the sample says.
    """
    confidence = check_confidence(confidence)
    lo, hi = (float(d) for d in domain)
    if not lo <= hi:
        raise ArgumentError(f"domain must be (lo, hi) with lo <= hi, got {domain!r}")
    v = np.asarray(values, dtype=np.float64).ravel()
    n = v.size
    if n < 2:
        raise ArgumentError(f"values must hold at least 2 samples for an interval, got {n}")
    from scipy import stats  # deferred: scipy.stats costs ~0.5 s to import

    mean = float(v.mean())
    half = float(stats.t.ppf(0.5 + confidence / 2, n - 1) * v.std(ddof=1) / np.sqrt(n))

    def clip(x: float) -> float:
        return min(max(x, lo), hi)

    return Estimate(clip(mean), clip(mean - half), clip(mean + half), "monte-carlo t",
                    confidence, n)


def wilson_interval(successes: int, trials: int, confidence: float = 0.95) -> Estimate:
    """Proportion ``successes / trials`` with the Wilson score interval (within [0, 1]), from
    ``scipy.stats.binomtest(successes, trials).proportion_ci(confidence, method="wilson")``."""
    confidence = check_confidence(confidence)
    for name, value in (("trials", trials), ("successes", successes)):
        if isinstance(value, bool) or not isinstance(value, int | np.integer):
            raise ArgumentTypeError(f"{name} must be an integer, got {value!r}")
    if trials < 1:
        raise ArgumentError(f"trials must be >= 1, got {trials}")
    if not 0 <= successes <= trials:
        raise ArgumentError(f"successes must lie in [0, trials={trials}], got {successes}")
    from scipy import stats

    ci = stats.binomtest(int(successes), int(trials)).proportion_ci(confidence, method="wilson")
    # scipy gives exactly 0 at no successes and 1 at all; rounding must not leave [0, 1] between.
    low, high = min(max(float(ci.low), 0.0), 1.0), min(max(float(ci.high), 0.0), 1.0)
    return Estimate(successes / trials, low, high, "wilson", confidence, int(trials))
