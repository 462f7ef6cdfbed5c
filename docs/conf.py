"""Sphinx configuration of the mdm_exact documentation.

Build: ``sphinx-build -W -b html docs docs/_build/html`` (needs the ``docs`` extra). Markdown
pages are parsed by myst-parser, the API reference comes from the docstrings (autodoc +
napoleon), the CLI reference is rendered from ``mdm_exact.cli.build_parser()`` at build time
(``_ext/cli_reference.py``), and math is typeset by MathJax. MathJax ships with the build
(``sphinx-mathjax-offline`` copies MathJax 3 into ``_static/mathjax`` and points
``mathjax_path`` there), so the pages render their formulas offline and load nothing from another
host (``tests/test_docs.py`` checks this).
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent
sys.path.insert(0, str(DOCS / "_ext"))
sys.path.insert(0, str(DOCS.parent))

import mdm_exact  # noqa: E402

project = "mdm_exact"
author = "the mdm_exact developers"
copyright = "2026, the mdm_exact developers"
version = release = mdm_exact.__version__

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.mathjax",
    "sphinx-mathjax-offline",  # the module's name has hyphens; it bundles MathJax 3
    "cli_reference",
    "docstring_safety",
]

source_suffix = {".md": "markdown", ".rst": "restructuredtext"}
root_doc = "index"
exclude_patterns = ["_build", "README.md"]
myst_enable_extensions = ["dollarmath", "amsmath", "colon_fence", "deflist"]
myst_heading_anchors = 3
myst_dmath_double_inline = True

autodoc_member_order = "bysource"
autodoc_default_options = {"members": True}
autodoc_typehints = "description"
autodoc_preserve_defaults = True
napoleon_google_docstring = True
napoleon_numpy_docstring = False

# The optional torch subpackage is documented from its source even where torch is missing.
if importlib.util.find_spec("torch") is None:
    autodoc_mock_imports = ["torch"]

html_theme = "alabaster"
html_static_path = ["_static"]
html_theme_options = {"description": "Exact ground truth for masked diffusion language models",
                      "fixed_sidebar": True}

OPTIONAL_PAGES = ("nn_results",)
"""Pages other engineers write; listed in the index's toctree only when present."""


def _optional_pages(app, docname: str, source: list[str]) -> None:
    if docname == "index":
        present = [p for p in OPTIONAL_PAGES if (DOCS / f"{p}.md").exists()]
        source[0] = source[0].replace("optional-pages-placeholder", "\n".join(present))


def setup(app):
    app.connect("source-read", _optional_pages)
