"""Factorized parallel unmasking, simulated (THEORY.md §1 eq. 3, §11).

Denoisers map a partially revealed batch ``x`` (batch, length) with ``MASK = -1`` to per-position
distributions (batch, length, V):

- ``Oracle(language)``: the exact q(x_i | revealed tokens), the best any factorized MDM can do;
- ``PerturbedOracle(language, eps_learning)``: every masked marginal moved toward a direction until
  its KL to the oracle equals eps_learning, so Assumption 4.1 holds with equality;
- any callable with that signature (e.g. ``mdm_exact.nn.TorchDenoiser``).

The sampler: at step k, every position revealed at step k is drawn independently from the
denoiser's marginal given the tokens revealed at steps < k; revealed tokens are never re-masked.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from tqdm.auto import tqdm

from ._utils import MASK, as_rng, categorical, check_positive_int
from .errors import ArgumentError, ArgumentTypeError
from .languages import Language
from .posterior import posterior
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
        if not isinstance(language, Language):
            raise ArgumentTypeError(
                f"language must be an mdm_exact Language, got {type(language).__name__}"
            )
        self.language = language

    def __call__(self, x: np.ndarray) -> np.ndarray:
        post = posterior(self.language, x)
        marg = post.marginals
        if not np.all(post.valid):
            marg = marg.copy()
            marg[~post.valid] = 1.0 / self.language.vocab_size
        return marg

    def __repr__(self) -> str:
        return f"Oracle({self.language!r})"


def kl_rows(q: np.ndarray, p: np.ndarray) -> np.ndarray:
    """KL(q || p) along the last axis, in nats (0 log 0 = 0; +inf where q > 0 = p)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(q > 0, q * (np.log(q) - np.log(p)), 0.0)
    return terms.sum(axis=-1)


def perturb_toward(marginals: np.ndarray, eps_learning: float, direction: np.ndarray
                   ) -> tuple[np.ndarray, np.ndarray]:
    """Move each row q of ``marginals`` (..., V) to p = (1 - lam) q + lam d with KL(q || p) =
    eps_learning.

    f(lam) = KL(q || p(lam)) is convex and increasing on [0, 1] with f(0) = 0, so Newton's method
    started at lam = 1 decreases monotonically to the root (quadratically once close); a row
    stops when its step no longer changes lam. Returns ``(p, achieved_kl)``; where even lam = 1
    gives less than eps_learning (KL(q || d) < eps_learning) the row is p = d and
    ``achieved_kl`` says how far it got.
    """
    q = np.asarray(marginals, dtype=np.float64)
    d = np.broadcast_to(np.asarray(direction, dtype=np.float64), q.shape)
    flat_q = q.reshape(-1, q.shape[-1])
    flat_d = d.reshape(-1, q.shape[-1])
    lam = np.ones(flat_q.shape[0])
    active = np.flatnonzero(kl_rows(flat_q, flat_d) > eps_learning)
    for _ in range(NEWTON_ITERATIONS):
        if active.size == 0:
            break
        qa, da, la = flat_q[active], flat_d[active], lam[active]
        pa = (1 - la[:, None]) * qa + la[:, None] * da
        f = kl_rows(qa, pa) - eps_learning
        with np.errstate(divide="ignore", invalid="ignore"):
            slope = -np.where(qa > 0, qa * (da - qa) / pa, 0.0).sum(axis=1)
            step = np.where(slope > 0, f / slope, 0.0)
        new = np.clip(la - step, 0.0, la)
        lam[active] = new
        active = active[new < la]
    lam = lam.reshape(q.shape[:-1])
    p = (1 - lam[..., None]) * q + lam[..., None] * d
    return p, kl_rows(q, p)


class PerturbedOracle:
    """Oracle marginals at masked positions moved toward ``direction`` until KL(oracle || model)
    equals ``eps_learning`` (Assumption 4.1 with equality; THEORY.md §11).

    ``direction``: ``"uniform"``, ``"random"`` (one fixed distribution drawn with ``seed``), or a
    (V,) probability vector. ``achieved_kl(x)`` reports the per-position KL actually reached.
    """

    def __init__(self, language: Language, eps_learning: float, direction="uniform", seed=None):
        self.oracle = Oracle(language)
        if not (np.isfinite(eps_learning) and eps_learning >= 0):
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
            d = np.asarray(direction, dtype=np.float64)
            if d.shape != (v,) or np.any(d < 0) or abs(d.sum() - 1) > 1e-9:
                raise ArgumentError(f"direction must be a probability vector of shape ({v},)")
        self.language = language
        self.eps_learning = float(eps_learning)
        self.direction = d

    def _both(self, x):
        arr = np.atleast_2d(np.asarray(x))
        p = self.oracle(arr)
        masked = arr == MASK
        kl = np.zeros(arr.shape)
        # Only masked positions are perturbed (revealed ones stay one-hot, SUBS carry-over).
        p[masked], kl[masked] = perturb_toward(p[masked], self.eps_learning, self.direction)
        return p, kl

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return self._both(x)[0]

    def achieved_kl(self, x: np.ndarray) -> np.ndarray:
        """(batch, length) KL(oracle || model) at masked positions (0 at revealed ones)."""
        return self._both(x)[1]

    def __repr__(self) -> str:
        return f"PerturbedOracle({self.language!r}, eps_learning={self.eps_learning:g})"


def resolve_denoiser(language: Language, denoiser) -> Denoiser:
    """``denoiser`` or, when it is None, the ``Oracle`` of ``language``."""
    if denoiser is None:
        return Oracle(language)
    if not callable(denoiser):
        raise ArgumentTypeError(f"denoiser must be callable, got {type(denoiser).__name__}")
    return denoiser


def call_denoiser(denoiser: Denoiser, x: np.ndarray, vocab_size: int) -> np.ndarray:
    """The denoiser's output on ``x`` as float64 (batch, length, V) rows renormalised to 1."""
    out = np.asarray(denoiser(x), dtype=np.float64)
    if out.shape != (*x.shape, vocab_size):
        raise ArgumentError(f"denoiser returned shape {out.shape},"
            f" expected {(*x.shape, vocab_size)}")
    if not np.all(np.isfinite(out)) or np.any(out < 0):
        raise ArgumentError("denoiser returned negative or non-finite probabilities")
    return out / out.sum(axis=-1, keepdims=True)


@dataclass(frozen=True)
class SampleResult:
    """Output of ``sample``.

    ``tokens``: (num, L) int64 generated sequences; ``reveal_step``: (num, L) 0-based step at which
    each position was revealed; ``nfe``: network calls of the plain ddpm sampler (= N);
    ``nfe_cache``: (num,) network calls of ddpm_cache (only steps that reveal something).
    """

    tokens: np.ndarray
    reveal_step: np.ndarray
    nfe: int
    nfe_cache: np.ndarray


def sample(
    language: Language,
    schedule: Plan,
    length: int,
    num_samples: int,
    denoiser: Denoiser | None = None,
    rng=None,
    progress: bool = False,
) -> SampleResult:
    """Monte-Carlo factorized parallel unmasking (THEORY.md §1 inference, §11 semantics).

    One denoiser call per step, on the rows that reveal something at that step.
    """
    plan = check_plan(schedule)
    length = plan.check_length(length)
    num = check_positive_int("num_samples", num_samples)
    den = resolve_denoiser(language, denoiser)
    gen = as_rng(rng)
    steps = plan.draw_steps(num, length, gen)
    x = np.full((num, length), MASK, dtype=np.int64)
    order = np.argsort(steps, axis=None, kind="stable")
    bounds = np.searchsorted(steps.ravel()[order], np.arange(plan.num_steps + 1))
    for k in tqdm(range(plan.num_steps), disable=not progress, desc="steps", leave=False):
        flat = order[bounds[k]:bounds[k + 1]]
        if flat.size == 0:
            continue
        rows_of, cols = np.divmod(flat, length)
        rows, local = np.unique(rows_of, return_inverse=True)
        probs = call_denoiser(den, x[rows], language.vocab_size)
        x[rows_of, cols] = categorical(gen, probs[local, cols])
    nfe_cache = (np.diff(np.sort(steps, axis=1), axis=1) != 0).sum(axis=1) + 1
    return SampleResult(x, steps, plan.num_steps, nfe_cache)
