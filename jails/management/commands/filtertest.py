"""`python manage.py filtertest LOG FILTER`: our fail2ban-regex, with filters from the database.

The work is done by the plain-Python tester in jails.engine.filtertest; this command adds one
thing: a FILTER given by name (`sshd`, `sshd[mode=aggressive]`) is read from the Filter table.
"""

from __future__ import annotations

import sys
from typing import Any

from django.core.management.base import BaseCommand
from django.db import DatabaseError

from jails import services
from jails.engine import filtertest
from jails.engine.definition import FilterDefinition
from jails.engine.errors import ConfigError


def stored_filter(name: str, options: dict[str, str]) -> FilterDefinition:
    """A filter by name from the database, with errors an admin can act on."""
    try:
        return services.load_definition(name, options)
    except DatabaseError as exc:
        raise ConfigError(
            f"cannot read filter {name!r} from the database ({exc}); run scripts/run.sh once, or "
            "`manage.py migrate` then `manage.py installfilters`, or give the path of a .conf file"
        ) from None


class Command(BaseCommand):
    help = filtertest.__doc__ or "Test a filter against a log."

    def run_from_argv(self, argv: list[str]) -> None:
        # The engine's tester owns the whole command line (and its --help); Django's option
        # parsing would reject fail2ban-regex style options.
        code = filtertest.main(argv[2:], resolve_name=stored_filter)
        sys.exit(code)

    def handle(self, *args: Any, **options: Any) -> None:  # pragma: no cover - run_from_argv does the work
        raise NotImplementedError
