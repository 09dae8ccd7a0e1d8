"""`python manage.py jailctl`: the jobs of fail2ban-client, against the panel's database.

    jailctl status [JAIL] [--host NAME] [--json]
    jailctl ban JAIL ADDR [--time 1h] [--reason TEXT]      (JAIL "blocklist": permanent, all ports)
    jailctl unban [JAIL | --all] ADDR
    jailctl reload
    jailctl check
"""

from __future__ import annotations

import json
from argparse import ArgumentParser, RawDescriptionHelpFormatter
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from bans import actions, services, sync, tasks
from bans.firewall import FirewallError
from bans.models import Ban, Failure, Tally
from bans.status import firewall_status
from bans.templatetags.bans_extras import address_only
from jails import ignores
from jails import services as jail_services
from jails.access import audit
from jails.engine.durations import parse_duration
from jails.engine.errors import EngineError
from jails.logpaths import expand_logpaths
from jails.models import Host, Jail, jails_on, logpath_on
from watchers import skips
from watchers.models import LogSource


class Command(BaseCommand):
    help = __doc__ or ""

    def create_parser(self, prog_name: str, subcommand: str, **kwargs: Any) -> CommandParser:
        parser = super().create_parser(prog_name, subcommand, **kwargs)
        parser.formatter_class = RawDescriptionHelpFormatter
        return parser

    def add_arguments(self, parser: ArgumentParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
        status = sub.add_parser("status", help="jails, or one jail's failures and bans")
        status.add_argument("jail", nargs="?")
        status.add_argument("--json", action="store_true", help="machine-readable output")
        status.add_argument("--host", help="a host of the fleet (hostctl list): its jails, counts, bans and firewall "
                                           "(default: the fleet as a whole, this server's firewall)")
        ban = sub.add_parser("ban", help="ban an address or network in a jail (or the permanent blocklist)")
        ban.add_argument("jail")
        ban.add_argument("address")
        ban.add_argument("--time", help="ban time such as 10m, 1h, 7d or -1 (default: the jail's bantime)")
        ban.add_argument("--reason", default="", help="why (kept in the ban's history)")
        ban.add_argument("--force", action="store_true",
                         help="ban inside private space (RFC 1918, ULA) or this host's own network; nothing "
                              "forces a ban the lockout guard refuses (loopback, this host, live panel "
                              "sessions, trusted proxies, the global ignore list and ignoreip, wider than "
                              "IPS_MAX_BAN_PREFIX_V4/V6)")
        unban = sub.add_parser("unban", help="lift the bans of an address in a jail, or in every jail")
        unban.add_argument("targets", nargs="+", metavar="[JAIL] ADDR")
        unban.add_argument("--all", action="store_true", help="lift it in every jail")
        sub.add_parser("reload", help="ask the workers to re-read jails and re-apply the firewall rules")
        sub.add_parser("check", help="test the configuration (like fail2ban-client -t); non-zero exit on errors")

    def handle(self, *args: Any, **options: Any) -> None:
        action = options["action"]
        getattr(self, f"do_{action}")(options)

    # --- status ----------------------------------------------------------------------------------

    def do_status(self, options: dict[str, Any]) -> None:
        host = options["host"]
        if host is not None and not Host.objects.filter(name=host).exclude(state=Host.State.REVOKED).exists():
            known = ", ".join(Host.objects.exclude(state=Host.State.REVOKED).values_list("name", flat=True))
            raise CommandError(f"no host of the fleet is called {host!r} (hosts: {known or 'none'})")
        if options["jail"]:
            data = jail_status(find_jail(options["jail"]), host)
            self.stdout.write(json.dumps(data) if options["json"] else render_jail_status(data))
            return
        jails = jails_on(host) if host is not None else Jail.objects.all()
        names = list(jails.filter(enabled=True).order_by("name").values_list("name", flat=True))
        if options["json"]:
            self.stdout.write(json.dumps({"jails": names, **({"host": host} if host else {})}))
            return
        self.stdout.write(firewall_line(host))
        self.stdout.write(f"Status\n|- Number of jail:\t{len(names)}\n`- Jail list:\t{', '.join(names)}")

    # --- ban / unban -----------------------------------------------------------------------------

    def do_ban(self, options: dict[str, Any]) -> None:
        jail = None if options["jail"] == Ban.BLOCKLIST else find_jail(options["jail"])
        bantime = jail.bantime if jail is not None else -1
        if options["time"]:
            try:
                bantime = parse_duration(options["time"])
            except ValueError as exc:
                raise CommandError(str(exc)) from None
        services.UNDELIVERED.clear()
        try:
            ban = services.ban_by_hand(jail, options["address"], bantime, actor=audit.Actor.command(),
                                       confirmed=options["force"], reason=options["reason"],
                                       host=settings.IPS_HOST_NAME)
        except services.ConfirmationNeeded as exc:
            raise CommandError(f"{exc}: add --force") from None
        except services.BanRefused as exc:
            raise CommandError(str(exc)) from None
        until = "permanently" if ban.expires_at is None else f"until {ban.expires_at:%Y-%m-%d %H:%M:%S %Z}"
        if not self.apply_here_if_unasked():
            self.stdout.write(f"banned {ban.network} in {ban.jail_name} {until} (waiting for the firewall worker)")
            return
        ban.refresh_from_db()
        self.stdout.write(f"banned {ban.network} in {ban.jail_name} {until} ({ban.get_shown_state_display()})")

    def do_unban(self, options: dict[str, Any]) -> None:
        rest = options["targets"]
        if options["all"] == (len(rest) == 2) or len(rest) > 2:
            raise CommandError("give JAIL ADDR, or --all ADDR")
        jail = find_jail(rest[0]) if len(rest) == 2 else None
        services.UNDELIVERED.clear()
        try:
            count = len(actions.unban(rest[-1], audit.Actor.command(), jail=jail))
        except services.BanRefused as exc:
            raise CommandError(str(exc)) from None
        if not count:
            raise CommandError(f"{rest[-1]} is not banned" + (f" in {jail.name}" if jail else ""))
        if self.apply_here_if_unasked():
            self.stdout.write(f"lifted {count} ban(s) of {rest[-1]}")
        else:
            self.stdout.write(f"lifting {count} ban(s) of {rest[-1]}")

    def apply_here_if_unasked(self) -> bool:
        """When Redis did not take the request for the firewall worker (down, or unreachable), apply the
        change from this process, as the worker would (as root, with CAP_NET_ADMIN); True once done.
        CommandError, within seconds, when this process cannot change the firewall either."""
        host = settings.IPS_HOST_NAME
        if host not in services.UNDELIVERED:
            return False
        self.stderr.write(f"the firewall worker could not be asked (Redis at {settings.CELERY_BROKER_URL} does not "
                          "answer): applying here")
        try:
            report = sync.apply_pending(host, tasks.watched_backend(host))
        except (tasks.FirewallUnavailable, FirewallError) as exc:
            raise CommandError(f"recorded, but NOT applied: Redis does not answer and this process cannot change "
                               f"the firewall ({exc}). It is applied once Redis and the firewall worker are back; "
                               "run jailctl as root on the firewall host to apply it now.") from None
        if report.error is not None:
            raise CommandError(f"recorded, but the firewall refused it: {report.error.message}; retried by the "
                               "firewall worker once Redis is back")
        return True

    # --- reload / check --------------------------------------------------------------------------

    def do_reload(self, options: dict[str, Any]) -> None:
        problems = check_configuration()
        if any(level == "error" for level, _ in problems):
            raise CommandError("not reloading, the configuration has errors:\n" + render_problems(problems))
        services.request_firewall_sync(settings.IPS_HOST_NAME)
        self.stdout.write("reload requested: the firewall rules are re-applied and watchers re-read their jails")

    def do_check(self, options: dict[str, Any]) -> None:
        problems = check_configuration()
        if problems:
            self.stdout.write(render_problems(problems))
        if any(level == "error" for level, _ in problems):
            raise CommandError("configuration has errors")
        self.stdout.write("OK: configuration test is successful")


def firewall_line(host: str | None = None) -> str:
    """First line of `status`: whether this (or `host`'s) kernel is being changed, and if not, why."""
    ok, message = firewall_status(host or settings.IPS_HOST_NAME)
    return f"Firewall: {message}" if ok else f"WARNING: {message}"


def find_jail(name: str) -> Jail:
    jail = Jail.objects.filter(name=name).first()
    if jail is None:
        known = ", ".join(Jail.objects.values_list("name", flat=True)) or "none yet"
        raise CommandError(f"no jail named {name!r} (jails: {known})")
    return jail


def jail_status(jail: Jail, host: str | None = None) -> dict[str, Any]:
    """fail2ban-client's status of a jail: for the fleet as a whole (its bans as made, one each), or on
    one `host` (its counts, its log files, the bans in its kernel: its own and those copied to it)."""
    bans = Ban.objects.filter(jail_name=jail.name)
    bans = bans.originals() if host is None else bans.filter(host=host)
    live = bans.in_force()
    tallies = Tally.objects.filter(jail=jail) if host is None else Tally.objects.filter(jail=jail, host=host)
    logpath = jail.logpath if host is None else logpath_on(jails_on(host).filter(pk=jail.pk).first() or jail, host)
    lists = ignores.of_jail(jail)
    return {
        "jail": jail.name,
        **({"host": host} if host is not None else {}),
        "currently_failed": tallies.count(),
        "total_failed": Failure.objects.filter(jail=jail).count(),
        "file_list": expand_logpaths(logpath) if jail.backend != Jail.Backend.SYSTEMD else [],
        "journal_matches": jail.journalmatch or jail.filter.journalmatch if jail.backend == "systemd" else "",
        "currently_banned": live.count(),
        "total_banned": bans.count(),
        # as fail2ban-client lists them: 203.0.113.9, a network with its prefix (the text form alike)
        "banned_ip_list": [address_only(n) for n in live.order_by("network").values_list("network", flat=True)],
        # what fail2ban-client's `get JAIL ignoreip` gives (the global list, then the jail's own), and each apart
        "ignoreip": lists.effective,
        "ignoreip_global": list(lists.global_entries),
        "ignoreip_own": list(lists.own),
        **reading_problems(jail),
    }


def reading_problems(jail: Jail) -> dict[str, Any]:
    """What the jail's sources left out, by reason (watchers.skips), and a filter degraded lately."""
    skipped: dict[str, int] = {}
    degraded: list[str] = []
    for source in LogSource.objects.filter(jail=jail):
        skipped = skips.added(skipped, source.skipped or {})
        if source.filter_slow():
            when = f"{source.slow_at:%Y-%m-%d %H:%M:%S}"
            degraded.append(f"{source.path or 'journal'}: {source.slow_reason} (last at {when})")
    return {"skipped": skipped, "filter_degraded": degraded}


def render_jail_status(data: dict[str, Any]) -> str:
    listing = ("|  `- Journal matches:\t" + data["journal_matches"]) if data["journal_matches"] else \
        ("|  `- File list:\t" + " ".join(data["file_list"]))
    addresses = " ".join(data["banned_ip_list"])
    on = f" on host {data['host']}" if data.get("host") else ""
    return "\n".join([
        f"Status for the jail: {data['jail']}{on}",
        "|- Filter",
        f"|  |- Currently failed:\t{data['currently_failed']}",
        f"|  |- Total failed:\t{data['total_failed']}",
        *[f"|  |- Degraded:\tregex ran out of time: {text}" for text in data.get("filter_degraded", [])],
        *[f"|  |- Skipped:\t{text}" for text in skips.describe(data.get("skipped", {}))],
        listing,
        "|- Ignore list",
        f"|  |- Global list:\t{' '.join(data.get('ignoreip_global', []))}",
        f"|  `- Jail's own:\t{' '.join(data.get('ignoreip_own', []))}",
        "`- Actions",
        f"   |- Currently banned:\t{data['currently_banned']}",
        f"   |- Total banned:\t{data['total_banned']}",
        f"   `- Banned IP list:\t{addresses}",
    ])


def check_configuration() -> list[tuple[str, str]]:
    """Every enabled jail's filter must compile; its logs should exist (warning only: they may appear)."""
    problems: list[tuple[str, str]] = []
    for jail in Jail.objects.filter(enabled=True).select_related("filter"):
        try:
            jail_services.compile_stored_filter(jail.filter.name, jail.filter_options)
        except EngineError as exc:
            problems.append(("error", f"jail {jail.name}: filter {jail.filter.name}: {exc}"))
        if jail.backend != Jail.Backend.SYSTEMD and not expand_logpaths(jail.logpath):
            problems.append(("warning", f"jail {jail.name}: no log file matches {' '.join(jail.logpath) or '(none)'}"))
    return problems


def render_problems(problems: list[tuple[str, str]]) -> str:
    return "\n".join(f"{level.upper()}: {text}" for level, text in problems)
