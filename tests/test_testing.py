"""The public hypothesis strategies of ``mdm_exact.testing`` produce valid inputs, and the
property users are shown in their docstrings holds."""

from __future__ import annotations

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

import mdm_exact as me
from mdm_exact.testing import alpha_grids, eps_learnings, plans, small_languages


@given(alpha_grids())
def test_alpha_grids_are_schedules(grid):
    assert grid[0] == 1 and grid[-1] == 0 and np.all(np.diff(grid) <= 0)
    sched = me.Schedule.from_alpha(grid)
    np.testing.assert_allclose(sched.alphas, grid, atol=1e-12)


@given(st.data())
def test_plans_cover_the_length(data):
    plan = data.draw(plans(5))
    steps = plan.draw_steps(3, 5, 0)
    assert steps.shape == (3, 5) and steps.min() >= 0 and steps.max() < plan.num_steps


@given(st.data())
def test_kl_below_jensen_for_any_plan_and_learning_error(data):
    language = data.draw(small_languages())
    length = 2 * language.interval if isinstance(language, me.IntervalParity) else 3
    plan = data.draw(plans(length))
    eps = data.draw(eps_learnings(0.2))
    den = me.Oracle(language) if eps == 0 else me.PerturbedOracle(language, eps)
    m = me.exact_metrics(language, plan, length, den)
    assert abs(m.total_mass - 1) < 1e-10
    assert m.kl <= m.jensen_bound + 1e-10
    assert -1e-12 <= m.ser <= 1 + 1e-12
