"""The library's own exceptions: one base class for every refusal of bad or oversized input.

Every argument check in mdm_exact raises a subclass of ``MdmExactError`` that is also the matching
built-in (``ValueError``, ``TypeError``, ``FileNotFoundError``), so ``except ValueError`` keeps
working while the CLI catches exactly these and lets programming errors surface as tracebacks.
"""

from __future__ import annotations


class MdmExactError(Exception):
    """Base class of every refusal raised by mdm_exact on its inputs."""


class ArgumentError(MdmExactError, ValueError):
    """An argument has a valid type but a value outside its domain (the message names it)."""


class ArgumentTypeError(MdmExactError, TypeError):
    """An argument has the wrong type (the message names it)."""


class BudgetError(ArgumentError):
    """A computation would exceed the memory or time budget; refused before any work, with the
    estimate and the argument to change."""


class MissingFileError(MdmExactError, FileNotFoundError):
    """A file named by an argument does not exist."""


__all__ = ["ArgumentError", "ArgumentTypeError", "BudgetError", "MdmExactError",
           "MissingFileError"]
