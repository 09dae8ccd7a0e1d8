"""Which log lines can possibly match a filter: the literal prefilter and the regex
analysis behind it.

Three modules, each built on the ones before it:
- `folding`: the case folding shared by literals and buffers (`fold_text`);
- `extraction`: the strings every match of a regex must contain (when a filter compiles);
- `prefilter`: `Prefilter`, built from those strings, and its scan of a buffer.

The names other modules import from `jails.engine.literals` are handed on here.
"""

from .extraction import analyse as analyse
from .extraction import analyse_all, required_literals
from .extraction import required_prefixes as required_prefixes
from .extraction import required_string as required_string
from .folding import fold_text
from .prefilter import ANYWHERE, LINE_BEGIN, NO_CUT, DateCut, Prefilter, cut_safe_pieces, date_cut_for
from .prefilter import _scan_masks as _scan_masks

__all__ = [
    "ANYWHERE",
    "LINE_BEGIN",
    "NO_CUT",
    "DateCut",
    "Prefilter",
    "analyse_all",
    "cut_safe_pieces",
    "date_cut_for",
    "fold_text",
    "required_literals",
]
