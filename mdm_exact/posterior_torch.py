"""The exact masked posterior in torch: ``posterior(..., backend="torch", device=...)``.

For users who train on a GPU and want the oracle q(x_i = v | revealed tokens) (eq. 2's
q_{0|t}; docs/concepts.md) beside their model without a round trip through numpy: tokens may
be a torch tensor on the device, the results are torch tensors on that device. HMMs run on their
(initial, transition, emission) arrays, n-grams on their dense state chain (state
(x_j, .., x_{j+n-2}), S = V^(n-1) states, emitting its first token); Example C.7 has no chain
and stays on the numba backend.

Numerics, as in ``mdm_exact.posterior``: a batched scaled forward-backward (messages rescaled to
sum 1 at every position, log-evidence = sum of the logs of the scale factors), in float64 unless
``dtype`` says otherwise. Exact zeros: whether a row is possible (``valid``, ``in_support``) is
decided by a separate Boolean-semiring forward pass on the zero patterns (0/1 matrix products,
exact in any float type up to 2^24 states), never by a scaled message underflowing; a possible
row whose scaled messages come near the float range (smallest positive product below
``mdm_exact.posterior.TINY`` in float64) is recomputed in log space (log-sum-exp), so a
possible row never gets NaN or a spurious zero. Impossible rows get NaN marginals and ``-inf``
log-evidence, like the numba engine.

Importing this module needs torch (``pip install 'mdm_exact[torch]'``).
"""

from __future__ import annotations

try:
    import torch
except ImportError as err:  # pragma: no cover - only without the torch extra
    raise ImportError("backend='torch' needs PyTorch, which is not installed: "
                      "pip install 'mdm_exact[torch]'", name="torch") from err

import numpy as np

from ._utils import MASK, check_memory
from .errors import ArgumentError, ArgumentTypeError
from .posterior import (
    TINY,
    ChainArrays,
    ChainSource,
    HMMArrays,
    NGramArrays,
    Posterior,
    _arrays_of,
)

DTYPES = (torch.float64, torch.float32)
"""Floating types the torch backend computes in (float64 is the default and the exact one)."""


def _check_dtype(dtype) -> torch.dtype:
    if dtype is None:
        return torch.float64
    if dtype not in DTYPES:
        raise ArgumentError(f"dtype must be torch.float64 or torch.float32, got {dtype!r}")
    return dtype


def _chain_arrays(language: ChainSource | ChainArrays) -> HMMArrays | NGramArrays:
    arrays = _arrays_of(language)
    if not isinstance(arrays, HMMArrays | NGramArrays):
        raise ArgumentError(f"backend='torch' supports HMMs and n-grams, got "
                            f"{type(arrays).__name__} (use the default backend)")
    return arrays


def _state_chain(arrays: HMMArrays | NGramArrays) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(initial (S,), transition (S, S), emission (S, V)) of ``arrays`` as float64 numpy."""
    if isinstance(arrays, HMMArrays):
        return arrays.initial, arrays.transition, arrays.emission
    v = arrays.vocab_size
    s = v ** (arrays.order - 1)
    states = np.arange(s)
    transition = np.zeros((s, s))
    transition[states[:, None], (states[:, None] * v + np.arange(v)) % s] = \
        arrays.transition.reshape(s, v)
    emission = np.zeros((s, v))
    emission[states, states // v ** (arrays.order - 2)] = 1.0
    return arrays.initial.ravel(), transition, emission


class _TorchChain:
    """A chain's tables on one device in one dtype, and the bounds of the trouble test."""

    def __init__(self, arrays: ChainArrays, device, dtype):
        initial, transition, emission = _state_chain(arrays)
        self.initial = torch.tensor(initial, dtype=dtype, device=device)
        self.transition = torch.tensor(transition, dtype=dtype, device=device)
        self.emission = torch.tensor(emission, dtype=dtype, device=device)
        self.num_states, self.vocab_size = emission.shape
        min_emit = float(emission[emission > 0].min())
        min_start = min(float(initial[initial > 0].min()),
                        float(transition[transition > 0].min()))
        self.min_step, self.min_emit = min_start * min_emit, min_emit
        # float64 uses the numba engine's bound; float32 the same margin above its own range.
        self.tiny = TINY if dtype == torch.float64 else float(torch.finfo(dtype).tiny) * 2.0**24


def _tokens(arrays: ChainArrays, x, device) -> tuple[torch.Tensor, bool]:
    """``x`` as a (batch, length) int64 tensor on ``device`` (checked like the numba engine's
    tokens: integers in MASK .. V-1, a positive length); whether it was one row."""
    if isinstance(x, torch.Tensor):
        if x.dtype.is_floating_point or x.dtype.is_complex or x.dtype == torch.bool:
            raise ArgumentTypeError(f"x must hold integer tokens, got dtype {x.dtype}")
        t = x.to(device=device, dtype=torch.int64)
    else:
        arr = np.asarray(x)
        if arr.dtype.kind not in "iu":
            raise ArgumentTypeError(f"x must hold integer tokens, got dtype {arr.dtype}")
        t = torch.as_tensor(arr.astype(np.int64), device=device)
    single = t.ndim == 1
    if single:
        t = t[None]
    if t.ndim != 2 or t.shape[1] == 0:
        raise ArgumentError(f"x must have shape (batch, length) with length >= 1, "
                            f"got {tuple(t.shape)}")
    if t.numel() and (int(t.min()) < MASK or int(t.max()) >= arrays.vocab_size):
        raise ArgumentError(f"x must hold tokens in {MASK} (masked) .. "
                            f"{arrays.vocab_size - 1}, got values in {int(t.min())} .. "
                            f"{int(t.max())}")
    return t, single


def _device_of(x, device) -> torch.device:
    if device is not None:
        return torch.device(device)
    return x.device if isinstance(x, torch.Tensor) else torch.device("cpu")


def _evidence(chain: _TorchChain, x: torch.Tensor) -> torch.Tensor:
    """(B, L, S) emission factor of every position: E[:, x_j], ones where masked."""
    revealed = x >= 0
    ev = chain.emission.T[x.clamp(min=0)]
    return torch.where(revealed[..., None], ev, torch.ones_like(ev))


def _support(chain: _TorchChain, x: torch.Tensor) -> torch.Tensor:
    """(B,) Boolean-semiring forward pass: some hidden path explains the revealed tokens."""
    step = (chain.transition > 0).to(chain.transition.dtype)
    ev = _evidence(chain, x) > 0
    reach = (chain.initial > 0) & ev[:, 0]
    for j in range(1, x.shape[1]):
        reach = ((reach.to(step.dtype) @ step) > 0) & ev[:, j]
    return reach.any(dim=1)


def _lowest(messages: torch.Tensor) -> torch.Tensor:
    """(B,) smallest positive entry of each row of (B, S) messages (1 where none)."""
    return torch.where(messages > 0, messages, torch.ones_like(messages)).amin(dim=1)


def _scaled(chain: _TorchChain, x: torch.Tensor, with_marginals: bool):
    """Scaled forward-backward: (marginals (B, L, V) or None, log-evidence (B,), lows (B,))."""
    batch, length = x.shape
    ev = _evidence(chain, x)
    a = chain.initial * ev[:, 0]
    log_z = torch.zeros(batch, dtype=a.dtype, device=a.device)
    low = torch.ones(batch, dtype=a.dtype, device=a.device)
    alpha = torch.empty((batch, length, chain.num_states), dtype=a.dtype, device=a.device) \
        if with_marginals else None
    for j in range(length):
        if j:
            a = (a @ chain.transition) * ev[:, j]
        total = a.sum(dim=1)
        dead = ~(total > 0)
        low = torch.where(dead, torch.zeros_like(low), low)
        a = a / torch.where(dead, torch.ones_like(total), total)[:, None]
        log_z = log_z + torch.log(total)
        low = torch.minimum(low, _lowest(a))
        if with_marginals:
            alpha[:, j] = a
    if not with_marginals:
        return None, log_z, low
    marg = torch.empty((batch, length, chain.vocab_size), dtype=a.dtype, device=a.device)
    b = torch.ones_like(a)
    for j in range(length - 1, -1, -1):
        if j < length - 1:
            b = (ev[:, j + 1] * b) @ chain.transition.T
            total = b.sum(dim=1)
            dead = ~(total > 0)
            low = torch.where(dead, torch.zeros_like(low), low)
            b = b / torch.where(dead, torch.ones_like(total), total)[:, None]
            low = torch.minimum(low, _lowest(b))
        tok = (alpha[:, j] * b) @ chain.emission
        total = tok.sum(dim=1)
        marg[:, j] = tok / torch.where(total > 0, total, torch.ones_like(total))[:, None]
    return marg, log_z, low


def _log_space(chain: _TorchChain, x: torch.Tensor, with_marginals: bool):
    """Forward-backward in log space (log-sum-exp): nothing underflows, an impossible event is
    exactly -inf. Returns (marginals (B, L, V) or None, log-evidence (B,))."""
    batch, length = x.shape
    log_a = torch.log(chain.transition)  # log 0 = -inf: impossible steps stay impossible
    log_e = torch.log(chain.emission)
    lev = torch.log(_evidence(chain, x))
    la = torch.empty((batch, length, chain.num_states), dtype=log_a.dtype, device=log_a.device)
    la[:, 0] = torch.log(chain.initial) + lev[:, 0]
    for j in range(1, length):
        la[:, j] = torch.logsumexp(la[:, j - 1, :, None] + log_a, dim=1) + lev[:, j]
    log_z = torch.logsumexp(la[:, -1], dim=1)
    if not with_marginals:
        return None, log_z
    marg = torch.empty((batch, length, chain.vocab_size), dtype=la.dtype, device=la.device)
    lb = torch.zeros_like(la[:, 0])
    for j in range(length - 1, -1, -1):
        if j < length - 1:
            lb = torch.logsumexp(log_a + (lev[:, j + 1] + lb)[:, None, :], dim=2)
        lv = torch.logsumexp((la[:, j] + lb)[:, :, None] + log_e, dim=1)
        marg[:, j] = torch.softmax(lv, dim=1)
    return marg, log_z


def _run(arrays: ChainArrays, x: torch.Tensor, dtype, with_marginals: bool):
    """(marginals or None, log-evidence, valid) with the Boolean support test and the log-space
    redo of rows in trouble."""
    chain = _TorchChain(arrays, x.device, dtype)
    valid = _support(chain, x)
    marg, log_z, low = _scaled(chain, x, with_marginals)
    trouble = valid & ((low * chain.min_step < chain.tiny)
                       | (low * low * chain.min_emit < chain.tiny))
    rows = torch.nonzero(trouble).flatten()
    if rows.numel():
        redo_marg, redo_z = _log_space(chain, x[rows], with_marginals)
        log_z[rows] = redo_z
        if with_marginals:
            marg[rows] = redo_marg
    log_z = torch.where(valid, log_z.clamp(max=0.0), torch.full_like(log_z, -np.inf))
    if with_marginals:
        revealed = x >= 0
        onehot = torch.nn.functional.one_hot(x.clamp(min=0), chain.vocab_size).to(marg.dtype)
        marg = torch.where(revealed[..., None], onehot, marg)
        marg[~valid] = float("nan")
    return marg, log_z, valid


def _bytes(arrays: ChainArrays, x: torch.Tensor, dtype) -> float:
    """Peak of ``_run``: the (B, L, S) evidence and forward tables (three alive in log space,
    with a (B, S, S) step) and the (B, L, V) marginals, per element of ``dtype``."""
    size = torch.finfo(dtype).bits // 8
    v = arrays.vocab_size
    s = arrays.emission.shape[0] if isinstance(arrays, HMMArrays) else v ** (arrays.order - 1)
    batch, length = x.shape
    return float(size) * batch * (length * (3 * s + 2 * v) + s * s)


def posterior(language: ChainSource | ChainArrays, x, *, device=None, dtype=None,
              max_bytes: float | None = None) -> Posterior:
    """``mdm_exact.posterior.posterior`` in torch: ``Posterior`` whose fields are tensors on
    ``device`` (default: the device of a tensor ``x``, else the CPU) in ``dtype`` (float64
    default). x: (batch, length) integer tokens with ``MASK = -1`` (numpy or torch; 1-D is one
    row). Cost O(batch * length * S^2) on the dense state chain (S hidden states, V^(n-1) for an
    n-gram)."""
    arrays = _chain_arrays(language)
    dtype = _check_dtype(dtype)
    dev = _device_of(x, device)
    t, single = _tokens(arrays, x, dev)
    check_memory(f"posterior(batch={t.shape[0]}, length={t.shape[1]}, backend='torch')",
                 _bytes(arrays, t, dtype), max_bytes, argument="the batch or length of x")
    marg, log_z, valid = _run(arrays, t, dtype, True)
    if single:
        return Posterior(marg[0], log_z[0], valid[0])
    return Posterior(marg, log_z, valid)


def log_prob(language: ChainSource | ChainArrays, x, *, device=None, dtype=None) -> torch.Tensor:
    """(batch,) log q of the revealed tokens of each row (masked positions marginalised), in
    nats, ``-inf`` off the support; a tensor on ``device``."""
    arrays = _chain_arrays(language)
    dtype = _check_dtype(dtype)
    t, single = _tokens(arrays, x, _device_of(x, device))
    check_memory(f"log_prob(batch={t.shape[0]}, length={t.shape[1]}, backend='torch')",
                 _bytes(arrays, t, dtype), argument="the batch or length of x")
    log_z = _run(arrays, t, dtype, False)[1]
    return log_z[0] if single else log_z


def in_support(language: ChainSource | ChainArrays, x, *, device=None) -> torch.Tensor:
    """(batch,) exact test q(revealed tokens) > 0 in the Boolean semiring; a bool tensor."""
    arrays = _chain_arrays(language)
    t, single = _tokens(arrays, x, _device_of(x, device))
    out = _support(_TorchChain(arrays, t.device, torch.float64), t)
    return out[0] if single else out


__all__ = ["DTYPES", "in_support", "log_prob", "posterior"]
