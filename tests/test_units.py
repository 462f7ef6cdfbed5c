"""Units and names that cannot be misread.

Every number of every ``--json`` verb has a known unit; every quantity of a whole sequence has its
``_per_token`` twin beside it, equal to it / L; every row of every text table names its unit. The
per-token fields of ``ExactMetrics`` (and the TER gap KL / L) are checked against a brute-force
enumeration of the factorized sampler, and the valid-only generative log-perplexity against a
direct computation.
"""

from __future__ import annotations

import itertools
import json
import math
import re

import numpy as np
import pytest
from scipy import stats

import mdm_exact as me
from mdm_exact.cli import main
from mdm_exact.metrics import generative_log_perplexity, generative_perplexity
from mdm_exact.theory.ngram import ter_bound

PER_SEQUENCE = {"kl", "exact_kl", "jensen_bound", "jensen_gap", "entropy", "ser_kl_lower_bound",
                "excess"}
"""Quantities of a whole sequence: each must come with its ``_per_token`` twin."""

PER_TOKEN = {"log_ter", "log_ter_q", "log_ter_gap", "gen_log_ppl", "gen_log_ppl_valid_only",
             "nats_per_token", "bits_per_token", "eps_learning", "target", "upper_95"}
"""Quantities defined per token (besides the ``_per_token`` twins)."""

PROBABILITIES = {"ser", "total_mass", "p_e", "theorem_4_4_lower_bound", "ser_target", "eps",
                 "confidence"}
COUNTS = {"length", "vocab_size", "order", "num_states", "samples", "valid_samples", "seed",
          "steps", "nfe", "nfe_mean", "nfe_cache_mean", "nfe_quantiles", "interval", "n", "vocab",
          "min_length", "expected_nfe", "lower_bound_steps", "num_samples"}
RATIOS = {"steps_per_length", "theorem_4_4_max_C"}
"""N / L and Theorem 4.4's constant C (steps per token)."""

DESCRIPTIONS = {"plan", "policy", "metadata"}
"""Sub-documents describing the plan (its masses are inputs, not results) or the language."""

UNITS = ("nats per sequence", "nats per token", "bits per token", "probability", "tokens",
         "steps", "denoiser calls", "dependencies per sequence", "dependencies per token")
"""The units a text-table row may name (in a cell of its own)."""


def _run(capsys, *argv) -> str:
    code = main(list(argv))
    out, err = capsys.readouterr()
    assert code == 0, err
    return out


def _is_estimate(value) -> bool:
    return isinstance(value, dict) and {"value", "low", "high"} <= value.keys()


def _number(value) -> float | None:
    """A JSON leaf as a float (infinities are written as strings), None for null."""
    if value is None:
        return None
    return float(value)


def _check_twin(key: str, value, twin, length: int) -> None:
    if value is None or twin is None:
        assert value is None and twin is None, (key, value, twin)
        return
    pairs = ([(value[f], twin[f]) for f in ("value", "low", "high")] if _is_estimate(value)
             else [(value, twin)])
    for v, t in pairs:
        v, t = _number(v), _number(t)
        if math.isinf(v):
            assert t == v, (key, v, t)
        else:
            assert t == pytest.approx(v / length, rel=1e-12, abs=1e-300), (key, v, t)


def _check_document(doc: dict, length: int | None = None, where: str = "") -> int:
    """Check one JSON dict and its sub-dicts; returns how many twins were compared."""
    length = doc.get("length", length)
    compared = 0
    for key, value in doc.items():
        path = f"{where}.{key}"
        if key in DESCRIPTIONS or isinstance(value, str | bool) or (
                value is None and key not in PER_SEQUENCE):
            continue
        if isinstance(value, dict) and not _is_estimate(value) and key != "nfe_quantiles":
            compared += _check_document(value, length, path)
            continue
        if key in PER_SEQUENCE:
            twin = f"{key}_per_token"
            assert twin in doc, f"{path} (nats per sequence) has no {twin} beside it"
            assert length is not None, f"{path}: no length to check {twin} against"
            _check_twin(path, value, doc[twin], length)
            compared += 1
        elif key.endswith("_per_token") and key.removesuffix("_per_token") in PER_SEQUENCE:
            assert key.removesuffix("_per_token") in doc, f"{path} has no per-sequence twin"
        else:
            known = PER_TOKEN | PROBABILITIES | COUNTS | RATIOS
            assert key in known, f"{path} = {value!r}: a number of unknown unit"
    return compared


CASES = {
    "language": ("language", "--preset", "3-gram", "--length", "5"),
    "exact": ("exact", "--preset", "2-gram", "--length", "3", "--steps", "2"),
    "exact-policy": ("exact", "--preset", "2-gram", "--length", "3", "--policy",
                     "topk-confidence:2"),
    "simulate": ("simulate", "--preset", "2-gram", "--length", "6", "--steps", "2",
                 "--samples", "30", "--kl-samples", "10"),
    "simulate-pruned": ("simulate", "--preset", "3-gram", "--length", "12", "--steps", "3",
                        "--samples", "40"),
    "simulate-policy": ("simulate", "--preset", "2-gram", "--length", "6", "--policy",
                        "threshold:0.8", "--samples", "20", "--kl-samples", "5"),
    "ser": ("ser", "--interval", "5", "--length", "20", "--steps", "6"),
    "steps-interval": ("steps", "--interval", "5", "--length", "20", "--ser", "0.5"),
    "steps-jensen": ("steps", "--preset", "2-gram", "--length", "4", "--kl-per-token", "0.5",
                     "--samples", "10"),
    "steps-ser": ("steps", "--preset", "2-gram", "--length", "4", "--ser", "0.5", "--samples",
                  "50"),
    "bound": ("bound", "--n", "2", "--eps", "0.3"),
    "bound-verify": ("bound", "--n", "2", "--eps", "0.3", "--verify", "--samples", "2"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_json_numbers_have_units_and_per_token_twins(capsys, case):
    doc = json.loads(_run(capsys, *CASES[case], "--json"))
    compared = _check_document(doc)
    per_sequence = {"language": 1, "exact": 4, "exact-policy": 4, "simulate": 3,
                    "simulate-pruned": 3, "simulate-policy": 3, "bound-verify": 2,
                    "steps-jensen": 1}
    assert compared >= per_sequence.get(case, 0), (case, compared)


@pytest.mark.parametrize("case", sorted(CASES))
def test_every_text_row_names_a_unit(capsys, case):
    """Tables (after their title line): a cell of every row is a unit. ``steps`` prints
    sentences (and, for --ser, a table): every line names a unit."""
    lines = _run(capsys, *CASES[case]).splitlines()
    if case == "language":  # "key: value" lines; the numbers with a unit name it
        for key in ("length", "entropy", "entropy_per_token"):
            line = next(line for line in lines if line.startswith(f"{key}: "))
            assert line.endswith(("(tokens)", "(nats per sequence)", "(nats per token)")), line
        return
    if case.startswith("steps"):
        for line in lines:
            assert any(unit in line for unit in UNITS), f"{case}: no unit in {line!r}"
        return
    rows = [line for line in lines[1:] if not line.startswith(("quantity", "hint:"))]
    assert rows
    for row in rows:
        cells = re.split(r"\s{2,}", row.strip())
        assert any(cell in UNITS or cell.startswith("probability per ") for cell in cells), \
            f"{case}: no unit in {row!r}"


def test_pruned_simulate_prints_the_valid_only_estimate_and_the_hint(capsys):
    out = _run(capsys, *CASES["simulate-pruned"])
    assert "gen. log-perplexity  " in out and "inf [inf, inf]" in out
    valid = next(line for line in out.splitlines() if "valid samples only (biased)" in line)
    assert re.search(r"\(\d+ of 40 samples inside supp q\)", valid)
    assert "inf" not in valid
    assert "hint:" in out and "--threshold 0" in out
    data = json.loads(_run(capsys, *CASES["simulate-pruned"], "--json"))
    assert data["gen_log_ppl"]["value"] == "inf"
    assert data["gen_log_ppl_valid_only"]["num_samples"] == data["valid_samples"] < 40
    assert data["valid_samples"] == round(40 * (1 - data["ser"]["value"]))
    unpruned = _run(capsys, *CASES["simulate-pruned"], "--threshold", "0")
    assert "hint:" not in unpruned and "inf [" not in unpruned


# ----------------------------------------------------------------------------- Python objects


def _oracle_law(joint: np.ndarray, ref, tau: tuple[int, ...]) -> np.ndarray:
    """p_tau over all sequences: the steps of instance ``tau`` (step of each position) revealed
    in order, each revealed position drawn independently from q(x_j | revealed so far)."""
    length, v = joint.ndim, joint.shape[0]
    law = {tuple([-1] * length): 1.0}
    for step in sorted(set(tau)):
        positions = [j for j in range(length) if tau[j] == step]
        nxt: dict = {}
        for row, w in law.items():
            _, marg = ref.condition(joint, row)
            if marg is None:  # impossible under q: its completions lie outside supp q, where
                continue  # neither KL(q || .) nor E_q looks
            for tokens in itertools.product(range(v), repeat=len(positions)):
                prob = w * math.prod(marg[j, t] for j, t in zip(positions, tokens, strict=True))
                if prob > 0:
                    new = list(row)
                    for j, t in zip(positions, tokens, strict=True):
                        new[j] = t
                    nxt[tuple(new)] = nxt.get(tuple(new), 0.0) + prob
        law = nxt
    out = np.zeros(joint.shape)
    for row, w in law.items():
        out[row] += w
    return out


def _kl(q: np.ndarray, p: np.ndarray) -> float:
    s = q > 0
    return math.inf if np.any(p[s] == 0) else float((q[s] * np.log(q[s] / p[s])).sum())


@pytest.mark.parametrize("length, steps", [(3, 2), (4, 2)])
def test_exact_metrics_twins_and_ter_gap_by_brute_force(bigram, ref, length, steps):
    """Oracle, linear schedule: p = sum_tau P(tau) p_tau with positions revealed independently at
    step k with probability p^(k); log TER(p) - log TER(q) = E_q[-log p] / L - H(q) / L."""
    plan = me.Schedule.linear(steps)
    masses = plan.masses
    joint = ref.joint(bigram, length)
    p = np.zeros(joint.shape)
    jensen = 0.0
    for tau in itertools.product(range(steps), repeat=length):
        weight = math.prod(masses[k] for k in tau)
        if weight == 0:
            continue
        p_tau = _oracle_law(joint, ref, tau)
        p += weight * p_tau
        jensen += weight * _kl(joint, p_tau)
    kl = _kl(joint, p)
    entropy = ref.entropy(joint)
    s = joint > 0
    log_ter_p = float(-(joint[s] * np.log(p[s])).sum()) / length
    log_ter_q = entropy / length
    m = me.exact_metrics(bigram, plan, length)
    tol = dict(rel=1e-9, abs=1e-12)
    assert m.kl == pytest.approx(kl, **tol)
    assert m.log_ter_gap == pytest.approx(log_ter_p - log_ter_q, **tol)
    assert m.log_ter_gap == pytest.approx(kl / length, **tol)
    assert m.kl_per_token == pytest.approx(kl / length, **tol)
    assert m.jensen_bound_per_token == pytest.approx(jensen / length, **tol)
    assert m.jensen_gap == pytest.approx(jensen - kl, **tol)
    assert m.jensen_gap_per_token == pytest.approx((jensen - kl) / length, **tol)
    assert m.entropy_per_token == pytest.approx(entropy / length, **tol)
    assert m.log_ter == pytest.approx(log_ter_p, **tol)


def test_deprecated_gap_names_warn_and_alias(bigram):
    m = me.exact_metrics(bigram, me.Schedule.linear(2), 3)
    with pytest.warns(DeprecationWarning, match="jensen_gap"):
        assert m.gap == m.jensen_gap
    assert "gap" not in m.as_dict()
    bound = ter_bound(3, 0.1, 8, 0.01)
    with pytest.warns(DeprecationWarning, match="log_ter_gap_bound"):
        assert bound.gap == bound.log_ter_gap_bound
    assert bound.log_ter_gap_bound == pytest.approx(0.01 + 4 * 0.1 * math.log(8), rel=1e-15)
    with pytest.raises(AttributeError):
        m.gap = 1.0


def test_policy_leaves_jensen_twins_undefined(bigram):
    m = me.exact_metrics(bigram, me.TopK("confidence", 2), 3)
    assert m.jensen_bound is m.jensen_bound_per_token is m.jensen_gap is None
    assert m.jensen_gap_per_token is None and m.kl_per_token == m.kl / 3


def test_kl_estimate_exact_kl_per_token(bigram):
    est = me.kl_estimate(bigram, me.Schedule.linear(2), 3, 20, rng=0)
    assert est.exact_kl_per_token == est.exact_kl / 3
    assert est.as_dict()["exact_kl_per_token"] == est.exact_kl / 3


def test_valid_only_generative_log_perplexity(bigram, ref):
    """The mean of -log q(x) / L over the rows inside supp q, with its t interval, computed
    directly from the tables."""
    prob = ref.prob_function(bigram)
    rows = [seq for seq in itertools.product(range(3), repeat=4)]
    rng = np.random.default_rng(5)
    tokens = np.array([rows[i] for i in rng.integers(len(rows), size=60)])
    valid = np.array([prob(tuple(x)) > 0 for x in tokens])
    assert 2 <= valid.sum() < valid.size
    values = np.array([-math.log(prob(tuple(x))) / 4 for x in tokens[valid]])
    half = stats.t.ppf(0.975, values.size - 1) * values.std(ddof=1) / math.sqrt(values.size)
    full = generative_log_perplexity(bigram, tokens)
    assert math.isinf(full.value)
    est = generative_log_perplexity(bigram, tokens, valid_only=True)
    assert est.value == pytest.approx(values.mean(), rel=1e-12)
    assert est.low == pytest.approx(max(0.0, values.mean() - half), rel=1e-9)
    assert est.high == pytest.approx(values.mean() + half, rel=1e-9)
    assert est.num_samples == valid.sum() and "biased" in est.method
    ppl = generative_perplexity(bigram, tokens, valid_only=True)
    assert ppl.value == pytest.approx(math.exp(values.mean()), rel=1e-12)
    inside = tokens[valid]
    assert generative_log_perplexity(bigram, inside, valid_only=True).value == pytest.approx(
        generative_log_perplexity(bigram, inside).value, rel=1e-15)
    with pytest.raises(me.ArgumentError, match="valid_only"):
        generative_log_perplexity(bigram, np.vstack([inside[:1], tokens[~valid]]),
                                  valid_only=True)
