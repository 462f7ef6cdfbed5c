"""Small private helpers: argument validation and exact categorical sampling."""

from __future__ import annotations

import math

import numpy as np

MASK = -1
"""Token value of a masked position in every array the API takes or returns."""

STOCHASTIC_ATOL = 1e-9
"""How far a probability vector may sum from 1 before it is rejected."""

DEFAULT_MAX_BYTES = 4 * 2**30
"""Memory budget of one exact computation unless the caller passes ``max_bytes``."""


def as_rng(seed: int | np.random.Generator | None) -> np.random.Generator:
    """The generator itself, or a new one seeded with ``seed``."""
    if isinstance(seed, np.random.Generator):
        return seed
    return np.random.default_rng(seed)


def check_probabilities(name: str, array, shape: tuple[int, ...] | None = None) -> np.ndarray:
    """Float64 copy of ``array`` whose last axis is a probability vector (read-only).

    Raises a one-line ``ValueError`` naming ``name`` for NaN, negative entries, a wrong shape or
    rows that do not sum to 1 within ``STOCHASTIC_ATOL``.
    """
    arr = np.array(array, dtype=np.float64)
    if shape is not None and arr.shape != shape:
        raise ValueError(f"{name} must have shape {shape}, got {arr.shape}")
    if arr.ndim == 0 or arr.shape[-1] == 0:
        raise ValueError(f"{name} must have a non-empty last axis, got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        idx = tuple(int(i) for i in np.argwhere(~np.isfinite(arr))[0])
        raise ValueError(f"{name} has a non-finite entry {arr[idx]} at index {idx}")
    if np.any(arr < 0):
        idx = tuple(int(i) for i in np.argwhere(arr < 0)[0])
        raise ValueError(f"{name} has a negative entry {arr[idx]} at index {idx}")
    sums = arr.sum(axis=-1)
    bad = np.abs(sums - 1.0) > STOCHASTIC_ATOL
    if np.any(bad):
        idx = tuple(int(i) for i in np.argwhere(np.atleast_1d(bad))[0])
        row = float(np.atleast_1d(sums)[idx])
        where = f"row {idx}" if arr.ndim > 1 else "the vector"
        raise ValueError(f"{name} is not stochastic: {where} sums to {row!r}, not 1")
    arr.setflags(write=False)
    return arr


def check_tokens(x, vocab_size: int, *, allow_mask: bool = True) -> np.ndarray:
    """``x`` as an int64 array of shape ``(batch, length)``; a 1-D ``x`` becomes one row."""
    arr = np.asarray(x)
    if arr.dtype == bool or not (np.issubdtype(arr.dtype, np.integer) or arr.size == 0):
        if np.issubdtype(arr.dtype, np.floating) and np.all(np.equal(np.mod(arr, 1), 0)):
            arr = arr.astype(np.int64)
        else:
            raise TypeError(f"x must hold integer tokens, got dtype {arr.dtype}")
    arr = np.atleast_2d(arr).astype(np.int64, copy=False)
    if arr.ndim != 2:
        raise ValueError(f"x must have shape (batch, length), got {np.shape(x)}")
    low = MASK if allow_mask else 0
    bad = (arr < low) | (arr >= vocab_size)
    if np.any(bad):
        r, c = (int(i) for i in np.argwhere(bad)[0])
        allowed = f"[{low}, {vocab_size})"
        raise ValueError(f"x has token {arr[r, c]} at row {r}, position {c}; allowed {allowed}")
    return arr


def check_positive_int(name: str, value, minimum: int = 1) -> int:
    """``value`` as an int, refusing non-integers and values below ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise TypeError(f"{name} must be an integer, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


def table_bytes(base: int, exponent: int, factor: float = 8.0) -> float:
    """``factor * base ** exponent`` as a float, ``inf`` where it would overflow: the size of a
    dense table with ``base ** exponent`` entries."""
    if base <= 1 or exponent * math.log(base) + math.log(factor) < 700:
        return factor * float(base) ** exponent
    return math.inf


def check_memory(what: str, nbytes: float, max_bytes: float | None) -> None:
    """Refuse, before any work, a computation whose estimated memory exceeds the budget."""
    limit = DEFAULT_MAX_BYTES if max_bytes is None else max_bytes
    if nbytes > limit:
        size = f"about {nbytes / 2**30:.3g} GiB" if math.isfinite(nbytes) else "over 1e290 GiB"
        raise ValueError(
            f"{what} would need {size}, above the limit of "
            f"{limit / 2**30:.3g} GiB (pass a larger max_bytes to allow it)"
        )


def first_true(predicate, limit: int) -> int | None:
    """Smallest n in [1, ``limit``] with ``predicate(n)``, for a predicate that stays true once it
    is true: doubling, then bisection (about 2 log2 n calls). None if ``predicate(limit)`` fails."""
    if predicate(1):
        return 1
    lo, hi = 1, 1
    while True:
        hi = min(2 * hi, limit)
        if predicate(hi):
            break
        if hi == limit:
            return None
        lo = hi
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if predicate(mid):
            hi = mid
        else:
            lo = mid
    return hi


def categorical(rng: np.random.Generator, probs: np.ndarray) -> np.ndarray:
    """One draw per row of ``probs`` (..., V) by inverse CDF in float64.

    A token of probability zero is never drawn: the draw is the first index whose cumulative
    sum exceeds ``u * total`` with ``u`` in [0, 1).
    """
    cdf = np.cumsum(probs, axis=-1)
    u = rng.random(cdf.shape[:-1]) * cdf[..., -1]
    return (cdf <= u[..., None]).sum(axis=-1)
