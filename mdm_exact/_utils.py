"""Small private helpers: argument validation, exact categorical sampling, and the information
quantities (entropy, KL) and run lengths that several modules share."""

from __future__ import annotations

import dataclasses
import math
import numbers
import os
import reprlib

import numpy as np

from .errors import ArgumentError, ArgumentTypeError, BudgetError

MASK = -1
"""Token value of a masked position in every array the API takes or returns."""

STOCHASTIC_ATOL = 1e-9
"""How far a probability vector may sum from 1 before it is rejected."""

DEFAULT_MAX_BYTES = 2 * 2**30
"""The package's one memory budget (2 GiB): every computation that allocates in proportion to its
arguments estimates its peak first and refuses above the budget. Override it per call
(``max_bytes=``), per process with the environment variable ``MDM_EXACT_MAX_MEMORY`` (e.g.
``8GiB``, ``500MB``, ``3e9``) or on the command line with ``--max-memory``."""

MEMORY_ENV = "MDM_EXACT_MAX_MEMORY"
"""Environment variable that overrides ``DEFAULT_MAX_BYTES``."""

_UNITS = {"": 1, "b": 1, "k": 1e3, "kb": 1e3, "kib": 2**10, "m": 1e6, "mb": 1e6, "mib": 2**20,
          "g": 1e9, "gb": 1e9, "gib": 2**30, "t": 1e12, "tb": 1e12, "tib": 2**40}


def parse_bytes(text, name: str = "max_memory") -> float:
    """A size such as ``"4GiB"``, ``"500MB"``, ``"3e9"`` or a number of bytes, as a float > 0."""
    if isinstance(text, int | float | np.integer | np.floating) and not isinstance(text, bool):
        value = float(text)
    else:
        raw = str(text).strip().lower().replace(" ", "")
        num = raw.rstrip("abcdefghijklmnopqrstuvwxyz")
        unit = raw[len(num):]
        try:
            value = float(num) * _UNITS[unit]
        except (ValueError, KeyError):
            raise ArgumentError(f"{name} must be a size like 4GiB, 500MB or 3e9, got {text!r}")\
                from None
    if not (math.isfinite(value) and value > 0):
        raise ArgumentError(f"{name} must be a positive finite size, got {text!r}")
    return value


def memory_budget(max_bytes=None) -> float:
    """The budget in bytes: ``max_bytes`` when given, else ``$MDM_EXACT_MAX_MEMORY``, else
    ``DEFAULT_MAX_BYTES``."""
    if max_bytes is not None:
        return parse_bytes(max_bytes, "max_bytes")
    env = os.environ.get(MEMORY_ENV)
    if env:
        return parse_bytes(env, MEMORY_ENV)
    return float(DEFAULT_MAX_BYTES)


def format_bytes(nbytes: float) -> str:
    """``nbytes`` in GiB for messages (``more than 1e290 GiB`` where it does not fit a float)."""
    if not math.isfinite(nbytes):
        return "more than 1e290 GiB"
    return f"{nbytes / 2**30:.3g} GiB"


PROGRESS_DELAY = 2.0
"""Seconds a computation runs before its progress bar appears: shorter calls stay silent."""


def progress_bar(progress: bool, iterable=None, **kwargs):
    """The package's tqdm bar (``tqdm.auto``) on stderr: drawn only when ``progress``, only once
    ``PROGRESS_DELAY`` seconds have passed and an update comes, and removed when done.
    ``kwargs`` go to tqdm (``total``, ``desc``, ``unit``, ...); set a postfix with
    ``refresh=False``, since a refresh draws the bar before its delay."""
    from tqdm.auto import tqdm

    return tqdm(iterable, disable=not progress, delay=PROGRESS_DELAY, leave=False, **kwargs)


def as_rng(seed: int | np.random.Generator | None) -> np.random.Generator:
    """The generator itself, or a new one seeded with ``seed``."""
    if isinstance(seed, np.random.Generator):
        return seed
    return np.random.default_rng(seed)


def real_number(name: str, value) -> float:
    """``value`` as a float: bool, complex and text are refused, huge ints become inf."""
    if isinstance(value, bool | np.bool_) or not isinstance(value, numbers.Real):
        raise ArgumentTypeError(f"{name} must be a real number, got {reprlib.repr(value)}")
    try:
        return float(value)
    except OverflowError:
        return math.inf if value > 0 else -math.inf


def real_array(name: str, value) -> np.ndarray:
    """``value`` as a new float64 array, refusing what is not a rectangular array of real numbers
    (bool, complex, strings and objects are never coerced)."""
    try:
        raw = np.asarray(value)
    except (ValueError, TypeError):
        raise ArgumentError(f"{name} must be a rectangular array of numbers (ragged rows?)")\
            from None
    if raw.dtype == bool or not (np.issubdtype(raw.dtype, np.integer)
                                 or np.issubdtype(raw.dtype, np.floating)):
        raise ArgumentTypeError(f"{name} must hold real numbers, got dtype {raw.dtype}")
    return np.array(raw, dtype=np.float64)


def check_probabilities(name: str, array, shape: tuple[int, ...] | None = None) -> np.ndarray:
    """Float64 copy of ``array`` whose last axis is a probability vector (read-only).

    Raises a one-line ``ValueError`` naming ``name`` for NaN, negative entries, a wrong shape,
    ragged rows or rows that do not sum to 1 within ``STOCHASTIC_ATOL``, and a ``TypeError`` for
    entries that are not real numbers (bool, complex, strings, objects are never coerced).
    """
    arr = real_array(name, array)
    if shape is not None and arr.shape != shape:
        raise ArgumentError(f"{name} must have shape {shape}, got {arr.shape}")
    if arr.ndim == 0 or arr.shape[-1] == 0:
        raise ArgumentError(f"{name} must have a non-empty last axis, got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        idx = tuple(int(i) for i in np.argwhere(~np.isfinite(arr))[0])
        raise ArgumentError(f"{name} has a non-finite entry {arr[idx]} at index {idx}")
    if np.any(arr < 0):
        idx = tuple(int(i) for i in np.argwhere(arr < 0)[0])
        raise ArgumentError(f"{name} has a negative entry {arr[idx]} at index {idx}")
    sums = arr.sum(axis=-1)
    bad = np.abs(sums - 1.0) > STOCHASTIC_ATOL
    if np.any(bad):
        idx = tuple(int(i) for i in np.argwhere(np.atleast_1d(bad))[0])
        row = float(np.atleast_1d(sums)[idx])
        where = f"row {idx}" if arr.ndim > 1 else "the vector"
        raise ArgumentError(f"{name} is not stochastic: {where} sums to {row!r}, not 1")
    arr.setflags(write=False)
    return arr


def check_joint(joint, name: str = "joint") -> np.ndarray:
    """Float64 copy of a dense joint ``(V_1, ..., V_k)`` of probabilities (all axes together
    summing to 1 within ``STOCHASTIC_ATOL``); a one-line refusal naming ``name`` otherwise."""
    q = real_array(name, joint)
    if q.ndim == 0 or q.size == 0:
        raise ArgumentError(f"{name} must be a non-empty array (V_1, ..., V_k), got shape "
                            f"{q.shape}")
    bad = ~np.isfinite(q) | (q < 0)
    if np.any(bad):
        idx = tuple(int(i) for i in np.argwhere(bad)[0])
        raise ArgumentError(f"{name} must hold finite probabilities >= 0, got {float(q[idx])!r} at "
                            f"index {idx}")
    if abs(q.sum() - 1.0) > STOCHASTIC_ATOL:
        raise ArgumentError(f"{name} must sum to 1, got {float(q.sum())!r}")
    return q


def check_tokens(x, vocab_size: int, *, allow_mask: bool = True) -> np.ndarray:
    """``x`` as an int64 array of shape ``(batch, length)``; a 1-D ``x`` becomes one row.

    Refuses, naming ``x``: a length of 0 (there is nothing to score and the kernels index the
    first position), more than 2 axes or a scalar, ragged rows, tokens outside
    [MASK, vocab_size) (checked in the input's own dtype, so a uint64 2**64-1 is not read as
    MASK), and non-integer dtypes (bool, complex, object, strings, floats with a fractional
    part or a non-finite value; integral floats are accepted).
    """
    try:
        arr = np.asarray(x)
    except (ValueError, TypeError):
        raise ArgumentError("x must be a rectangular array of integer tokens (ragged rows?)")\
            from None
    if arr.ndim not in (1, 2):
        raise ArgumentError(f"x must have shape (batch, length) or (length,), got {arr.shape}")
    if arr.shape[-1] == 0:
        raise ArgumentError(f"x must have length >= 1, got shape {arr.shape}")
    floating = np.issubdtype(arr.dtype, np.floating)
    if arr.dtype == bool or not (floating or np.issubdtype(arr.dtype, np.integer)):
        raise ArgumentTypeError(f"x must hold integer tokens, got dtype {arr.dtype}")
    if floating and not (np.all(np.isfinite(arr)) and np.all(arr == np.round(arr))):
        raise ArgumentTypeError(
            f"x must hold integer tokens, got dtype {arr.dtype} with non-integral values")
    arr = np.atleast_2d(arr)
    low = MASK if allow_mask else 0
    bad = (arr < low) | (arr >= vocab_size)
    if np.any(bad):
        r, c = (int(i) for i in np.argwhere(bad)[0])
        allowed = f"[{low}, {vocab_size})"
        raise ArgumentError(f"x has token {arr[r, c]} at row {r}, position {c}; allowed {allowed}")
    out = arr.astype(np.int64, copy=False)
    # A writable array: the numba kernels compile once per writability, and a read-only view
    # (what denoisers are handed) would otherwise trigger a second compilation.
    return out if out.flags.writeable else out.copy()


def check_positive_int(name: str, value, minimum: int = 1) -> int:
    """``value`` as an int, refusing non-integers and values below ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise ArgumentTypeError(f"{name} must be an integer, got {value!r}")
    if value < minimum:
        raise ArgumentError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


def int_times(count: int, x):
    """``count * x`` in float64 for a Python int ``count`` of any size (a length such as 10**400
    does not fit a float): exactly 0 where x == 0, +-inf where the product leaves float range.
    Scalar in, float out; array in, array out."""
    arr = np.asarray(x, dtype=np.float64)
    count = int(count)
    if count == 0:
        out = np.zeros_like(arr)
    elif count.bit_length() < 1000:
        with np.errstate(over="ignore", invalid="ignore"):
            out = np.where(arr == 0, 0.0, float(count) * arr)
    else:  # count >= 2**999: the product is +-inf unless |x| is below about 1e-300
        with np.errstate(over="ignore", divide="ignore"):
            out = np.where(arr == 0, 0.0,
                           np.sign(arr) * np.exp(math.log(count) + np.log(np.abs(arr))))
    return float(out) if out.ndim == 0 else out


def format_count(value: int) -> str:
    """An integer for a one-line message: in full up to 15 digits, else ``about 10^d``."""
    if abs(value) < 10**15:
        return str(value)
    return f"about 10^{math.log10(abs(value)):.1f}"


def table_bytes(base: int, exponent: int, factor: float = 8.0) -> float:
    """``factor * base ** exponent`` as a float, ``inf`` where it would overflow: the size of a
    dense table with ``base ** exponent`` entries."""
    if base <= 1 or exponent * math.log(base) + math.log(factor) < 700:
        return factor * float(base) ** exponent
    return math.inf


def check_memory(what: str, nbytes: float, max_bytes=None, *, argument: str | None = None
                 ) -> None:
    """Refuse, before any work, a computation whose estimated peak memory exceeds the budget
    (``memory_budget``), with the estimate and, when given, the ``argument`` to change."""
    limit = memory_budget(max_bytes)
    if nbytes > limit:
        change = f"lower {argument} or " if argument else ""
        raise BudgetError(
            f"{what} would need {'about ' * math.isfinite(nbytes)}{format_bytes(nbytes)}, "
            f"above the memory budget of "
            f"{format_bytes(limit)} ({change}raise the budget: max_bytes=, --max-memory or "
            f"${MEMORY_ENV})"
        )


def json_ready(value):
    """``value`` with every leaf made JSON-safe, converting values, never text: non-finite floats
    become the strings ``"nan"``, ``"inf"``, ``"-inf"``; numpy scalars and arrays become Python
    numbers and lists; ``Estimate`` and other objects with ``as_dict`` become dicts, dataclasses
    their fields, paths strings. The one convention of every ``--json`` output."""
    if isinstance(value, dict):
        return {str(k): json_ready(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_ready(v) for v in value]
    if isinstance(value, np.ndarray):
        return json_ready(value.tolist())
    if isinstance(value, bool | np.bool_):
        return bool(value)
    if isinstance(value, int | np.integer):
        return int(value)
    if isinstance(value, float | np.floating):
        v = float(value)
        if math.isnan(v):
            return "nan"
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        return v
    if value is None or isinstance(value, str):
        return value
    if hasattr(value, "as_dict"):
        return json_ready(value.as_dict())
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return json_ready(dataclasses.asdict(value))
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    raise ArgumentTypeError(f"value of type {type(value).__name__} is not JSON serialisable")


def first_true(predicate, limit: int, start: int = 1) -> int | None:
    """Smallest n in [``start``, ``limit``] with ``predicate(n)``, for a predicate that stays true
    once it is true and is known false below ``start``: doubling from ``start``, then bisection
    (about 2 log2(n / start) calls). None if ``predicate(limit)`` fails."""
    if predicate(start):
        return start
    lo, hi = start, start
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


def shannon_entropy(p, axis: int | None = -1):
    """Shannon entropy H(p) = -sum_v p(v) log p(v) in nats along ``axis`` (all axes for None),
    with 0 log 0 = 0 (``scipy.special.entr``), clipped at 0 against rounding. ``p``: probabilities
    (no NaN, no negatives). A float for a vector (or ``axis=None``), else an array."""
    from scipy import special  # deferred: scipy.special adds ~0.2 s to importing the package

    h = np.maximum(special.entr(np.asarray(p, dtype=np.float64)).sum(axis=axis), 0.0) + 0.0
    return float(h) if np.ndim(h) == 0 else h


def kl_divergence(q, p, axis: int | None = -1):
    """KL(q || p) = sum_v q(v) log(q(v) / p(v)) in nats along ``axis`` (all axes for None), with
    0 log(0 / p) = 0 and +inf where q > 0 = p (``scipy.special.rel_entr``, which also stays finite
    where q / p leaves float range), clipped at 0 against rounding. A float for vectors (or
    ``axis=None``), else an array."""
    from scipy import special

    q = np.asarray(q, dtype=np.float64)
    p = np.asarray(p, dtype=np.float64)
    kl = np.maximum(special.rel_entr(q, p).sum(axis=axis), 0.0) + 0.0
    return float(kl) if np.ndim(kl) == 0 else kl


def run_lengths(values) -> tuple[np.ndarray, np.ndarray]:
    """``values`` (n,) compressed into runs of exactly equal consecutive entries:
    (values (R,), counts (R,) int64); empty arrays for an empty input."""
    v = np.asarray(values).ravel()
    if v.size == 0:
        return v, np.zeros(0, dtype=np.int64)
    starts = np.flatnonzero(np.concatenate([[True], v[1:] != v[:-1]]))
    counts = np.diff(np.append(starts, v.size))
    return v[starts], counts.astype(np.int64)
