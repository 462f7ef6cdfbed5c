"""Shared small languages, an independent brute-force reference, and the hypothesis profile.

The reference (``Reference``, fixture ``ref``) never calls the package's own inference: it
computes q(x) of each sequence straight from the tables (n-gram chain rule, HMM forward recursion
in pure Python, Example C.7's pair-bit rule), enumerates all V**L sequences with
``itertools.product`` and conditions by slicing. It works in float or, given ``exact=True``, in
``fractions.Fraction`` (the float tables converted exactly).
"""

from __future__ import annotations

import itertools
import os
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import HealthCheck, settings

from mdm_exact import HMM, IntervalParity, NGram

settings.register_profile(
    "mdm",
    deadline=None,
    max_examples=40,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile("thorough", parent=settings.get_profile("mdm"), max_examples=500)
# CI runs a fixed set of examples so that a red build is reproducible; locally every run explores.
settings.register_profile("ci", parent=settings.get_profile("mdm"), derandomize=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci" if os.environ.get("CI") else "mdm"))


def fractions(array) -> np.ndarray:
    """Object array of the exact rational values of a float array."""
    return np.vectorize(Fraction, otypes=[object])(np.asarray(array, dtype=np.float64))


class Reference:
    """Brute force, written independently of mdm_exact's joint/posterior code."""

    fractions = staticmethod(fractions)

    @staticmethod
    def ngram_prob(order: int, initial, transition, seq) -> object:
        c = order - 1
        if len(seq) < c:
            v = transition.shape[0]
            return sum(
                initial[tuple(seq) + rest]
                for rest in itertools.product(range(v), repeat=c - len(seq))
            )
        p = initial[tuple(seq[:c])]
        for j in range(c, len(seq)):
            p = p * transition[tuple(seq[j - c : j + 1])]
        return p

    @staticmethod
    def hmm_prob(initial, transition, emission, seq) -> object:
        k = len(initial)
        alpha = [initial[s] * emission[s][seq[0]] for s in range(k)]
        for tok in seq[1:]:
            alpha = [
                sum(alpha[r] * transition[r][s] for r in range(k)) * emission[s][tok]
                for s in range(k)
            ]
        return sum(alpha)

    @staticmethod
    def parity_valid(interval: int, seq) -> bool:
        """Pair-bit rule of Example C.7 (1-based positions a < b inside an interval, bit r worth
        2^(r-1)): bit b-1 of token a equals bit a of token b."""
        for start in range(0, len(seq), interval):
            block = seq[start : start + interval]
            for a in range(1, interval + 1):
                for b in range(a + 1, interval + 1):
                    if (block[a - 1] >> (b - 2)) & 1 != (block[b - 1] >> (a - 1)) & 1:
                        return False
        return True

    @classmethod
    def prob_function(cls, language, exact: bool = False):
        """``seq -> q(seq)`` computed from the tables (Fractions when ``exact``)."""
        conv = fractions if exact else (lambda a: np.asarray(a, dtype=np.float64))
        if isinstance(language, NGram):
            init, trans = conv(language.initial), conv(language.transition)
            return lambda seq: cls.ngram_prob(language.order, init, trans, seq)
        if isinstance(language, HMM):
            init = conv(language.initial).tolist()
            trans = conv(language.transition).tolist()
            emit = conv(language.emission).tolist()
            return lambda seq: cls.hmm_prob(init, trans, emit, seq)
        if isinstance(language, IntervalParity):
            interval = language.interval
            pairs = interval * (interval - 1) // 2

            def prob(seq):
                if not cls.parity_valid(interval, seq):
                    return Fraction(0) if exact else 0.0
                weight = Fraction(1, 2 ** (pairs * (len(seq) // interval)))
                return weight if exact else float(weight)

            return prob
        raise TypeError(f"no reference for {language!r}")

    @classmethod
    def joint(cls, language, length: int, exact: bool = False) -> np.ndarray:
        """(V,)*length array of q over all sequences (object dtype of Fractions if exact)."""
        v = language.vocab_size
        prob = cls.prob_function(language, exact)
        out = np.empty((v,) * length, dtype=object if exact else np.float64)
        for seq in itertools.product(range(v), repeat=length):
            out[seq] = prob(seq)
        return out

    @staticmethod
    def condition(joint: np.ndarray, row) -> tuple[object, np.ndarray | None]:
        """Evidence q(revealed tokens of ``row``) and the (L, V) conditional marginals
        (one-hot at revealed positions), or ``None`` when the evidence is 0."""
        row = [int(t) for t in row]
        length, v = joint.ndim, joint.shape[0]
        sub = np.asarray(joint[tuple(slice(None) if t < 0 else t for t in row)])
        evidence = sub.sum()
        if evidence == 0:
            return evidence, None
        marg = np.zeros((length, v), dtype=joint.dtype)
        masked = [j for j, t in enumerate(row) if t < 0]
        for j, t in enumerate(row):
            if t >= 0:
                marg[j, t] = 1
        for axis, j in enumerate(masked):
            others = tuple(a for a in range(len(masked)) if a != axis)
            marg[j] = sub.sum(axis=others) / evidence if others else sub / evidence
        return evidence, marg

    @staticmethod
    def entropy(joint: np.ndarray) -> float:
        p = joint.ravel()
        p = p[p > 0]
        return float(-(p * np.log(p)).sum())


@pytest.fixture(scope="session")
def ref() -> type[Reference]:
    return Reference


@pytest.fixture(scope="session")
def bigram() -> NGram:
    """2-gram over 3 tokens, zeros in the initial distribution and in the transition."""
    return NGram(
        2,
        [0.5, 0.0, 0.5],
        [[0.2, 0.8, 0.0], [0.0, 0.0, 1.0], [0.3, 0.3, 0.4]],
        {"name": "bigram fixture"},
    )


@pytest.fixture(scope="session")
def trigram() -> NGram:
    """3-gram over 2 tokens with a forbidden context continuation and a zero initial pair."""
    initial = np.array([[0.25, 0.25], [0.5, 0.0]])
    transition = np.array([[[0.9, 0.1], [0.0, 1.0]], [[0.6, 0.4], [0.5, 0.5]]])
    return NGram(3, initial, transition)


@pytest.fixture(scope="session")
def zero_hmm() -> HMM:
    """3 states, 3 tokens, zeros in the initial, transition and emission tables (dense kernel);
    token 1 comes only from state 1, which is never initial."""
    return HMM(
        [0.6, 0.0, 0.4],
        [[0.0, 0.7, 0.3], [0.5, 0.5, 0.0], [0.2, 0.0, 0.8]],
        [[0.9, 0.0, 0.1], [0.0, 0.3, 0.7], [0.5, 0.0, 0.5]],
    )


@pytest.fixture(scope="session")
def sparse_hmm() -> HMM:
    """8 states on a cycle (2 successors each: density 1/4, so the sparse kernel), 2 tokens;
    state 0, the only initial state, never emits token 0."""
    k = 8
    transition = np.zeros((k, k))
    for s in range(k):
        transition[s, (s + 1) % k] = 0.75
        transition[s, (s + 3) % k] = 0.25
    emission = np.zeros((k, 2))
    emission[:, 0] = np.linspace(0.0, 1.0, k)
    emission[:, 1] = 1.0 - emission[:, 0]
    initial = np.zeros(k)
    initial[0] = 1.0
    return HMM(initial, transition, emission)


@pytest.fixture(scope="session")
def parity3() -> IntervalParity:
    return IntervalParity(3)


@pytest.fixture(scope="module")
def one_numba_thread():
    """Run a module on one numba thread: modules of hundreds of tiny posterior calls (quick
    figures, small models) lose more to thread start-up than the parallel kernels gain, the more
    so on a busy 2-core machine. Use with ``pytestmark = pytest.mark.usefixtures(...)``."""
    import numba

    before = numba.get_num_threads()
    numba.set_num_threads(1)
    yield
    numba.set_num_threads(before)


@pytest.fixture(scope="module")
def one_torch_thread(one_numba_thread):
    """``one_numba_thread`` and one torch thread for a module of small models (same reason)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
