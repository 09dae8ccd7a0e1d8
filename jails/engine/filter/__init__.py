"""The filter: log lines matched against a compiled `FilterDefinition`, fail2ban's way.

Four modules, each built on the ones before it:
- `results`: what a line gives (`Failure`, `LineResult`, `BlockTally`), the steps a
  timeout names and the outcome codes of counting;
- `hosts`: whom a failure blames (addresses made canonical, fail2ban's order);
- `multiline`: what spans lines: the `maxlines` buffer and `<F-MLFID>` sessions;
- `compiled`: `CompiledFilter` (date cut, prefregex, failregex, ignoreregex, per line).
`blockloop.py`, beside this package, is its inner loop and imports it, never the reverse.

The names other modules import from `jails.engine.filter` are handed on here.
"""

from .compiled import CompiledFilter, DateDetectorLike
from .multiline import BufLine, merge_into_session
from .results import _NOBODY as _NOBODY
from .results import _NOFAIL as _NOFAIL
from .results import _STEP_DATE as _STEP_DATE
from .results import _STEP_FAIL as _STEP_FAIL
from .results import _STEP_IGNORE as _STEP_IGNORE
from .results import _STEP_PREF as _STEP_PREF
from .results import BlockTally, Failure, LineResult, step_text

__all__ = [
    "BlockTally",
    "BufLine",
    "CompiledFilter",
    "DateDetectorLike",
    "Failure",
    "LineResult",
    "merge_into_session",
    "step_text",
]
