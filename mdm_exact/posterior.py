"""The exact masked posterior: q(x_i = v | revealed tokens) by forward-backward.

An ideal MDM denoiser outputs exactly these marginals (eq. 2 of the paper:
q_{0|t}; docs/concepts.md).

The engine works on the arrays a language hands it, never on the language classes: every public
function takes a language (anything with a ``chain_arrays`` attribute, see ``ChainSource``) or
those arrays themselves (``HMMArrays``, ``NGramArrays``, ``IntervalParityArrays``). This module
never imports ``mdm_exact.languages``; the languages import it.

Every chain is run over hidden states (``_Chain``): an HMM as it is, an n-gram as the HMM whose
state at position j is (x_j, ..., x_{j+n-2}) emitting its first token. That chain is
sparse (V successors per state), so an n-gram costs at most O(L V^n) per row, not the
O(L V^(2n-2)) of the dense HMM view; its own kernel (``_ngram_marginals_kernel``) moreover keeps
only the states consistent with the revealed tokens, so a step costs V^(masked tokens among
x_j .. x_{j+n-1}). HMMs run on index lists (sparse) or contiguous rows (dense), skipping states
whose message is zero, dense ones on blocks of rows at once (``blocked``). First-order chains
(2-grams, HMMs with permutation emissions) skip the recursion: a masked token depends only on
its nearest revealed neighbours, through cached matrix powers (``first-order``). See
``IMPLEMENTATIONS``.

Numerics: messages are rescaled to sum 1 at every position (the "scaling" implementation), the
logs of the scale factors add up to the log-evidence, so L = 100000 neither underflows nor
overflows. Support tests run a separate Boolean-semiring forward pass, so that whether a sequence
is possible never depends on float underflow.

Example C.7 (``IntervalParityArrays``) has a closed form per interval and skips the chain entirely.
"""

from __future__ import annotations

import os
import weakref
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Protocol, TypeAlias

import numba
import numpy as np
from llvmlite import ir
from numba.core import cgutils, types
from numba.extending import intrinsic

from ._utils import (
    MASK,
    check_memory,
    check_positive_int,
    check_probabilities,
    check_tokens,
    memory_budget,
    real_array,
)
from .errors import ArgumentError, ArgumentTypeError

SERIAL_WORK = 1_000_000
"""Below this many (position x state) updates a call runs on one thread: waking numba's worker
threads costs more than such a call, and far more on a busy machine."""

DENSE_FRACTION = 0.25
"""HMMs whose transition matrix has more than this fraction of non-zeros use a dense kernel."""

THREADS_ENV = "MDM_EXACT_THREADS"
"""Environment variable capping the numba threads of one engine call (below numba's own count,
``NUMBA_NUM_THREADS``); one per process of a sweep keeps its processes off each other's cores."""

BLOCK_ROWS = 128
"""Rows the blocked kernel moves together: one (K x K) @ (K x rows) product per position."""

BLOCK_BYTES = 32 * 2**20
"""Forward table of one block of the blocked kernel (rows x length x K floats); fewer rows for
long sequences, and the per-row dense kernel below ``MIN_BLOCK_ROWS``."""

MIN_BLOCK_ROWS = 8

BLOCK_TILE = 4
"""Side of the register tile of ``_block_product`` (its loops are unrolled for 4 x 4 matrix
entries); the blocked kernel pads the states and the vocabulary to a multiple of it with
zeros, which add exact zeros."""

BLOCK_TOKEN_TILE = 8
"""Positions whose tokens (and marginals) the blocked kernel reads (writes) per row at a time:
one cache line of int64 tokens instead of a strided pass over the batch per position."""

FIRST_ORDER_BYTES = 2**28
"""Largest table of cached matrix powers the first-order kernel builds under ``auto``."""

@dataclass(frozen=True, eq=False)
class HMMArrays:
    """A hidden Markov model as the engine reads it (Section 4.1).

    ``initial``: (K,) law of the first hidden state; ``transition``: (K, K), row s is
    P(s_{j+1} | s_j = s); ``emission``: (K, V), row s is P(x_j | s_j = s). Validated on
    construction (real, finite, non-negative, rows summing to 1) and kept as read-only float64
    copies.
    """

    initial: np.ndarray
    transition: np.ndarray
    emission: np.ndarray

    def __post_init__(self):
        emission = check_probabilities("emission", self.emission)
        if emission.ndim != 2:
            raise ArgumentError(f"emission must have shape (K, V), got {emission.shape}")
        k = emission.shape[0]
        object.__setattr__(self, "emission", emission)
        object.__setattr__(self, "initial", check_probabilities("initial", self.initial, (k,)))
        object.__setattr__(
            self, "transition", check_probabilities("transition", self.transition, (k, k))
        )

    @property
    def vocab_size(self) -> int:
        """Number of tokens V."""
        return self.emission.shape[1]


@dataclass(frozen=True, eq=False)
class NGramArrays:
    """An n-gram q(x) = q(x_{1:n-1}) prod_{j>=n} q(x_j | x_{j-n+1:j-1}) as the engine reads it.

    ``initial``: (V,)*(n-1), the joint of the first n-1 tokens; ``transition``: (V,)*n, the last
    axis is the next token given the n-1 before it (n >= 2). Validated on construction like
    ``HMMArrays`` and kept as read-only float64 copies.
    """

    initial: np.ndarray
    transition: np.ndarray

    def __post_init__(self):
        transition = check_probabilities("transition", self.transition)
        if transition.ndim < 2 or len(set(transition.shape)) != 1:
            raise ArgumentError(
                f"transition must have shape (V,)*n with n >= 2, got {transition.shape}")
        v, n = transition.shape[0], transition.ndim
        initial = real_array("initial", self.initial)
        if initial.shape != (v,) * (n - 1):
            raise ArgumentError(f"initial must have shape (V,)*(n-1) = {(v,) * (n - 1)}, "
                                f"got {initial.shape}")
        flat = check_probabilities("initial", initial.ravel())
        object.__setattr__(self, "transition", transition)
        object.__setattr__(self, "initial", flat.reshape(initial.shape))

    @property
    def vocab_size(self) -> int:
        """Number of tokens V."""
        return self.transition.shape[0]

    @property
    def order(self) -> int:
        """n, the number of tokens of a transition (context and next token)."""
        return self.transition.ndim


@dataclass(frozen=True)
class IntervalParityArrays:
    """Example C.7 as the engine reads it: intervals of ``interval`` = l tokens in
    {0 .. 2^(l-1) - 1}, every pair of in-interval positions sharing one fair bit. No table: the
    engine's closed form needs only l (2 <= l <= 16)."""

    interval: int

    def __post_init__(self):
        interval = check_positive_int("interval", self.interval, 2)
        if interval > 16:
            raise ArgumentError(f"interval must be <= 16 (tokens are 2^(l-1)), got {interval}")
        object.__setattr__(self, "interval", interval)

    @property
    def vocab_size(self) -> int:
        """Number of tokens V = 2^(l-1)."""
        return 2 ** (self.interval - 1)


ChainArrays: TypeAlias = HMMArrays | NGramArrays | IntervalParityArrays
"""The arrays the engine runs on."""

_CHAIN_ARRAYS = (HMMArrays, NGramArrays, IntervalParityArrays)


class ChainSource(Protocol):
    """What the public functions accept besides ``ChainArrays``: an object handing the engine its
    arrays, as every ``mdm_exact`` language does (an attribute, built once per object, so the
    engine's per-chain tables are built once too)."""

    @property
    def chain_arrays(self) -> ChainArrays: ...


def _arrays_of(language: ChainSource | ChainArrays) -> ChainArrays:
    if isinstance(language, _CHAIN_ARRAYS):
        return language
    arrays = getattr(language, "chain_arrays", None)
    if not isinstance(arrays, _CHAIN_ARRAYS):
        raise ArgumentTypeError(
            f"language must be an mdm_exact Language, got {type(language).__name__}")
    return arrays


@dataclass(frozen=True)
class Posterior:
    """Result of ``posterior``.

    ``marginals``: (batch, length, V) float64, q(x_i = v | revealed tokens of the row) at masked
    positions and one-hot at revealed ones (NaN on rows that are impossible);
    ``log_evidence``: (batch,) log q(revealed tokens), ``-inf`` where impossible;
    ``valid``: (batch,) whether the row's revealed tokens have positive probability.
    """

    marginals: np.ndarray
    log_evidence: np.ndarray
    valid: np.ndarray


@dataclass(frozen=True, eq=False)
class _Chain:
    """A language as a hidden-state chain, in the arrays the numba kernels read."""

    initial: np.ndarray  # (S,)
    emission_t: np.ndarray  # (V, S)
    dense_t: np.ndarray  # (S, S) transposed transition, or (0, 0) when sparse
    dense: np.ndarray  # (S, S) transition, or (0, 0) when sparse
    children_ptr: np.ndarray  # CSR of the positive transitions, rows = from-state
    children: np.ndarray
    children_p: np.ndarray
    parents_ptr: np.ndarray  # CSC of the positive transitions, columns = to-state
    parents: np.ndarray
    parents_p: np.ndarray
    emitters_ptr: np.ndarray  # states with positive emission of token v
    emitters: np.ndarray
    shift: np.ndarray  # n-grams: (S, V) next-token table (successor (s mod S/V)*V + v); HMMs: 0x0
    min_step: float  # smallest positive (initial or transition) x smallest positive emission
    min_emit: float  # smallest positive emission

    @property
    def num_states(self) -> int:
        return self.initial.shape[0]


_CHAINS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _csr(rows: np.ndarray, cols: np.ndarray, vals: np.ndarray, n: int):
    order = np.lexsort((cols, rows))
    ptr = np.zeros(n + 1, dtype=np.int64)
    np.add.at(ptr, rows + 1, 1)
    return np.cumsum(ptr), cols[order].astype(np.int64), vals[order].astype(np.float64)


def _build_chain(initial, rows, cols, vals, emission_t, dense_matrix, shift=None) -> _Chain:
    s = initial.shape[0]
    c_ptr, c_idx, c_p = _csr(rows, cols, vals, s)
    p_ptr, p_idx, p_p = _csr(cols, rows, vals, s)
    e_rows, e_cols = np.nonzero(emission_t > 0)
    e_ptr, e_idx, _ = _csr(e_rows, e_cols, np.ones(e_rows.size), emission_t.shape[0])
    empty = np.zeros((0, 0))
    min_emit = float(emission_t[emission_t > 0].min())
    min_start = min(float(initial[initial > 0].min()), float(vals.min()) if vals.size else 1.0)

    def owned(a):
        # Always a fresh writable C array: numba compiles a separate specialisation for every
        # read-only/writable combination of arguments, and the language tables are read-only.
        return np.array(a, dtype=np.float64, order="C")

    return _Chain(
        owned(initial),
        owned(emission_t),
        empty if dense_matrix is None else owned(dense_matrix.T),
        empty if dense_matrix is None else owned(dense_matrix),
        c_ptr, c_idx, c_p, p_ptr, p_idx, p_p, e_ptr, e_idx,
        empty if shift is None else owned(shift),
        min_start * min_emit, min_emit,
    )


TINY = 1e-280
"""Smallest product of probabilities the scaled (linear-space) kernels accept. Each kernel
reports the smallest positive entry m of its normalised messages; when m times the smallest
positive step factor, or m^2 times the smallest emission, falls below TINY, some product may
have lost digits to subnormal numbers or underflowed to 0 (a possible row would turn
impossible, a marginal inf or NaN), and that row is recomputed by ``_log_space_kernel``. Above
it every product is a normal float, so the scaled result is exact to rounding and its zeros
are exact. Long rows (a state losing a factor 4 per position for 600 positions) and tables
with tiny or subnormal entries both take this path; ordinary rows never do."""


def _in_trouble(chain: _Chain, lows: np.ndarray) -> np.ndarray:
    return (lows * chain.min_step < TINY) | (lows * lows * chain.min_emit < TINY)


def _log_space(chain: _Chain, x: np.ndarray, with_marginals: bool):
    """(marginals, log-evidence) of the rows of ``x`` by ``_log_space_kernel``."""
    with np.errstate(divide="ignore"):
        return _log_space_kernel(
            x, np.log(chain.initial), np.log(chain.emission_t), chain.children_ptr,
            chain.children, np.log(chain.children_p), chain.parents_ptr, chain.parents,
            np.log(chain.parents_p), with_marginals)


IMPLEMENTATIONS = ("auto", "first-order", "blocked", "dense", "sparse")
"""Engines of the chain (the results agree to rounding, their zeros exactly):

- ``first-order``: 2-grams and HMMs whose emission is a permutation (a Markov chain of tokens).
  A masked position depends only on its nearest revealed neighbours l < t < r:
  q(x_t | x_l, x_r) is proportional to P^(t-l)[x_l, x_t] P^(r-t)[x_t, x_r] (the prior marginal
  pi P^t without a left neighbour, 1 without a right one), so a row costs one scan and O(V) per
  masked position with cached powers P^k.
- ``blocked``: dense forward-backward with the rows of a block in the matrix dimension, one
  (K x K) @ (K x rows) product per position and direction, vectorised over the rows.
- ``dense``: the same recursion row by row over the full K x K matrix.
- ``sparse``: row by row over the positive transitions; for n-grams their own kernel on the
  states consistent with the revealed tokens.

``auto`` picks ``first-order`` where it applies (and its power table fits ``FIRST_ORDER_BYTES``),
else ``sparse`` for n-grams and sparse HMMs, ``blocked`` for HMMs with more than
``DENSE_FRACTION`` non-zero transitions (``dense`` where a block would hold fewer than
``MIN_BLOCK_ROWS`` rows). ``dense`` and ``blocked`` on an n-gram run its dense HMM view."""


def _check_implementation(implementation) -> str:
    if implementation not in IMPLEMENTATIONS:
        raise ArgumentError(f"implementation must be one of {IMPLEMENTATIONS}"
            f", got {implementation!r}")
    return implementation


def _chain(arrays: HMMArrays | NGramArrays, implementation: str = "auto") -> _Chain:
    """The kernels' tables of ``arrays``: the dense view for ``dense``/``blocked``, the n-gram or
    CSR tables for ``sparse``, the HMM's own choice for ``auto``; built once per arrays object."""
    _check_implementation(implementation)
    key = "dense" if implementation == "blocked" else implementation
    if isinstance(arrays, HMMArrays) and key in ("auto", "first-order"):
        key = "dense" if _dense_hmm(arrays) else "sparse"
    elif key in ("auto", "first-order"):
        key = "sparse"
    per_arrays = _CHAINS.setdefault(arrays, {})
    if key in per_arrays:
        return per_arrays[key]
    if isinstance(arrays, NGramArrays):
        v, c = arrays.vocab_size, arrays.order - 1
        s = v**c
        flat = arrays.transition.reshape(s, v)
        rows, nxt = np.nonzero(flat > 0)
        cols = (rows * v + nxt) % s
        vals = flat[rows, nxt]
        emission_t = np.zeros((v, s))
        emission_t[np.arange(s) // v ** (c - 1), np.arange(s)] = 1.0
        if key == "dense":
            # The dense HMM view: state (x_j, ..., x_{j+n-2}) moves to (x_{j+1}, ..., x_{j+n-1}).
            a = np.zeros((s, s))
            a[rows, cols] = vals
            chain = _build_chain(arrays.initial.ravel(), rows, cols, vals, emission_t, a)
        else:
            chain = _build_chain(arrays.initial.ravel(), rows, cols, vals, emission_t, None, flat)
    else:
        a = arrays.transition
        rows, cols = np.nonzero(a > 0)
        chain = _build_chain(arrays.initial, rows, cols, a[rows, cols], arrays.emission.T,
                             a if key == "dense" else None)
    per_arrays[key] = chain
    return chain


def _dense_hmm(arrays: HMMArrays) -> bool:
    return np.count_nonzero(arrays.transition) > DENSE_FRACTION * arrays.transition.size


def _block_rows(batch: int, length: int, states: int, threads: int) -> int:
    """Rows per block of the blocked kernel: enough blocks for every thread, a forward table of
    at most ``BLOCK_BYTES`` per block (states padded to a multiple of ``BLOCK_TILE``)."""
    per_thread = -(-batch // max(threads, 1))
    fits = BLOCK_BYTES // (8 * max(length, 1) * -(-states // BLOCK_TILE) * BLOCK_TILE)
    return int(max(1, min(BLOCK_ROWS, per_thread, fits)))


def token_chain(arrays: HMMArrays | NGramArrays) -> tuple[np.ndarray, np.ndarray] | None:
    """``(initial (V,), transition (V, V))`` of the token chain of a first-order language, else
    None (found once per arrays object): a 2-gram is its own chain; an HMM whose emission is a
    permutation matrix (every entry 0 or 1, one 1 per row and per column) is the chain of the
    tokens its states emit."""
    per_arrays = _CHAINS.setdefault(arrays, {})
    if "tokens" in per_arrays:
        return per_arrays["tokens"]
    found = None
    if isinstance(arrays, NGramArrays):
        if arrays.order == 2:
            found = arrays.initial, arrays.transition
    else:
        emission = arrays.emission
        k, v = emission.shape
        ones = emission == 1.0
        if (k == v and np.all(ones | (emission == 0.0)) and np.all(ones.sum(axis=0) == 1)
                and np.all(ones.sum(axis=1) == 1)):
            token = ones.argmax(axis=1)  # state s emits token token[s]
            initial = np.zeros(v)
            initial[token] = arrays.initial
            transition = np.zeros((v, v))
            transition[np.ix_(token, token)] = arrays.transition
            found = initial, transition
    per_arrays["tokens"] = found
    return found


def _resolve(arrays: HMMArrays | NGramArrays, implementation: str, x: np.ndarray,
             threads: int, first_order: bool = True, max_bytes: float | None = None) -> str:
    """The engine ``implementation`` means for these arrays and rows on ``threads`` threads (see
    ``IMPLEMENTATIONS``); ``first_order=False`` leaves that engine out of ``auto``, as does a
    table of powers above ``FIRST_ORDER_BYTES`` or the memory budget."""
    if implementation == "first-order":
        if token_chain(arrays) is None:
            raise ArgumentError(
                "implementation='first-order' needs a first-order chain (a 2-gram or an HMM "
                f"whose emission matrix is a permutation), got {type(arrays).__name__} with "
                f"vocab_size={arrays.vocab_size}")
        return implementation
    if implementation != "auto":
        return implementation
    batch, length = x.shape
    limit = min(FIRST_ORDER_BYTES, memory_budget(max_bytes))
    if (first_order and token_chain(arrays) is not None
            and _first_order_bytes(arrays.vocab_size, length) <= limit):
        return "first-order"
    if isinstance(arrays, NGramArrays) or not _dense_hmm(arrays):
        return "sparse"
    rows = _block_rows(batch, length, arrays.transition.shape[0], threads)
    return "blocked" if rows >= min(MIN_BLOCK_ROWS, batch) else "dense"


# ------------------------------------------------------------------------------ numba kernels


@numba.njit(cache=True)
def _forward_row(row, init, emit_t, dense, p_ptr, p_idx, p_p, e_ptr, e_idx, alpha, store):
    """Scaled forward pass over one row; returns (log-evidence, -inf if impossible; the
    smallest positive entry of the normalised messages, see ``TINY``).

    alpha: (L, S) when ``store`` else (2, S) as a rolling buffer.
    """
    length = row.shape[0]
    s_count = init.shape[0]
    all_states = np.arange(s_count)
    use_dense = dense.shape[0] > 0
    log_z = 0.0
    low = 1.0
    prev = alpha[0]
    for j in range(length):
        cur = alpha[j] if store else alpha[j % 2]
        token = row[j]
        cur[:] = 0.0
        if j > 0 and use_dense:
            # Push form (a state adds its mass to its successors): the inner loop is free of
            # reductions, so it vectorises without reassociating floating-point sums.
            for s in range(s_count):
                w = prev[s]
                if w == 0.0:
                    continue
                row_s = dense[s]
                for sp in range(s_count):
                    cur[sp] += w * row_s[sp]
            if token >= 0:
                for sp in range(s_count):
                    cur[sp] *= emit_t[token, sp]
            states = all_states
        else:
            states = all_states if token < 0 else e_idx[e_ptr[token]:e_ptr[token + 1]]
            for sp in states:
                if j == 0:
                    acc = init[sp]
                else:
                    acc = 0.0
                    for k in range(p_ptr[sp], p_ptr[sp + 1]):
                        acc += prev[p_idx[k]] * p_p[k]
                if token >= 0:
                    acc *= emit_t[token, sp]
                cur[sp] = acc
        total = 0.0
        for sp in states:
            total += cur[sp]
        if not total > 0.0:
            return -np.inf, low
        inv = 1.0 / total
        for sp in states:
            val = cur[sp] * inv
            cur[sp] = val
            if val > 0.0 and val < low:
                low = val
        log_z += np.log(total)
        prev = cur
    return log_z, low


@numba.njit(parallel=True, cache=True)
def _log_evidence_kernel(x, init, emit_t, dense, p_ptr, p_idx, p_p, e_ptr, e_idx):
    batch, _ = x.shape
    out = np.empty(batch)
    lows = np.empty(batch)
    for b in numba.prange(batch):
        work = np.empty((2, init.shape[0]))
        out[b], lows[b] = _forward_row(x[b], init, emit_t, dense, p_ptr, p_idx, p_p, e_ptr,
                                       e_idx, work, False)
    return out, lows


@numba.njit(parallel=True, cache=True)
def _marginals_kernel(x, init, emit_t, dense, dense_t, c_ptr, c_idx, c_p, p_ptr, p_idx, p_p,
                      e_ptr, e_idx):
    batch, length = x.shape
    s_count = init.shape[0]
    vocab = emit_t.shape[0]
    marg = np.zeros((batch, length, vocab))
    log_z = np.empty(batch)
    lows = np.empty(batch)
    use_dense = dense.shape[0] > 0
    for b in numba.prange(batch):
        row = x[b]
        alpha = np.empty((length, s_count))  # every row is cleared by the forward pass
        lz, low = _forward_row(row, init, emit_t, dense, p_ptr, p_idx, p_p, e_ptr, e_idx, alpha,
                               True)
        log_z[b] = lz
        lows[b] = low
        if lz == -np.inf:
            marg[b, :, :] = np.nan
            continue
        beta = np.ones(s_count)
        gamma = np.empty(s_count)
        for j in range(length - 1, -1, -1):
            if j < length - 1:
                token = row[j + 1]
                if use_dense:
                    gamma[:] = 0.0
                    for c in range(s_count):
                        w = beta[c] if token < 0 else beta[c] * emit_t[token, c]
                        if w == 0.0:
                            continue
                        col = dense_t[c]
                        for s in range(s_count):
                            gamma[s] += w * col[s]
                elif token < 0:
                    for s in range(s_count):
                        acc = 0.0
                        for k in range(c_ptr[s], c_ptr[s + 1]):
                            acc += c_p[k] * beta[c_idx[k]]
                        gamma[s] = acc
                else:
                    # A revealed sparse step: only the parents of states emitting the token
                    # receive mass, so push from those few states instead of pulling from all.
                    gamma[:] = 0.0
                    for e in range(e_ptr[token], e_ptr[token + 1]):
                        sp = e_idx[e]
                        w = beta[sp] * emit_t[token, sp]
                        for k in range(p_ptr[sp], p_ptr[sp + 1]):
                            gamma[p_idx[k]] += p_p[k] * w
                total = 0.0
                for s in range(s_count):
                    total += gamma[s]
                if not total > 0.0:
                    low = 0.0  # underflow: the row is redone in log space
                    break
                inv = 1.0 / total
                for s in range(s_count):
                    val = gamma[s] * inv
                    beta[s] = val
                    if val > 0.0 and val < low:
                        low = val
            token = row[j]
            if token >= 0:
                marg[b, j, token] = 1.0
                continue
            total = 0.0
            for s in range(s_count):
                gamma[s] = alpha[j, s] * beta[s]
                total += gamma[s]
            if not total > 0.0:
                low = 0.0
                break
            inv = 1.0 / total
            for v in range(vocab):
                acc = 0.0
                for e in range(e_ptr[v], e_ptr[v + 1]):
                    acc += emit_t[v, e_idx[e]] * gamma[e_idx[e]]
                marg[b, j, v] = acc * inv
        lows[b] = low
    return marg, log_z, lows


@numba.njit(parallel=True, cache=True)
def _support_kernel(x, init_nz, emit_nz_t, p_ptr, p_idx):
    """Boolean-semiring forward pass: does some hidden path explain the revealed tokens?"""
    batch, length = x.shape
    s_count = init_nz.shape[0]
    out = np.zeros(batch, dtype=np.bool_)
    for b in numba.prange(batch):
        prev = np.empty(s_count, dtype=np.bool_)
        cur = np.empty(s_count, dtype=np.bool_)
        alive = False
        for j in range(length):
            token = x[b, j]
            alive = False
            for sp in range(s_count):
                ok = token < 0 or emit_nz_t[token, sp]
                if ok:
                    if j == 0:
                        ok = init_nz[sp]
                    else:
                        ok = False
                        for k in range(p_ptr[sp], p_ptr[sp + 1]):
                            if prev[p_idx[k]]:
                                ok = True
                                break
                cur[sp] = ok
                alive = alive or ok
            if not alive:
                break
            prev, cur = cur, prev
        out[b] = alive
    return out


@numba.njit(cache=True)
def _live_states(row, start, digits, vocab, out):
    """Fill ``out[:n]`` with the ``digits``-digit base-V numbers whose digit i equals
    ``row[start + i]`` where that token is revealed (positions past the row are free), in
    ascending order; returns n."""
    length = row.shape[0]
    n = 1
    out[0] = 0
    for i in range(digits):
        pos = start + i
        tok = row[pos] if pos < length else -1
        if tok >= 0:
            for k in range(n):
                out[k] = out[k] * vocab + tok
        else:
            for k in range(n - 1, -1, -1):
                base = out[k] * vocab
                for e in range(vocab):
                    out[k * vocab + e] = base + e
            n *= vocab
    return n


@numba.njit(parallel=True, cache=True, fastmath={"reassoc", "contract"})
def _ngram_marginals_kernel(x, init, shift, vocab, order, with_marginals):
    """Forward-backward of an n-gram on its live states only.

    The state at position j is (x_j, ..., x_{j+n-2}); every revealed token among them fixes a
    digit, so alpha_j lives on D_j x U_j (D_j: the first digit, U_j: the other n-2) and a step
    costs V^(number of masked tokens in x_j .. x_{j+n-1}) multiply-adds. The forward table is
    stored packed, one block per position in ascending state order (the output of step j is
    already U_j x Y_j in that order, so no index maps are needed). Without ``with_marginals``
    only the forward pass runs (log-evidence) and the marginals array has length 0.

    Speed: the innermost loops index with uint64 offsets, which numba does not wrap around as
    it does negative int64 ones, so LLVM vectorises them; sums may be reassociated (results
    agree with a sequential sum to rounding); the smallest positive entry is an integer
    minimum over the bit patterns (non-negative floats order like them), which vectorises
    where a floating-point comparison would branch.
    """
    batch, length = x.shape
    v_count = vocab
    c = order - 1
    s_count = init.shape[0]
    r_count = s_count // v_count
    marg = np.zeros((batch, length if with_marginals else 0, v_count))
    log_z = np.empty(batch)
    low_bits = np.empty(batch, dtype=np.int64)
    one_bits = np.ones(1).view(np.int64)[0]
    for b in numba.prange(batch):
        # A private copy of the row and scalar indexing of ``shift``: views of shared arrays
        # touch their reference counts, atomics that the threads would fight over.
        row = x[b].copy()
        low = one_bits
        live = np.empty(max(r_count, 1), dtype=np.int64)
        off = np.empty(length + 1, dtype=np.int64)
        off[0] = 0
        for j in range(length):
            nd = v_count if row[j] < 0 else 1
            nu = 1
            for i in range(1, c):
                pos = j + i
                if pos >= length or row[pos] < 0:
                    nu *= v_count
            off[j + 1] = off[j] + nd * nu
        alpha = np.empty(off[length])
        a_bits = alpha.view(np.int64)
        lz = 0.0
        ok = True
        first = np.empty(s_count, dtype=np.int64)
        n0 = _live_states(row, 0, c, v_count, first)
        total = 0.0
        for k in range(n0):
            alpha[k] = init[first[k]]
            total += alpha[k]
        if total > 0.0:
            inv = 1.0 / total
            for k in range(n0):
                alpha[k] *= inv
                bk = a_bits[k]
                low = min(low, bk if bk > 0 else _MAX_BITS)
            lz += np.log(total)
        else:
            ok = False
        for j in range(length - 1):
            if not ok:
                break
            p0, c0 = off[j], off[j + 1]
            tok = row[j]
            dlo = 0 if tok < 0 else tok
            nd = v_count if tok < 0 else 1
            nu = _live_states(row, j + 1, c - 1, v_count, live)
            ytok = row[j + c] if j + c < length else -1
            total = 0.0
            if ytok >= 0:
                yt = np.uint64(ytok)
                cu = np.uint64(c0)
                pu = np.uint64(p0)
                base = dlo * r_count
                for k in range(np.uint64(nu)):
                    alpha[cu + k] = alpha[pu + k] * shift[np.uint64(base + live[k]), yt]
                for di in range(1, nd):
                    base = (dlo + di) * r_count
                    q = np.uint64(p0 + di * nu)
                    for k in range(np.uint64(nu)):
                        alpha[cu + k] += alpha[q + k] * shift[np.uint64(base + live[k]), yt]
                n_out = nu
                for i in range(cu, cu + np.uint64(n_out)):
                    total += alpha[i]
            else:
                # Push form: each live (d, u) adds its mass to the V successors (u, y).
                vu = np.uint64(v_count)
                for k in range(nu):
                    o = np.uint64(c0 + k * v_count)
                    w = alpha[p0 + k]
                    st = np.uint64(dlo * r_count + live[k])
                    for y in range(vu):
                        alpha[o + y] = w * shift[st, y]
                    for di in range(1, nd):
                        w = alpha[p0 + di * nu + k]
                        st = np.uint64((dlo + di) * r_count + live[k])
                        for y in range(vu):
                            alpha[o + y] += w * shift[st, y]
                n_out = nu * v_count
                for i in range(np.uint64(c0), np.uint64(c0 + n_out)):
                    total += alpha[i]
            if not total > 0.0:
                ok = False
                break
            inv = 1.0 / total
            for i in range(np.uint64(c0), np.uint64(c0 + n_out)):
                alpha[i] *= inv
            for i in range(np.uint64(c0), np.uint64(c0 + n_out)):
                bi = a_bits[i]
                low = min(low, bi if bi > 0 else _MAX_BITS)
            lz += np.log(total)
        low_bits[b] = low
        if not ok:
            log_z[b] = -np.inf
            marg[b, :, :] = np.nan
            continue
        log_z[b] = lz
        if not with_marginals:
            continue
        beta = np.empty(s_count)
        nxt = np.empty(s_count)
        b_bits = beta.view(np.int64)
        n_bits = nxt.view(np.int64)
        for i in range(off[length] - off[length - 1]):
            beta[i] = 1.0
        for j in range(length - 1, -1, -1):
            tok = row[j]
            dlo = 0 if tok < 0 else tok
            nd = v_count if tok < 0 else 1
            nu = _live_states(row, j + 1, c - 1, v_count, live)
            if j < length - 1:
                b_bits, n_bits = n_bits, b_bits
                beta, nxt = nxt, beta  # nxt: beta_{j+1}, packed as (u over U_j, y over Y_j)
                ytok = row[j + c] if j + c < length else -1
                total = 0.0
                vu = np.uint64(v_count)
                for di in range(nd):
                    base = (dlo + di) * r_count
                    q = np.uint64(di * nu)
                    if ytok >= 0:
                        yt = np.uint64(ytok)
                        for k in range(np.uint64(nu)):
                            beta[q + k] = shift[np.uint64(base + live[k]), yt] * nxt[k]
                    else:
                        for k in range(np.uint64(nu)):
                            st = np.uint64(base + live[k])
                            acc = 0.0
                            o = k * vu
                            for y in range(vu):
                                acc += shift[st, y] * nxt[o + y]
                            beta[q + k] = acc
                for i in range(np.uint64(nd * nu)):
                    total += beta[i]
                if not total > 0.0:
                    low = 0  # underflow: the row is redone in log space
                    break
                inv = 1.0 / total
                for i in range(np.uint64(nd * nu)):
                    beta[i] *= inv
                for i in range(np.uint64(nd * nu)):
                    bi = b_bits[i]
                    low = min(low, bi if bi > 0 else _MAX_BITS)
            if tok >= 0:
                marg[b, j, tok] = 1.0
                continue
            a0 = off[j]
            total = 0.0
            for v in range(v_count):
                acc = 0.0
                q = np.uint64(v * nu)
                aq = np.uint64(a0 + v * nu)
                for k in range(np.uint64(nu)):
                    acc += alpha[aq + k] * beta[q + k]
                marg[b, j, v] = acc
                total += acc
            if not total > 0.0:
                low = 0
                break
            inv = 1.0 / total
            for v in range(v_count):
                marg[b, j, v] *= inv
        low_bits[b] = low
    return marg, log_z, low_bits.view(np.float64)


@numba.njit(cache=True)
def _log_add(m, acc, val):
    """One term of a streaming log-sum-exp: the running (max, sum of exp(term - max))."""
    if val == -np.inf:
        return m, acc
    if val > m:
        return val, acc * np.exp(m - val) + 1.0
    return m, acc + np.exp(val - m)


@numba.njit(cache=True)
def _log_total(m, acc):
    return m + np.log(acc) if m > -np.inf else -np.inf


@numba.njit(parallel=True, cache=True)
def _log_space_kernel(x, log_init, log_emit_t, c_ptr, c_idx, c_lp, p_ptr, p_idx, p_lp,
                      with_marginals):
    """Forward-backward in log space (log-sum-exp over the positive transitions): the fallback
    for rows whose scaled messages come near the float range (see ``TINY``). Nothing
    underflows and an impossible event is exactly -inf. Marginals are normalised by their own
    log-sum-exp."""
    batch, length = x.shape
    s_count = log_init.shape[0]
    vocab = log_emit_t.shape[0]
    marg = np.zeros((batch, length if with_marginals else 0, vocab))
    log_z = np.empty(batch)
    for b in numba.prange(batch):
        row = x[b]
        la = np.empty((length if with_marginals else 2, s_count))
        for j in range(length):
            cur = la[j] if with_marginals else la[j % 2]
            prev = la[j - 1] if with_marginals else la[(j - 1) % 2]
            tok = row[j]
            for s in range(s_count):
                if j == 0:
                    t = log_init[s]
                else:
                    m, acc = -np.inf, 0.0
                    for k in range(p_ptr[s], p_ptr[s + 1]):
                        m, acc = _log_add(m, acc, prev[p_idx[k]] + p_lp[k])
                    t = _log_total(m, acc)
                if tok >= 0:
                    t += log_emit_t[tok, s]
                cur[s] = t
        last = la[length - 1] if with_marginals else la[(length - 1) % 2]
        m, acc = -np.inf, 0.0
        for s in range(s_count):
            m, acc = _log_add(m, acc, last[s])
        lz = _log_total(m, acc)
        log_z[b] = lz
        if lz == -np.inf:
            marg[b, :, :] = np.nan
            continue
        if not with_marginals:
            continue
        lb = np.zeros(s_count)
        nb = np.empty(s_count)
        lv = np.empty(vocab)
        for j in range(length - 1, -1, -1):
            if j < length - 1:
                tok = row[j + 1]
                for s in range(s_count):
                    m, acc = -np.inf, 0.0
                    for k in range(c_ptr[s], c_ptr[s + 1]):
                        c = c_idx[k]
                        t = c_lp[k] + lb[c]
                        if tok >= 0:
                            t += log_emit_t[tok, c]
                        m, acc = _log_add(m, acc, t)
                    nb[s] = _log_total(m, acc)
                lb, nb = nb, lb
            tok = row[j]
            if tok >= 0:
                marg[b, j, tok] = 1.0
                continue
            mv, accv = -np.inf, 0.0
            for v in range(vocab):
                m, acc = -np.inf, 0.0
                for s in range(s_count):
                    m, acc = _log_add(m, acc, la[j, s] + lb[s] + log_emit_t[v, s])
                lv[v] = _log_total(m, acc)
                mv, accv = _log_add(mv, accv, lv[v])
            norm = _log_total(mv, accv)
            for v in range(vocab):
                marg[b, j, v] = np.exp(lv[v] - norm)
    return marg, log_z


# ------------------------------------------------------------------------- blocked dense kernel

_MAX_BITS = np.iinfo(np.int64).max


def _prefetcher(write: bool):
    """An intrinsic ``prefetch(arr, i)`` hinting the cache line of the 1-d array's arr[i] into
    the caches (``llvm.prefetch``, for a read or a ``write``): the forward table is too big for
    the caches, and the hardware prefetcher stops at every 4 KiB page of it."""

    @intrinsic
    def prefetch(typingctx, arr, index):
        def codegen(context, builder, signature, args):
            ary = context.make_array(signature.args[0])(context, builder, args[0])
            ptr = cgutils.get_item_pointer(context, builder, signature.args[0], ary, [args[1]])
            i8p = ir.IntType(8).as_pointer()
            i32 = ir.IntType(32)
            fn = cgutils.get_or_insert_function(
                builder.module, ir.FunctionType(ir.VoidType(), [i8p, i32, i32, i32]),
                "llvm.prefetch.p0i8")
            # (address, 1 = for a write, 3 = keep in every cache level, 1 = data cache)
            builder.call(fn, [builder.bitcast(ptr, i8p), ir.Constant(i32, int(write)),
                              ir.Constant(i32, 3), ir.Constant(i32, 1)])
            return context.get_dummy_value()

        return types.void(arr, index), codegen

    return prefetch


_prefetch_read = _prefetcher(False)
_prefetch_write = _prefetcher(True)


@numba.njit(cache=True)
def _block_prefetch(row, write):
    """Prefetch ``row`` (of the table the next position reads, or writes), one cache line of 8
    floats at a time."""
    for i in range(0, row.shape[0], 8):
        if write:
            _prefetch_write(row, i)
        else:
            _prefetch_read(row, i)


@numba.njit(cache=True)
def _block_product(x, a, out, sums):
    """out[t, i] = sum_s a[s, t] x[s, i] for a block of rows i: (states in, rows) to (states
    out, rows), both state counts multiples of ``BLOCK_TILE``, and sums[i] = sum_t out[t, i]
    unless ``sums`` is empty. A 4 x 4 tile of ``a`` sits in registers while the innermost,
    vectorised loop runs over the rows: each x row loaded serves four outputs, each output row
    is loaded and stored once per four inputs. Every entry is summed over s in increasing order
    whatever its row's place in the block, so the results do not depend on the batch; the row
    sums are taken four outputs at a time while those are in the cache."""
    k_in, r = x.shape
    sums[:] = 0.0
    for t in range(0, a.shape[1], 4):
        o0, o1, o2, o3 = out[t], out[t + 1], out[t + 2], out[t + 3]
        o0[:] = 0.0
        o1[:] = 0.0
        o2[:] = 0.0
        o3[:] = 0.0
        for s in range(0, k_in, 4):
            x0, x1, x2, x3 = x[s], x[s + 1], x[s + 2], x[s + 3]
            a00, a01, a02, a03 = a[s, t], a[s, t + 1], a[s, t + 2], a[s, t + 3]
            a10, a11, a12, a13 = a[s + 1, t], a[s + 1, t + 1], a[s + 1, t + 2], a[s + 1, t + 3]
            a20, a21, a22, a23 = a[s + 2, t], a[s + 2, t + 1], a[s + 2, t + 2], a[s + 2, t + 3]
            a30, a31, a32, a33 = a[s + 3, t], a[s + 3, t + 1], a[s + 3, t + 2], a[s + 3, t + 3]
            for i in range(r):
                v0, v1, v2, v3 = x0[i], x1[i], x2[i], x3[i]
                o0[i] = o0[i] + a00 * v0 + a10 * v1 + a20 * v2 + a30 * v3
                o1[i] = o1[i] + a01 * v0 + a11 * v1 + a21 * v2 + a31 * v3
                o2[i] = o2[i] + a02 * v0 + a12 * v1 + a22 * v2 + a32 * v3
                o3[i] = o3[i] + a03 * v0 + a13 * v1 + a23 * v2 + a33 * v3
        if sums.shape[0]:
            for i in range(r):
                sums[i] += o0[i] + o1[i] + o2[i] + o3[i]


@numba.njit(cache=True)
def _block_emit(cur, e_rows, toks, vocab, sums):
    """cur[s, i] *= e_rows[toks[i], s], the emission of row i's token, row by row over the
    revealed rows (a masked row's factor is 1): cheaper than a gather over every entry. A
    revealed row's sum sums[i] = sum_s cur[s, i] is taken anew unless ``sums`` is empty."""
    k, r = cur.shape
    for i in range(r):
        tok = toks[i]
        if tok < vocab:
            e = e_rows[tok]
            total = 0.0
            for s in range(k):
                v = cur[s, i] * e[s]
                cur[s, i] = v
                total += v
            if sums.shape[0]:
                sums[i] = total


@numba.njit(cache=True)
def _block_invert(inv, low_bits):
    """The row sums ``inv`` to 1/sum (0 for a row of zeros); a positive sum below ``TINY`` (1 /
    sum would lose digits or overflow) marks its row for the log-space redo."""
    for i in range(inv.shape[0]):
        if inv[i] >= TINY:
            inv[i] = 1.0 / inv[i]
        else:
            if inv[i] > 0.0:
                low_bits[i] = 0
            inv[i] = 0.0


@numba.njit(cache=True)
def _block_scale(cur, bits, inv, low_bits, ahead):
    """cur[s, i] *= inv[i], and ``low_bits`` the running smallest positive entry as int64 bits:
    non-negative floats order like their bit patterns, so the minimum is an integer reduction
    that vectorises, an exact zero mapped above every positive number. Prefetches the table
    ``ahead`` the next position writes, a row per state."""
    k, r = cur.shape
    for s in range(k):
        c = cur[s]
        b = bits[s]
        for i in range(r):
            c[i] *= inv[i]
        _block_prefetch(ahead[s], True)
        for i in range(r):
            low_bits[i] = min(low_bits[i], b[i] if b[i] != 0 else _MAX_BITS)


@numba.njit(cache=True)
def _block_backward_scale(beta, bits, inv, low_bits, alpha, gamma, nxt, ahead):
    """Rescale ``beta`` by ``inv`` as ``_block_scale`` does, and in the same pass gamma = alpha
    * beta (the unnormalised state posterior) and a copy of beta into ``nxt`` (the message the
    next backward product reads once ``_block_emit`` has multiplied in the emission).
    Prefetches the forward table ``ahead`` of the next position, a row per state."""
    k, r = beta.shape
    for s in range(k):
        c = beta[s]
        b = bits[s]
        g = gamma[s]
        al = alpha[s]
        n = nxt[s]
        for i in range(r):
            v = c[i] * inv[i]
            c[i] = v
            g[i] = al[i] * v
            n[i] = v
        _block_prefetch(ahead[s], False)
        for i in range(r):
            low_bits[i] = min(low_bits[i], b[i] if b[i] != 0 else _MAX_BITS)


@numba.njit(cache=True)
def _block_tokens(x, b0, r, j0, vocab, out):
    """out[q, i] = the token of row b0 + i at position j0 + q, ``vocab`` for MASK and for the
    padding rows i >= r."""
    span = min(out.shape[0], x.shape[1] - j0)
    for i in range(out.shape[1]):
        for q in range(span):
            t = x[b0 + i, j0 + q] if i < r else -1
            out[q, i] = t if t >= 0 else vocab


@numba.njit(cache=True)
def _block_marginals(mv, tile, b0, r, j0, vocab, marg, low_bits):
    """Token marginals of rows b0 + i at positions j0 + q from mv[q, v, i] (the state
    posteriors times the emission), one-hot where revealed (``tile`` as ``_block_tokens``
    fills it), ``BLOCK_TOKEN_TILE`` consecutive positions of a row written together. A masked
    entry whose total is 0 (underflow) marks its row for the log-space redo."""
    span = min(mv.shape[0], marg.shape[1] - j0)
    for i in range(r):
        for q in range(span):
            j = j0 + q
            tok = tile[q, i]
            if tok < vocab:
                for v in range(vocab):
                    marg[b0 + i, j, v] = 0.0
                marg[b0 + i, j, tok] = 1.0
                continue
            m = mv[q]
            total = 0.0
            for v in range(vocab):
                total += m[v, i]
            if not total > 0.0:
                low_bits[i] = 0
                continue
            scale = 1.0 / total
            for v in range(vocab):
                marg[b0 + i, j, v] = m[v, i] * scale


@numba.njit(parallel=True, cache=True)
def _blocked_kernel(x, init, emit_ext_t, dense, dense_t, emission, rows, chunks,
                    with_marginals):
    """Scaled forward-backward of a dense chain, ``rows`` rows per block held as a states x
    rows table: per position and direction one (K x K) @ (K x rows) product
    (``_block_product``) and rescaling passes; ``emit_ext_t``: (K, V + 1) emission with a
    column of ones for MASK (``_block_emit`` skips masked rows). The log-evidence keeps a
    running product of the scale factors and takes its log only below 1e-150 (factors are
    >= ``TINY`` unless the row is redone). ``chunks`` threads each take every ``chunks``-th
    block; padding rows past the batch (token index V: MASK) and padding states
    (``BLOCK_TILE``) are dropped.
    Returns (marginals (batch, length or 0, V), log-evidence, smallest positive entries)."""
    batch, length = x.shape
    k = init.shape[0]
    vocab = emission.shape[1]
    kp = -(-k // BLOCK_TILE) * BLOCK_TILE
    vp = -(-vocab // BLOCK_TILE) * BLOCK_TILE
    marg = np.empty((batch, length if with_marginals else 0, vocab))
    log_z = np.empty(batch)
    lows = np.empty(batch)
    blocks = (batch + rows - 1) // rows
    one_bits = np.ones(1).view(np.int64)[0]
    for c in numba.prange(chunks):
        # Thread-local, zero-padded copies of the shared tables: a view of a shared array
        # touches its reference count, an atomic the threads would fight over at every position.
        a = np.zeros((kp, kp))
        a[:k, :k] = dense
        a_t = np.zeros((kp, kp))
        a_t[:k, :k] = dense_t
        e_rows = np.zeros((vocab + 1, kp))
        e_rows[:, :k] = emit_ext_t.T
        em = np.zeros((kp, vp))
        em[:k, :vocab] = emission
        start = np.zeros(kp)
        start[:k] = init
        alpha = np.empty((length if with_marginals else 2, kp, rows))
        alpha_bits = alpha.view(np.int64)
        beta = np.empty((kp, rows))
        beta_bits = beta.view(np.int64)
        nxt = np.empty((kp, rows))
        gamma = np.empty((kp, rows))
        mv = np.empty((BLOCK_TOKEN_TILE, vp, rows))
        inv = np.empty(rows)
        prod = np.empty(rows)
        lz = np.empty(rows)
        low_bits = np.empty(rows, dtype=np.int64)
        tile = np.empty((BLOCK_TOKEN_TILE, rows), dtype=np.int64)
        no_sums = np.empty(0)
        for blk in range(c, blocks, chunks):
            b0 = blk * rows
            r = min(rows, batch - b0)
            low_bits[:] = one_bits
            prod[:] = 1.0
            lz[:] = 0.0
            for j in range(length):
                jj = j if with_marginals else j % 2
                cur = alpha[jj]
                if j % BLOCK_TOKEN_TILE == 0:
                    _block_tokens(x, b0, r, j, vocab, tile)
                toks = tile[j % BLOCK_TOKEN_TILE]
                if j == 0:
                    for s in range(kp):
                        cur[s, :] = start[s]
                    inv[:] = start.sum()
                else:
                    _block_product(alpha[jj - 1 if with_marginals else 1 - jj], a, cur, inv)
                _block_emit(cur, e_rows, toks, vocab, inv)
                _block_invert(inv, low_bits)
                _block_scale(cur, alpha_bits[jj], inv, low_bits,
                             alpha[min(j + 1, length - 1) if with_marginals else 1 - jj])
                for i in range(rows):
                    p = prod[i] / inv[i] if inv[i] > 0.0 else 0.0
                    if p < 1e-150:
                        lz[i] += np.log(p) if p > 0.0 else -np.inf
                        p = 1.0
                    prod[i] = p
            for i in range(r):
                log_z[b0 + i] = lz[i] + np.log(prod[i])
            if with_marginals:
                beta[:, :] = 1.0
                inv[:] = 1.0
                for j in range(length - 1, -1, -1):
                    if j < length - 1:
                        _block_product(nxt, a_t, beta, inv)
                        _block_invert(inv, low_bits)
                        for i in range(r):
                            if inv[i] == 0.0 and log_z[b0 + i] > -np.inf:
                                low_bits[i] = 0  # underflow: the row is redone in log space
                    if j == length - 1 or j % BLOCK_TOKEN_TILE == BLOCK_TOKEN_TILE - 1:
                        _block_tokens(x, b0, r, j - j % BLOCK_TOKEN_TILE, vocab, tile)
                    toks = tile[j % BLOCK_TOKEN_TILE]
                    _block_backward_scale(beta, beta_bits, inv, low_bits, alpha[j], gamma, nxt,
                                          alpha[max(j - 1, 0)])
                    _block_emit(nxt, e_rows, toks, vocab, no_sums)
                    _block_product(gamma, em, mv[j % BLOCK_TOKEN_TILE], no_sums)
                    if j % BLOCK_TOKEN_TILE == 0:
                        _block_marginals(mv, tile, b0, r, j, vocab, marg, low_bits)
                for i in range(r):
                    if log_z[b0 + i] == -np.inf:
                        marg[b0 + i, :, :] = np.nan
            lows[b0:b0 + r] = low_bits[:r].view(np.float64)
    return marg, log_z, lows


# ------------------------------------------------------------------------ first-order chains


SQRT_TINY = 1e-140
"""A cached power entry at least this large times another one stays above ``TINY``."""


def _first_order_bytes(vocab: int, powers: int) -> float:
    return 8.0 * powers * vocab * (2 * vocab + 1)


@numba.njit(cache=True)
def _trust(p, reach, row_ok, col_ok):
    """Flag the rows and columns of a power whose entries are trustworthy: zero exactly where
    the Boolean power is, else at least ``SQRT_TINY`` (normal products, no lost digits)."""
    row_ok[:] = True
    col_ok[:] = True
    for i in range(p.shape[0]):
        for j in range(p.shape[1]):
            val = p[i, j]
            if not ((val >= SQRT_TINY) if reach[i, j] > 0.0 else (val == 0.0)):
                row_ok[i] = False
                col_ok[j] = False


@numba.njit(cache=True)
def _fill_powers(transition, reach1, powers, reach, row_ok, col_ok, start):
    """powers[k] = P^k and its trust flags for k >= ``start`` (given k = start - 1 and the
    Boolean power ``reach`` of start - 1, 0/1 floats, updated in place)."""
    for k in range(start, powers.shape[0]):
        np.dot(powers[k - 1], transition, powers[k])
        nxt = np.dot(reach, reach1)
        for i in range(nxt.shape[0]):
            for j in range(nxt.shape[1]):
                reach[i, j] = 1.0 if nxt[i, j] > 0.0 else 0.0
        _trust(powers[k], reach, row_ok[k], col_ok[k])


@numba.njit(cache=True)
def _fill_prior(transition, reach1, prior, reach, ok, start):
    """prior[t] = pi P^t and its trust flag (as ``_trust``) for t >= ``start`` (``reach``: the
    Boolean support of prior[start - 1] as 0/1 floats, updated in place)."""
    for t in range(start, prior.shape[0]):
        np.dot(prior[t - 1], transition, prior[t])
        nxt = np.dot(reach, reach1)
        good = True
        for j in range(nxt.shape[0]):
            reach[j] = 1.0 if nxt[j] > 0.0 else 0.0
            val = prior[t, j]
            if not ((val >= SQRT_TINY) if reach[j] > 0.0 else (val == 0.0)):
                good = False
        ok[t] = good


@numba.njit(cache=True)
def _first_order_sizes(x):
    """(prior entries, powers) the rows of ``x`` read: pi P^t up to the first revealed position
    (all of a fully masked row), P^k up to the longest step from a revealed position to the
    next one or to the end, and from the start of the row to its first revealed position (the
    masked positions before it read P^(t - u) for u >= 0)."""
    batch, length = x.shape
    n_prior, n_powers = 1, 1
    for b in range(batch):
        left = -1
        for t in range(length):
            if x[b, t] >= 0:
                if left < 0:
                    n_prior = max(n_prior, t + 1)
                    n_powers = max(n_powers, t + 1)
                else:
                    n_powers = max(n_powers, t - left + 1)
                left = t
        if left < 0:
            n_prior = max(n_prior, length)
        else:
            n_powers = max(n_powers, length - left)
    return n_prior, n_powers


def _trusted_prefix(ok: np.ndarray) -> np.ndarray:
    """(n, V) flags -> (V,) the first k with ok[k, v] False, else n."""
    return np.where(ok.all(axis=0), ok.shape[0], np.argmin(ok, axis=0)).astype(np.int64)


@dataclass(eq=False)
class _Powers:
    """Cached tables of a token chain (initial pi, transition P), grown on demand: prior[t] =
    pi P^t, powers[k] = P^k (and transposed), and where each is trustworthy (``_trust``); the
    last Boolean powers (0/1 floats) continue the tables. Trusted prefixes: prior[t] is
    trusted for all t < ``prior_run``, row v of P^k for all k < ``row_run[v]``, column v for
    all k < ``col_run[v]``."""

    transition: np.ndarray
    reach1: np.ndarray
    prior: np.ndarray
    prior_ok: np.ndarray
    prior_reach: np.ndarray
    powers: np.ndarray
    powers_t: np.ndarray
    row_ok: np.ndarray
    col_ok: np.ndarray
    reach: np.ndarray
    prior_run: int = field(init=False)
    row_run: np.ndarray = field(init=False)
    col_run: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        self._find_runs()

    def _find_runs(self) -> None:
        self.prior_run = int(_trusted_prefix(self.prior_ok[:, None])[0])
        self.row_run = _trusted_prefix(self.row_ok)
        self.col_run = _trusted_prefix(self.col_ok)

    @classmethod
    def of(cls, initial: np.ndarray, transition: np.ndarray) -> _Powers:
        v = transition.shape[0]
        p = np.array(transition, dtype=np.float64, order="C")
        reach1 = (p > 0).astype(np.float64)
        pi = np.array(initial, dtype=np.float64).reshape(1, v)
        # pi itself is trusted as the later prior rows are (``_fill_prior``): no entry below
        # SQRT_TINY, where products would lose digits
        trusted = np.all((pi == 0.0) | (pi >= SQRT_TINY), axis=1)
        return cls(p, reach1, pi, trusted, (np.asarray(initial) > 0).astype(np.float64),
                   np.eye(v).reshape(1, v, v), np.eye(v).reshape(1, v, v),
                   np.ones((1, v), dtype=np.bool_),
                   np.ones((1, v), dtype=np.bool_), np.eye(v))

    def grow(self, n_prior: int, n_powers: int) -> None:
        have = self.prior.shape[0]
        if n_prior > have:
            n = max(n_prior, 2 * have)
            self.prior = np.concatenate([self.prior, np.empty((n - have, self.prior.shape[1]))])
            self.prior_ok = np.concatenate([self.prior_ok, np.empty(n - have, dtype=np.bool_)])
            _fill_prior(self.transition, self.reach1, self.prior, self.prior_reach,
                        self.prior_ok, have)
        have = self.powers.shape[0]
        if n_powers > have:
            n = max(n_powers, 2 * have)
            v = self.transition.shape[0]
            self.powers = np.concatenate([self.powers, np.empty((n - have, v, v))])
            self.row_ok = np.concatenate([self.row_ok, np.empty((n - have, v), dtype=np.bool_)])
            self.col_ok = np.concatenate([self.col_ok, np.empty((n - have, v), dtype=np.bool_)])
            _fill_powers(self.transition, self.reach1, self.powers, self.reach, self.row_ok,
                         self.col_ok, have)
            self.powers_t = np.ascontiguousarray(self.powers.transpose(0, 2, 1))
        self._find_runs()


def _powers(arrays: HMMArrays | NGramArrays) -> _Powers:
    per_arrays = _CHAINS.setdefault(arrays, {})
    if "powers" not in per_arrays:
        per_arrays["powers"] = _Powers.of(*token_chain(arrays))
    return per_arrays["powers"]


def _first_order(arrays: HMMArrays | NGramArrays, x: np.ndarray, with_marginals: bool,
                 req_ptr: np.ndarray, req_pos: np.ndarray, max_bytes: float | None = None
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``_first_order_kernel`` on the rows of ``x`` with the cached tables of ``arrays``
    (``_powers``); where a row reads past them, they grow to what the rows that do read
    (``_first_order_sizes``) and the kernel runs again."""
    tables = _powers(arrays)
    vocab = arrays.vocab_size
    while True:
        with _threads_for(x.size * vocab):
            marg, log_z, trouble, short = _first_order_kernel(
                x, tables.prior, tables.prior_ok, tables.powers, tables.powers_t, tables.row_ok,
                tables.prior_run, tables.row_run, tables.col_run, with_marginals, req_ptr,
                req_pos)
        if not short.any():
            return marg, log_z, trouble
        n_prior, n_powers = _first_order_sizes(x[short])
        check_memory(f"first-order powers P^k for k < {n_powers} with V={vocab}",
                     _first_order_bytes(vocab, n_powers), max_bytes,
                     argument="the gaps between revealed tokens")
        tables.grow(n_prior, n_powers)


@numba.njit(cache=True, inline="always")
def _first_order_marginal(marg, i, u, left, xl, t, xr, length, prior, powers, powers_t) -> bool:
    """marg[i] = q(x_u | x_left, x_t) of ``_first_order_kernel``; False where it sums to 0."""
    # Scalar indexing only: a view of a shared table (prior[u]) would touch its reference count,
    # an atomic that the threads would fight over.
    total = 0.0
    for v in range(marg.shape[1]):
        q = prior[u, v] if left < 0 else powers[u - left, xl, v]
        if t < length:
            q *= powers_t[t - u, xr, v]
        marg[i, v] = q
        total += q
    if not total > 0.0:
        return False
    inv = 1.0 / total
    for v in range(marg.shape[1]):
        marg[i, v] *= inv
    return True


@numba.njit(parallel=True, cache=True)
def _first_order_kernel(x, prior, prior_ok, powers, powers_t, row_ok, prior_run, row_run,
                        col_run, with_marginals, req_ptr, req_pos):
    """Marginals and log-evidence of a token chain from its nearest revealed neighbours:
    q(x_t = v | x_l, x_r) proportional to P^(t-l)[x_l, v] P^(r-t)[v, x_r] (pi P^t without a
    left neighbour, 1 without a right one) and log q(revealed) = log (pi P^(r_1))[x_(r_1)] +
    sum log P^(r_(i+1) - r_i)[x_(r_i), x_(r_(i+1))] (``powers_t``: the transposed powers, so
    that a column is contiguous; ``*_run``: the trusted prefixes of ``_Powers``).

    Marginals (``with_marginals``) at every position when ``req_ptr`` is empty (out:
    (batch * length, V), revealed positions one-hot, NaN on impossible and recomputed rows),
    else only at the masked positions req_pos[req_ptr[b]:req_ptr[b + 1]] (ascending) of each
    row b (out: (n, V), uniform on impossible and recomputed rows). Returns (marginals,
    log-evidence, rows that read an untrusted table entry and must be recomputed); a row's trust
    does not depend on which positions are requested: a gap between revealed tokens is trusted
    as a whole. A row that would read past the tables (``_first_order_sizes``) stops and is
    flagged in a fourth output, ``short``."""
    batch, length = x.shape
    vocab = prior.shape[1]
    n_prior, n_powers = prior.shape[0], powers.shape[0]
    every = req_ptr.shape[0] == 0
    n_out = (batch * length if every else req_pos.shape[0]) if with_marginals else 0
    marg = np.zeros((n_out, vocab))
    log_z = np.empty(batch)
    trouble = np.zeros(batch, dtype=np.bool_)
    short = np.zeros(batch, dtype=np.bool_)
    for b in numba.prange(batch):
        left, xl = -1, 0
        lz = 0.0
        prod = 1.0  # a running product of evidence factors: one log per ~1e150, not per factor
        bad = False
        k = 0 if every else req_ptr[b]  # the next requested position
        for t in range(length + 1):
            xr = x[b, t] if t < length else -1
            if t < length and xr < 0:
                continue
            # The sizes _first_order_sizes asks for this step (pi P^t and P^(t - left), or the
            # masked tail), so that no read below leaves the tables.
            if t < length:
                bad = (t >= n_prior or t >= n_powers) if left < 0 else t - left >= n_powers
            else:
                bad = length > n_prior if left < 0 else length - left > n_powers
            if bad:
                short[b] = True
                prod = 0.0
                break
            if t < length:
                if left < 0:
                    bad = not prior_ok[t]
                    p = prior[t, xr]
                else:
                    bad = not row_ok[t - left, xl]
                    p = powers[t - left, xl, xr]
                if bad or p == 0.0:
                    prod = 0.0
                    break
                prod *= p
                if prod < 1e-150:
                    lz += np.log(prod)
                    prod = 1.0
            if with_marginals:
                # The gap reads pi P^u (u < t) or rows x_l of P^d (d < t - l), and columns x_r
                # of P^d (d <= t - l - 1, or d <= t without a left neighbour).
                if left < 0:
                    bad = prior_run < t or (t < length and col_run[xr] <= t)
                else:
                    bad = row_run[xl] < t - left or (t < length and col_run[xr] < t - left)
                if bad:
                    break
                if every:
                    for u in range(left + 1, t):
                        if not _first_order_marginal(marg, b * length + u, u, left, xl, t, xr,
                                                     length, prior, powers, powers_t):
                            bad = True
                            break
                    if t < length:
                        marg[b * length + t, xr] = 1.0
                else:
                    while k < req_ptr[b + 1] and req_pos[k] < t:
                        if not _first_order_marginal(marg, k, req_pos[k], left, xl, t, xr,
                                                     length, prior, powers, powers_t):
                            bad = True
                            break
                        k += 1
                if bad:
                    break
            left, xl = t, xr
        trouble[b] = bad and not short[b]
        lz = lz + np.log(prod) if prod > 0.0 else -np.inf
        log_z[b] = lz
        if with_marginals and (bad or lz == -np.inf):
            if every:
                marg[b * length:(b + 1) * length, :] = np.nan
            else:
                marg[req_ptr[b]:req_ptr[b + 1], :] = 1.0 / vocab
    return marg, log_z, trouble, short


def _thread_cap(threads: int) -> int:
    """numba's thread count ``threads`` (``NUMBA_NUM_THREADS`` or the CPUs), capped by
    ``$MDM_EXACT_THREADS`` where set."""
    raw = os.environ.get(THREADS_ENV, "").strip()
    if not raw:
        return threads
    try:
        cap = int(raw)
    except ValueError:
        cap = 0
    if cap < 1:
        raise ArgumentError(f"${THREADS_ENV} must be a positive integer, got {raw!r}")
    return min(cap, threads)


@contextmanager
def _threads_for(work: float):
    """Run a call below ``SERIAL_WORK`` (position x state) updates on one numba thread, a
    bigger one on ``_thread_cap`` threads. Yields the thread count."""
    before = numba.get_num_threads()
    cap = _thread_cap(before)
    threads = cap if work >= SERIAL_WORK else 1
    if threads == before:
        yield threads
        return
    numba.set_num_threads(threads)
    try:
        yield threads
    finally:
        numba.set_num_threads(before)


def _run_chain(arrays: HMMArrays | NGramArrays, x: np.ndarray, implementation: str,
               with_marginals: bool, max_bytes: float | None = None
               ) -> tuple[np.ndarray, np.ndarray]:
    """(marginals (batch, length or 0, V) with NaN on impossible rows, log-evidence) of the rows
    of ``x`` by the engine ``implementation`` resolves to. Rows a scaled kernel cannot vouch
    for (``TINY``) are redone in log space; rows where a cached first-order power is untrusted
    by the engine ``auto`` would pick without it."""
    batch, length = x.shape
    vocab = arrays.vocab_size
    impl = _resolve(arrays, implementation, x, _thread_cap(numba.get_num_threads()),
                    max_bytes=max_bytes)
    if impl == "first-order":
        if with_marginals:
            check_memory(f"posterior(batch={batch}, length={length}) with V={vocab}",
                         8.0 * batch * length * vocab, max_bytes,
                         argument="the batch or length of x")
        no_requests = np.zeros(0, dtype=np.int64)
        marg, log_z, trouble = _first_order(arrays, x, with_marginals, no_requests, no_requests,
                                            max_bytes)
        marg = marg.reshape(batch, length if with_marginals else 0, vocab)
        rows = np.flatnonzero(trouble)
        if rows.size:
            generic = _resolve(arrays, "auto", x[rows], numba.get_num_threads(), False,
                               max_bytes)
            redo, log_z[rows] = _run_chain(arrays, x[rows], generic, with_marginals, max_bytes)
            if with_marginals:
                marg[rows] = redo
        return marg, log_z
    chain = _chain(arrays, impl)
    with _threads_for(x.size * chain.num_states) as threads:
        if impl == "blocked":
            rows = _block_rows(batch, length, chain.num_states, threads)
            if with_marginals:
                check_memory(
                    f"posterior(batch={batch}, length={length}) with {chain.num_states} states",
                    8.0 * (batch * length * vocab + threads * length * rows
                           * (-(-chain.num_states // BLOCK_TILE) * BLOCK_TILE)),
                    max_bytes, argument="the batch or length of x")
            emit_ext_t = np.concatenate([chain.emission_t, np.ones((1, chain.num_states))]).T
            marg, log_z, lows = _blocked_kernel(
                x, chain.initial, np.ascontiguousarray(emit_ext_t), chain.dense, chain.dense_t,
                np.ascontiguousarray(chain.emission_t.T), rows, min(threads, -(-batch // rows)),
                with_marginals)
        else:
            if with_marginals:
                check_memory(
                    f"posterior(batch={batch}, length={length}) with {chain.num_states} states",
                    8.0 * (batch * length * vocab + threads * length * chain.num_states),
                    max_bytes, argument="the batch or length of x")
            if chain.shift.size:
                marg, log_z, lows = _ngram_marginals_kernel(
                    x, chain.initial, chain.shift, vocab, arrays.order, with_marginals)
            elif with_marginals:
                marg, log_z, lows = _marginals_kernel(
                    x, chain.initial, chain.emission_t, chain.dense, chain.dense_t,
                    chain.children_ptr, chain.children, chain.children_p, chain.parents_ptr,
                    chain.parents, chain.parents_p, chain.emitters_ptr, chain.emitters)
            else:
                log_z, lows = _log_evidence_kernel(
                    x, chain.initial, chain.emission_t, chain.dense, chain.parents_ptr,
                    chain.parents, chain.parents_p, chain.emitters_ptr, chain.emitters)
                marg = np.zeros((batch, 0, vocab))
        rows = np.flatnonzero(_in_trouble(chain, lows))
        if rows.size:
            redo, log_z[rows] = _log_space(chain, x[rows], with_marginals)
            if with_marginals:
                marg[rows] = redo
    return marg, log_z


# ------------------------------------------------------------------------ interval parity


def _interval_parity_bytes(arrays: IntervalParityArrays, batch: int, length: int,
                          want_marginals: bool) -> float:
    """Peak of ``_interval_parity``: the (batch, L/l, l, l-1) bit and probability tables (about
    four alive), and with marginals the (batch, L, V, l-1) per-bit factors, their product
    and the one-hot and output (batch, L, V) tables."""
    l, v = arrays.interval, arrays.vocab_size
    cells = float(batch) * length
    out = 8.0 * cells * (l - 1) * 4
    if want_marginals:
        out += 8.0 * cells * v * (2 * (l - 1) + 4)
    return out


def _interval_parity(arrays: IntervalParityArrays, x: np.ndarray, want_marginals: bool):
    """Closed form of Example C.7: pair bits are independent fair coins; a revealed token fixes
    the l-1 bits it stores, two revealed tokens must agree on their shared bit."""
    l, v = arrays.interval, arrays.vocab_size
    batch, length = x.shape
    if length % l:
        raise ArgumentError(f"x has length {length}, not a multiple of interval={l}")
    blocks = x.reshape(batch, length // l, l)
    revealed = blocks >= 0
    # bit[..., a, r]: bit r (0-based) of the token at in-interval position a (0-based).
    bit = (np.where(revealed, blocks, 0)[..., None] >> np.arange(l - 1)) & 1
    valid = np.ones((batch, length // l), dtype=bool)
    constrained = np.zeros((batch, length // l), dtype=np.int64)
    p_one = np.full((batch, length // l, l, l - 1), 0.5)
    for a in range(l):
        for b in range(a + 1, l):
            ra, rb = b - 1, a  # bit index of the pair (a, b) in token a and in token b
            ka, kb = revealed[..., a], revealed[..., b]
            valid &= ~(ka & kb) | (bit[..., a, ra] == bit[..., b, rb])
            constrained += ka | kb
            fixed_b = np.where(ka, bit[..., a, ra], bit[..., b, rb]).astype(float)
            p_one[..., a, ra] = np.where(kb, fixed_b, p_one[..., a, ra])
            p_one[..., b, rb] = np.where(ka, fixed_b, p_one[..., b, rb])
    row_valid = valid.all(axis=1)
    log_z = np.where(row_valid, -constrained.sum(axis=1) * np.log(2.0), -np.inf)
    if not want_marginals:
        return None, log_z, row_valid
    token_bits = (np.arange(v)[:, None] >> np.arange(l - 1)) & 1  # (V, l-1)
    probs = np.where(token_bits.astype(bool), p_one[..., None, :], 1 - p_one[..., None, :])
    marg = probs.prod(axis=-1).reshape(batch, length, v)
    onehot = np.eye(v)[np.where(x >= 0, x, 0)]
    marg = np.where((x >= 0)[..., None], onehot, marg)
    marg[~row_valid] = np.nan
    return marg, log_z, row_valid


# ------------------------------------------------------------------------------ public API


BACKENDS = ("numba", "torch")
"""Engines of the public functions: ``numba`` (numpy arrays in and out) or ``torch``
(``mdm_exact.posterior_torch``, imported on first use: tensors on ``device`` out, for a model
training on a GPU; needs the ``torch`` extra)."""


def _torch_engine(backend: str, device):
    """``mdm_exact.posterior_torch`` for ``backend="torch"``, None for numba."""
    if backend not in BACKENDS:
        raise ArgumentError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if backend == "numba":
        if device is not None:
            raise ArgumentError(f"device={device!r} needs backend='torch'")
        return None
    from . import posterior_torch

    return posterior_torch


def _prepare(language: ChainSource | ChainArrays, x) -> tuple[ChainArrays, np.ndarray, bool]:
    arrays = _arrays_of(language)
    arr = check_tokens(x, arrays.vocab_size)
    return arrays, arr, np.ndim(x) == 1


def posterior(
    language: ChainSource | ChainArrays, x, *, implementation: str = "auto",
    max_bytes: float | None = None, backend: str = "numba", device=None
) -> Posterior:
    """Exact token marginals given the revealed tokens of each row (never raises on impossible
    rows; see ``Posterior.valid``).

    language: a language or its ``ChainArrays``. x: (batch, length) int with ``MASK = -1`` at
    masked positions (a 1-D x is one row and the batch axis is dropped from the result). Cost
    O(batch * length * V) for a first-order chain (after its cached powers),
    O(batch * length * V^n) for an n-gram, O(batch * length * K^2) for a dense HMM; memory one
    (length, states) table per thread or block. ``implementation``: see ``IMPLEMENTATIONS`` (the
    results agree to rounding, their zeros exactly). ``backend="torch"``: the same result as
    torch tensors on ``device`` (``mdm_exact.posterior_torch.posterior``; x may be a tensor).
    """
    engine = _torch_engine(backend, device)
    if engine is not None:
        return engine.posterior(language, x, device=device, max_bytes=max_bytes)
    arrays, arr, single = _prepare(language, x)
    _check_implementation(implementation)
    batch, length = arr.shape
    if isinstance(arrays, IntervalParityArrays):
        check_memory(f"posterior(batch={batch}, length={length}) of {language!r}",
                     _interval_parity_bytes(arrays, batch, length, True), max_bytes,
                     argument="the batch or length of x")
        marg, log_z, valid = _interval_parity(arrays, arr, True)
    else:
        marg, log_z = _run_chain(arrays, arr, implementation, True, max_bytes)
        valid = np.isfinite(log_z)
    # log q(revealed tokens) <= 0: a sum of thousands of log-normalisers near 0 can round
    # a few ulps above it (a fully masked row of 1e5 tokens: about 1e-11)
    log_z = np.minimum(log_z, 0.0)
    if single:
        return Posterior(marg[0], log_z[0], valid[0])
    return Posterior(marg, log_z, valid)


def posterior_marginals(
    language: ChainSource | ChainArrays, x, *, implementation: str = "auto",
    max_bytes: float | None = None, backend: str = "numba", device=None
) -> np.ndarray:
    """(batch, length, V) exact q(x_i = v | revealed tokens): the ideal denoiser q_{0|t} (eq. 2).

    Raises ``ValueError`` naming the rows whose revealed tokens are impossible under q.
    ``backend="torch"``: a tensor on ``device`` (see ``posterior``).
    """
    post = posterior(language, x, implementation=implementation, max_bytes=max_bytes,
                     backend=backend, device=device)
    valid = post.valid.cpu().numpy() if backend == "torch" else post.valid
    bad = np.flatnonzero(~np.atleast_1d(valid))
    if bad.size:
        shown = ", ".join(str(i) for i in bad[:10]) + (" ..." if bad.size > 10 else "")
        raise ArgumentError(
            f"x has revealed tokens of probability zero under q in row(s) {shown}; "
            "use posterior() to get a validity mask instead"
        )
    return post.marginals


def log_prob(language: ChainSource | ChainArrays, x, *, backend: str = "numba",
             device=None) -> np.ndarray:
    """(batch,) log q of the revealed tokens of each row (masked positions marginalised), in
    nats; ``-inf`` off the support. Full n-gram sequences use a direct table look-up.
    ``backend="torch"``: a tensor on ``device`` (see ``posterior``)."""
    engine = _torch_engine(backend, device)
    if engine is not None:
        return engine.log_prob(language, x, device=device)
    arrays, arr, single = _prepare(language, x)
    if isinstance(arrays, IntervalParityArrays):
        check_memory(f"log_prob(batch={arr.shape[0]}, length={arr.shape[1]}) of {language!r}",
                     _interval_parity_bytes(arrays, *arr.shape, False),
                     argument="the batch or length of x")
        out = _interval_parity(arrays, arr, False)[1]
    elif isinstance(arrays, NGramArrays) and np.all(arr >= 0):
        out = _ngram_log_prob(arrays, arr)
    else:
        out = _run_chain(arrays, arr, "auto", False)[1]
    out = np.minimum(out, 0.0)  # a probability's log, whatever the rounding (see posterior)
    return out[0] if single else out


def _ngram_log_prob(arrays: NGramArrays, x: np.ndarray) -> np.ndarray:
    v, c = arrays.vocab_size, arrays.order - 1
    batch, length = x.shape
    with np.errstate(divide="ignore"):
        if length < c:
            init = arrays.initial.sum(axis=tuple(range(length, c)))
            return np.log(init[tuple(x.T)])
        out = np.log(arrays.initial[tuple(x[:, :c].T)])
        if length > c:
            windows = np.lib.stride_tricks.sliding_window_view(x, c + 1, axis=1)
            idx = (windows * (v ** np.arange(c, -1, -1))).sum(axis=-1)
            out = out + np.log(arrays.transition.ravel()[idx]).sum(axis=1)
    return out


def in_support(language: ChainSource | ChainArrays, x, *, backend: str = "numba",
               device=None) -> np.ndarray:
    """(batch,) exact test q(revealed tokens) > 0, in the Boolean semiring (no underflow).
    ``backend="torch"``: a bool tensor on ``device`` (see ``posterior``)."""
    engine = _torch_engine(backend, device)
    if engine is not None:
        return engine.in_support(language, x, device=device)
    arrays, arr, single = _prepare(language, x)
    if isinstance(arrays, IntervalParityArrays):
        check_memory(f"in_support(batch={arr.shape[0]}, length={arr.shape[1]}) of "
                     f"{language!r}", _interval_parity_bytes(arrays, *arr.shape, False),
                     argument="the batch or length of x")
        out = _interval_parity(arrays, arr, False)[2]
    elif isinstance(arrays, NGramArrays) and np.all(arr >= 0):
        out = np.isfinite(_ngram_log_prob(arrays, arr))
    else:
        chain = _chain(arrays)
        with _threads_for(arr.size * chain.num_states):
            out = _support_kernel(arr, chain.initial > 0, chain.emission_t > 0,
                                  chain.parents_ptr, chain.parents)
    return out[0] if single else out


__all__ = [
    "MASK",
    "ChainArrays",
    "ChainSource",
    "HMMArrays",
    "IntervalParityArrays",
    "NGramArrays",
    "Posterior",
    "in_support",
    "log_prob",
    "posterior",
    "posterior_marginals",
]
