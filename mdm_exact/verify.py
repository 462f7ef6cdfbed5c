"""``verify``: every statement of the paper checked numerically on a fixed battery of cases.

Each check computes the exact quantity (or a Monte-Carlo estimate where the statement is about a
probability over large instances) and the statement's bound, and reports the smallest margin
``bound - value`` over its cases (negative = the statement fails there) with the worst case.
Statements documented as failing in the paper's literal text (Definition B.5's "#intervals"
reading in Lemma B.8, the Jensen step inside Lemma C.5's proof; docs/differences.md) are checked
too and expected to fail.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np

from ._utils import progress_bar
from .exact import exact_metrics
from .languages import Language, NGram, random_hmm, random_ngram
from .sampling import Oracle, PerturbedOracle
from .schedules import DeterministicPlan, FixedCountPlan, Schedule
from .theory import hmm as thmm
from .theory import interval as tint
from .theory import literature as lit
from .theory import ngram as tng
from .theory.dependencies import (
    dependencies,
    multi_token_kl_bound,
    product_kl,
    total_dependencies,
)

TOLERANCE = 1e-10
"""A margin above -TOLERANCE counts as holding (float rounding of exact quantities)."""


@dataclass(frozen=True)
class Check:
    """One statement's verdict: ``margin`` = min over cases of (bound - value)."""

    statement: str
    label: str
    expected: bool
    holds: bool
    margin: float
    worst_case: str
    cases: int

    @property
    def as_expected(self) -> bool:
        """Whether the verdict matches the expectation (holds, or a documented failure)."""
        return self.holds == self.expected

    def as_dict(self) -> dict:
        """The fields as a JSON-ready dict."""
        return {"statement": self.statement, "label": self.label, "expected": self.expected,
                "holds": self.holds, "margin": self.margin, "worst_case": self.worst_case,
                "cases": self.cases, "as_expected": self.as_expected}


def _judge(statement: str, label: str, cases: Iterable[tuple[float, float, str]],
           expected: bool = True, upper: bool = True) -> Check:
    """``cases``: (value, bound, description); ``upper``: value <= bound, else value >= bound."""
    worst, worst_desc, count = math.inf, "", 0
    for value, bound, desc in cases:
        margin = (bound - value) if upper else (value - bound)
        count += 1
        if margin < worst:
            worst, worst_desc = margin, f"{desc}: value {value:.6g}, bound {bound:.6g}"
    return Check(statement, label, expected, worst >= -TOLERANCE, float(worst), worst_desc, count)


# ------------------------------------------------------------------------------ battery


def _battery(quick: bool) -> list[tuple[str, Language]]:
    langs: list[tuple[str, Language]] = [
        ("2-gram V=3 (pruned)", random_ngram(2, 3, temperature=1.5, threshold=0.1, seed=5)),
        ("3-gram V=2", random_ngram(3, 2, temperature=1.0, threshold=0.0, seed=1)),
        ("HMM K=3 V=2 (pruned)", random_hmm(3, 2, randomness=2.0, threshold=0.1, seed=2)),
    ]
    if not quick:
        langs += [
            ("4-gram V=2", random_ngram(4, 2, temperature=2.0, threshold=0.05, seed=3)),
            ("HMM K=4 V=3", random_hmm(4, 3, randomness=3.0, threshold=0.05, seed=4)),
        ]
    return langs


def _plans(length: int):
    return [
        ("linear N=2", Schedule.linear(2)),
        ("cosine N=3", Schedule.cosine(3)),
        ("alpha [1,.6,.3,0]", Schedule.from_alpha([1.0, 0.6, 0.3, 0.0])),
        (f"fixed-count {length}/2", FixedCountPlan.even(length, 2)),
        ("deterministic {0,2},{1},{3..}", DeterministicPlan([[0, 2], [1], list(range(3, length))])),
    ]


def _sticky_bigram(stay: float = 0.99) -> NGram:
    t = np.array([[stay, 1 - stay], [1 - stay, stay]])
    return NGram(2, np.array([0.5, 0.5]), t)


# ------------------------------------------------------------------------------ checks


def _lemma_a1(rng) -> list[Check]:
    bound_cases, identity_cases = [], []
    for k, v in [(2, 2), (2, 4), (3, 3), (4, 2)]:
        for trial in range(20):
            joint = rng.dirichlet(np.full(v**k, 0.3)).reshape((v,) * k)
            factors = rng.dirichlet(np.ones(v), size=k)
            res = product_kl(joint, factors)
            bound = multi_token_kl_bound(k, v, res.marginal_kl)
            bound_cases.append((res.kl, bound, f"k={k}, V={v}, trial {trial}"))
            identity_cases.append((res.identity_error, 1e-12, f"k={k}, V={v}, trial {trial}"))
    copy = np.zeros((3, 3, 3))
    copy[0, 0, 0] = copy[1, 1, 1] = copy[2, 2, 2] = 1 / 3
    res = product_kl(copy, np.full((3, 3), 1 / 3))
    bound_cases.append((res.kl, multi_token_kl_bound(3, 3, res.marginal_kl),
                        "copy distribution (tight)"))
    return [_judge("Lemma A.1: KL(q||prod p_i) <= (k-1) log V + sum KL(q_i||p_i)", "[derived]",
                   bound_cases),
            _judge("Lemma A.1 identity: KL = TC + sum KL(q_i||p_i)", "[derived]",
                   identity_cases)]


def _exact_battery(quick: bool, eps_values=(0.0, 0.05)):
    length = 4
    for (lname, lang), (pname, plan) in itertools.product(_battery(quick), _plans(length)):
        for eps in eps_values:
            den = Oracle(lang) if eps == 0 else PerturbedOracle(lang, eps)
            yield lname, lang, pname, plan, eps, exact_metrics(lang, plan, length, den), length


def _lemma_b2_b3(quick: bool) -> list[Check]:
    jensen, identity = [], []
    for lname, _, pname, plan, eps, m, _ in _exact_battery(quick):
        desc = f"{lname}, {pname}, eps_learning={eps}"
        jensen.append((m.kl, m.jensen_bound, desc))
        if isinstance(plan, DeterministicPlan):
            identity.append((abs(m.kl - m.jensen_bound), 1e-12, desc))
    return [_judge("Lemma B.2: KL(q||p) <= E_tau KL(q||p_tau)", "[derived]", jensen),
            _judge("Lemma B.3: per-instance decomposition (deterministic tau: KL = Jensen)",
                   "[derived]", identity)]


def _instances(length: int, num_steps: int):
    for steps in itertools.product(range(num_steps), repeat=length):
        used = sorted(set(steps))
        sets = [[j for j in range(length) if steps[j] == k] for k in used]
        yield np.array([[used.index(s) for s in steps]]), DeterministicPlan(sets)


def _lemma_b8_b9(quick: bool) -> list[Check]:
    excess, intervals, b9 = [], [], []
    length, num_steps = 4, 3
    langs = [(n, lang) for n, lang in _battery(quick) if isinstance(lang, NGram)]
    for lname, lang in langs:
        v, n = lang.vocab_size, lang.order
        for eps in (0.0, 0.05):
            den = Oracle(lang) if eps == 0 else PerturbedOracle(lang, eps)
            for steps, plan in _instances(length, num_steps):
                kl = exact_metrics(lang, plan, length, den).kl
                d_ex = float(total_dependencies(steps, n, reading="excess")[0])
                desc = f"{lname}, tau={[s.tolist() for s in plan.sets]}, eps_learning={eps}"
                excess.append((kl, float(tng.dependency_kl_bound(d_ex, length, v, eps)), desc))
            sched = Schedule.linear(num_steps)
            all_steps = np.array(list(itertools.product(range(num_steps), repeat=length)))
            weights = np.prod(sched.masses[all_steps], axis=1)
            mean_d = float(weights @ total_dependencies(all_steps, n, reading="excess"))
            kl = exact_metrics(lang, sched, length, den).kl
            b9.append((kl, float(tng.dependency_kl_bound(mean_d, length, v, eps)),
                       f"{lname}, linear N={num_steps}, eps_learning={eps}"))
    sticky = _sticky_bigram()
    one_step = np.zeros((1, 7), dtype=np.int64)
    kl = exact_metrics(sticky, DeterministicPlan([list(range(7))]), 7).kl
    d_int = float(total_dependencies(one_step, 2, reading="intervals")[0])
    d_ex = float(total_dependencies(one_step, 2, reading="excess")[0])
    intervals.append((kl, float(tng.dependency_kl_bound(d_int, 7, 2, 0.0)),
                      "sticky bigram (stay 0.99), L=7, one step"))
    excess.append((kl, float(tng.dependency_kl_bound(d_ex, 7, 2, 0.0)),
                   "sticky bigram (stay 0.99), L=7, one step"))
    return [_judge("Lemma B.8 (excess reading of Def. B.5): KL(q||p_tau) <= D_tau log V + L eps",
                   "[derived]", excess),
            _judge("Lemma B.8 with Def. B.5 read literally (#intervals)", "[paper text]",
                   intervals, expected=False),
            _judge("Lemma B.9: KL(q||p) <= E[D_tau] log V + L eps", "[derived]", b9)]


def _lemma_b10_b11(quick: bool) -> list[Check]:
    sep, cnt, b11 = [], [], []
    num = 300 if quick else 2000
    for n, length, sched in [(2, 60, Schedule.linear(6)), (3, 60, Schedule.cosine(5)),
                             (3, 600, Schedule.adaptive_ngram(3, 0.3))]:
        chk = tng.chernoff_check(sched, length, n, num_samples=num, seed=0)
        for k in range(sched.num_steps):
            desc = f"n={n}, L={length}, {sched.name}, step {k + 1}"
            sep.append((float(chk.separator_low[k]), float(chk.separator_bound[k]), desc))
            cnt.append((float(chk.count_event[k]), float(chk.count_bound[k]), desc))
        steps = sched.draw_steps(num, length, np.random.default_rng(1))
        d = dependencies(steps, n, num_steps=sched.num_steps)
        bound = tng.step_dependency_bound(sched, length, n).bound
        mean = d.mean(axis=0)
        half = 1.96 * d.std(axis=0, ddof=1) / math.sqrt(num)
        for k in range(sched.num_steps):
            b11.append((float(mean[k] - half[k]), float(bound[k]),
                        f"n={n}, L={length}, {sched.name}, step {k + 1}"))
    return [_judge("Lemma B.10: Pr[s_k <= L P^(n-1)/(2(n-1))] <= Chernoff (Wilson low end)",
                   "[derived]", sep),
            _judge("Lemma B.10: Pr[m_k >= 2 L p^(k)] <= exp(-L p^(k)/3) (exact binomial)",
                   "[derived]", cnt),
            _judge("Lemma B.11: E[D_k] <= three-term bound (95% low end of Monte Carlo)",
                   "[derived]", b11)]


def _lemma_b12(quick: bool) -> list[Check]:
    analytic, mc = [], []
    grid = [(2, 0.1), (3, 0.1), (2, 0.05)] + ([] if quick else [(4, 0.1), (3, 0.05)])
    for n, eps in grid:
        for which in ("A", "B"):
            sched = tng.b12_schedule(n, eps, which)
            l0 = tng.min_length(n, eps)
            analytic.append((tng.excess_bound_per_token(sched, l0, n), 4 * eps,
                             f"n={n}, eps={eps}, schedule {which}, L_0={l0}"))
    for n, eps in [(2, 0.1)] + ([] if quick else [(3, 0.1)]):
        sched = tng.b12_schedule(n, eps, "A")
        l0 = tng.min_length(n, eps)
        est = tng.excess_monte_carlo(sched, l0, n, num_samples=4, seed=0)
        mc.append((est.high, 4 * eps, f"n={n}, eps={eps}, schedule A, L_0={l0}, 95% high end"))
    return [_judge("Lemma B.12: analytic excess E[D_tau]/L <= 4 eps at L_0", "[ours]", analytic),
            _judge("Theorem 4.2: measured excess D_tau/L <= 4 eps at L_0 (Monte Carlo)",
                   "[recalled]", mc)]


def _lemma_c1_c3(quick: bool) -> list[Check]:
    c1, c2, c3 = [], [], []
    for name, sched, length in [("linear", Schedule.linear(4096), 32),
                                ("cosine", Schedule.cosine(4096), 32),
                                ("linear", Schedule.linear(64), 8),
                                ("polynomial:2", Schedule.polynomial(16, 2.0), 6)]:
        exact = thmm.collision_probability(sched, length)
        c1.append((exact, thmm.collision_union_bound(sched, length),
                   f"{name} N={sched.num_steps}, L={length}"))
    for lname, lang in _battery(quick):
        length = 4
        for eps in (0.01, 0.05, 0.2):
            den = PerturbedOracle(lang, eps)
            one_each = DeterministicPlan.left_to_right(length)
            acc = 1 - exact_metrics(lang, one_each, length, den).ser
            c2.append((acc, thmm.acceptance_lower_bound(length, eps),
                       f"{lname}, one token per step, eps_learning={eps}"))
            for sched in (Schedule.linear(6), Schedule.cosine(3)):
                ser = exact_metrics(lang, sched, length, den).ser
                c3.append((ser, thmm.ser_upper_bound(sched, length, eps).paper_bound,
                           f"{lname}, {sched.name} N={sched.num_steps}, eps_learning={eps}"))
    return [_judge("Lemma C.1: Pr[collision] (exact) <= C(L,2) sum p_i^2", "[derived]", c1),
            _judge("Lemma C.2: p_acc >= exp(-L eps_learning) (one token per step)", "[derived]",
                   c2, upper=False),
            _judge("Theorem C.3 (4.3): SER <= Pr[collision] + 1 - exp(-L eps_learning)",
                   "[derived]", c3)]


def _lemma_c5_c9(quick: bool, rng) -> list[Check]:
    c5, c5_tight, jensen, c6, c7, c9 = [], [], [], [], [], []
    for ell in (3, 5, 8):
        for n in (2, 3, 5, 10, 50):
            for trial in range(10):
                masses = rng.dirichlet(np.full(n, 0.7 if trial else 1e6))
                exact = tint.distinct_steps_probability(masses, ell)
                tight = tint.distinct_steps_tight_bound(n, ell)
                desc = f"l={ell}, N={n}, trial {trial}"
                c5_tight.append((exact, tight, desc))
                c5.append((exact, tint.distinct_steps_paper_bound(n, ell), desc))
                jensen.append((tint.jensen_intermediate(masses, ell),
                               tint.distinct_steps_paper_bound(n, ell), desc))
    for ell, n, length in [(3, 8, 30), (4, 16, 40), (4, 32, 400), (5, 8, 50), (5, 16, 5)]:
        sched = Schedule.linear(n)
        ser = tint.oracle_ser(sched, ell, length)
        desc = f"l={ell}, N={n}, L={length}, oracle"
        c6.append((ser, tint.ser_lower_bound_tight(sched, ell, length, 0.5), desc + " (tight)"))
        c6.append((ser, tint.ser_lower_bound(n, ell, length, 0.5), desc + " (paper form)"))
    for eps in (1e-4, 1 / 256, 1 / 130):
        eta = tint.bit_bias_bound(eps)
        grid = np.linspace(0.5 - eta, 0.5 + eta, 201)
        worst = float(tint.pair_error_probability(grid[:, None], grid[None, :]).min())
        c7.append((worst, tint.collision_error_probability(eps), f"eps_learning={eps}"))
    for c in (0.2, 0.5, 1.0, 2.0):
        for length in (50, 5000, 50_000):
            n = max(1, int(c * length))
            ser = tint.oracle_ser(Schedule.linear(n), 5, length, p_e=63 / 128)
            c9.append((ser, tint.theorem_c9_bound(c, length), f"C={c}, L={length}, N={n}"))
    scan = tint.c9_finite_length_check(0.5, 63 / 128, 5, 15, 20_000 if quick else 200_000)
    c9.append((scan.min_bound, 0.5, f"min over L in [15, ...] of the C.6 bound at N = L/2 "
               f"(worst L={scan.argmin_length})"))
    explicit = [(tint.theorem_c9_bound(0.5, length), 0.5, f"C=1/2, L={length}")
                for length in range(15, 205, 5)]
    return [
        _judge("Lemma C.5: P_j = l! e_l(p) <= prod_r (1 - r/N) (tight)", "[derived]", c5_tight),
        _judge("Lemma C.5: P_j <= (1 - 1/N)^(l-1)", "[derived]", c5),
        _judge("Lemma C.5 proof: sum p_i (1-p_i)^(l-1) <= (1 - 1/N)^(l-1) (Jensen step)",
               "[paper text]", jensen, expected=False),
        _judge("Lemma C.6: exact oracle SER >= 1 - (1 - p_e(1 - P_j))^(L/l)", "[derived]", c6,
               upper=False),
        _judge("Example C.7: collision error >= 1/2 - eps_learning (exact min)", "[derived]",
               c7, upper=False),
        _judge("Theorem C.9 (4.4): exact SER >= explicit bound; C = 1/2 gives >= 1/2, L >= 15",
               "[derived]", c9, upper=False),
        _judge("Theorem C.9 explicit exp form: C = 1/2 gives >= 1/2 for every L >= 15",
               "[derived text]", explicit, expected=False, upper=False),
    ]


def _appendix_d() -> list[Check]:
    cases, caps = [], []
    for sched, length in [(Schedule.linear(4096), 512), (Schedule.linear(8), 512),
                          (Schedule.cosine(64), 64)]:
        expected = thmm.expected_nfe(sched, length)
        est = thmm.nfe_monte_carlo(sched, length, num_samples=400, seed=0)
        desc = f"{sched.name} N={sched.num_steps}, L={length}"
        cases.append((abs(est.value - expected), est.high - est.low, desc + " (|MC - formula|)"))
        caps.append((expected, min(sched.num_steps, length), desc))
    return [_judge("Appendix D: E[#non-empty steps] = sum 1-(1-p_i)^L (Monte Carlo agrees)",
                   "[derived]", cases),
            _judge("Appendix D: E[#non-empty steps] <= min(N, L)", "[derived]", caps)]


def _li_cai(quick: bool) -> list[Check]:
    cases = []
    length = 4
    for lname, lang in _battery(quick):
        mi = lit.mutual_information_profile(lang, length, method="exact").total.value
        for pname, plan in [("fixed-count 4/2", FixedCountPlan.even(length, 2)),
                            ("fixed-count 4/4", FixedCountPlan.even(length, 4)),
                            ("fixed-count 4/1", FixedCountPlan.even(length, 1)),
                            ("deterministic {0,2},{1,3}", DeterministicPlan([[0, 2], [1, 3]]))]:
            s_max = int(plan.counts.max()) if isinstance(plan, FixedCountPlan) else 2
            m = exact_metrics(lang, plan, length)
            cases.append((m.jensen_bound, lit.li_cai_bound(mi, length, s_max),
                          f"{lname}, {pname}"))
    return [_judge("Li & Cai: E_tau KL(q||p_tau) <= (2^ceil(log2 s_max)-1)/L sum I(X_i;X_-i)",
                   "[recalled]", cases)]


CHECKS: tuple[tuple[str, Callable], ...] = (
    ("A.1", lambda quick, rng: _lemma_a1(rng)),
    ("B.2-B.3", lambda quick, rng: _lemma_b2_b3(quick)),
    ("B.8-B.9", lambda quick, rng: _lemma_b8_b9(quick)),
    ("B.10-B.11", lambda quick, rng: _lemma_b10_b11(quick)),
    ("B.12 / Thm 4.2", lambda quick, rng: _lemma_b12(quick)),
    ("C.1-C.3", lambda quick, rng: _lemma_c1_c3(quick)),
    ("C.5-C.9", lambda quick, rng: _lemma_c5_c9(quick, rng)),
    ("App. D", lambda quick, rng: _appendix_d()),
    ("Li & Cai", lambda quick, rng: _li_cai(quick)),
)
"""The parts of the paper, each a function (quick, rng) -> list of ``Check``."""


def verify(quick: bool = False, seed: int = 0, progress: bool = False) -> list[Check]:
    """Run every check; ``quick`` uses a smaller battery (under a minute on 2 cores).
    ``progress``: a tqdm bar over the parts of ``CHECKS`` on stderr (after 2 s)."""
    rng = np.random.default_rng(seed)
    out: list[Check] = []
    names = [name for name, _ in CHECKS]
    with progress_bar(progress, total=len(CHECKS), desc="verify", unit="part",
                      postfix=names[0]) as bar:
        for i, (_, run) in enumerate(CHECKS):
            out.extend(run(quick, rng))
            # the bar draws at an update, so it names the part that runs next
            bar.set_postfix_str(names[i + 1] if i + 1 < len(names) else "", refresh=False)
            bar.update()
    return out
