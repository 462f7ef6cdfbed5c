"""Factorized parallel unmasking, simulated (eq. 3 of the paper; docs/concepts.md).

Denoisers map a partially revealed batch ``x`` (batch, length) with ``MASK = -1`` to per-position
distributions (batch, length, V):

- ``Oracle(language)``: the exact q(x_i | revealed tokens), the best any factorized MDM can do;
- ``PerturbedOracle(language, eps_learning)``: every masked marginal moved toward a direction until
  its KL to the oracle equals eps_learning, so Assumption 4.1 holds with equality;
- any callable with that signature (e.g. ``mdm_exact.nn.TorchDenoiser``).

The sampler: at step k, every position revealed at step k is drawn independently from the
denoiser's marginal given the tokens revealed at steps < k; revealed tokens are never re-masked.
The exact ``Oracle`` is asked only for those positions (``Oracle.marginals_at``), which for an
n-gram costs a few table look-ups per revealed token instead of a pass over every row.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ._utils import (
    MASK,
    as_rng,
    categorical,
    check_memory,
    check_positive_int,
    check_probabilities,
    kl_divergence,
    progress_bar,
)
from .errors import ArgumentError, ArgumentTypeError
from .languages import Language, check_language
from .policies import Policy, is_policy
from .posterior import posterior
from .posterior_at import marginals_at
from .schedules import Plan, check_plan

Denoiser = Callable[[np.ndarray], np.ndarray]
"""(batch, length) tokens with MASK -> (batch, length, V) probabilities."""

NEWTON_ITERATIONS = 200
"""Cap on the Newton steps of ``perturb_toward`` (convergence takes far fewer)."""


class Oracle:
    """The exact posterior q(x_i | revealed tokens) (eq. 2's q_{0|t}).

    Off the support of q (revealed tokens that are jointly impossible, which factorized sampling
    can produce) the ideal denoiser is undefined; there it returns the uniform distribution. That
    choice changes nothing this library measures: such a row is already a sequence error, KL(q||p)
    ignores it, and its generative perplexity is infinite whatever follows.
    """

    def __init__(self, language: Language):
        check_language(language)
        self.language = language

    def __call__(self, x: np.ndarray) -> np.ndarray:
        post = posterior(self.language, x)
        marg = post.marginals  # a fresh array: filled in place, no second (B, L, V) copy
        marg[~post.valid] = 1.0 / self.language.vocab_size
        return marg

    def marginals_at(self, x: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        """(n, V) the oracle's marginals at the masked positions (rows[i], cols[i]) of ``x``
        (batch, L), equal to ``self(x)[rows, cols]``; ``rows`` non-decreasing and ``cols``
        ascending within a row.

        For an n-gram or a first-order chain whose table of powers fits
        (``mdm_exact.posterior_at``) only those positions are computed, by jumps between
        revealed tokens; otherwise, and for rows that table cannot resolve to full precision,
        the full posterior of the rows concerned.
        """
        used, start = np.unique(rows, return_index=True)
        ptr = np.append(start, rows.size)  # the requests of row used[b]: ptr[b]:ptr[b + 1]
        got = marginals_at(self.language.chain_arrays, x[used], ptr, np.ascontiguousarray(cols))
        if got is None:
            return self(x[used])[np.repeat(np.arange(used.size), np.diff(ptr)), cols]
        marg, _, trouble = got
        redo = np.flatnonzero(trouble)
        if redo.size:
            full = self(x[used[redo]])
            for i, b in enumerate(redo):
                marg[ptr[b]:ptr[b + 1]] = full[i, cols[ptr[b]:ptr[b + 1]]]
        return marg

    def __repr__(self) -> str:
        return f"Oracle({self.language!r})"


def perturb_toward(marginals: np.ndarray, eps_learning: float, direction: np.ndarray
                   ) -> tuple[np.ndarray, np.ndarray]:
    """Move each row q of ``marginals`` (..., V) to p = mu q + (1 - mu) d with KL(q || p) =
    eps_learning (Assumption 4.1 with equality).

    g(mu) = KL(q || p(mu)) is convex and decreasing on [0, 1] with g(1) = 0, so Newton's method
    started left of the root increases mu monotonically to it (quadratically once close); a row
    stops when its step no longer changes mu. The start is mu = 0 (p = d) where KL(q || d) is
    finite; where d has zeros that q does not (KL(q || d) = +inf, e.g. a one-hot d) it is
    mu_0 = exp(-(eps + (1 - q_Z) log(1/(1 - q_Z))) / q_Z), q_Z = q(d = 0), at which the log-sum
    inequality gives g >= eps, so p never has a zero where q is positive and nothing is NaN.
    Returns ``(p, achieved_kl)``; where even mu = 0 gives less than eps_learning
    (KL(q || d) < eps_learning) the row is p = d and ``achieved_kl`` says how far it got.
    """
    q = np.asarray(marginals, dtype=np.float64)
    d = np.broadcast_to(np.asarray(direction, dtype=np.float64), q.shape)
    if eps_learning == 0:
        # The root mu = 1 is double there (Newton would only creep toward it).
        return q.copy(), np.zeros(q.shape[:-1])
    flat_q = q.reshape(-1, q.shape[-1])
    flat_d = d.reshape(-1, q.shape[-1])
    mu = np.zeros(flat_q.shape[0])
    full = kl_divergence(flat_q, flat_d)
    blocked = np.isinf(full)
    if np.any(blocked):
        q_zero = np.where(flat_d[blocked] == 0, flat_q[blocked], 0.0).sum(axis=1)
        rest = np.clip(1.0 - q_zero, 0.0, 1.0)
        with np.errstate(divide="ignore", invalid="ignore"):
            penalty = np.where(rest > 0, -rest * np.log(rest), 0.0)
        # The smallest positive float where the bound underflows: the row then falls short of
        # eps_learning by what the float format cannot express, and achieved_kl reports it.
        mu[blocked] = np.maximum(np.exp(-(eps_learning + penalty) / q_zero),
                                 np.finfo(np.float64).tiny)
    active = np.flatnonzero(full > eps_learning)
    for _ in range(NEWTON_ITERATIONS):
        if active.size == 0:
            break
        qa, da, ma = flat_q[active], flat_d[active], mu[active]
        pa = ma[:, None] * qa + (1 - ma[:, None]) * da
        g = kl_divergence(qa, pa) - eps_learning
        with np.errstate(divide="ignore", invalid="ignore"):
            slope = -np.where(qa > 0, qa * (qa - da) / pa, 0.0).sum(axis=1)
            step = np.where((slope < 0) & (g > 0), g / slope, 0.0)
        new = np.clip(ma - step, ma, 1.0)
        mu[active] = new
        active = active[new > ma]
    mu = mu.reshape(q.shape[:-1])
    p = mu[..., None] * q + (1 - mu[..., None]) * d
    return p, kl_divergence(q, p)


class PerturbedOracle:
    """Oracle marginals at masked positions moved toward ``direction`` until KL(oracle || model)
    equals ``eps_learning`` (Assumption 4.1 with equality).

    ``direction``: ``"uniform"``, ``"random"`` (one fixed distribution drawn with ``seed``), or a
    (V,) probability vector (zeros allowed: a one-hot direction works). ``achieved_kl(x)``
    reports the per-position KL actually reached: it is below ``eps_learning`` exactly at the
    masked positions whose oracle marginal is already closer than that to the direction
    (KL(q || direction) < eps_learning), where the model outputs the direction itself; each call
    that meets such positions issues one ``UnreachedLearningErrorWarning`` with their count.
    """

    def __init__(self, language: Language, eps_learning: float, direction="uniform", seed=None):
        self.oracle = Oracle(language)
        if isinstance(eps_learning, bool) or not isinstance(eps_learning, int | float | np.number) \
                or not (np.isfinite(eps_learning) and eps_learning >= 0):
            raise ArgumentError(f"eps_learning must be a finite number >= 0, got {eps_learning!r}")
        v = language.vocab_size
        if isinstance(direction, str):
            if direction == "uniform":
                d = np.full(v, 1.0 / v)
            elif direction == "random":
                d = as_rng(seed).dirichlet(np.ones(v))
            else:
                raise ArgumentError(f"direction must be 'uniform', 'random' or a (V,) probability "
                                 f"vector, got {direction!r}")
        else:
            d = check_probabilities("direction", direction, (v,))
            d = np.array(d / d.sum())
        d.setflags(write=False)
        self.language = language
        self.eps_learning = float(eps_learning)
        self.direction = d

    def _both(self, x):
        arr = np.atleast_2d(np.asarray(x))
        post = posterior(self.language, arr)
        p = post.marginals
        p[~post.valid] = 1.0 / self.language.vocab_size  # the Oracle's convention off supp q
        masked = arr == MASK
        kl = np.zeros(arr.shape)
        # Only masked positions are perturbed (revealed ones stay one-hot, SUBS carry-over).
        p[masked], kl[masked] = perturb_toward(p[masked], self.eps_learning, self.direction)
        # Rows off the support have no oracle to be eps_learning away from: not counted.
        counted = masked & post.valid[:, None]
        short = int(np.count_nonzero(kl[counted] < self.eps_learning * (1 - 1e-9)))
        if short:
            warnings.warn(
                f"{short} of {int(counted.sum())} masked positions cannot reach "
                f"eps_learning={self.eps_learning:g}: their oracle marginal is closer than that "
                "to the direction, so the model outputs the direction there (see achieved_kl)",
                UnreachedLearningErrorWarning, stacklevel=3)
        return p, kl

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return self._both(x)[0]

    def achieved_kl(self, x: np.ndarray) -> np.ndarray:
        """(batch, length) KL(oracle || model) at masked positions (0 at revealed ones); below
        ``eps_learning`` where KL(oracle || direction) < eps_learning (then the model is the
        direction; a call meeting such positions warns once with their count)."""
        return self._both(x)[1]

    def __repr__(self) -> str:
        return f"PerturbedOracle({self.language!r}, eps_learning={self.eps_learning:g})"


class UnreachedLearningErrorWarning(UserWarning):
    """Some masked positions of a ``PerturbedOracle`` call cannot reach eps_learning."""


def resolve_denoiser(language: Language, denoiser) -> Denoiser:
    """``denoiser`` or, when it is None, the ``Oracle`` of ``language``."""
    if denoiser is None:
        return Oracle(language)
    if not callable(denoiser):
        raise ArgumentTypeError(f"denoiser must be callable, got {type(denoiser).__name__}")
    return denoiser


DENOISER_ATOL = 1e-6
"""How far a denoiser's output row may sum from 1: rows within it are renormalised, rows
further off are refused (float32 softmax outputs are off by about 1e-7)."""


def call_denoiser(denoiser: Denoiser, x: np.ndarray, vocab_size: int) -> np.ndarray:
    """The denoiser's output on ``x`` as float64 (batch, length, V) rows renormalised to 1.

    The denoiser gets a read-only copy of ``x``, so it cannot alter the caller's tokens (the
    exact engine's table of partial states). Refused, naming the first offending row: a wrong
    shape, a non-float dtype (int, bool, complex, object), NaN/inf or negative entries, and rows
    whose sum is off 1 by more than ``DENOISER_ATOL`` (all-zero rows, overflowing sums).
    """
    view = np.array(x, dtype=np.int64)
    view.setflags(write=False)
    out = np.asarray(denoiser(view))
    if out.shape != (*view.shape, vocab_size):
        raise ArgumentError(f"denoiser returned shape {out.shape},"
            f" expected {(*view.shape, vocab_size)}")
    if not np.issubdtype(out.dtype, np.floating):
        raise ArgumentTypeError(f"denoiser returned dtype {out.dtype}; probabilities must be "
                                "floating point")
    out = out.astype(np.float64)
    if not np.all(np.isfinite(out)) or np.any(out < 0):
        idx = tuple(int(i) for i in np.argwhere(~(np.isfinite(out) & (out >= 0)))[0])
        raise ArgumentError(f"denoiser returned negative or non-finite probabilities: "
                            f"{out[idx]!r} at index {idx}")
    with np.errstate(over="ignore"):
        sums = out.sum(axis=-1, keepdims=True)
    bad = ~(np.abs(sums[..., 0] - 1.0) <= DENOISER_ATOL)
    if np.any(bad):
        idx = tuple(int(i) for i in np.argwhere(bad)[0])
        raise ArgumentError(f"denoiser returned a row that is not a probability vector: row "
                            f"{idx} sums to {float(sums[idx][0])!r} (tolerance {DENOISER_ATOL})")
    return out / sums


def denoiser_marginals_at(denoiser: Denoiser, x: np.ndarray, rows: np.ndarray, cols: np.ndarray,
                          vocab_size: int) -> np.ndarray:
    """(n, V) the denoiser's marginals at the masked positions (rows[i], cols[i]) of ``x``
    (batch, L); ``rows`` non-decreasing and ``cols`` ascending within a row. The exact
    ``Oracle`` computes only those positions (``Oracle.marginals_at``, the same marginals); any
    other denoiser is called (``call_denoiser``) on whole rows, those concerned only."""
    if type(denoiser) is Oracle:
        return denoiser.marginals_at(x, rows, cols)
    used, local = np.unique(rows, return_inverse=True)
    return call_denoiser(denoiser, x[used], vocab_size)[local, cols]


@dataclass(frozen=True)
class SampleResult:
    """Output of ``sample``.

    ``tokens``: (num, L) int64 generated sequences; ``reveal_step``: (num, L) 0-based step at which
    each position was revealed (for a policy, the index of the loop step, empty TopK steps
    counted); ``nfe_per_row``: (num,) denoiser calls each row needed, the efficiency axis.

    Under a plan: ``nfe`` = N, the network calls of the plain ddpm sampler; ``nfe_cache`` =
    ``nfe_per_row``, the calls of ddpm_cache (only steps that reveal something in the row, which
    is what ``sample`` makes). Under a policy every call reveals at least one position, so
    ``nfe_per_row`` = ``nfe_cache`` = the steps the row took, and ``nfe`` is the number of
    batched calls (the most steps any row took, or TopK's non-empty steps).
    """

    tokens: np.ndarray
    reveal_step: np.ndarray
    nfe: int
    nfe_cache: np.ndarray
    nfe_per_row: np.ndarray


def _check_sample_size(language: Language, length, num_samples) -> None:
    """Refuse, before any work, a ``sample`` call above the memory budget. Alive at once:
    steps, tokens and the sort order (num, L) int64, the order of a step, and the denoiser's
    (rows, L, V) output with its float64 copy (rows <= num)."""
    check_language(language)
    num = check_positive_int("num_samples", num_samples)
    length = check_positive_int("length", length)
    check_memory(f"sample(num_samples={num}, length={length})",
                 8.0 * num * length * (2 * language.vocab_size + 5),
                 argument="num_samples or length")


def sample(
    language: Language,
    schedule: Plan | Policy,
    length: int,
    num_samples: int,
    denoiser: Denoiser | None = None,
    rng=None,
    progress: bool = False,
) -> SampleResult:
    """Monte-Carlo factorized parallel unmasking (eq. 3).

    ``schedule``: a plan, or an adaptive policy (``mdm_exact.policies``). Under a plan, one
    denoiser call per step, on the rows that reveal something at that step. Under a policy, every
    unfinished row calls the denoiser at every step (one batched call over those rows), the
    policy's ``select`` picks the positions from the marginals and the tokens are drawn from
    them, until every position is revealed.
    """
    _check_sample_size(language, length, num_samples)
    if is_policy(schedule):
        return _sample_policy(language, schedule, length, num_samples, denoiser, rng, progress)
    plan = check_plan(schedule)
    length = plan.check_length(length)
    num = check_positive_int("num_samples", num_samples)
    den = resolve_denoiser(language, denoiser)
    gen = as_rng(rng)
    steps = plan.draw_steps(num, length, gen)
    x = np.full((num, length), MASK, dtype=np.int64)
    order = np.argsort(steps, axis=None, kind="stable")
    bounds = np.searchsorted(steps.ravel()[order], np.arange(plan.num_steps + 1))
    for k in progress_bar(progress, range(plan.num_steps), desc="steps"):
        flat = order[bounds[k]:bounds[k + 1]]
        if flat.size == 0:
            continue
        rows_of, cols = np.divmod(flat, length)
        probs = denoiser_marginals_at(den, x, rows_of, cols, language.vocab_size)
        x[rows_of, cols] = categorical(gen, probs)
    nfe_cache = (np.diff(np.sort(steps, axis=1), axis=1) != 0).sum(axis=1) + 1
    return SampleResult(x, steps, plan.num_steps, nfe_cache, nfe_cache)


def _sample_policy(language: Language, policy: Policy, length: int, num_samples: int,
                   denoiser, rng, progress: bool) -> SampleResult:
    """The adaptive loop of ``sample``: rows drop out once fully revealed."""
    length = policy.check_length(length)
    num = check_positive_int("num_samples", num_samples)
    den = resolve_denoiser(language, denoiser)
    gen = as_rng(rng)
    x = np.full((num, length), MASK, dtype=np.int64)
    reveal_step = np.full((num, length), -1, dtype=np.int64)
    nfe = np.zeros(num, dtype=np.int64)
    active = np.arange(num)
    left = np.full(num, length)  # masked positions of each active row
    calls = 0
    with progress_bar(progress, total=num, desc="rows done") as bar:
        for k in range(policy.max_steps(length)):
            if active.size == 0:
                break
            if policy.step_is_empty(k, length):
                continue
            state = x[active]
            probs = call_denoiser(den, state, language.vocab_size)
            chosen = policy.select(probs, state, k, rng=gen)
            rows, cols = np.nonzero(chosen)
            x[active[rows], cols] = categorical(gen, probs[rows, cols])
            reveal_step[active[rows], cols] = k
            nfe[active] += 1
            calls += 1
            left = left - chosen.sum(axis=1)
            still = left > 0
            bar.update(int(active.size - still.sum()))
            active, left = active[still], left[still]
    if active.size:
        raise ArgumentError(f"policy {policy!r} left {active.size} rows unfinished after "
                            f"{policy.max_steps(length)} steps")
    return SampleResult(x, reveal_step, calls, nfe, nfe)
