"""`python manage.py hostctl`: the servers of the fleet, from the central server's shell.

    hostctl list [--json]
    hostctl add NAME --address ADDR [--address ADDR2] [--group GROUP] [--central ADDR] [--env-file PATH]
    hostctl add NAME --again ...        new credentials for a host that lost its own (the old ones stop)
    hostctl remove NAME                 its database role and Redis user end now; its history stays
    hostctl place JAIL HOST [--logpath PATH ...]   run a jail on a host (its log paths there)
    hostctl unplace JAIL HOST
    hostctl grants                      re-apply the agents' database grants (after a manual migration)

`add` creates the host's PostgreSQL role and Redis user with new passwords and prints the agent's
environment (or writes it, mode 0600, with --env-file): copy it to the new server and run
`scripts/agent.sh --env-file FILE` there. A fleet needs PostgreSQL, a Redis 6 or newer with a
password on its default user, and a panel database user allowed to create roles (CREATEROLE).
"""

from __future__ import annotations

import json
import os
from argparse import ArgumentParser, RawDescriptionHelpFormatter
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from bans import hosts
from jails.access import audit
from jails.fleet import postgres


class Command(BaseCommand):
    help = __doc__ or ""

    def create_parser(self, prog_name: str, subcommand: str, **kwargs: Any) -> CommandParser:
        parser = super().create_parser(prog_name, subcommand, **kwargs)
        parser.formatter_class = RawDescriptionHelpFormatter
        return parser

    def add_arguments(self, parser: ArgumentParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
        listing = sub.add_parser("list", help="the fleet's hosts, their state and credentials' names")
        listing.add_argument("--json", action="store_true", help="machine-readable output")
        add = sub.add_parser("add", help="enroll a server: its credentials and the environment its agent runs with")
        add.add_argument("name", help="the host's name (its IPS_HOST_NAME): lower-case letters, digits, '-'")
        add.add_argument("--address", action="append", default=[], required=True,
                         help="an address the host connects from; never banned on any host (repeat for more)")
        add.add_argument("--group", action="append", default=[], help="a group for jails' ban scope (repeatable)")
        add.add_argument("--central", default=settings.IPS_FLEET_CENTRAL,
                         help="the address or name agents reach this server at (default: IPS_FLEET_CENTRAL)")
        add.add_argument("--database-sslmode", default="require", choices=hosts.SSL_MODES,
                         help="the agent's PostgreSQL sslmode (default: require)")
        add.add_argument("--database-port", type=int, help="PostgreSQL's port as agents see it (default: ours)")
        add.add_argument("--redis-port", type=int, help="Redis's port as agents see it (default: ours)")
        add.add_argument("--no-redis-tls", action="store_true",
                         help="redis:// instead of rediss:// (only on a network you trust: clear text)")
        add.add_argument("--ca-file", default="",
                         help="the CA certificate the agent checks the central server's Redis and PostgreSQL "
                              "certificates against, as a path on the agent (default: the system's CAs)")
        add.add_argument("--env-file", type=Path, help="write the environment here (mode 0600) instead of printing it")
        add.add_argument("--again", action="store_true", help="the host exists: give it new credentials")
        remove = sub.add_parser("remove", help="take a host out: its credentials end now, its history stays")
        remove.add_argument("name")
        sub.add_parser("grants", help="re-apply the agents' database grants and row-level security policies")
        place = sub.add_parser("place", help="run a jail on a host (a jail placed nowhere runs on this server only)")
        place.add_argument("jail")
        place.add_argument("host")
        place.add_argument("--logpath", action="append", default=[],
                           help="a log file (or glob) on that host; repeat for more (default: the jail's logpath)")
        unplace = sub.add_parser("unplace", help="stop running a jail on a host")
        unplace.add_argument("jail")
        unplace.add_argument("host")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            getattr(self, f"do_{options['action']}")(options)
        except (hosts.FleetError, postgres.FleetDatabaseError) as exc:
            raise CommandError(str(exc)) from None

    def do_list(self, options: dict[str, Any]) -> None:
        rows = [{"name": h.name, "kind": h.kind, "state": h.state, "groups": h.groups, "addresses": h.addresses,
                 "db_role": h.db_role, "redis_user": h.redis_user}
                for h in hosts.list_hosts()]
        if options["json"]:
            self.stdout.write(json.dumps(rows, indent=2))
            return
        self.stdout.write(f"{'HOST':<20} {'KIND':<8} {'STATE':<9} {'GROUPS':<16} ADDRESSES")
        for row in rows:
            self.stdout.write(f"{row['name']:<20} {row['kind']:<8} {row['state']:<9} "
                              f"{','.join(row['groups']) or '-':<16} {', '.join(row['addresses']) or '-'}")

    def do_add(self, options: dict[str, Any]) -> None:
        reach = hosts.Reach.of_central(options["central"], database_sslmode=options["database_sslmode"],
                                       redis_tls=not options["no_redis_tls"], redis_port=options["redis_port"],
                                       database_port=options["database_port"], ca_file=options["ca_file"])
        enrollment = hosts.add_host(options["name"], addresses=options["address"], groups=options["group"],
                                    reach=reach, actor=audit.Actor.command(), again=options["again"])
        for warning in enrollment.warnings:
            self.stderr.write(f"warning: {warning}")
        text = enrollment.env_file()
        target: Path | None = options["env_file"]
        if target is None:
            self.stdout.write(text, ending="")
        else:
            descriptor = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
                handle.write(text)
            os.chmod(target, 0o600)  # an existing file keeps its mode through O_CREAT
            self.stderr.write(f"wrote {target} (mode 0600)")
        self.stderr.write(f"{enrollment.host.name} is enrolled. On that server, as root, with this file: "
                          "scripts/agent.sh --env-file FILE")

    def do_remove(self, options: dict[str, Any]) -> None:
        ended = hosts.remove_host(options["name"], actor=audit.Actor.command())
        self.stdout.write(f"{options['name']} removed: its database role and Redis user are gone "
                          f"({ended['database_connections']} database and {ended['redis_connections']} Redis "
                          f"connections closed, {ended['redis_keys']} queue keys deleted); {ended['bans']} of its "
                          "bans ended, and those it made are lifted on the other hosts")

    def do_place(self, options: dict[str, Any]) -> None:
        placement = hosts.place_jail(options["jail"], options["host"], logpath=options["logpath"],
                                     actor=audit.Actor.command())
        where = ", ".join(placement.logpath) or "the jail's own logpath"
        self.stdout.write(f"{options['jail']} runs on {options['host']} (logs: {where}); its followers pick it up "
                          "within a few seconds")

    def do_unplace(self, options: dict[str, Any]) -> None:
        if not hosts.unplace_jail(options["jail"], options["host"], actor=audit.Actor.command()):
            raise CommandError(f"{options['jail']} was not placed on {options['host']}")
        self.stdout.write(f"{options['jail']} no longer runs on {options['host']}")

    def do_grants(self, options: dict[str, Any]) -> None:
        postgres.apply_grants()
        self.stdout.write(f"grants re-applied to {postgres.group_role()}")
