"""Plan files: every plan and policy as one JSON object (the format of docs/cli.md, "Plan files").

``to_dict`` of a ``Schedule``, ``FixedCountPlan``, ``DeterministicPlan`` or policy gives a dict
with ``"format": "mdm_exact.plan/1"`` and a ``"kind"`` (``schedule``, ``fixed_count``,
``deterministic``, ``policy``); ``plan_from_dict`` turns any of them back into the object, and
``save_plan`` / ``load_plan`` write and read them as files (written atomically; floats exactly,
so a schedule's masses come back bit for bit). Like plans and policies, this module never
imports the sampler.
"""

from __future__ import annotations

import json
from pathlib import Path

from ._io import input_file, read_json_object, write_atomic
from ._utils import check_memory
from .errors import ArgumentError, ArgumentTypeError, MdmExactError
from .policies import Policy
from .schedules import PLAN_FORMAT, DeterministicPlan, FixedCountPlan, Plan, Schedule

KINDS: dict[str, type] = {"schedule": Schedule, "fixed_count": FixedCountPlan,
                          "deterministic": DeterministicPlan, "policy": Policy}
"""The class read for each ``"kind"`` of a plan dict (a policy's ``"rule"`` picks its class)."""

BYTES_PER_FILE_BYTE = 16
"""Peak bytes per byte of a plan file while it is read: the text, then a Python object of
about 32 bytes for every number, which takes two or more characters."""


def plan_from_dict(data: dict) -> Plan | Policy:
    """The plan or policy a ``to_dict`` dict describes, chosen by its ``"kind"``; malformed input
    is refused with a one-line error naming the key."""
    if not isinstance(data, dict):
        raise ArgumentTypeError(f"plan must be a dict (a JSON object), got {type(data).__name__}")
    if "kind" not in data:
        raise ArgumentError(f"plan key 'kind' is missing (one of {', '.join(KINDS)}; format "
                            f"{PLAN_FORMAT!r})")
    kind = data["kind"]
    if not isinstance(kind, str) or kind not in KINDS:
        raise ArgumentError(f"plan key 'kind' must be one of {', '.join(KINDS)}, got {kind!r}")
    return KINDS[kind].from_dict(data)


def save_plan(plan: Plan | Policy, path: str | Path, *, overwrite: bool = False) -> Path:
    """Write ``plan.to_dict()`` as JSON to ``path`` (atomically: a reader never sees half a
    file) and return the path; an existing file is refused unless ``overwrite``."""
    if not isinstance(plan, Schedule | FixedCountPlan | DeterministicPlan | Policy):
        raise ArgumentTypeError(f"plan must be a Schedule, FixedCountPlan, DeterministicPlan or "
                                f"policy, got {type(plan).__name__}")
    if path is None or str(path) == "":
        raise ArgumentError(f"path must name a file, got {path!r}")
    target = Path(path)
    if target.exists() and not target.is_dir() and not overwrite:
        raise ArgumentError(f"path {str(target)!r} already exists (pass overwrite=True to "
                            "replace it)")
    if target.is_dir():
        raise ArgumentError(f"path {str(target)!r} is a directory; give a file name")
    if not target.parent.is_dir():
        raise ArgumentError(f"path {str(target)!r}: no directory {str(target.parent)!r}")
    text = json.dumps(plan.to_dict(), allow_nan=False) + "\n"
    write_atomic(target, lambda tmp: tmp.write_text(text))
    return target


def load_plan(path: str | Path) -> Plan | Policy:
    """The plan or policy in the JSON file ``path`` (written by ``save_plan`` or by hand in the
    format of docs/cli.md). A missing file raises ``MissingFileError``; a file that is not JSON,
    is too large for the memory budget or describes no valid plan is refused naming the path
    (and the key)."""
    source = input_file("path", path)
    check_memory(f"reading the plan file {str(source)!r}",
                 float(source.stat().st_size) * BYTES_PER_FILE_BYTE)
    data = read_json_object(source, "plan file")
    try:
        return plan_from_dict(data)
    except MdmExactError as err:
        raise type(err)(f"plan file {str(source)!r}: {err}") from None


__all__ = ["KINDS", "PLAN_FORMAT", "load_plan", "plan_from_dict", "save_plan"]
