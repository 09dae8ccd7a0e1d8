"""Find the timestamp in a log line, the way fail2ban does.

Three modules, each built on the one before it:
- `templates`: fail2ban's datepattern language, compiled into template regexes;
- `fields`: a template's match read into epoch seconds (zones, years, epoch...);
- `detector`: `DateDetector`, which template finds the date of a line, and where.

The names other modules import from `jails.engine.dates` are handed on here.
"""

from .detector import DateDetector
from .detector import _boundary_first as _boundary_first
from .fields import parse_zone_offset
from .templates import DateHit

__all__ = ["DateDetector", "DateHit", "parse_zone_offset"]
