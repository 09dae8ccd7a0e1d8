#!/usr/bin/env python
"""Django's command-line utility for administrative tasks."""

import os
import sys
from typing import Any


def stored_filter(name: str, options: dict[str, str]) -> Any:
    """The filter tester's resolver for a filter named by its name: only now is Django
    set up (a .conf path or a raw regex never needs it)."""
    import django  # noqa: PLC0415  # filtertest loads Django only for a filter named by its name

    django.setup()
    from jails.management.commands.filtertest import stored_filter as from_database  # noqa: PLC0415  # after setup()

    return from_database(name, options)


def run_filtertest(argv: list[str]) -> int:
    # The tester is plain Python (jails.engine): started without Django, it is about
    # 0.35 s quicker, which matters to an admin trying a filter and to bench/run.sh.
    # `manage.py help filtertest` still goes through Django's own command.
    from jails.engine import filtertest  # noqa: PLC0415  # the engine only for filtertest, not every command

    return filtertest.main(argv, resolve_name=stored_filter)


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    try:
        if sys.argv[1:2] == ["filtertest"]:
            sys.exit(run_filtertest(sys.argv[2:]))
        from django.core.management import execute_from_command_line  # noqa: PLC0415  # not for filtertest

        execute_from_command_line(sys.argv)
    except Exception as exc:
        from django.core.exceptions import ImproperlyConfigured  # noqa: PLC0415  # error path; filtertest has no Django

        if not isinstance(exc, ImproperlyConfigured):
            raise
        # A settings problem is the admin's to fix: say what, without a traceback.
        sys.stderr.write(f"configuration error: {exc}\n")
        sys.exit(2)


if __name__ == "__main__":
    main()
