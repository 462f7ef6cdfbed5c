"""Token-level brute force for the theory tests, independent of mdm_exact's sampler and posterior.

``Brute`` enumerates the factorized sampler exactly on tiny cases: for one instance tau (the
0-based step of every position) it reveals the steps in order, draws every position of a step
independently from a denoiser's marginals and accumulates the exact law p_tau over all V**L
sequences. Oracle marginals come from the root conftest's ``Reference.condition`` (slicing the
enumerated joint), never from ``mdm_exact.posterior``.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable

import numpy as np
import pytest

Row = tuple[int, ...]


def kl(q: np.ndarray, p: np.ndarray) -> float:
    """KL(q || p) of two arrays over the same outcomes; inf when p misses q's support."""
    q, p = np.asarray(q, dtype=np.float64).ravel(), np.asarray(p, dtype=np.float64).ravel()
    s = q > 0
    if np.any(p[s] <= 0):
        return math.inf
    return float((q[s] * np.log(q[s] / p[s])).sum())


class Brute:
    kl = staticmethod(kl)

    def __init__(self, reference):
        self.ref = reference

    def oracle(self, joint: np.ndarray) -> Callable[[Row], np.ndarray]:
        """Denoiser row -> (L, V) oracle marginals q(x_i | revealed); uniform on rows that are
        impossible under q (the sampler's output is invalid then, whatever follows)."""
        cache: dict[Row, np.ndarray] = {}
        length, v = joint.ndim, joint.shape[0]

        def marginals(row: Row) -> np.ndarray:
            if row not in cache:
                evidence, marg = self.ref.condition(joint, row)
                cache[row] = np.full((length, v), 1.0 / v) if marg is None else marg
            return cache[row]

        return marginals

    @staticmethod
    def mixed(oracle: Callable[[Row], np.ndarray], lam: float) -> Callable[[Row], np.ndarray]:
        """Perturbed denoiser (1 - lam) q(x_i | revealed) + lam / V at masked positions."""

        def marginals(row: Row) -> np.ndarray:
            m = oracle(row)
            out = (1.0 - lam) * m + lam / m.shape[1]
            for j, t in enumerate(row):
                if t >= 0:
                    out[j] = m[j]
            return out

        return marginals

    def eps_learning(self, joint, denoiser) -> float:
        """max KL(q(x_i | x_t) || p_theta(x_i | x_t)) over every partially revealed x_t with
        q(x_t) > 0 and every masked i (Assumption 4.1)."""
        length, v = joint.ndim, joint.shape[0]
        worst = 0.0
        for row in itertools.product(range(-1, v), repeat=length):
            evidence, marg = self.ref.condition(joint, row)
            if marg is None:
                continue
            model = denoiser(row)
            for j, t in enumerate(row):
                if t < 0:
                    worst = max(worst, kl(marg[j], model[j]))
        return worst

    @staticmethod
    def instance_law(joint_shape, steps, denoiser) -> np.ndarray:
        """Exact p_tau over all sequences (dense (V,)*L) of the factorized sampler."""
        length, v = len(joint_shape), joint_shape[0]
        steps = [int(s) for s in steps]
        law: dict[Row, float] = {(-1,) * length: 1.0}
        for k in sorted(set(steps)):
            where = [j for j in range(length) if steps[j] == k]
            nxt: dict[Row, float] = {}
            for row, weight in law.items():
                marg = denoiser(row)
                for tokens in itertools.product(range(v), repeat=len(where)):
                    pr = weight
                    for j, t in zip(where, tokens, strict=True):
                        pr *= marg[j][t]
                    if pr == 0:
                        continue
                    new = list(row)
                    for j, t in zip(where, tokens, strict=True):
                        new[j] = t
                    key = tuple(new)
                    nxt[key] = nxt.get(key, 0.0) + pr
            law = nxt
        out = np.zeros((v,) * length)
        for row, weight in law.items():
            out[row] = weight
        return out

    @staticmethod
    def schedule_instances(masses, length: int):
        """Every instance of an independent-step schedule with its probability."""
        masses = np.asarray(masses, dtype=np.float64)
        for steps in itertools.product(range(masses.size), repeat=length):
            weight = float(np.prod(masses[list(steps)]))
            if weight > 0:
                yield np.array(steps), weight


@pytest.fixture(scope="session")
def brute(ref) -> Brute:
    return Brute(ref)
