"""The documentation builds with ``sphinx-build -W`` (every warning an error).

Skipped when the ``docs`` extra (sphinx, myst-parser) is not installed.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("sphinx")
pytest.importorskip("myst_parser")

DOCS = Path(__file__).resolve().parent.parent / "docs"


@pytest.fixture(scope="module")
def html(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("docs")
    proc = subprocess.run(
        [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-E", "-q", "-b", "html",
         "-d", str(out / "doctrees"), str(DOCS), str(out / "html")],
        capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, (
        f"sphinx-build -W failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}"
    )
    return out / "html"


def test_strict_build_writes_every_page(html):
    for page in ("index", "install", "concepts", "examples", "figures", "differences", "cli",
                 "api", "benchmarks", "theory/index", "theory/theorem-4-2", "theory/theorem-4-4",
                 "theory/lemma-b12", "theory/example-c7", "theory/literature", "policies"):
        assert (html / f"{page}.html").exists(), page


def test_cli_reference_lists_every_subcommand(html):
    from mdm_exact.cli import build_parser

    text = (html / "cli.html").read_text()
    parser = build_parser()
    subcommands = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    for name in subcommands.choices:
        assert f"mdm-exact {name}" in text


def test_api_reference_documents_the_public_names(html):
    text = (html / "api.html").read_text()
    for name in ("mdm_exact.posterior.posterior", "mdm_exact.sampling.sample",
                 "mdm_exact.exact.exact_metrics", "mdm_exact.theory.interval.oracle_ser",
                 "mdm_exact.plotting.figure_1", "mdm_exact.testing.ngrams"):
        assert f'id="{name}"' in text, name


def test_figures_are_shipped(html):
    for name in ("fig1", "theorem-4.4", "theorem-4.2", "policies"):
        assert (DOCS / "_static" / "figures" / f"{name}.png").stat().st_size > 20_000
        assert (html / "_images" / f"{name}.png").exists()
