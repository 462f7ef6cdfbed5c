"""Every script in examples/ runs to completion in quick mode (``MDM_EXACT_QUICK=1``)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = sorted((Path(__file__).resolve().parent.parent / "examples").glob("*.py"))


def test_examples_exist():
    assert len(EXAMPLES) >= 4


@pytest.mark.parametrize("script", EXAMPLES, ids=lambda p: p.name)
def test_example_runs_in_quick_mode(script, tmp_path):
    env = dict(os.environ, MDM_EXACT_QUICK="1", MDM_EXACT_FIGURE_DIR=str(tmp_path / "figures"),
               MPLBACKEND="Agg", NUMBA_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, (
        f"{script.name} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}"
    )
    assert proc.stdout.strip()
    if script.name == "03_figures.py":
        assert len(list((tmp_path / "figures").glob("*.png"))) == 3
