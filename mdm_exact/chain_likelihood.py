"""Exact log p(x) of random-order unmasking on first-order chains, at any length: the interval DP.

p is the output distribution of factorized parallel unmasking (eq. 3) with an independent-step
``Schedule`` (each still-masked position is revealed at step k with the hazard h_k) and the
``Oracle`` or a ``PerturbedOracle``, for a first-order chain q: a 2-gram, or an HMM whose emission
matrix is a permutation (each hidden state emits its own token, so the tokens form a bigram).

The recursion. On a first-order chain the oracle marginal of a masked position t depends only on
its nearest revealed neighbours l < t < r (positions -1 and L are virtual boundaries):
f(t | l, r) = A(l, t) A(t, r) / A(l, r), with A(l, r) = P^(r-l)[x_l, x_r], A(-1, r) = (init
P^r)[x_r] and A(l, L) = 1. Let G(l, r, k) be the probability that the positions strictly
between l and r come out as x, given that all of them are masked at the start of step k. At step
k the revealed subset T of the m positions has probability h^|T| (1-h)^(m-|T|), its tokens are
drawn independently from f(. | l, r), and the segment splits at T into segments that start
masked at step k + 1. Walking c from r - 1 down to l,

    W(c) = M(c, r) + sum_{t=c+1}^{r-1} M(c, t) h_k f(t | l, r) W(t),
    M(c, t) = (1 - h_k)^(t-c-1) G(c, t, k+1),

G(l, r, k) = W(l), G(l, l+1, k) = 1, G(l, r, N+1) = 0 for r > l + 1, and p(x) = G(-1, L, 1).
M depends on the step only, so each (l, r) costs one triangular solve, and the solves of all l
sharing a right end r run side by side (an axpy over l innermost): O(N L^4 / 24) multiply-adds
per sequence.

Off the support of q. A revealed state whose tokens are jointly impossible makes the Oracle
uniform at every position (``sampling.Oracle``), a global switch. For x outside supp q,
p(x) = sum_s B_s(-1, L, 1), where B_s is the probability of producing x with every state valid up
to step s and the state after step s invalid (from then on each position contributes its uniform
marginal): a two-table version of the recursion (good / bad) for each s, O(N^2 L^4 / 24). On the
support every reachable state is valid and the plain recursion is exact.

Numerics. G(l, r, k) is stored as G / exp(sum_{l<j<r} sigma_j + R_k (r - l - 1)), with sigma_j =
log q(x_j | x_{j-1}) (the uniform fallback's log where that is -inf) and a per-step rate R_k
refitted after every step so that the full segment stays near 1; the offsets add over positions,
so the inner loop needs no exponentials and L = 1024 neither underflows nor overflows.
"""

from __future__ import annotations

import math

import numba
import numpy as np

from ._utils import check_memory, check_tokens
from .errors import ArgumentError, ArgumentTypeError
from .languages import HMM, Language, NGram, check_language
from .posterior import token_chain
from .sampling import Oracle, PerturbedOracle, perturb_toward, resolve_denoiser
from .schedules import DeterministicPlan, FixedCountPlan, Schedule

SUPPORTED_LANGUAGES = "NGram of order 2, or an HMM whose emission matrix is a permutation"
"""The first-order chains the interval DP handles, as its refusals name them."""

_FASTMATH = {"reassoc", "contract"}
"""Only reassociation (vectorised dot products) and fused multiply-adds: no finite-math
assumptions, rounding changes at the 1e-16 level."""


# ------------------------------------------------------------------------------ the chain


def first_order_chain(language: Language) -> tuple[np.ndarray, np.ndarray]:
    """``(initial (V,), transition (V, V))`` of the token chain of a first-order ``language``.

    A 2-gram is its own chain; an HMM whose emission matrix is exactly a permutation (every
    entry 0 or 1, one 1 per row and per column) is the bigram of the tokens its states emit.
    Refuses every other language, naming the supported cases.
    """
    found = token_chain(language.chain_arrays) if isinstance(language, NGram | HMM) else None
    if found is not None:
        return found[0].copy(), found[1].copy()
    if isinstance(language, NGram):
        raise ArgumentError(f"language must be a first-order chain ({SUPPORTED_LANGUAGES}) for "
                            f"the interval DP, got an n-gram of order {language.order}")
    if isinstance(language, HMM):
        k, v = language.emission.shape
        raise ArgumentError(f"language must be a first-order chain ({SUPPORTED_LANGUAGES}) for "
                            f"the interval DP, got an HMM with a {k} x {v} emission matrix that "
                            "is not a permutation")
    raise ArgumentError(f"language must be a first-order chain ({SUPPORTED_LANGUAGES}) for the "
                        f"interval DP, got {language!r}")


def _chain_denoiser(language: Language, denoiser):
    """The denoiser's own language (its marginals are that chain's) and its perturbation
    ``(eps_learning, direction)`` or None; refuses every other denoiser."""
    den = resolve_denoiser(language, denoiser)
    if type(den) is Oracle:
        return den.language, None
    if type(den) is PerturbedOracle:
        return den.language, (den.eps_learning, den.direction)
    raise ArgumentTypeError(
        f"denoiser must be the Oracle or a PerturbedOracle for the interval DP (their marginal at "
        f"a position depends only on its nearest revealed neighbours), got {den!r}; a learned "
        "denoiser sees the whole state: its exact likelihood is the deterministic-policy product "
        "of mdm_exact.likelihood.log_likelihood (a DeterministicPlan or a deterministic policy), "
        "or the exact engine at small L")


def _check_schedule(plan) -> Schedule:
    if isinstance(plan, Schedule):
        return plan
    if isinstance(plan, FixedCountPlan):
        raise ArgumentError(
            "plan must be a Schedule for the interval DP, got a FixedCountPlan: a fixed count per "
            "step couples the segments (how many positions one segment reveals depends on the "
            "others), so the likelihood does not factorize over them; use the exact engine at "
            "small L")
    raise ArgumentTypeError(f"plan must be a Schedule for the interval DP, got {plan!r}")


def supports(language, plan, denoiser=None) -> bool:
    """Whether ``chain_log_likelihood`` handles this language, plan and denoiser (never raises
    on a bad combination; the caller validates the arguments)."""
    if not isinstance(plan, Schedule) or not isinstance(language, Language):
        return False
    try:
        chain_language, _ = _chain_denoiser(language, denoiser)
        first_order_chain(chain_language)
    except (ArgumentError, ArgumentTypeError):
        return False
    return chain_language.vocab_size == language.vocab_size


# ------------------------------------------------------------------------------ numba kernels


@numba.njit(cache=True)
def _a_table(row, powers, mu):
    """(L+2, L+2) A(l, r) in shifted coordinates (index = position + 1), upper triangle."""
    length = row.shape[0]
    n = length + 2
    a = np.zeros((n, n))
    for li in range(n - 1):
        for ri in range(li + 1, n):
            if ri == n - 1:
                a[li, ri] = 1.0
            elif li == 0:
                a[li, ri] = mu[ri - 1, row[ri - 1]]
            else:
                a[li, ri] = powers[ri - li, row[li - 1], row[ri - 1]]
    return a


@numba.njit(cache=True)
def _weights(g_next, e, n, m_tab, epow):
    """m_tab[c, t] = e^(t-c-1) g_next[c, t]; returns how far (t - c) a term can be non-zero."""
    epow[0] = 1.0
    reach = n
    for m in range(1, n):
        epow[m] = epow[m - 1] * e
        if epow[m] == 0.0 and reach == n:
            reach = m
    for c in range(n):
        for t in range(c + 1, n):
            m_tab[c, t] = epow[t - c - 1] * g_next[c, t]
    return reach


@numba.njit(cache=True)
def _segment_marginals(ri, hs, a, scale, fp, fp_base, offsets, f_tab):
    """f_tab[t, l] = hs f(t | l, r) / exp(sigma_t) for 0 <= l < t < ri (shifted coordinates;
    rows l with A(l, r) = 0 get 0: such a segment is never entered)."""
    for t in range(1, ri):
        st = hs * scale[t]
        if fp.shape[0] == 0:
            art = st * a[t, ri]
            for li in range(t):
                alr = a[li, ri]
                f_tab[t, li] = art * a[li, t] / alr if alr > 0.0 else 0.0
        else:
            for li in range(t):
                f_tab[t, li] = st * fp[fp_base + offsets[li, ri] + t - li - 1]


@numba.njit(cache=True, fastmath=_FASTMATH)
def _plain_step(h, rate, first, reach, a, scale, fp, fp_base, offsets, m_tab, f_tab, u_tab, wc,
                g_new):
    """One step of the plain recursion: g_new[l, r] = G(l, r, k) for every segment (only the
    full one when ``first``), from m_tab (step k+1's table times (1 - h)^(t-c-1)).

    For each right end r the triangular solves of all left ends l run side by side: lane l of
    ``wc`` holds W_l(c), and u_tab[t, l] = f(t | l, r) W_l(t), so the innermost loop is an
    axpy over the lanes (vectorised, no dependency chain between its iterations)."""
    n = a.shape[0]
    hs = h * math.exp(-rate)
    for ri in range(n - 1 if first else 2, n):
        top = ri - 2  # the last lane: segments (l, r) with r - l >= 2
        _segment_marginals(ri, hs, a, scale, fp, fp_base, offsets, f_tab)
        for c in range(ri - 1, -1, -1):
            hi = min(c, top) + 1
            start = m_tab[c, ri]
            for li in range(hi):
                wc[li] = start
            for t in range(c + 1, min(ri, c + 1 + reach)):
                mct = m_tab[c, t]
                urow = u_tab[t]
                for li in range(hi):
                    wc[li] += mct * urow[li]
            if c <= top:
                g_new[c, ri] = wc[c] if a[c, ri] > 0.0 else 0.0
            frow = f_tab[c]
            urow = u_tab[c]
            for li in range(min(c, hi)):
                urow[li] = frow[li] * wc[li]


@numba.njit(cache=True)
def _rescale(g1, g2, n, both):
    """Divide the tables (``g1`` alone unless ``both``) by exp(d (r - l - 1)) so that the larger
    full-segment entry becomes 1; returns d (0 where both are 0)."""
    top = max(g1[0, n - 1], g2[0, n - 1])
    if not (top > 0.0 and top < np.inf):
        return 0.0
    d = math.log(top) / (n - 2)
    for li in range(n - 1):
        for ri in range(li + 2, n):
            factor = math.exp(-d * (ri - li - 1))
            g1[li, ri] *= factor
            if both:
                g2[li, ri] *= factor
    return d


@numba.njit(cache=True)
def _plain_row(a, scale, hz, fp, fp_base, offsets):
    """log of the scaled p(x) (plain recursion, every state valid) and the accumulated rate."""
    n = a.shape[0]
    g = np.zeros((n, n))
    g_new = np.zeros((n, n))
    m_tab = np.zeros((n, n))
    f_tab = np.zeros((n, n))
    u_tab = np.zeros((n, n))
    epow = np.empty(n)
    wc = np.empty(n)
    for i in range(n - 1):
        g[i, i + 1] = 1.0
        g_new[i, i + 1] = 1.0
    rate = 0.0
    for kk in range(hz.shape[0] - 1, -1, -1):
        reach = _weights(g, 1.0 - hz[kk], n, m_tab, epow)
        _plain_step(hz[kk], rate, kk == 0, reach, a, scale, fp, fp_base, offsets, m_tab, f_tab,
                    u_tab, wc, g_new)
        if kk > 0:
            rate += _rescale(g_new, g_new, n, False)
        g, g_new = g_new, g
    return np.log(g[0, n - 1]), rate


@numba.njit(cache=True, fastmath=_FASTMATH)
def _split_step(h, rate, first, reach, a, scale, fp, fp_base, offsets, mg, mb, f_tab, ug, ub,
                uany, wg, wb, good_new, bad_new):
    """``_plain_step`` for the good / bad pair of tables: good = every pair formed so far
    compatible, bad = valid before step s and some pair formed at step s incompatible."""
    n = a.shape[0]
    hs = h * math.exp(-rate)
    for i in range(n - 1):
        good_new[i, i + 1] = 1.0 if a[i, i + 1] > 0.0 else 0.0
        bad_new[i, i + 1] = 0.0
    for ri in range(n - 1 if first else 2, n):
        top = ri - 2
        _segment_marginals(ri, hs, a, scale, fp, fp_base, offsets, f_tab)
        for c in range(ri - 1, -1, -1):
            hi = min(c, top) + 1
            start_g = mg[c, ri]
            start_b = mb[c, ri]
            for li in range(hi):
                wg[li] = start_g
                wb[li] = start_b
            for t in range(c + 1, min(ri, c + 1 + reach)):
                g_ct = mg[c, t]
                b_ct = mb[c, t]
                grow = ug[t]
                brow = ub[t]
                arow = uany[t]
                for li in range(hi):
                    wg[li] += g_ct * grow[li]
                    # At least one bad pair: bad here and anything after, or good here and bad
                    # after.
                    wb[li] += b_ct * arow[li] + g_ct * brow[li]
            if c <= top:
                ok = a[c, ri] > 0.0
                good_new[c, ri] = wg[c] if ok else 0.0
                bad_new[c, ri] = wb[c] if ok else 0.0
            frow = f_tab[c]
            for li in range(min(c, hi)):
                ug[c, li] = frow[li] * wg[li]
                ub[c, li] = frow[li] * wb[li]
                uany[c, li] = ug[c, li] + ub[c, li]


@numba.njit(cache=True)
def _off_support_row(a, scale, hz, fp, fp_base, offsets, log_fallback):
    """log of the scaled p(x) for x outside supp q: the sum over s (the last step whose input
    state is valid) of the bad table's B_s(-1, L, 1); log_fallback[t] = log(g_t / exp(sigma_t)),
    g_t the denoiser's marginal of x_t on an invalid state. The rates are folded in."""
    n = a.shape[0]
    n_eff = hz.shape[0]
    good = np.zeros((n, n))
    bad = np.zeros((n, n))
    good_new = np.zeros((n, n))
    bad_new = np.zeros((n, n))
    mg = np.zeros((n, n))
    mb = np.zeros((n, n))
    f_tab = np.zeros((n, n))
    ug = np.zeros((n, n))
    ub = np.zeros((n, n))
    uany = np.zeros((n, n))
    epow = np.empty(n)
    wg = np.empty(n)
    wb = np.empty(n)
    total_log = -np.inf
    # The fallback factors, scaled by their mean log (over the positions where they are > 0).
    d0 = 0.0
    count = 0
    for t in range(1, n - 1):
        if log_fallback[t] > -np.inf:
            d0 += log_fallback[t]
            count += 1
    d0 = d0 / count if count else 0.0
    fall = np.zeros(n)
    for t in range(1, n - 1):
        fall[t] = math.exp(log_fallback[t] - d0)
    for s in range(n_eff):
        # After step s every position still masked takes its fallback marginal.
        rate = 0.0 if s == n_eff - 1 else d0
        for c in range(n - 1):
            uct = 1.0  # the product of fall over c < j < t
            for t in range(c + 1, n):
                if t > c + 1:
                    uct = 0.0 if s == n_eff - 1 else uct * fall[t - 1]
                if a[c, t] > 0.0:
                    good[c, t] = uct
                    bad[c, t] = 0.0
                else:
                    good[c, t] = 0.0
                    bad[c, t] = uct
        for kk in range(s, -1, -1):
            reach = _weights(good, 1.0 - hz[kk], n, mg, epow)
            _weights(bad, 1.0 - hz[kk], n, mb, epow)
            _split_step(hz[kk], rate, kk == 0, reach, a, scale, fp, fp_base, offsets, mg, mb,
                        f_tab, ug, ub, uany, wg, wb, good_new, bad_new)
            if kk > 0:
                rate += _rescale(good_new, bad_new, n, True)
            good, good_new = good_new, good
            bad, bad_new = bad_new, bad
        value = bad[0, n - 1]
        if value > 0.0:
            term = np.log(value) + rate * (n - 2)
            if total_log == -np.inf:
                total_log = term
            else:
                hi = max(total_log, term)
                total_log = hi + math.log(math.exp(total_log - hi) + math.exp(term - hi))
    return total_log


@numba.njit(parallel=True, cache=True)
def _dp_kernel(x, valid, powers, mu, sigma, log_fallback, hz, fp, fp_base, offsets):
    """(batch,) log p(x): the plain recursion on valid rows, the off-support sum on the rest."""
    batch, length = x.shape
    out = np.empty(batch)
    for b in numba.prange(batch):
        row = x[b]
        a = _a_table(row, powers, mu)
        scale = np.ones(length + 2)
        offset = 0.0
        for t in range(length):
            scale[t + 1] = math.exp(-sigma[b, t])
            offset += sigma[b, t]
        base = fp_base[b] if fp.shape[0] else 0
        if valid[b]:
            log_g, rate = _plain_row(a, scale, hz, fp, base, offsets)
            out[b] = log_g + rate * length + offset
        else:
            out[b] = _off_support_row(a, scale, hz, fp, base, offsets, log_fallback[b]) + offset
    return out


# ------------------------------------------------------------------------------ the driver


def _powers(initial: np.ndarray, transition: np.ndarray, length: int):
    """P^0 .. P^length (length+1, V, V) and the marginals init P^t, t < length (length, V)."""
    v = initial.size
    powers = np.empty((length + 1, v, v))
    powers[0] = np.eye(v)
    for d in range(1, length + 1):
        powers[d] = powers[d - 1] @ transition
    mu = np.empty((length, v))
    mu[0] = initial
    for t in range(1, length):
        mu[t] = mu[t - 1] @ transition
    return powers, mu


def _offsets(length: int) -> tuple[np.ndarray, int]:
    """Start of each segment's (r - l - 1) marginals in a row's flat table, and the table size."""
    n = length + 2
    li, ri = np.triu_indices(n, 2)
    sizes = ri - li - 1
    offsets = np.zeros((n, n), dtype=np.int64)
    offsets[li, ri] = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    return offsets, int(sizes.sum())


def _perturbed_row(row, powers, mu, eps: float, direction: np.ndarray, size: int) -> np.ndarray:
    """The PerturbedOracle's marginal of x_t in every segment (l, r) of one row, flattened in
    ``_offsets`` order: ``perturb_toward`` applied to the oracle vectors f(. | l, r) at t."""
    length = row.size
    n = length + 2
    v = direction.size
    out = np.empty(size)
    pos = 0
    for li in range(n - 2):
        # Segments (l, r) in order of r, then t: the strict lower triangle, shifted by l + 1.
        rel_r, rel_t = np.tril_indices(n - 1 - li, -1)
        ri, ti = rel_r + li + 1, rel_t + li + 1
        left = mu[ti - 1] if li == 0 else powers[ti - li, row[li - 1], :]
        inner = ri < n - 1
        right = np.ones((ri.size, v))
        right[inner] = powers[ri[inner] - ti[inner], :, row[ri[inner] - 1]]
        f = left * right
        total = f.sum(axis=1, keepdims=True)
        # A segment with incompatible ends is never entered (its weight is 0): any vector will do.
        f = np.where(total > 0, f / np.where(total > 0, total, 1.0), 1.0 / v)
        p, _ = perturb_toward(f, eps, direction)
        out[pos:pos + ri.size] = p[np.arange(ri.size), row[ti - 1]]
        pos += ri.size
    return out


def chain_log_likelihood(language: Language, plan, x, denoiser=None, *, max_bytes=None
                         ) -> np.ndarray:
    """(batch,) float64 exact log p(x) of each row of ``x`` (batch, length) by the interval DP.

    p: factorized parallel unmasking (eq. 3) with the ``Schedule`` ``plan`` and the Oracle
    (default) or a ``PerturbedOracle`` of a first-order chain (see ``first_order_chain``);
    p(x) = G(-1, L, 1) of the module's recursion. ``-inf`` where p(x) = 0; x outside supp q
    gets its finite log p (the uniform fallback of the Oracle included). Rows run in parallel
    (numba threads). Cost O(N L^4 / 24) per row on supp q, O(N^2 L^4 / 24) off it; the
    PerturbedOracle adds a table of L^3 / 6 marginals per row. A ``DeterministicPlan`` goes to
    ``likelihood.log_likelihood``'s unique-trajectory product.
    """
    check_language(language)
    if isinstance(plan, DeterministicPlan):
        from .likelihood import log_likelihood

        return log_likelihood(language, plan, x, denoiser)
    schedule = _check_schedule(plan)
    chain_language, perturbation = _chain_denoiser(language, denoiser)
    initial, transition = first_order_chain(chain_language)
    vocab = initial.size
    if vocab != language.vocab_size:
        raise ArgumentError(f"denoiser's language has vocab_size {vocab}, language has "
                            f"{language.vocab_size}")
    tokens = check_tokens(x, vocab, allow_mask=False)
    batch, length = tokens.shape
    if length == 0:
        raise ArgumentError(f"x must hold at least one position, got shape {np.shape(x)}")
    schedule.check_length(length)
    if batch == 0:
        return np.zeros(0)
    n = length + 2
    threads = numba.get_num_threads()
    offsets, size = _offsets(length)
    per_thread = 8.0 * (12 * n * n + 8 * n)  # the off-support path's tables, the larger
    check_memory(f"the interval DP at L={length} ({threads} threads)",
                 threads * per_thread + 8.0 * (length + 1) * (vocab * vocab + vocab), max_bytes,
                 argument="length")
    if perturbation is not None:
        check_memory(f"the interval DP's PerturbedOracle table at L={length} (L^3/6 marginals "
                     f"for each of {threads} rows at a time)",
                     8.0 * threads * size + 8.0 * 4 * (n * n // 2) * vocab, max_bytes,
                     argument="length")

    powers, mu = _powers(initial, transition, length)
    live = np.flatnonzero(schedule.masses > 0)
    hz = schedule.hazards[live].copy()
    hz[-1] = 1.0  # the last non-empty step reveals whatever is left (hazards already say so)

    # Per-position scale: log q(x_t | x_{t-1}) where positive, else the fallback marginal's log.
    step = np.concatenate([initial[tokens[:, :1]], transition[tokens[:, :-1], tokens[:, 1:]]],
                          axis=1)
    valid = np.all(step > 0, axis=1)
    if perturbation is None:
        fallback = np.full(vocab, 1.0 / vocab)
    else:
        fallback = perturb_toward(np.full(vocab, 1.0 / vocab), *perturbation)[0]
    fall = fallback[tokens]
    with np.errstate(divide="ignore"):
        log_fall = np.log(fall)
    sigma = np.where(step > 0, np.log(np.where(step > 0, step, 1.0)),
                     np.where(fall > 0, log_fall, 0.0))
    log_fallback = np.zeros((batch, n))
    log_fallback[:, 1:-1] = log_fall - sigma

    if perturbation is None:
        return _dp_kernel(tokens, valid, powers, mu, sigma, log_fallback, hz, np.zeros(0),
                          np.zeros(batch, dtype=np.int64), offsets)
    out = np.empty(batch)
    for start in range(0, batch, threads):
        rows = np.arange(start, min(start + threads, batch))
        fp = np.concatenate([_perturbed_row(tokens[r], powers, mu, *perturbation, size)
                             for r in rows])
        out[rows] = _dp_kernel(tokens[rows], valid[rows], powers, mu, sigma[rows],
                               log_fallback[rows], hz, fp, np.arange(rows.size) * size, offsets)
    return out


__all__ = ["SUPPORTED_LANGUAGES", "chain_log_likelihood", "first_order_chain", "supports"]
