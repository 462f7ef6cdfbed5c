"""The documentation: a strict build (``sphinx-build -W``, every warning an error) that reads
offline, and docs that cite nothing a user cannot read after ``git clone``.

The build tests are skipped when the ``docs`` extra (sphinx, myst-parser, sphinx-mathjax-offline)
is not installed; the source checks run everywhere.
"""

from __future__ import annotations

import re
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"

OUTSIDE_FILE = re.compile(r"\b" + "THEO" + r"RY\b")  # split so that this file does not match
"""The reconstruction notes the project was specified from (a file named like this pattern, with
its numbered sections): outside the repository, so never cited; docs/theory/ is the reference."""


@pytest.fixture(scope="module")
def html(tmp_path_factory) -> Path:
    for module in ("sphinx", "myst_parser", "sphinx-mathjax-offline"):
        pytest.importorskip(module)
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
                 "api", "benchmarks", "theory/index", "theory/labels", "theory/theorem-4-2",
                 "theory/theorem-4-4", "theory/lemma-b12", "theory/example-c7",
                 "theory/literature", "policies"):
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


# --- The site reads offline -------------------------------------------------------------------
#
# The rule: nothing a browser fetches by itself when it opens a page may come from another host.
# That is every src= (script, img, iframe, source, ...), the href= of <link> (style sheets, icons,
# preloads) and every url(...) in a style sheet or style attribute. A plain hyperlink <a href=...>
# is a link the reader follows by choice (the docs give arXiv links, for instance) and is allowed.

EXTERNAL = re.compile(r"^\s*(?:[a-z][a-z0-9+.-]*:)?//", re.IGNORECASE)
"""An address on another host: http://, https://, any other scheme with //, or protocol-relative."""

CSS_URL = re.compile(r"url\(\s*['\"]?([^'\")]+)", re.IGNORECASE)


class _Fetched(HTMLParser):
    """Collects the addresses a browser loads without a click: src=, <link href=>, CSS url()."""

    def __init__(self) -> None:
        super().__init__()
        self.addresses: list[str] = []
        self._in_style = False

    def handle_starttag(self, tag, attrs):
        values = dict(attrs)
        for name, value in attrs:
            if value is not None and (name in ("src", "srcset", "data")
                                      or (tag == "link" and name == "href")):
                self.addresses.append(value)
        self.addresses += CSS_URL.findall(values.get("style") or "")
        self._in_style = tag == "style"

    def handle_endtag(self, tag):
        self._in_style = False

    def handle_data(self, data):
        if self._in_style:
            self.addresses += CSS_URL.findall(data)


def _fetched(page: Path) -> list[str]:
    parser = _Fetched()
    parser.feed(page.read_text(encoding="utf-8"))
    return parser.addresses


def test_no_page_loads_anything_from_another_host(html):
    pages = sorted(html.rglob("*.html"))
    assert len(pages) > 20
    offending = {str(p.relative_to(html)): [a for a in _fetched(p) if EXTERNAL.match(a)]
                 for p in pages}
    offending = {page: addresses for page, addresses in offending.items() if addresses}
    assert not offending, offending
    for sheet in (html / "_static").rglob("*.css"):
        external = [a for a in CSS_URL.findall(sheet.read_text(encoding="utf-8", errors="replace"))
                    if EXTERNAL.match(a)]
        assert not external, (sheet, external)


def test_the_external_address_rule():
    page = ('<script src="https://cdn.example/mathjax.js"></script>'
            '<link rel="stylesheet" href="//fonts.example/a.css">'
            '<div style="background: url(http://img.example/x.png)"></div>'
            '<a href="https://arxiv.org/abs/2502.09622">the paper</a>'
            '<script src="../_static/mathjax/tex-chtml.js"></script>')
    parser = _Fetched()
    parser.feed(page)
    assert [a for a in parser.addresses if EXTERNAL.match(a)] == [
        "https://cdn.example/mathjax.js", "//fonts.example/a.css", "http://img.example/x.png"]


def test_math_is_typeset_by_the_bundled_mathjax(html):
    page = html / "theory" / "lemma-a1.html"
    text = page.read_text(encoding="utf-8")
    assert 'class="math notranslate nohighlight"' in text  # the formulas, for MathJax to typeset
    assert r"D_{\mathrm{KL}}" in text
    scripts = [a for a in _fetched(page) if "mathjax" in a.lower()]
    assert scripts == ["../_static/mathjax/tex-chtml.js"], scripts
    bundled = html / "_static" / "mathjax"
    assert (bundled / "tex-chtml.js").stat().st_size > 500_000
    assert any((bundled / "output" / "chtml" / "fonts").rglob("*.woff")), "MathJax fonts missing"


TYPESET = r"""
// Typesets every formula read from stdin (a JSON list of TeX strings) with the MathJax bundled in
// the build, offline, as the pages' tex-chtml.js does but with undefined macros as errors, and
// prints the indices of the formulas that fail.
const dir = process.argv[2];
global.MathJax = {
  loader: {paths: {mathjax: dir}, load: ['input/tex', 'adaptors/liteDOM', 'output/chtml'],
           require: require},
  tex: {packages: {'[-]': ['noundefined']}},
  startup: {typeset: false},
};
require(dir + '/startup.js');
let input = '';
process.stdin.on('data', chunk => { input += chunk; });
process.stdin.on('end', () => MathJax.startup.promise.then(() => {
  const adaptor = MathJax.startup.adaptor;
  const failed = [];
  JSON.parse(input).forEach((tex, i) => {
    const html = adaptor.outerHTML(MathJax.tex2chtml(tex, {display: true}));
    if (html.includes('merror') || !html.includes('mjx-c')) failed.push(i);
  });
  console.log(JSON.stringify(failed));
}));
"""

MATH = re.compile(r'<(?:span|div) class="math notranslate nohighlight">\s*(.*?)\s*</(?:span|div)>',
                  re.DOTALL)


def test_the_bundled_mathjax_typesets_every_formula_offline(html, tmp_path):
    """Runs the copy of MathJax that ships with the build under node: every formula of every page
    must typeset without an error and without fetching anything."""
    import html as html_lib
    import json
    import shutil

    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed")
    formulas = []
    for page in sorted(html.rglob("*.html")):
        for tex in MATH.findall(page.read_text(encoding="utf-8")):
            tex = html_lib.unescape(tex)
            for open_, close in ((r"\(", r"\)"), (r"\[", r"\]")):
                if tex.startswith(open_) and tex.endswith(close):
                    tex = tex[2:-2]
            formulas.append((page.relative_to(html), tex))
    assert len(formulas) > 500
    script = tmp_path / "typeset.js"
    script.write_text(TYPESET)
    proc = subprocess.run([node, str(script), str(html / "_static" / "mathjax")],
                          input=json.dumps([tex for _, tex in formulas]), capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    failed = [formulas[i] for i in json.loads(proc.stdout.strip().splitlines()[-1])]
    assert not failed, failed[:10]


# --- Sources a user can read after git clone ---------------------------------------------------

def _text_files(*roots: Path):
    for root in roots:
        if root.is_file():
            yield root
            continue
        for path in root.rglob("*"):
            if (path.is_file() and "__pycache__" not in path.parts and "_build" not in path.parts
                    and path.suffix in (".py", ".md", ".rst", ".txt", ".toml", ".cfg", "")):
                yield path


def test_nothing_cites_a_file_outside_the_repository():
    citing = [str(path.relative_to(ROOT))
              for path in _text_files(ROOT / "mdm_exact", DOCS, ROOT / "README.md",
                                      ROOT / "examples", ROOT / "benchmarks", ROOT / "tests")
              if OUTSIDE_FILE.search(path.read_text(encoding="utf-8", errors="replace"))]
    assert not citing, f"these cite a file that is not in the repository: {citing}"


def _bash_blocks(text: str) -> list[str]:
    return re.findall(r"```bash\n(.*?)```", text, flags=re.DOTALL)


def test_install_page_repeats_the_readme_set_up_commands():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    install = (DOCS / "install.md").read_text(encoding="utf-8")
    assert _bash_blocks(install)[0] == _bash_blocks(readme)[0]
    build = "sphinx-build -W -b html docs docs/_build/html"
    assert build in readme and build in install
    assert len(re.findall(r"sphinx-build[^`\n]*", readme + install)) == len(
        re.findall(re.escape(build), readme + install))


def test_every_statement_page_gives_formula_label_and_code():
    pages = [p for p in sorted((DOCS / "theory").glob("*.md"))
             if p.stem not in ("index", "labels")]
    assert len(pages) >= 21
    for page in pages:
        text = page.read_text(encoding="utf-8")
        assert "$$" in text, f"{page.name}: no displayed formula"
        assert "**Label** ({doc}`what the labels mean <labels>`):" in text, page.name
        assert re.search(r"\[(recalled|derived|ours)\]", text), page.name
        assert "{py:" in text, f"{page.name}: no link to the code"


def test_every_code_reference_on_the_statement_pages_resolves(html):
    """A {py:func} role whose target is missing renders as plain code with no link, silently."""
    pages = sorted((html / "theory").glob("*.html")) + [html / "concepts.html"]
    total = 0
    for page in pages:
        text = page.read_text(encoding="utf-8")
        roles = text.count('<code class="xref py ')
        total += roles
        linked = len(re.findall(r'<a class="reference internal" href="[^"]*api\.html#[^"]*"'
                                r'(?: title="[^"]*")?><code class="xref py ', text))
        assert roles == linked, f"{page.name}: {roles - linked} code reference(s) lead nowhere"
    assert total > 100  # the pages do link the code
