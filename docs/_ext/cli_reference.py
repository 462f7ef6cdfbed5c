"""Sphinx directive ``mdm-exact-cli``: the CLI reference, rendered from ``build_parser()``.

Every subcommand of ``mdm_exact.cli.build_parser(full=True)`` gets a section with its ``--help``
text, so the page can never drift from the code: a new verb or option appears at the next build.
"""

from __future__ import annotations

import argparse
import os

from docutils import nodes
from sphinx.util.docutils import SphinxDirective

HELP_WIDTH = "96"


def _help(parser: argparse.ArgumentParser) -> str:
    saved = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = HELP_WIDTH  # argparse wraps to the terminal width
    try:
        return parser.format_help()
    finally:
        if saved is None:
            del os.environ["COLUMNS"]
        else:
            os.environ["COLUMNS"] = saved


def _literal(text: str) -> nodes.literal_block:
    block = nodes.literal_block(text, text)
    block["language"] = "text"
    return block


class CliReference(SphinxDirective):
    """Renders ``mdm-exact --help`` and one section per subcommand."""

    has_content = False

    def run(self) -> list[nodes.Node]:
        from mdm_exact.cli import build_parser

        parser = build_parser(full=True)  # every verb, the torch ones included
        out: list[nodes.Node] = [_literal(_help(parser))]
        for action in parser._actions:
            if not isinstance(action, argparse._SubParsersAction):
                continue
            for name, sub in action.choices.items():
                section = nodes.section(ids=[f"cli-{name}"], names=[f"mdm-exact {name}"])
                section += nodes.title(text=f"mdm-exact {name}")
                section += _literal(_help(sub))
                out.append(section)
        return out


def setup(app):
    app.add_directive("mdm-exact-cli", CliReference)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
