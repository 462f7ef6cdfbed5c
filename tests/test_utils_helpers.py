"""The shared helpers of ``mdm_exact._utils`` (entropy, KL, joint check, run lengths) and the
``Estimate`` intervals, each against an independent reference written here: per-entry Python
loops with ``math.log`` and ``math.fsum``, ``itertools.groupby``, the textbook Wilson and
Student-t formulas."""

from __future__ import annotations

import itertools
import math
from statistics import NormalDist

import numpy as np
import pytest
from scipy import stats

from mdm_exact._utils import check_joint, kl_divergence, run_lengths, shannon_entropy
from mdm_exact.errors import ArgumentError, ArgumentTypeError
from mdm_exact.estimate import mean_interval, wilson_interval
from mdm_exact.schedules import Schedule


def _entropy_ref(p) -> float:
    return math.fsum(-x * math.log(x) for x in np.ravel(p).tolist() if x > 0)


def _kl_ref(q, p) -> float:
    terms = []
    for a, b in zip(np.ravel(q).tolist(), np.ravel(p).tolist(), strict=True):
        if a == 0:
            continue
        if b == 0:
            return math.inf
        terms.append(a * (math.log(a) - math.log(b)))  # log difference: no overflow in a / b
    return math.fsum(terms)


def _distributions(rng, num, size):
    """Random probability vectors, about a third of their entries exactly zero."""
    out = rng.dirichlet(np.full(size, 0.4), size=num)
    out[rng.random(out.shape) < 0.3] = 0.0
    out[out.sum(axis=1) == 0, 0] = 1.0
    return out / out.sum(axis=1, keepdims=True)


# ---------------------------------------------------------------------------------- entropy


def test_entropy_matches_the_formula_with_exact_zeros():
    rng = np.random.default_rng(1)
    rows = _distributions(rng, 50, 6)
    got = shannon_entropy(rows)
    assert got.shape == (50,)
    np.testing.assert_allclose(got, [_entropy_ref(r) for r in rows], rtol=0, atol=1e-14)
    joint = rows[:8].reshape(2, 4, 6) / 8
    assert shannon_entropy(joint, axis=None) == pytest.approx(_entropy_ref(joint), abs=1e-14)
    np.testing.assert_allclose(shannon_entropy(joint, axis=1),
                               [[_entropy_ref(joint[i, :, j]) for j in range(6)]
                                for i in range(2)], rtol=0, atol=1e-14)


def test_entropy_edge_cases():
    assert shannon_entropy([1.0, 0.0, 0.0]) == 0.0
    assert math.copysign(1.0, shannon_entropy([1.0])) == 1.0  # +0.0, never -0.0
    assert shannon_entropy(np.full(8, 1 / 8)) == pytest.approx(math.log(8), abs=1e-15)
    assert isinstance(shannon_entropy([0.5, 0.5]), float)
    assert shannon_entropy(np.zeros((3, 0))).tolist() == [0.0, 0.0, 0.0]
    tiny = np.array([1.0 - 5e-324, 5e-324])  # a subnormal mass contributes, never NaN
    assert shannon_entropy(tiny) == pytest.approx(_entropy_ref(tiny), abs=1e-300)


# ---------------------------------------------------------------------------------- KL


def test_kl_matches_the_formula_with_zeros_and_infinities():
    rng = np.random.default_rng(2)
    q, p = _distributions(rng, 60, 5), _distributions(rng, 60, 5)
    got = kl_divergence(q, p)
    want = np.array([_kl_ref(a, b) for a, b in zip(q, p, strict=True)])
    assert got.shape == (60,) and np.any(np.isinf(want)) and np.any(np.isfinite(want))
    assert np.array_equal(np.isinf(got), np.isinf(want))
    np.testing.assert_allclose(got[np.isfinite(want)], want[np.isfinite(want)], rtol=1e-13,
                               atol=1e-14)
    finite, blocked = np.flatnonzero(np.isfinite(want))[:3], np.flatnonzero(np.isinf(want))[:1]
    assert kl_divergence(q[finite] / 3, p[finite] / 3, axis=None) == pytest.approx(
        _kl_ref(q[finite] / 3, p[finite] / 3), abs=1e-13)
    assert kl_divergence(q[blocked], p[blocked], axis=None) == math.inf


def test_kl_edge_cases():
    assert kl_divergence([0.5, 0.5], [1.0, 0.0]) == math.inf
    assert kl_divergence([1.0, 0.0], [0.5, 0.5]) == pytest.approx(math.log(2), abs=1e-15)
    assert kl_divergence([0.0, 1.0], [0.0, 1.0]) == 0.0
    # nearly equal rows: rounding must not give a negative KL
    q = np.array([0.1, 0.2, 0.7])
    assert kl_divergence(q, q * (1 + 1e-16)) >= 0.0
    assert math.copysign(1.0, kl_divergence(q, q)) == 1.0
    # a subnormal p: q / p leaves float range, the KL does not
    p = np.array([1.0 - 1e-320, 1e-320])
    assert kl_divergence([0.5, 0.5], p) == pytest.approx(_kl_ref([0.5, 0.5], p), rel=1e-14)


# ---------------------------------------------------------------------------------- joint


def test_check_joint_accepts_a_joint_and_names_what_is_wrong():
    q = np.full((2, 3), 1 / 6)
    out = check_joint(q)
    assert out.dtype == np.float64 and np.array_equal(out, q)
    with pytest.raises(ArgumentError, match=r"joint must be a non-empty array .* shape \(\)"):
        check_joint(1.0)
    with pytest.raises(ArgumentError, match=r"joint must be a non-empty array"):
        check_joint(np.zeros((2, 0)))
    with pytest.raises(ArgumentError, match=r"joint must hold finite probabilities >= 0, got "
                                            r"-0\.5 at index \(0, 1\)"):
        check_joint([[0.5, -0.5], [0.5, 0.5]])
    with pytest.raises(ArgumentError, match=r"got nan at index \(1,\)"):
        check_joint([0.5, math.nan])
    with pytest.raises(ArgumentError, match=r"mine must sum to 1, got 0\.9"):
        check_joint([0.4, 0.5], "mine")
    with pytest.raises(ArgumentTypeError, match="joint must hold real numbers"):
        check_joint([True, False])


# ---------------------------------------------------------------------------------- runs


@pytest.mark.parametrize("values", [[], [3.0], [1, 1, 2, 2, 2, 1, 3, 3], [0.1] * 5 + [0.2],
                                    [math.inf, math.inf, -0.0, 0.0, 1.0]])
def test_run_lengths_match_groupby(values):
    got_values, got_counts = run_lengths(np.array(values))
    want = [(k, len(list(g))) for k, g in itertools.groupby(values)]
    assert list(zip(got_values.tolist(), got_counts.tolist(), strict=True)) == want
    assert got_counts.dtype == np.int64


def test_schedule_runs_and_revealed_before():
    masses = np.array([0.1, 0.1, 0.2, 0.2, 0.2, 0.2])
    s = Schedule(masses)
    assert s.runs() == [(0.1, 2), (0.2, 4)] and s.runs(1) == [(0.1, 2)] and s.runs(0) == []
    want = [math.fsum(masses[:k]) for k in range(masses.size)]
    np.testing.assert_allclose(s.revealed_before, want, rtol=0, atol=1e-15)


# ---------------------------------------------------------------------------------- intervals


def _wilson_ref(k: int, n: int, confidence: float) -> tuple[float, float]:
    z = NormalDist().inv_cdf(0.5 + confidence / 2)
    p = k / n
    center = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return center - half, center + half


@pytest.mark.parametrize(("k", "n"), [(0, 1), (1, 1), (0, 10), (10, 10), (3, 10), (1, 2),
                                      (12345, 10**7), (0, 10**9), (999_999, 10**6)])
@pytest.mark.parametrize("confidence", [0.5, 0.95, 0.999999])
def test_wilson_interval_matches_the_formula(k, n, confidence):
    est = wilson_interval(k, n, confidence)
    low, high = _wilson_ref(k, n, confidence)
    assert est.value == k / n and est.num_samples == n and est.method == "wilson"
    assert est.low == pytest.approx(max(low, 0.0), abs=1e-12)
    assert est.high == pytest.approx(min(high, 1.0), abs=1e-12)
    assert 0.0 <= est.low <= est.value <= est.high <= 1.0
    assert (est.low == 0.0) == (k == 0) and (est.high == 1.0) == (k == n)


def test_wilson_interval_refusals():
    with pytest.raises(ArgumentError, match=r"trials must be >= 1, got 0"):
        wilson_interval(0, 0)
    with pytest.raises(ArgumentError, match=r"successes must lie in \[0, trials=3\], got 4"):
        wilson_interval(4, 3)
    with pytest.raises(ArgumentError, match=r"successes must lie in \[0, trials=3\], got -1"):
        wilson_interval(-1, 3)
    with pytest.raises(ArgumentTypeError, match=r"successes must be an integer, got 1\.5"):
        wilson_interval(1.5, 3)
    with pytest.raises(ArgumentError, match="confidence must lie in"):
        wilson_interval(1, 3, 1.0)


def test_mean_interval_matches_student_t():
    rng = np.random.default_rng(3)
    for n in (2, 3, 30):
        x = rng.normal(size=n)
        est = mean_interval(x, 0.9)
        sem = math.sqrt(math.fsum((v - x.mean()) ** 2 for v in x) / (n - 1) / n)
        low, high = stats.t.interval(0.9, n - 1, loc=math.fsum(x) / n, scale=sem)
        assert (est.low, est.high) == pytest.approx((low, high), abs=1e-12)
        assert est.num_samples == n and est.method == "monte-carlo t"
    flat = mean_interval([2.0, 2.0, 2.0])
    assert flat.value == flat.low == flat.high == 2.0
    clipped = mean_interval([-1.0, 0.5], domain=(0.0, math.inf))
    assert clipped.value == 0.0 and clipped.low == 0.0 and clipped.high > 0
    with pytest.raises(ArgumentError, match="values must hold at least 2 samples"):
        mean_interval([1.0])
