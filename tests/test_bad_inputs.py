"""Bad or extreme input, one row per input: a one-line refusal naming the argument, or a correct
answer (finite, in its domain). Never a crash, a NaN or a silently wrong number.

Each row is ``(id, call, exception type, text the message must contain)``; ``call`` is a
zero-argument callable. Rows are grouped by the layer they exercise; the CLI rows run the real
command line and assert exit status 2 with one line on stderr and nothing on stdout.
"""

from __future__ import annotations

import numpy as np
import pytest

import mdm_exact as me
from mdm_exact.errors import MdmExactError

# ----------------------------------------------------------------------------- library rows
# (languages, posterior, sampling, exact, estimates)

LIBRARY_ROWS: list[tuple] = [
]

# ----------------------------------------------------------------------------- theory rows
# (schedules, theory/*: overflow family, searches with no bound in time)

THEORY_ROWS: list[tuple] = [
]


@pytest.mark.parametrize("call, error, needle", [r[1:] for r in LIBRARY_ROWS + THEORY_ROWS],
                         ids=[r[0] for r in LIBRARY_ROWS + THEORY_ROWS])
def test_library_refuses(call, error, needle):
    with pytest.raises(error) as info:
        call()
    assert isinstance(info.value, MdmExactError), "refusals come from the package's base class"
    message = str(info.value)
    assert "\n" not in message
    assert needle in message


# ----------------------------------------------------------------------------- CLI rows
# (argv, text the one-line error must contain)

CLI_ROWS: list[tuple] = [
]
