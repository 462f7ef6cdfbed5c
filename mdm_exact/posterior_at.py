"""Token marginals of n-grams and first-order chains at requested positions only, by jumps
between revealed tokens.

The sampler of eq. 3 needs, at each step, q(x_t | revealed tokens) only at the positions it
reveals at that step (docs/concepts.md). For an n-gram, run over its state chain
s_j = (x_j, ..., x_{j+n-2}) with transition P, the chain runs free between two revealed tokens,
so a message crosses a gap of g positions in one product with P^g (Chapman-Kolmogorov),
restricted to the V^(n-2) states whose first digit is the revealed token:

    alpha_{r'}(s') = sum_s alpha_r(s) P^(r'-r)[s, s'],   q(x_t = v | ...) prop. to
    sum_{s: s_0 = v} (alpha_l P^(t-l))(s) (P^(r-t) beta_r)(s)

with l, r the revealed tokens next to t (the initial law pi P^t, or ones, at the ends). A row
costs O(m V^(2n-4)) for m revealed tokens plus O(V^(2n-3)) per requested position, against the
O(L V^n) of the full masked forward-backward of ``mdm_exact.posterior``.

First-order chains (2-grams, HMMs whose emission is a permutation), where
q(x_t | x_l, x_r) is proportional to P^(t-l)[x_l, x_t] P^(r-t)[x_t, x_r], run the first-order
engine of ``mdm_exact.posterior`` on the requested positions only: its cached powers, its trust
flags and its arithmetic, so every marginal is bit for bit the one ``posterior`` returns.

Exactness (order >= 3): the table of powers P^g (g < L) and pi P^j is built once per language
and length and is used only when its zero pattern equals the Boolean-semiring powers (so zeros
are exact) and its smallest positive entry is at least ``POWER_FLOOR``; messages are rescaled to
sum 1, and a row whose smallest possible product could fall below ``mdm_exact.posterior.TINY``
is reported (``trouble``) for the caller to redo with ``posterior``, as that engine does for its
own rows (the first-order engine reports a row that reads an untrusted power the same way).
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass

import numba
import numpy as np

from .posterior import TINY, ChainArrays, HMMArrays, NGramArrays, _first_order, _resolve

TABLE_BYTES = 64 * 2**20
"""Largest table of powers (L x S x S float64, S = V^(n-1) states, n >= 3) built for the jump
kernel; bigger languages or lengths run the full forward-backward instead."""

POWER_FLOOR = 1e-100
"""Smallest positive entry a table of powers may have (else it is not used)."""


@dataclass(frozen=True, eq=False)
class PowerTable:
    """P^g for g = 0 .. length-1 (``powers``: (length, S, S)) and the law of the state at each
    position, pi P^j (``initial``: (length, S)); ``floor``: their smallest positive entry;
    ``digits``: (V^(n-2), n-2), the tokens x_{j+1}, .., x_{j+n-2} of the states
    (x_j, u) in the order of u."""

    powers: np.ndarray
    initial: np.ndarray
    floor: float
    vocab_size: int
    digits: np.ndarray

    @property
    def length(self) -> int:
        return self.powers.shape[0]


_TABLES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def power_table(arrays: NGramArrays, length: int) -> PowerTable | None:
    """The table of an n-gram of order >= 3 for sequences of up to ``length`` tokens, cached per
    arrays object; ``None`` for other arrays, when it would exceed ``TABLE_BYTES`` or when it
    cannot represent its zeros exactly (an underflowed entry, or one below ``POWER_FLOOR``)."""
    if not isinstance(arrays, NGramArrays) or arrays.order < 3:
        return None
    built = _TABLES.setdefault(arrays, {})
    for size, known in built.items():
        if size >= length and known is not None:
            return known
    if length in built:
        return None
    v = arrays.vocab_size
    s = v ** (arrays.order - 1)
    if 8.0 * length * s * (s + 1) > TABLE_BYTES:
        return None
    flat = arrays.transition.reshape(s, v)
    step = np.zeros((s, s))
    states = np.arange(s)
    # State (x_j, .., x_{j+n-2}) moves to (x_{j+1}, .., x_{j+n-1}).
    step[states[:, None], (states[:, None] * v + np.arange(v)) % s] = flat
    support = (step > 0).astype(np.float64)
    powers = np.empty((length, s, s))
    initial = np.empty((length, s))
    powers[0] = np.eye(s)
    initial[0] = arrays.initial.ravel()
    reach = np.eye(s)
    reach_init = (initial[0] > 0).astype(np.float64)
    exact = True
    for g in range(1, length):
        powers[g] = powers[g - 1] @ step
        initial[g] = initial[g - 1] @ step
        reach = np.minimum(reach @ support, 1.0)
        reach_init = np.minimum(reach_init @ support, 1.0)
        if not (np.array_equal(powers[g] > 0, reach > 0)
                and np.array_equal(initial[g] > 0, reach_init > 0)):
            exact = False
            break
    floor = min(float(powers[powers > 0].min()), float(initial[initial > 0].min())) \
        if exact else 0.0
    width = arrays.order - 2
    digits = (np.arange(s // v)[:, None] // v ** np.arange(width - 1, -1, -1)) % v
    table = PowerTable(powers, initial, floor, v, np.ascontiguousarray(digits, dtype=np.int64)) \
        if exact and floor >= POWER_FLOOR else None
    built[length] = table
    return table


@numba.njit(cache=True)
def _restrict(row, r, digits, vec):
    """Zero the entries u of ``vec`` (states (x_r, u); ``digits[u, i]`` is the token u puts at
    r+1+i) that disagree with the tokens revealed at r+1, r+2, ..: no path through them explains
    those tokens, so dropping them changes no marginal and lets the loops skip them."""
    length = row.shape[0]
    for i in range(digits.shape[1]):
        pos = r + 1 + i
        if pos >= length:
            return
        tok = row[pos]
        if tok >= 0:
            for u in range(digits.shape[0]):
                if digits[u, i] != tok:
                    vec[u] = 0.0


@numba.njit(parallel=True, cache=True)
def _jump_kernel(x, req_ptr, req_pos, powers, initial, vocab, digits):
    """Marginals at ``req_pos[req_ptr[b]:req_ptr[b+1]]`` (ascending masked positions) of each
    row b of ``x``; returns (marginals (n, V), valid (B,), lows (B,)): an impossible row gets
    uniform marginals; ``lows`` is the smallest positive entry of each row's normalised
    messages (0 where a sum vanished after the forward pass), for the ``TINY`` test of the
    caller."""
    batch, length = x.shape
    s_count = initial.shape[1]
    r_count = s_count // vocab
    marg = np.empty((req_pos.shape[0], vocab))
    valid = np.ones(batch, dtype=np.bool_)
    lows = np.ones(batch)
    for b in numba.prange(batch):
        row = x[b]
        rv = np.flatnonzero(row >= 0)
        m = rv.shape[0]
        alpha = np.empty((m, r_count))
        beta = np.empty((m, r_count))
        low = 1.0
        ok = True
        for i in range(m):
            r = rv[i]
            a = row[r] * r_count
            total = 0.0
            if i == 0:
                for w in range(r_count):
                    alpha[0, w] = initial[r, a + w]
            else:
                p = powers[r - rv[i - 1]]
                ap = row[rv[i - 1]] * r_count
                alpha[i, :] = 0.0
                for u in range(r_count):
                    weight = alpha[i - 1, u]
                    if weight == 0.0:
                        continue
                    for w in range(r_count):
                        alpha[i, w] += weight * p[ap + u, a + w]
            _restrict(row, r, digits, alpha[i])
            for w in range(r_count):
                total += alpha[i, w]
            if not total > 0.0:
                ok = False
                break
            inv = 1.0 / total
            for w in range(r_count):
                val = alpha[i, w] * inv
                alpha[i, w] = val
                if val > 0.0 and val < low:
                    low = val
        if not ok:
            # Exactly impossible unless low * floor < TINY (a sum may then have underflowed):
            # the caller's TINY test sees this row's low.
            lows[b] = low
            valid[b] = False
            for k in range(req_ptr[b], req_ptr[b + 1]):
                marg[k, :] = 1.0 / vocab
            continue
        if m > 0:
            beta[m - 1, :] = 1.0
            _restrict(row, rv[m - 1], digits, beta[m - 1])
        for i in range(m - 2, -1, -1):
            p = powers[rv[i + 1] - rv[i]]
            a = row[rv[i]] * r_count
            an = row[rv[i + 1]] * r_count
            beta[i, :] = 1.0
            _restrict(row, rv[i], digits, beta[i])
            total = 0.0
            for u in range(r_count):
                if beta[i, u] == 0.0:
                    continue
                acc = 0.0
                for w in range(r_count):
                    if beta[i + 1, w] != 0.0:
                        acc += p[a + u, an + w] * beta[i + 1, w]
                beta[i, u] = acc
                total += acc
            if not total > 0.0:
                low = 0.0
                break
            inv = 1.0 / total
            for u in range(r_count):
                val = beta[i, u] * inv
                beta[i, u] = val
                if val > 0.0 and val < low:
                    low = val
        fwd = np.empty(s_count)
        bwd = np.empty(s_count)
        right = 0  # index in rv of the first revealed position after t
        for k in range(req_ptr[b], req_ptr[b + 1]):
            t = req_pos[k]
            while right < m and rv[right] < t:
                right += 1
            if right == 0:
                fwd[:] = initial[t]
            else:
                p = powers[t - rv[right - 1]]
                a = row[rv[right - 1]] * r_count
                fwd[:] = 0.0
                for u in range(r_count):
                    w = alpha[right - 1, u]
                    if w == 0.0:
                        continue
                    for s in range(s_count):
                        fwd[s] += w * p[a + u, s]
            if right == m:
                bwd[:] = 1.0
            else:
                p = powers[rv[right] - t]
                a = row[rv[right]] * r_count
                bwd[:] = 0.0
                for w in range(r_count):
                    weight = beta[right, w]
                    if weight == 0.0:
                        continue
                    for s in range(s_count):
                        bwd[s] += p[s, a + w] * weight
            total = 0.0
            for v in range(vocab):
                acc = 0.0
                for s in range(v * r_count, (v + 1) * r_count):
                    acc += fwd[s] * bwd[s]
                marg[k, v] = acc
                total += acc
            if not total > 0.0:
                low = 0.0
                total = 1.0
            inv = 1.0 / total
            for v in range(vocab):
                marg[k, v] *= inv
        lows[b] = low
    return marg, valid, lows


def marginals_at(arrays: ChainArrays, x: np.ndarray, req_ptr: np.ndarray, req_pos: np.ndarray
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """q(x_t | revealed tokens of row b) at the requested masked positions, or ``None`` where
    neither jump engine applies (no first-order engine under ``posterior``'s ``auto`` rule and
    no ``power_table``): the caller then runs ``mdm_exact.posterior.posterior`` on whole rows.

    x: (B, L) int64 with ``MASK = -1``, tokens valid for the language;
    req_ptr: (B+1,) offsets into req_pos: (n,) ascending masked positions of each row.
    Returns ``(marginals (n, V), valid (B,), trouble (B,))``: rows off the support of q get
    uniform marginals and ``valid`` False; ``trouble`` rows (whatever ``valid`` says) may have
    lost digits below ``TINY`` (or read an untrusted first-order power) and must be recomputed
    by ``mdm_exact.posterior.posterior``.
    """
    chain = isinstance(arrays, HMMArrays | NGramArrays)
    if chain and _resolve(arrays, "auto", x, 1) == "first-order":
        marg, log_z, trouble = _first_order(arrays, x, True, req_ptr, req_pos)
        return marg, (log_z > -np.inf) & ~trouble, trouble
    table = power_table(arrays, x.shape[1])
    if table is None:
        return None
    marg, valid, lows = _jump_kernel(x, req_ptr, req_pos, table.powers, table.initial,
                                     table.vocab_size, table.digits)
    trouble = lows * lows * table.floor * table.floor < TINY
    return marg, valid, trouble
