"""Monte-Carlo estimators with confidence intervals (eqs. 4-5; Lemma B.2, docs/theory/lemma-b2.md).

- ``sequence_error_rate``: SER (eq. 5), the fraction of sequences outside supp(q), Wilson interval;
- ``generative_log_perplexity``: E_{x~p}[-log q(x)] / L (the paper's experiments; the opposite KL
  direction to eq. 4), t interval, +inf once a sample leaves supp(q); ``valid_only=True``: the
  biased mean over the samples inside supp(q); ``generative_perplexity`` is its exponential;
- ``jensen_bound``: the unbiased estimate of Lemma B.2's E_tau KL(q || p_tau), the computable
  upper bound on eq. 4's log TER(p) - log TER(q) = KL(q || p) / L at any length.
"""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np

from ._utils import MASK, as_rng, check_memory, check_positive_int, progress_bar
from .errors import ArgumentError, ArgumentTypeError
from .estimate import Estimate, check_confidence, mean_interval, wilson_interval
from .languages import Language
from .policies import is_policy
from .sampling import Denoiser, denoiser_marginals_at, resolve_denoiser
from .schedules import Plan, check_plan


def sequence_error_rate(language: Language, tokens, confidence: float = 0.95) -> Estimate:
    """SER (eq. 5) of samples ``tokens`` (num, L): share not in supp(q), Wilson interval.

    The support test is exact (Boolean semiring)."""
    ok = np.asarray(language.in_support(tokens))
    return wilson_interval(int((~ok).sum()), ok.size, confidence)


VALID_ONLY_METHOD = "monte-carlo t, valid samples only, biased"
"""``Estimate.method`` of ``generative_log_perplexity(..., valid_only=True)``."""


def generative_log_perplexity(language: Language, tokens, confidence: float = 0.95, *,
                              valid_only: bool = False) -> Estimate:
    """E_{x~p}[-log q(x)] / L in nats per token, from samples ``tokens`` (num, L) of p.

    +inf (with an infinite interval) as soon as one sample lies outside supp(q). With
    ``valid_only``: the mean of -log q(x) / L over the samples inside supp(q) only, an estimate
    of E_p[-log q(x) | x in supp q] / L, biased as an estimate of the generative
    log-perplexity (it ignores the SER mass), with a t interval whose ``num_samples`` is the
    number of valid samples (method ``VALID_ONLY_METHOD``); refused below 2 valid samples."""
    tokens = np.atleast_2d(tokens)
    values = -np.asarray(language.log_prob(tokens)) / tokens.shape[1]
    if valid_only:
        valid = values[np.asarray(language.in_support(tokens))]
        if valid.size < 2:
            raise ArgumentError(f"tokens must hold at least 2 samples inside supp q for "
                                f"valid_only, got {valid.size} of {values.size}")
        return replace(mean_interval(valid, confidence, domain=(0.0, math.inf)),
                       method=VALID_ONLY_METHOD)
    if not np.all(np.isfinite(values)):
        inf = float("inf")
        return Estimate(inf, inf, inf, "monte-carlo t", check_confidence(confidence),
                        values.size)
    # -log q(x) >= 0 for a distribution over finitely many sequences.
    return mean_interval(values, confidence, domain=(0.0, math.inf))


def generative_perplexity(language: Language, tokens, confidence: float = 0.95, *,
                          valid_only: bool = False) -> Estimate:
    """exp of ``generative_log_perplexity`` (GenPPL of §5), interval mapped through exp;
    ``valid_only`` as there."""
    est = generative_log_perplexity(language, tokens, confidence, valid_only=valid_only)
    with np.errstate(over="ignore"):
        return replace(est, value=float(np.exp(est.value)), low=float(np.exp(est.low)),
                       high=float(np.exp(est.high)))


def jensen_bound(
    language: Language,
    schedule: Plan,
    length: int,
    num_samples: int,
    denoiser: Denoiser | None = None,
    rng=None,
    confidence: float = 0.95,
    *,
    progress: bool = False,
) -> Estimate:
    """Unbiased Monte-Carlo estimate of E_tau KL(q || p_tau) in nats per sequence (Lemma B.2).

    Each sample draws x ~ q and tau ~ plan and scores
    log q(x) - sum_k sum_{j in tau_k} log p_theta(x_j | x_{T<k}); every term is one denoiser call
    on x with the positions of steps >= k masked. Divide by L for nats per token. Defined for
    plans only: an adaptive policy is refused (its tau depends on the sampled tokens).
    ``progress``: a tqdm bar over the steps on stderr (after 2 s).
    """
    if is_policy(schedule):
        raise ArgumentTypeError(
            f"schedule must be a plan for the Jensen bound, got the adaptive policy "
            f"{schedule.name} (E_tau KL(q || p_tau) is defined for state-independent plans only)"
        )
    plan = check_plan(schedule)
    length = plan.check_length(length)
    num = check_positive_int("num_samples", num_samples, 2)
    confidence = check_confidence(confidence)
    v = language.vocab_size
    # Alive at once: the draws x, the step table, a partial state (int64), the denoiser's
    # (num, L, V) output with its float64 copy, and the per-position scores.
    check_memory(f"jensen_bound(length={length}, num_samples={num})",
                 8.0 * num * length * (2 * v + 6), argument="num_samples")
    den = resolve_denoiser(language, denoiser)
    gen = as_rng(rng)
    x = language.sample(num, length, gen)
    steps = plan.draw_steps(num, length, gen)
    score = np.asarray(language.log_prob(x), dtype=np.float64).copy()
    magnitude = np.abs(score)
    order = np.argsort(steps, axis=None, kind="stable")
    bounds = np.searchsorted(steps.ravel()[order], np.arange(plan.num_steps + 1))
    for k in progress_bar(progress, np.unique(steps), desc="Jensen bound steps"):
        rows_of, cols = np.divmod(order[bounds[k]:bounds[k + 1]], length)
        partial = np.where(steps < k, x, MASK)
        probs = denoiser_marginals_at(den, partial, rows_of, cols, language.vocab_size)
        chosen = probs[np.arange(cols.size), x[rows_of, cols]]
        with np.errstate(divide="ignore"):
            terms = np.log(chosen)
        score -= np.bincount(rows_of, weights=terms, minlength=num)
        magnitude += np.bincount(rows_of, weights=np.abs(terms), minlength=num)
    # Each score is a difference of L + 1 logs: its rounding error is at most about
    # (L + 1) eps times their magnitude, so the interval is widened by that much (an exact 0,
    # e.g. the oracle revealing one token per step, stays inside it) and then clipped at 0,
    # since a KL is >= 0.
    est = mean_interval(score, confidence, domain=(0.0, math.inf))
    rounding = float(4 * (length + 1) * np.finfo(np.float64).eps * np.mean(magnitude))
    if not math.isfinite(rounding):
        return est
    return replace(est, low=max(0.0, est.low - rounding), high=est.high + rounding)
