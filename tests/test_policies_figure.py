"""The policies figure (``mdm-exact figure policies``), computed once in a reduced setting.

L = 12 (Example C.7 then runs at 10, the nearest multiple of its interval 5) and 4 samples per
point: the numbers are checked for what holds whatever the draws (shapes, intervals, the NFE of
the fixed-count rules, the exact Example C.7 schedule curve), the drawing for its structure.
"""

from __future__ import annotations

import argparse

import numpy as np
import pytest

from mdm_exact import plotting
from mdm_exact.errors import ArgumentError, ArgumentTypeError
from mdm_exact.schedules import Schedule
from mdm_exact.theory.interval import interval_parity_ser

pytestmark = pytest.mark.usefixtures("one_numba_thread")


@pytest.fixture(scope="module")
def data():
    return plotting.figure_policies_data(length=12, num_samples=4, seed=1)


def test_registered():
    assert plotting.FIGURES["policies"] is plotting.figure_policies


def test_shapes_and_padding(data):
    curves = plotting.POLICY_CURVES
    assert data.languages == plotting.POLICY_LANGUAGES
    assert data.lengths == (12, 12, 12, 10)
    assert data.curves == tuple(name for name, _, _ in curves)
    points = max(len(values) for _, _, values in curves)
    for arr in (data.parameters, data.nfe, data.nfe_low, data.nfe_high, data.ser, data.ser_low,
                data.ser_high):
        assert arr.shape == (4, len(curves), points)
        for j, (_, _, values) in enumerate(curves):
            assert np.all(np.isfinite(arr[:, j, :len(values)]))
            assert np.all(np.isnan(arr[:, j, len(values):]))


def test_intervals_are_ordered(data):
    live = np.isfinite(data.ser)
    assert np.all((data.ser_low <= data.ser) & (data.ser <= data.ser_high) | ~live)
    assert np.all((0 <= data.ser_low) & (data.ser_high <= 1) | ~live)
    assert np.all((data.nfe_low <= data.nfe) & (data.nfe <= data.nfe_high) | ~live)
    # no rule calls the denoiser more often than there are positions, and at least once
    lengths = np.asarray(data.lengths)[:, None, None]
    assert np.all((1 <= data.nfe) & (data.nfe <= lengths) | ~live)


def test_fixed_count_rules_call_once_per_step(data):
    for j, (name, kind, values) in enumerate(plotting.POLICY_CURVES):
        if kind != "steps":
            continue
        for i, length in enumerate(data.lengths):
            steps = [max(1, round(r * length)) for r in values]
            assert data.parameters[i, j, :len(values)].tolist() == steps, name
            # N <= L non-empty steps, each one denoiser call in every row
            assert data.nfe[i, j, :len(values)].tolist() == steps, name
            assert np.array_equal(data.nfe_low[i, j], data.nfe_high[i, j], equal_nan=True)


def test_interval_parity_schedule_is_exact(data):
    i = data.languages.index("C.7")
    j = data.curves.index("linear schedule")
    length = data.lengths[i]
    for k, r in enumerate(plotting.POLICY_CURVES[j][2]):
        n = max(1, round(r * length))
        plan = Schedule.linear(n)
        assert data.ser[i, j, k] == data.ser_low[i, j, k] == data.ser_high[i, j, k]
        assert data.ser[i, j, k] == interval_parity_ser(5, length, plan)
        assert data.nfe[i, j, k] == pytest.approx(plan.expected_nfe(length), rel=1e-12)


def test_figure_structure(data, tmp_path):
    from matplotlib.image import imread

    fig = plotting.figure_policies(data=data)
    axes = fig.get_axes()
    assert len(axes) == 4
    assert fig.get_suptitle() and fig.get_supxlabel().startswith("Parameters:")
    for ax, length in zip(axes, data.lengths, strict=True):
        assert str(length) in ax.get_title()
        assert ax.get_xscale() == "log"
        assert "NFE" in ax.get_xlabel() and "(probability)" in ax.get_ylabel()
    texts = [t.get_text() for t in fig.legends[0].get_texts()]
    assert len(texts) == len(data.curves) + 1 and any(t.startswith("AR") for t in texts)
    path = tmp_path / "policies.png"
    fig.savefig(path, dpi=60)
    img = imread(path)
    assert path.stat().st_size > 20_000 and img[..., :3].std() > 0.05


def test_cli_quick(tmp_path, capsys):
    parser = argparse.ArgumentParser()
    plotting.add_figure_arguments(parser)
    out = tmp_path / "p.png"
    args = parser.parse_args(["policies", "--out", str(out), "--quick", "--samples", "2",
                              "--length", "6", "--dpi", "50"])
    assert args.func(args) == 0
    assert out.stat().st_size > 10_000 and str(out) in capsys.readouterr().out


def test_bad_arguments(data):
    with pytest.raises(ArgumentError, match="length must be >= 5"):
        plotting.figure_policies_data(length=4)
    with pytest.raises(ArgumentError, match="num_samples >= 2"):
        plotting.figure_policies_data(length=10, num_samples=1)
    with pytest.raises(ArgumentTypeError, match="pass either data"):
        plotting.figure_policies(data=data, length=10)
