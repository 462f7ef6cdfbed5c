"""``mdm-exact steps`` on a language: the Monte-Carlo SER search, ``--plan-file`` families and
error messages that name the option the user gave."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

import mdm_exact as me
from mdm_exact.cli import main
from mdm_exact.policies import parse_policy

Z95 = 1.959963984540054  # the 97.5% quantile of the standard normal


def run(capsys, *argv) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def wilson_high(errors: int, n: int) -> float:
    """Wilson score upper end at 95%, written out: (p + z^2/2n + z sqrt(p(1-p)/n + z^2/4n^2))
    / (1 + z^2/n)."""
    p, z2 = errors / n, Z95**2
    return (p + z2 / (2 * n) + Z95 * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n))) / (1 + z2 / n)


def test_steps_ser_is_the_smallest_n_with_its_own_seed(capsys):
    """N passes, N - 1 fails, each drawn with the seed (seed, N) whatever the search path."""
    length, samples, seed, target = 6, 100, 3, 0.3
    code, out, err = run(capsys, "steps", "--preset", "2-gram", "--length", str(length), "--ser",
                         str(target), "--samples", str(samples), "--seed", str(seed), "--json")
    assert code == 0, err
    data = json.loads(out)
    lang = me.preset("2-gram")

    def errors(n: int) -> int:
        x = me.sample(lang, me.Schedule.linear(n), length, samples,
                      rng=np.random.default_rng([seed, n])).tokens
        return int((~np.asarray(lang.in_support(x))).sum())

    n = data["steps"]
    assert n > 1
    assert data["ser"]["value"] == errors(n) / samples
    assert data["ser"]["high"] == pytest.approx(wilson_high(errors(n), samples), abs=1e-9)
    assert wilson_high(errors(n), samples) <= target < wilson_high(errors(n - 1), samples)
    assert data["largest_rejected"]["steps"] == n - 1
    assert data["largest_rejected"]["ser"]["value"] == errors(n - 1) / samples


def test_steps_ser_text_reports_both_ends(capsys):
    code, out, _ = run(capsys, "steps", "--preset", "2-gram", "--length", "4", "--ser", "0.5",
                       "--samples", "20")
    assert code == 0
    assert "smallest N whose SER" in out and "accepted" in out


def test_plan_file_alpha_curve_is_the_family(capsys, tmp_path):
    """The saved grid is interpolated linearly: a cosine schedule of 2 steps searched at N = 4
    has alpha = 1, (1 + c)/2, c, c/2, 0 with c = cos(pi/4); at its own N it is the file's."""
    from mdm_exact.cli import _steps_family

    path = tmp_path / "cos.json"
    me.save_plan(me.Schedule.cosine(2), path)

    class Args:
        plan_file, schedule = str(path), None

    family, name = _steps_family(Args)
    c = math.cos(math.pi / 4)
    np.testing.assert_allclose(family(4).alphas, [1, (1 + c) / 2, c, c / 2, 0], atol=1e-15)
    np.testing.assert_allclose(family(2).masses, me.Schedule.cosine(2).masses, atol=1e-15)
    assert "cos.json" in name
    code, out, err = run(capsys, "steps", "--preset", "2-gram", "--length", "4", "--ser", "0.5",
                         "--samples", "20", "--plan-file", str(path), "--json")
    assert code == 0, err
    assert "cos.json" in json.loads(out)["schedule"]


@pytest.mark.parametrize("plan", [me.FixedCountPlan.even(4, 2), parse_policy("threshold:0.5")],
                         ids=["fixed-count", "policy"])
def test_plan_file_refuses_what_is_not_a_schedule(capsys, tmp_path, plan):
    path = tmp_path / "plan.json"
    me.save_plan(plan, path)
    code, out, err = run(capsys, "steps", "--preset", "2-gram", "--length", "4", "--ser", "0.5",
                         "--plan-file", str(path))
    assert code == 2 and out == ""
    assert len(err.strip().splitlines()) == 1 and "needs a Schedule" in err


@pytest.mark.parametrize(("argv", "needle"), [
    (["--preset", "2-gram"], "--preset needs a target"),
    (["--language", "x.json"], "--language needs a target"),
    (["--preset", "2-gram", "--ser", "0.1", "--kl-per-token", "0.1"],
     "give one target with --preset"),
    (["--preset", "2-gram", "--ser", "0.1", "--eps-learning", "0.1"],
     "--eps-learning does not apply to --preset"),
    (["--preset", "2-gram", "--ser", "1.5"], "--ser with --preset must lie in (0, 1)"),
    (["--preset", "2-gram", "--ser", "0.1", "--schedule", "cosine", "--plan-file", "p.json"],
     "--schedule or --plan-file"),
    (["--interval", "5", "--ser", "0.1", "--plan-file", "p.json"],
     "--plan-file does not apply to --interval"),
    ([], "give --interval"),
])
def test_steps_errors_name_the_option_given(capsys, argv, needle):
    code, out, err = run(capsys, "steps", "--length", "10", *argv)
    assert code == 2 and out == ""
    assert len(err.strip().splitlines()) == 1 and needle in err
