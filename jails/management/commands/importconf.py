"""`python manage.py importconf DIR`: bring an existing fail2ban configuration in."""

from __future__ import annotations

from argparse import ArgumentParser, RawDescriptionHelpFormatter
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from jails.access import audit
from jails.engine.errors import EngineError
from jails.importer import import_tree, summarize


class Command(BaseCommand):
    help = """Import jails and filters from a fail2ban configuration directory.

Reads DIR/jail.conf, DIR/jail.d/*.conf, DIR/jail.local, DIR/jail.d/*.local (with the
paths-*.conf files they include) and DIR/filter.d/*.conf and *.local, exactly as fail2ban
layers them, and creates or updates Filters and Jails. Everything is checked first: a broken
filter or an invalid jail option stops the import with the file and line, and nothing is
written. Running it again with the same files changes nothing.

Only enabled jails are imported unless --all is given. fail2ban actions other than the ban
itself (mail, reports) are reported and not run; bans go through this panel's nftables table.

The report lists every jail created or updated, each update with its fields' old -> new values
(long texts as their differing lines, cut at 40 lines). With -v 2 it lists the filters too, and
the main values of each created jail.

Examples:
  python manage.py importconf /etc/fail2ban
  python manage.py importconf /etc/fail2ban --dry-run     # show what would change
  python manage.py importconf /etc/fail2ban --dry-run -v 2  # ... filters too, line by line
"""

    def create_parser(self, prog_name: str, subcommand: str, **kwargs: Any) -> CommandParser:
        parser = super().create_parser(prog_name, subcommand, **kwargs)
        parser.formatter_class = RawDescriptionHelpFormatter
        return parser

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("directory", help="the fail2ban configuration directory, e.g. /etc/fail2ban")
        parser.add_argument("--all", action="store_true", help="also import jails that are disabled there")
        parser.add_argument("--dry-run", action="store_true", help="check and report, but write nothing")

    def handle(self, *args: Any, **options: Any) -> None:
        quiet = options["verbosity"] < 2  # -v 2: progress on stderr, every filter change in the report

        def progress(message: str) -> None:
            if not quiet:
                self.stderr.write(message)

        try:
            report = import_tree(options["directory"], include_disabled=options["all"], dry_run=options["dry_run"],
                                 progress=progress, actor=audit.Actor.command())
        except EngineError as exc:
            raise CommandError(f"{exc}\nNothing was imported.") from None
        for line in summarize(report, verbose=not quiet):
            self.stdout.write(line)
