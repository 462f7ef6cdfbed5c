"""A trained network as an ``mdm_exact`` denoiser, and the samplers built on the simulator.

``TorchDenoiser`` turns a ``Transformer`` into the callable ``mdm_exact.sampling.sample`` takes:
(batch, length) tokens with ``MASK = -1`` -> (batch, length, V) float64 probabilities. The
softmax is computed in float32, cast to float64 and renormalised; the exact float64 categorical
draw is the simulator's. Revealed positions carry over as one-hot rows (SUBS).

The samplers are thin wrappers over ``mdm_exact.sampling.sample`` (any ``Schedule``,
``FixedCountPlan`` or ``DeterministicPlan``). They differ only in what the network costs
(Appendix D); given the same ``rng`` they return the same tokens, since an unchanged input gives
an unchanged output:

- ``ddpm``: the network runs at every one of the N steps, so NFE = N per sequence;
- ``ddpm_cache``: the network re-runs only after a step that revealed something, so a sequence
  pays one call per non-empty step (E[NFE] = sum_k 1 - (1 - p^(k))^L <= min(N, L));
- ``fixed_count``: ``ddpm_cache`` on ``FixedCountPlan.even(length, N)``;
- ``autoregressive``: a causal model decoding left to right, NFE = L.

``Generation.network_calls`` counts the batched denoiser calls the simulation actually made
(``CachedDenoiser`` answers a repeated identical batch from memory).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .._utils import MASK, check_positive_int, check_tokens
from ..errors import ArgumentError, ArgumentTypeError
from ..languages import Language
from ..sampling import Denoiser, sample
from ..schedules import DeterministicPlan, FixedCountPlan, Plan
from .model import Transformer, model_inputs, resolve_device

DEFAULT_BATCH_SIZE = 1024
"""Rows per forward pass of ``TorchDenoiser`` (bounds memory on long evaluations)."""


class TorchDenoiser:
    """A ``Transformer`` as a denoiser: (batch, length) int, ``MASK = -1`` -> (batch, length, V).

    For an MDM, position i gets p_theta(x_i | revealed tokens). For an AR model, position j gets
    p_theta(x_j | x_<j), which is the conditional given the revealed tokens only when those form
    a prefix; other inputs are refused (use it with left-to-right plans). ``calls`` counts
    forward passes (one per call, more when a call is split into ``batch_size`` chunks).
    """

    def __init__(self, model: Transformer, device: str | torch.device | None = None,
                 batch_size: int = DEFAULT_BATCH_SIZE):
        if not isinstance(model, Transformer):
            raise ArgumentTypeError(f"model must be an mdm_exact.nn Transformer, got "
                            f"{type(model).__name__}")
        self.device = (next(model.parameters()).device if device is None
                       else resolve_device(device))
        self.model = model.to(self.device).eval()
        self.config = model.config
        self.batch_size = check_positive_int("batch_size", batch_size)
        self.calls = 0

    @torch.no_grad()
    def __call__(self, x) -> np.ndarray:
        arr = check_tokens(x, self.config.vocab_size)
        if arr.shape[1] > self.config.max_length:
            raise ArgumentError(f"length must be <= the model's max_length "
                             f"{self.config.max_length}, got {arr.shape[1]}")
        revealed = arr != MASK
        if self.config.kind == "ar" and np.any(revealed[:, 1:] & ~revealed[:, :-1]):
            raise ArgumentError("an autoregressive denoiser needs the revealed tokens of every row "
                             "to form a prefix (use a left-to-right plan)")
        out = np.empty((*arr.shape, self.config.vocab_size))
        for start in range(0, arr.shape[0], self.batch_size):
            chunk = torch.tensor(arr[start:start + self.batch_size], device=self.device)
            with torch.autocast(device_type=self.device.type, dtype=torch.bfloat16,
                                enabled=self.device.type == "cuda"):
                logits = self.model(model_inputs(self.config, chunk))
            probs = torch.softmax(logits.float(), dim=-1).cpu().numpy().astype(np.float64)
            out[start:start + self.batch_size] = probs
            self.calls += 1
        out /= out.sum(axis=-1, keepdims=True)
        rows, cols = np.nonzero(revealed)
        out[rows, cols] = 0.0
        out[rows, cols, arr[rows, cols]] = 1.0
        return out

    def __repr__(self) -> str:
        return f"TorchDenoiser(kind={self.config.kind!r}, device={str(self.device)!r})"


class CachedDenoiser:
    """Memoizes ``denoiser`` while its input batch is unchanged (MDLM's ddpm_cache).

    ``calls``: calls that reached ``denoiser``; ``requests``: all calls.
    """

    def __init__(self, denoiser: Denoiser):
        if not callable(denoiser):
            raise ArgumentTypeError(f"denoiser must be callable, got {type(denoiser).__name__}")
        self.denoiser = denoiser
        self.calls = 0
        self.requests = 0
        self._last_input: np.ndarray | None = None
        self._last_output: np.ndarray | None = None

    def __call__(self, x) -> np.ndarray:
        arr = np.asarray(x)
        self.requests += 1
        if self._last_input is None or not np.array_equal(arr, self._last_input):
            self._last_output = np.asarray(self.denoiser(arr))
            self._last_input = arr.copy()
            self.calls += 1
        return self._last_output


@dataclass(frozen=True)
class Generation:
    """Samples and their cost.

    ``tokens``: (num, L) int64; ``reveal_step``: (num, L) 0-based step of each position;
    ``nfe``: (num,) network evaluations each sequence costs under ``sampler``;
    ``network_calls``: batched denoiser calls the simulation made for the whole batch.
    """

    tokens: np.ndarray
    reveal_step: np.ndarray
    nfe: np.ndarray
    network_calls: int
    sampler: str


def _generate(denoiser: Denoiser, language: Language, plan: Plan, length: int, num_samples: int,
              rng, sampler: str) -> Generation:
    cached = CachedDenoiser(denoiser)
    res = sample(language, plan, length, num_samples, cached, rng)
    nfe = res.nfe_cache if sampler != "ddpm" else np.full(num_samples, res.nfe)
    return Generation(res.tokens, res.reveal_step, nfe, cached.calls, sampler)


def ddpm(denoiser: Denoiser, language: Language, plan: Plan, length: int, num_samples: int,
         rng=None) -> Generation:
    """Ancestral sampling with a network call at every step: NFE = N per sequence."""
    return _generate(denoiser, language, plan, length, num_samples, rng, "ddpm")


def ddpm_cache(denoiser: Denoiser, language: Language, plan: Plan, length: int,
               num_samples: int, rng=None) -> Generation:
    """Ancestral sampling that re-runs the network only after a step that revealed something
    (Appendix D): NFE = number of non-empty steps of each sequence."""
    return _generate(denoiser, language, plan, length, num_samples, rng, "ddpm_cache")


def fixed_count(denoiser: Denoiser, language: Language, num_steps: int, length: int,
                num_samples: int, rng=None) -> Generation:
    """``ddpm_cache`` revealing floor(L/N) or ceil(L/N) uniformly chosen positions per step
    (``FixedCountPlan.even``; LLaDA's random remasking)."""
    plan = FixedCountPlan.even(length, num_steps)
    return _generate(denoiser, language, plan, length, num_samples, rng, "fixed_count")


def autoregressive(denoiser: Denoiser, language: Language, length: int, num_samples: int,
                   rng=None) -> Generation:
    """Left-to-right decoding, one token per step: NFE = L per sequence."""
    plan = DeterministicPlan.left_to_right(length)
    return _generate(denoiser, language, plan, length, num_samples, rng, "autoregressive")
