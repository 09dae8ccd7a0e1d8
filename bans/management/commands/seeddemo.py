"""`python manage.py seeddemo`: fill a database with a made-up but realistic history (bans.demo)."""

from __future__ import annotations

import datetime as dt
import secrets
import time
from argparse import ArgumentParser, ArgumentTypeError, RawDescriptionHelpFormatter
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from bans import demo
from jails.access import audit


def positive(text: str) -> int:
    value = int(text.replace("_", "").replace(",", ""))
    if value < 0:
        raise ArgumentTypeError(f"{text}: must be 0 or more")
    return value


def at_least_one(text: str) -> int:
    value = positive(text)
    if value < 1:
        raise ArgumentTypeError(f"{text}: must be 1 or more")
    return value


def moment(text: str) -> float:
    """Epoch seconds, or an ISO 8601 time (UTC unless it says otherwise)."""
    try:
        return float(text)
    except ValueError:
        pass
    try:
        parsed = dt.datetime.fromisoformat(text)
    except ValueError:
        raise ArgumentTypeError(f"{text}: give epoch seconds or an ISO 8601 time (2026-12-07T08:00:00Z)") from None
    return (parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)).timestamp()


class Command(BaseCommand):
    help = """Fill the database with a made-up history of attacks: failures, bans and the dashboard's statistics.

For trying the panel at scale (bench/panel.py measures it) and for a newcomer who wants to see a
living dashboard. Fast: 1,000,000 failures and 50,000 bans take a few minutes on SQLite.

What it writes:
  - jails: the first --jails of sshd, nginx-http-auth, postfix-sasl, wordpress, recidive, dovecot,
    nginx-botsearch, apache-auth, postfix, apache-envscan, then generated ones (gitea-auth,
    grafana-auth...), created enabled when missing (a jail already there keeps its settings);
  - failures: spread over the last --days days with a diurnal rhythm, campaigns and bursts; a
    heavy tail of addresses (a few send many failures, most a few) grouped in networks of
    heavy-tailed sizes, IPv4 mostly, some IPv6; the log lines and user names each jail's filter
    would read;
  - bans earned by the bursts that reached maxretry (the burst's lines as evidence), mostly
    expired or lifted, some in force now, a few pending, failed or permanent (the blocklist);
  - the per-hour and per-minute counters the dashboard reads, and the tallies of the addresses
    still counting toward a ban;
  - one audit entry ("demo.seed") saying what was written.

The addresses are real-looking public addresses drawn from a fixed list of public prefixes; none
is private, reserved or documentation space, this host's own address or network, or one the ban
gate protects (live panel sessions, trusted proxies, any jail's ignoreip).

Refused on a database that already holds failures (they may be real, and made-up history cannot
be told apart from them afterwards) unless --force.

Careful: the bans "in force" name real public addresses. Do not seed the database of a production
panel. It runs only with IPS_FIREWALL=off (a reminder to run the demo stack that way too, or its
firewall worker would put those addresses in nftables), unless --with-firewall. Failures older than
IPS_HISTORY_DAYS (default 90) go at the stack's next cleanup.

Examples:
  DATABASE_URL=sqlite:///var/demo.sqlite3 python manage.py migrate
  DATABASE_URL=sqlite:///var/demo.sqlite3 python manage.py seeddemo
  python manage.py seeddemo --failures 1000000 --bans 50000 --days 365 --jails 10 --seed 1
"""

    def create_parser(self, prog_name: str, subcommand: str, **kwargs: Any) -> CommandParser:
        parser = super().create_parser(prog_name, subcommand, **kwargs)
        parser.formatter_class = RawDescriptionHelpFormatter
        return parser

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("--failures", type=positive, default=100_000, metavar="N",
                            help="how many failures to write (default 100,000)")
        parser.add_argument("--bans", type=positive, default=5_000, metavar="N",
                            help="how many bans to write (default 5,000); taken from the bursts that reached "
                                 "maxretry, the rest (if there are fewer bursts) as bans by hand")
        parser.add_argument("--days", type=at_least_one, default=30, metavar="N",
                            help="how many days back the history goes, ending now (default 30)")
        parser.add_argument("--jails", type=at_least_one, default=8, metavar="N",
                            help="how many jails the failures are spread over, created if missing (default 8)")
        parser.add_argument("--addresses", type=at_least_one, default=None, metavar="N",
                            help="how many distinct attacking addresses (default: failures / 20)")
        parser.add_argument("--ipv6-share", type=float, default=0.08, metavar="F",
                            help="the share of IPv6 addresses among them, 0 to 1 (default 0.08)")
        parser.add_argument("--seed", type=int, default=None,
                            help="the random seed: the same seed (and --now) writes the same history "
                                 "(default: a random one, printed at the end)")
        parser.add_argument("--now", type=moment, default=None, metavar="TIME",
                            help="pretend the history ends at TIME (epoch seconds or ISO 8601) instead of now, "
                                 "for a byte-identical database from the same --seed")
        parser.add_argument("--with-firewall", action="store_true",
                            help="seed even though IPS_FIREWALL is not off (a stack on this database would block "
                                 "the made-up bans' real public addresses)")
        parser.add_argument("--force", action="store_true",
                            help="seed even though the database already holds failures (they may be real)")

    def handle(self, *args: Any, **options: Any) -> None:
        verbosity = options["verbosity"]
        if not 0 <= options["ipv6_share"] <= 1:
            raise CommandError("--ipv6-share must be between 0 and 1")
        if settings.IPS_FIREWALL != "off" and not options["with_firewall"]:
            raise CommandError("refused: the made-up bans in force name real public addresses, and a stack with its "
                               "firewall on would block them. Seed (and run the demo stack) with IPS_FIREWALL=off, "
                               "or pass --with-firewall if that is really meant.")
        seed = options["seed"] if options["seed"] is not None else secrets.randbelow(1_000_000)
        began = time.monotonic()

        def progress(message: str) -> None:
            if verbosity >= 1:
                self.stderr.write(f"seeddemo [{time.monotonic() - began:6.1f} s] {message}")

        plan = demo.Plan(failures=options["failures"], bans=options["bans"], days=options["days"],
                         jails=options["jails"], seed=seed, now=options["now"] or time.time(),
                         addresses=options["addresses"], ipv6_share=options["ipv6_share"], force=options["force"])
        try:
            result = demo.seed(plan, say=progress, actor=audit.Actor.command())
        except demo.DemoRefused as exc:
            raise CommandError(f"refused: {exc}") from None
        if verbosity >= 1:
            states = ", ".join(f"{n:,} {state}" for state, n in sorted(result.states.items(), key=lambda i: -i[1]))
            self.stdout.write(
                f"Seeded {result.failures:,} failures and {result.bans:,} bans ({states}) over {plan.days} days in "
                f"{len(result.jails)} jails ({len(result.jails_created)} created), from {result.addresses:,} addresses "
                f"({result.ipv6_addresses:,} IPv6) in {result.networks:,} networks; {result.tallies:,} tallies, "
                f"{result.stat_buckets:,} hour buckets; {result.seconds:.1f} s. Seed {seed} "
                f"(--seed {seed} --now {plan.now:.0f} writes the same history).")
