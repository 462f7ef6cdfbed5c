"""Exact log p(x) per sequence, and the KL / TER estimates built on it.

p is the distribution factorized parallel unmasking produces with a plan or policy (eq. 3).
``log_likelihood`` computes log p(x) exactly, one number per row of x:

- a deterministic policy (``TopK``, ``Threshold``, ``EntropyBounded``, ``Factor``) or a
  ``DeterministicPlan``, at any length, for any language and denoiser: the set revealed at each
  step is a function of the state, so exactly one trajectory produces x and
  log p(x) = sum_k sum_{j in tau_k(s_k)} log p_theta(x_j | s_k), s_k the state of x before step k;
  one batched denoiser call per step;
- every plan the exact engine enumerates (a ``Schedule``, ``FixedCountPlan`` or ``RandomTopK``)
  while its (V+1)^L partial states fit the memory budget: p(x) read from
  ``exact.output_distribution``.

``kl_estimate`` draws x ~ q and averages the exact per-sample log q(x) - log p(x): an unbiased
estimate of KL(q || p) (Lemma B.2's left-hand side, not its Jensen upper bound) with a t interval,
per sequence and per token, and eq. 4's log TER = E_q[-log p(x)] / L.
``ser_kl_lower_bound`` gives KL(q || p) >= -log(1 - SER(p)), which needs no likelihood at all.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

from ._utils import MASK, as_rng, check_positive_int, check_tokens, memory_budget
from .chain_likelihood import SUPPORTED_LANGUAGES, chain_log_likelihood
from .chain_likelihood import supports as chain_supports
from .errors import ArgumentError, ArgumentTypeError, BudgetError
from .estimate import Estimate, check_confidence, exact, mean_interval
from .languages import Language, check_language
from .policies import is_policy
from .sampling import Denoiser, call_denoiser, resolve_denoiser
from .schedules import DeterministicPlan, FixedCountPlan, Schedule

KL_METHOD = "exact per sample, monte-carlo over x"
"""``Estimate.method`` of the ``kl_estimate`` fields: each sample's log q(x) - log p(x) is exact,
only the average over x ~ q is Monte Carlo."""

SUPPORTED = ("deterministic policies and DeterministicPlan at any length; a Schedule with "
             "the Oracle or a PerturbedOracle of a 2-gram (or an HMM with a permutation emission "
             "matrix) at any length (the interval DP); Schedule, "
             "FixedCountPlan and RandomTopK where the exact engine's (V+1)^L partial states fit "
             "the memory budget")
"""What ``log_likelihood`` computes exactly, as its refusals state it."""


def _check_plan(plan):
    if is_policy(plan) or isinstance(plan, Schedule | FixedCountPlan | DeterministicPlan):
        return plan
    raise ArgumentTypeError("plan must be a Schedule, FixedCountPlan, DeterministicPlan or a "
                            f"policy of mdm_exact.policies, got {type(plan).__name__}")


def _unique_trajectory(plan) -> bool:
    """Whether the set revealed at each step is a function of the state alone."""
    return isinstance(plan, DeterministicPlan) or (is_policy(plan) and plan.deterministic)


def _planned_sets(plan: DeterministicPlan):
    """``plan.sets`` as a ``select(marginals, x, step)`` rule (same set in every row)."""

    def select(marginals: np.ndarray, x: np.ndarray, step: int) -> np.ndarray:
        chosen = np.zeros(x.shape, dtype=bool)
        chosen[:, plan.sets[step]] = True
        return chosen

    return select


def _trajectory_log_likelihood(plan, x: np.ndarray, den: Denoiser, vocab_size: int
                               ) -> np.ndarray:
    """Sum over the unique trajectory of log p_theta(x_j | state) at the revealed positions.

    Rows leave the batch once they are complete or their log p is -inf (nothing can raise it),
    so each step is one denoiser call on the rows still running."""
    num, length = x.shape
    if isinstance(plan, DeterministicPlan):
        select, num_steps = _planned_sets(plan), plan.num_steps
        empty = [s.size == 0 for s in plan.sets]
    else:
        select, num_steps = plan.select, plan.max_steps(length)
        empty = [plan.step_is_empty(k, length) for k in range(num_steps)]
    state = np.full_like(x, MASK)
    out = np.zeros(num)
    active = np.arange(num)
    cols = np.arange(length)[None, :]
    for step in range(num_steps):
        if active.size == 0:
            break
        if empty[step]:
            continue
        current = state[active]
        probs = call_denoiser(den, current, vocab_size)
        chosen = np.asarray(select(probs, current, step), dtype=bool)
        if chosen.shape != current.shape or np.any(chosen & (current != MASK)):
            raise ArgumentError(f"plan {plan!r} selected a revealed position or returned shape "
                                f"{chosen.shape} at step {step}, expected {current.shape}")
        target = x[active]
        picked = probs[np.arange(active.size)[:, None], cols, target]
        with np.errstate(divide="ignore"):
            out[active] += np.where(chosen, np.log(picked), 0.0).sum(axis=1)
        state[active] = np.where(chosen, target, current)
        running = np.isfinite(out[active]) & np.any(state[active] == MASK, axis=1)
        active = active[running]
    if active.size:
        raise ArgumentError(f"plan {plan!r} left positions of row {int(active[0])} masked after "
                            f"its {num_steps} steps")
    return out


def _engine_log_likelihood(language: Language, plan, x: np.ndarray, den: Denoiser) -> np.ndarray:
    """log of p(x) read from the exact engine's output distribution."""
    from .exact import output_distribution

    length = x.shape[1]
    try:
        p = output_distribution(language, plan, length, den)
    except BudgetError as err:
        if isinstance(plan, Schedule):
            why = ("the interval DP needs the Oracle or a PerturbedOracle of a first-order chain "
                   f"({SUPPORTED_LANGUAGES})")
        else:
            why = ("a fixed-count plan couples the segments between revealed positions, so the "
                   "interval DP does not apply")
        raise BudgetError(f"log_likelihood of plan {plan!r} at length {length}: {why}, and the "
                          f"exact engine is refused: {err} (exact at any length: {SUPPORTED})"
                          ) from None
    with np.errstate(divide="ignore"):
        return np.log(p[tuple(x.T)])


CHAIN_SECONDS_PER_OPERATION = 2e-10
"""Measured cost of one multiply-add of the interval DP on one core (benchmarks/
bench_chain_likelihood.py: 0.87 s at L = 256, N = 16), for ``likelihood_seconds``."""


def likelihood_method(language: Language, plan, length: int, denoiser: Denoiser | None = None
                      ) -> str | None:
    """How ``log_likelihood`` would compute log p(x) at ``length``: ``"trajectory"`` (unique
    trajectory: deterministic policy or DeterministicPlan), ``"chain"`` (the interval DP of a
    first-order chain), ``"engine"`` (the exact engine within the memory budget), or None where
    it would refuse. Never raises on a supported-but-unsuitable combination."""
    from .exact import output_distribution_bytes

    plan = _check_plan(plan)
    den = resolve_denoiser(language, denoiser)
    if _unique_trajectory(plan):
        return "trajectory"
    if chain_supports(language, plan, den):
        return "chain"
    if output_distribution_bytes(language.vocab_size, length) <= memory_budget():
        return "engine"
    return None


def likelihood_seconds(language: Language, plan, length: int, num_rows: int,
                       denoiser: Denoiser | None = None) -> float:
    """Rough one-core time of ``log_likelihood`` on ``num_rows`` rows of ``length`` tokens:
    O(N L^4 / 12) multiply-adds per row for the interval DP; 0 for the other methods (a
    trajectory costs N denoiser calls, the engine is bounded by its memory budget)."""
    if likelihood_method(language, plan, length, denoiser) != "chain":
        return 0.0
    steps = int(np.count_nonzero(plan.masses))
    return num_rows * steps * length**4 / 12 * CHAIN_SECONDS_PER_OPERATION


def log_likelihood(language: Language, plan, x, denoiser: Denoiser | None = None) -> np.ndarray:
    """(batch,) float64 exact log p(x) of each row of ``x`` (batch, length), in nats.

    p is the output distribution of factorized unmasking with ``plan`` (a Schedule,
    FixedCountPlan, DeterministicPlan or policy) and ``denoiser`` (default: the Oracle of
    ``language``), eq. 3. For a unique trajectory (deterministic policy, DeterministicPlan):
    log p(x) = sum_k sum_{j in tau_k(s_k)} log p_theta(x_j | s_k), one batched denoiser call per
    step; a Schedule with the Oracle or a PerturbedOracle of a first-order chain: the interval DP
    of ``chain_likelihood`` at any length; otherwise the exact engine at small L. ``-inf`` where
    p(x) = 0; x outside supp q gets its finite log p where the sampler can produce it.
    """
    check_language(language)
    plan = _check_plan(plan)
    tokens = check_tokens(x, language.vocab_size, allow_mask=False)
    plan.check_length(tokens.shape[1])
    den = resolve_denoiser(language, denoiser)
    if tokens.shape[0] == 0:
        return np.zeros(0)
    if _unique_trajectory(plan):
        return _trajectory_log_likelihood(plan, tokens, den, language.vocab_size)
    if chain_supports(language, plan, den):
        return chain_log_likelihood(language, plan, tokens, den)
    return _engine_log_likelihood(language, plan, tokens, den)


@dataclass(frozen=True)
class KLEstimate:
    """Result of ``kl_estimate`` (nats).

    ``kl``: KL(q || p) per sequence; ``kl_per_token``: the same / L (Theorem 4.2's quantity,
    the TER gap log TER(p) - log TER(q)); ``log_ter``: eq. 4, E_q[-log p(x)] / L, per token;
    each an ``Estimate`` with method ``KL_METHOD``. ``exact_kl``: the exact KL(q || p) per
    sequence from ``exact.exact_metrics`` where the exact engine fits the memory budget, else
    None; ``exact_kl_per_token``: the same / L.
    """

    kl: Estimate
    kl_per_token: Estimate
    log_ter: Estimate
    exact_kl: float | None
    exact_kl_per_token: float | None

    def as_dict(self) -> dict:
        """The fields as a JSON-ready dict."""
        return {"kl": self.kl.as_dict(), "kl_per_token": self.kl_per_token.as_dict(),
                "log_ter": self.log_ter.as_dict(), "exact_kl": self.exact_kl,
                "exact_kl_per_token": self.exact_kl_per_token}


def _interval(values: np.ndarray, confidence: float) -> Estimate:
    """t interval of ``values``; an infinite mean (some p(x) = 0) has an infinite interval."""
    if np.all(np.isfinite(values)):
        return replace(mean_interval(values, confidence), method=KL_METHOD)
    inf = math.inf
    return Estimate(inf, inf, inf, KL_METHOD, confidence, values.size)


def _exact_kl(language: Language, plan, length: int, den: Denoiser) -> float | None:
    from .exact import exact_metrics

    try:
        return float(exact_metrics(language, plan, length, den).kl)
    except BudgetError:
        return None


def kl_estimate(
    language: Language,
    plan,
    length: int,
    num_samples: int,
    denoiser: Denoiser | None = None,
    rng=None,
    confidence: float = 0.95,
) -> KLEstimate:
    """KL(q || p) and eq. 4's log TER from x ~ q with exact per-sample log q(x) - log p(x).

    KL = E_q[log q(x) - log p(x)] (Lemma B.2's left-hand side), log TER = E_q[-log p(x)] / L;
    ``num_samples`` draws of x from ``language`` with ``rng``, log p(x) from ``log_likelihood``
    (so the same plans are supported), t intervals at ``confidence``. The KL interval and value
    are clipped at 0 (KL >= 0; a negative mean is sampling noise). ``exact_kl`` (and
    ``exact_kl_per_token``) is filled in where the exact engine fits the memory budget.
    """
    check_language(language)
    plan = _check_plan(plan)
    length = plan.check_length(length)
    num = check_positive_int("num_samples", num_samples, 2)
    confidence = check_confidence(confidence)
    den = resolve_denoiser(language, denoiser)
    x = language.sample(num, length, as_rng(rng))
    log_p = log_likelihood(language, plan, x, den)
    log_q = np.asarray(language.log_prob(x), dtype=np.float64)
    kl = _interval(log_q - log_p, confidence)
    kl = replace(kl, value=max(kl.value, 0.0), low=max(kl.low, 0.0), high=max(kl.high, 0.0))
    exact_kl = _exact_kl(language, plan, length, den)
    return KLEstimate(
        kl=kl,
        kl_per_token=kl.scaled(1.0 / length),
        log_ter=_interval(-log_p / length, confidence),
        exact_kl=exact_kl,
        exact_kl_per_token=None if exact_kl is None else exact_kl / length,
    )


def kl_estimate_within(
    language: Language,
    plan,
    length: int,
    num_samples: int,
    denoiser: Denoiser | None = None,
    rng=None,
    confidence: float = 0.95,
    *,
    max_seconds: float = math.inf,
) -> tuple[KLEstimate | None, str | None]:
    """``(kl_estimate(...), None)`` where ``log_likelihood`` is exact for this language, plan
    and length (``likelihood_method``) and ``likelihood_seconds`` expects at most
    ``max_seconds``; else ``(None, the reason)`` (the Jensen bound and ``ser_kl_lower_bound``
    still bracket the KL). Used by ``mdm-exact simulate`` and the cells of ``mdm_exact.sweep``."""
    if likelihood_method(language, plan, length, denoiser) is None:
        return None, ("n/a: no exact likelihood for this language and plan at this length "
                      "(bracketed by the two bounds)")
    seconds = likelihood_seconds(language, plan, length, num_samples, denoiser)
    if seconds > max_seconds:
        return None, f"not computed: about {seconds:.0f} s for {num_samples} samples"
    return kl_estimate(language, plan, length, num_samples, denoiser, rng, confidence), None


def ser_kl_lower_bound(ser) -> Estimate:
    """KL(q || p) >= -log(1 - SER(p)) per sequence (data processing on the indicator of supp q:
    q puts mass 1 on it, p mass 1 - SER), with the SER interval mapped through the same
    increasing function.

    ``ser``: an ``Estimate`` (e.g. ``metrics.sequence_error_rate``) or an exact SER in [0, 1];
    SER = 1 gives +inf.
    """
    est = ser if isinstance(ser, Estimate) else None
    if est is None:
        if isinstance(ser, bool) or not isinstance(ser, int | float | np.integer | np.floating):
            raise ArgumentTypeError(
                f"ser must be an Estimate or a number, got {type(ser).__name__}")
        est = exact(float(ser))
    for name, value in (("value", est.value), ("low", est.low), ("high", est.high)):
        if not 0.0 <= value <= 1.0:
            raise ArgumentError(f"ser must lie in [0, 1], got {name} = {value!r}")

    def bound(s: float) -> float:
        return math.inf if s == 1.0 else -math.log1p(-s)

    method = "exact" if est.exact else f"-log(1 - SER), {est.method}"
    return replace(est, value=bound(est.value), low=bound(est.low), high=bound(est.high),
                   method=method)


__all__ = ["KL_METHOD", "KLEstimate", "kl_estimate", "kl_estimate_within", "likelihood_method",
           "likelihood_seconds", "log_likelihood", "ser_kl_lower_bound"]
