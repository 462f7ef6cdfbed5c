"""Render the package's plain-text math in docstrings literally.

The docstrings write formulas as plain text (``|V|``, ``|tau_k|``, ``X_-i``), which reads well in
``help()`` but means something else to reStructuredText: ``|V|`` is a substitution reference and
``X_`` a hyperlink reference. This ``autodoc-process-docstring`` hook escapes exactly those two
constructs, outside inline literals (````...````, ```...```) and literal blocks (after ``::``), so
the rendered text is the docstring as written and a strict build has nothing to warn about.
"""

from __future__ import annotations

import re

_INLINE = re.compile(r"(``.+?``|`[^`]+`)")
_BAR = re.compile(r"(?<!\\)\|")
_TRAILING_UNDERSCORE = re.compile(r"(?<=\w)_(?![\w])")


def _escape(text: str) -> str:
    parts = _INLINE.split(text)
    for i in range(0, len(parts), 2):  # even indices are outside inline literals
        parts[i] = _TRAILING_UNDERSCORE.sub(r"\\_", _BAR.sub(r"\\|", parts[i]))
    return "".join(parts)


def escape_docstring(lines: list[str]) -> list[str]:
    """The docstring ``lines`` with ``|`` and word-final ``_`` escaped outside literals."""
    out: list[str] = []
    block_indent: int | None = None  # indentation of the line that opened a literal block
    for line in lines:
        indent = len(line) - len(line.lstrip())
        if block_indent is not None:
            if not line.strip() or indent > block_indent:
                out.append(line)
                continue
            block_indent = None
        out.append(_escape(line))
        if line.rstrip().endswith("::"):
            block_indent = indent
    return out


def _process(app, what, name, obj, options, lines: list[str]) -> None:
    lines[:] = escape_docstring(lines)


def setup(app):
    app.connect("autodoc-process-docstring", _process)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
