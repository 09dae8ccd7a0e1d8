"""Install or refresh the built-in filter library (jails/builtin/filter.d) in the database.

Run by scripts/run.sh at every start. Only rows that are still built-in are refreshed: a
filter imported from fail2ban or edited in the panel under the same name is left alone.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError

from jails.builtin import install_builtin_filters
from jails.engine.errors import EngineError


class Command(BaseCommand):
    help = "Install or refresh the built-in filters; filters imported or edited by an admin are kept as they are."

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            result = install_builtin_filters()
        except EngineError as exc:
            raise CommandError(f"built-in filter library is broken: {exc}") from None
        if result.created or result.updated:
            self.stdout.write(
                f"Built-in filters: {len(result.created)} installed, {len(result.updated)} refreshed, "
                f"{len(result.kept)} kept as the admin left them."
            )
