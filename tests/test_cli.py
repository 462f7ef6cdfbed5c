"""The ``mdm-exact`` command line: outputs agree with the library, bad arguments fail cleanly."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from fractions import Fraction

import numpy as np
import pytest

import mdm_exact as me
from mdm_exact.cli import main
from mdm_exact.theory.interval import oracle_ser, ser_lower_bound


def run(capsys, *argv) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def run_json(capsys, *argv):
    code, out, err = run(capsys, *argv, "--json")
    assert code == 0, err
    return json.loads(out)


def test_bound_json_matches_schedule_a_formula(capsys):
    data = run_json(capsys, "bound", "--n", "3", "--eps", "0.1")
    m = math.ceil(4 * 2 * (1 - Fraction(1, 10)) ** 2 / Fraction(1, 10) ** 3)
    assert data["steps"] == m + 1 == 6481
    assert data["min_length"] == 99472  # Lemma B.12, docs/theory/lemma-b12.md
    assert data["log_ter_gap_bound"]["nats_per_token"] == pytest.approx(4 * 0.1 * math.log(8))
    assert data["log_ter_gap_bound"]["bits_per_token"] == pytest.approx(4 * 0.1 * 3)
    runs = data["plan"]["masses"]  # the plan-file format (docs/cli.md)
    assert data["plan"]["kind"] == "schedule"
    assert sum(r["count"] for r in runs) == data["steps"]
    assert math.fsum(r["mass"] * r["count"] for r in runs) == pytest.approx(1, abs=1e-12)


def test_bound_adaptive_and_text(capsys):
    data = run_json(capsys, "bound", "--n", "2", "--eps", "0.1", "--schedule", "adaptive")
    assert data["steps"] == 95  # Schedule B, docs/theory/lemma-b12.md
    code, out, _ = run(capsys, "bound", "--n", "3", "--eps", "0.1")
    assert code == 0 and "6481" in out and "99472" in out


def test_bound_verify_reports_intervals(capsys):
    data = run_json(capsys, "bound", "--n", "2", "--eps", "0.1", "--verify", "--samples", "3")
    excess = data["verify"]["excess_per_token"]
    assert excess["low"] <= excess["value"] <= excess["high"]
    assert excess["value"] <= 4 * 0.1
    assert data["verify"]["jensen_bound_per_token"]["value"] > 0


@pytest.mark.parametrize(
    "argv, needle",
    [
        (["bound", "--n", "1", "--eps", "0.1"], "--n"),
        (["bound", "--n", "3", "--eps", "1.5"], "--eps"),
        (["bound", "--n", "3", "--eps", "0"], "--eps"),
        (["bound", "--n", "3", "--eps", "0.1", "--length", "100"], "--length"),
        (["ser", "--interval", "5", "--length", "52", "--steps", "4"], "interval"),
        (["steps", "--interval", "5", "--length", "12", "--ser", "0.1"], "interval"),
        (["exact", "--preset", "2-gram", "--length", "3"], "--steps"),
        (["exact", "--language", "/nonexistent.json", "--length", "3", "--steps", "2"],
         "nonexistent"),
        (["simulate", "--preset", "2-gram", "--length", "8", "--steps", "2", "--schedule",
          "bogus", "--samples", "3"], "schedule"),
        (["exact", "--preset", "2-gram", "--length", "4", "--alphas", "1,0.7,0.8,0"], "alpha"),
    ],
)
def test_bad_arguments_one_line_error(capsys, argv, needle):
    code, out, err = run(capsys, *argv)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("mdm-exact: error:")
    assert needle in lines[0]


def test_exact_json_matches_library(capsys, tmp_path):
    lang = me.random_ngram(2, 3, threshold=0.1, seed=4)
    path = tmp_path / "lang.json"
    lang.save(path)
    data = run_json(capsys, "exact", "--language", str(path), "--length", "4", "--steps", "2")
    ref = me.exact_metrics(lang, me.Schedule.linear(2), 4)
    for key in ("kl", "log_ter", "ser", "jensen_bound", "entropy"):
        assert data[key] == pytest.approx(getattr(ref, key), rel=1e-12, abs=1e-15)
    fixed = run_json(capsys, "exact", "--language", str(path), "--length", "4",
                     "--fixed-count", "2", "--eps-learning", "0.05")
    ref = me.exact_metrics(lang, me.FixedCountPlan.even(4, 2), 4, me.PerturbedOracle(lang, 0.05))
    assert fixed["kl"] == pytest.approx(ref.kl, rel=1e-12)
    alphas = run_json(capsys, "exact", "--language", str(path), "--length", "4", "--alphas",
                      "1,0.5,0")
    assert alphas["ser"] == pytest.approx(data["ser"], rel=1e-12)  # same as linear with N = 2


def test_simulate_json_is_reproducible(capsys):
    argv = ("simulate", "--preset", "2-gram", "--length", "16", "--steps", "4", "--samples",
            "50", "--seed", "3")
    a, b = run_json(capsys, *argv), run_json(capsys, *argv)
    assert a == b
    assert 0 <= a["ser"]["low"] <= a["ser"]["value"] <= a["ser"]["high"] <= 1
    assert a["nfe"] == 4 and a["nfe_cache_mean"] <= 4


def test_ser_and_steps_agree_with_theory(capsys):
    data = run_json(capsys, "ser", "--interval", "5", "--length", "1000", "--steps", "500")
    assert data["ser"] == pytest.approx(oracle_ser(me.Schedule.linear(500), 5, 1000), rel=1e-12)
    assert data["ser"] >= data["theorem_4_4_lower_bound"]
    steps = run_json(capsys, "steps", "--interval", "5", "--length", "1000", "--ser", "0.1")
    n = steps["steps"]
    assert oracle_ser(me.Schedule.linear(n), 5, 1000) <= 0.1 < oracle_ser(
        me.Schedule.linear(n - 1), 5, 1000)
    floor = steps["lower_bound_steps"]
    assert 0 < floor <= n
    assert ser_lower_bound(floor, 5, 1000, 0.5) <= 0.1 < ser_lower_bound(floor - 1, 5, 1000, 0.5)


def test_language_save_roundtrip(capsys, tmp_path):
    path = tmp_path / "hmm.npz"
    code, out, _ = run(capsys, "language", "--preset", "hmm", "--save", str(path))
    assert code == 0 and "num_states: 32" in out
    loaded = me.load_language(path)
    np.testing.assert_array_equal(loaded.transition, me.preset("hmm").transition)


def test_verify_quick_all_as_expected(capsys):
    data = run_json(capsys, "verify", "--quick")
    assert data["all_as_expected"]
    names = [c["statement"] for c in data["checks"]]
    documented = [c for c in data["checks"] if not c["expected"]]
    expected_failures = {"Lemma C.5 proof", "Lemma B.8 with Def. B.5 read literally (#intervals)",
                         "Theorem C.9 explicit exp form"}
    assert {c["statement"].split(":")[0] for c in documented} == expected_failures
    assert all(not c["holds"] for c in documented)
    assert any(n.startswith("Theorem C.9") for n in names)


def test_module_entry_point():
    out = subprocess.run([sys.executable, "-m", "mdm_exact", "bound", "--n", "2", "--eps", "0.1",
                          "--json"], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout)["steps"] == 325


def test_simulate_brackets_the_true_kl_on_a_bigram(capsys):
    """Issue 12: where the likelihood is exact (a 2-gram under a Schedule) simulate reports the
    exact-per-sample KL per token, and the SER lower bound and the Jensen bound bracket it."""
    data = run_json(capsys, "simulate", "--preset", "2-gram", "--length", "24", "--steps", "6",
                    "--samples", "300", "--kl-samples", "300")
    kl, jb = data["kl_per_token"], data["jensen_bound_per_token"]
    floor = data["ser_kl_lower_bound_per_token"]
    assert data["kl_note"] is None
    assert kl["method"] == "exact per sample, monte-carlo over x" and kl["num_samples"] == 300
    assert floor["low"] <= kl["high"] and kl["low"] <= jb["high"]
    assert kl["value"] < jb["value"]  # the Jensen bound is loose by a factor of about 3 here
    ser = data["ser"]["value"]
    assert floor["value"] == pytest.approx(-math.log1p(-ser) / 24, rel=1e-12)
    assert data["log_ter"]["value"] > kl["value"]


def test_simulate_says_why_there_is_no_kl(capsys):
    data = run_json(capsys, "simulate", "--preset", "3-gram", "--length", "16", "--steps", "4",
                    "--samples", "20")
    assert data["kl_per_token"] is None and data["log_ter"] is None
    assert "no exact likelihood" in data["kl_note"]


def test_simulate_skips_a_jensen_bound_estimated_above_the_limit(capsys, monkeypatch):
    """The Jensen bound costs about as many denoiser calls as there are distinct drawn steps:
    above the time limit it is skipped with its estimate, and --jensen-samples asks for it."""
    import mdm_exact.cli as cli

    monkeypatch.setattr(cli, "KL_SECONDS", 0.0)
    argv = ("simulate", "--preset", "2-gram", "--length", "12", "--steps", "4", "--samples", "8")
    data = run_json(capsys, *argv)
    assert data["jensen_bound"] is None and data["jensen_bound_per_token"] is None
    assert data["jensen_note"].startswith("not computed: about ")
    assert "--jensen-samples K" in data["jensen_note"]
    code, out, _ = run(capsys, *argv)
    assert code == 0 and "--jensen-samples K" in out
    forced = run_json(capsys, *argv, "--jensen-samples", "5")
    assert forced["jensen_note"] is None and forced["jensen_bound"]["num_samples"] == 5
    assert forced["jensen_bound_per_token"]["value"] == pytest.approx(
        forced["jensen_bound"]["value"] / 12, rel=1e-12)
