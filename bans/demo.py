"""A year of attacks, made up: the history `manage.py seeddemo` writes (issue 12).

Fills a database with failures, bans and the statistics the dashboard reads, fast (the project's
bulk writers, bans.bulk, in large transactions) and deterministically from a seed, so that the
panel can be measured at the scale a public server gathers (bench/panel.py) and a newcomer sees a
living dashboard. The history is shaped like a real one:

- addresses: a heavy tail (a Zipf law over the pool: a few addresses send a large share of the
  failures, most appear a few times), grouped into networks that grow by preferential attachment
  (a few /24 and /64 hold many attackers, most hold one); IPv4 mostly, some IPv6. Real-looking
  public addresses, drawn from a fixed list of public prefixes, never this host's own addresses or
  networks, private or reserved space, nor anything the ban gate protects (bans.gate: live panel
  sessions, trusted proxies, every jail's ignoreip);
- time: sessions (an address hammering one jail for a while, a few seconds between tries) that
  start on a diurnal rhythm with day-to-day noise and a few campaigns (hours when everything
  surges);
- jails: realistic names (sshd, nginx-http-auth, postfix-sasl, wordpress, recidive...), then
  generated ones, each with the log lines and captures (user names for the login jails) its filter
  would read;
- bans: earned by the sessions that reached the jail's maxretry (their evidence is the session's
  lines), in matching states: mostly expired or lifted in the past, some in force now, a few
  pending, failed, permanent (the blocklist among them);
- the statistics (JailStat) counted as the watchers count them (bans.bulk.add_to_stats: a failure
  at its time, a ban at its start; minute buckets only for the last two days, which is all the
  rollup keeps), the hourly failures per address and user name the dashboard's tops read
  (bans.bulk.add_to_tops), and the tallies of the addresses still counting toward a ban (jails page).

One audit entry records the seeding. `seed` refuses a database that already holds failures unless
`force`: made-up history cannot be told from real history afterwards.
"""

from __future__ import annotations

import bisect
import datetime as dt
import ipaddress
import math
import random
import time
from array import array
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.db import connection, transaction

from bans import bulk, gate, hostaddrs, policy, schedules, services
from bans.models import Ban, Failure, JailStat
from jails import builtin
from jails import services as jail_services
from jails.access import audit
from jails.models import Filter, Jail

Progress = Callable[[str], None]
AUDIT_ACTION = "demo.seed"
FAILURES_PER_TRANSACTION = 50_000
BANS_PER_TRANSACTION = 5_000
# A made-up filter for the generated jails (and the known ones without a built-in filter).
DEMO_FILTER = "demo-login"
DEMO_FILTER_SOURCE = ('[Definition]\n'
                      'failregex = ^\\S+ \\S+ login failed for user "<F-USER>[^"]*</F-USER>" from <HOST>$\n')


class DemoRefused(Exception):
    """The database is not one to fill with made-up history (it holds failures already)."""


# --- where attacks come from ---------------------------------------------------------------------

# Public /16 prefixes (hosting providers, large access networks) that attack traffic really comes
# from; none is private, reserved or documentation space. Addresses inside this host's own
# addresses or networks, or the gate's protected ones, are still skipped one by one.
IPV4_PREFIXES = (
    "5.188", "14.103", "27.72", "31.184", "36.110", "37.49", "43.134", "45.9", "45.135", "45.148",
    "46.101", "49.88", "51.158", "58.218", "59.36", "61.177", "62.210", "64.225", "77.90", "79.124",
    "80.94", "81.161", "85.209", "89.248", "91.191", "92.63", "94.102", "103.145", "104.248", "107.189",
    "109.205", "112.85", "113.31", "114.96", "116.105", "117.50", "118.25", "119.45", "121.142", "122.155",
    "123.58", "124.156", "125.124", "134.209", "138.68", "139.59", "141.98", "142.93", "143.198", "146.190",
    "150.109", "152.32", "157.245", "159.65", "159.203", "161.35", "162.243", "164.92", "165.232", "167.71",
    "170.64", "175.6", "177.54", "178.128", "179.43", "180.101", "181.49", "182.61", "183.136", "185.156",
    "185.220", "186.67", "187.141", "188.166", "190.181", "193.32", "193.142", "194.26", "195.3", "196.189",
    "197.5", "200.105", "201.249", "202.51", "206.189", "209.141", "210.114", "211.219", "212.70", "213.142",
    "217.160", "218.92", "220.180", "221.131", "222.186", "223.71",
)
# Public IPv6 /32 prefixes (the same kind of networks).
IPV6_PREFIXES = ("2001:41d0", "2001:bc8", "2400:6180", "2401:c080", "2404:f800", "2600:3c00", "2604:a880",
                 "2605:6400", "2a01:4f8", "2a02:c207", "2a03:b0c0", "2a05:d014", "2a06:98c0", "2a0e:97c0",
                 "240e:390", "2408:8207")

# User names tried against login services, most tried first (root alone is a large share).
USER_NAMES = (("root", 400), ("admin", 120), ("ubuntu", 45), ("test", 40), ("user", 35), ("oracle", 22),
              ("postgres", 20), ("git", 18), ("guest", 15), ("ftpuser", 14), ("pi", 13), ("deploy", 12),
              ("support", 10), ("mysql", 10), ("jenkins", 9), ("debian", 9), ("centos", 8), ("hadoop", 8),
              ("www-data", 7), ("administrator", 7), ("steam", 6), ("minecraft", 6), ("nagios", 5),
              ("tomcat", 5), ("ansible", 5), ("docker", 5), ("elastic", 4), ("odoo", 4), ("sa", 4),
              ("info", 4), ("webmaster", 4), ("backup", 3), ("dev", 3), ("ec2-user", 3), ("es", 3),
              ("teamspeak", 2), ("zabbix", 2), ("vagrant", 2), ("ts3", 2), ("sftp", 2), ("mail", 2),
              ("postmaster", 2), ("contact", 2), ("sales", 2), ("office", 2), ("1234", 1), ("", 1))
GENERATED_USERS = 200  # plus user001..user200, each tried rarely (the dictionary's long tail)
ROOT_ONLY = 1 << 29  # in a failure's aux: a session that tries root only


@dataclass(frozen=True)
class Profile:
    """What a jail's failures look like: its log lines, its settings, its share of the attacks."""

    kind: str  # ssh, nginx-auth, sasl, wordpress, recidive, dovecot, botsearch, generic
    weight: float
    maxretry: int
    findtime: int
    bantime: int
    gap: float  # mean seconds between two tries of one session
    port: str
    logpath: str
    filter_name: str


KNOWN_JAILS: tuple[tuple[str, Profile], ...] = (
    ("sshd", Profile("ssh", 40, 5, 600, 600, 3.0, "ssh", "/var/log/auth.log", "sshd")),
    ("nginx-http-auth", Profile("nginx-auth", 9, 5, 600, 3600, 1.5, "http,https", "/var/log/nginx/error.log",
                                "nginx-http-auth")),
    ("postfix-sasl", Profile("sasl", 9, 5, 600, 3600, 8.0, "smtp,465,submission", "/var/log/mail.log",
                             "postfix-sasl")),
    ("wordpress", Profile("wordpress", 7, 5, 600, 3600, 2.0, "http,https", "/var/log/nginx/access.log",
                          "wordpress-auth")),
    ("recidive", Profile("recidive", 2, 5, 86400, 604800, 900.0, "all", "/var/log/fail2ban.log", "recidive")),
    ("dovecot", Profile("dovecot", 5, 5, 600, 3600, 6.0, "pop3,pop3s,imap,imaps,submission,465,sieve",
                        "/var/log/mail.log", "dovecot")),
    ("nginx-botsearch", Profile("botsearch", 6, 2, 600, 3600, 0.5, "http,https", "/var/log/nginx/access.log",
                                "nginx-botsearch")),
    ("apache-auth", Profile("apache-auth", 3, 5, 600, 3600, 2.0, "http,https", "/var/log/apache2/error.log",
                            "apache-auth")),
    ("postfix", Profile("postfix", 3, 5, 600, 3600, 10.0, "smtp,465,submission", "/var/log/mail.log",
                        "postfix")),
    ("apache-envscan", Profile("envscan", 3, 1, 600, 86400, 0.7, "http,https", "/var/log/apache2/access.log",
                               "apache-envscan")),
)
GENERATED_SERVICES = ("gitea", "grafana", "nextcloud", "proxmox", "vaultwarden", "jellyfin", "roundcube", "mysqld",
                      "openvpn", "asterisk", "vsftpd", "traefik", "haproxy", "phpmyadmin", "zabbix", "monit")


def jail_plan(count: int) -> list[tuple[str, Profile]]:
    """The jails' names and profiles: the known ones first, then generated login services."""
    plan = list(KNOWN_JAILS[:count])
    for n in range(count - len(plan)):
        service = GENERATED_SERVICES[n % len(GENERATED_SERVICES)]
        round_ = n // len(GENERATED_SERVICES)
        name = f"{service}-auth" if round_ == 0 else f"{service}{round_ + 1}-auth"
        plan.append((name, Profile("generic", 2.0 / (1 + n / 4), 5, 600, 3600, 4.0, "http,https",
                                   f"/var/log/{service}/auth.log", DEMO_FILTER)))
    return plan


# --- the request ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Plan:
    failures: int
    bans: int
    days: int
    jails: int
    seed: int
    now: float  # epoch seconds: the moment the history ends
    addresses: int | None = None  # the pool; None: failures / 20, at least 10
    ipv6_share: float = 0.08
    force: bool = False

    @property
    def pool_size(self) -> int:
        return self.addresses if self.addresses is not None else max(10, min(self.failures // 20, 500_000))


@dataclass
class Seeded:
    """What a seeding wrote, for the command's report and the audit entry."""

    failures: int = 0
    bans: int = 0
    states: dict[str, int] = field(default_factory=dict)
    addresses: int = 0
    networks: int = 0
    ipv6_addresses: int = 0
    jails: list[str] = field(default_factory=list)
    jails_created: list[str] = field(default_factory=list)
    tallies: int = 0
    stat_buckets: int = 0
    seconds: float = 0.0

    def as_record(self, plan: Plan) -> dict[str, Any]:
        return {"failures": self.failures, "bans": self.bans, "states": self.states, "days": plan.days,
                "addresses": self.addresses, "networks": self.networks, "ipv6_addresses": self.ipv6_addresses,
                "jails": self.jails, "jails_created": self.jails_created, "tallies": self.tallies,
                "seed": plan.seed, "until": dt.datetime.fromtimestamp(plan.now, tz=dt.UTC).isoformat(),
                "forced": plan.force, "seconds": round(self.seconds, 1)}


def refusal(force: bool) -> str | None:
    """Why this database must not be seeded, or None."""
    if force:
        return None
    held = Failure.objects.count()
    if not held:
        return None
    return (f"this database already holds {held:,} failures, maybe real ones: seeddemo would add made-up "
            f"failures and bans next to them, and nothing could tell them apart afterwards. Seed an empty "
            f"database (e.g. DATABASE_URL=sqlite:///var/demo.sqlite3), or pass --force to add them anyway.")


# --- addresses -----------------------------------------------------------------------------------


def protected_check() -> Callable[[ipaddress.IPv4Address | ipaddress.IPv6Address], bool]:
    """True for an address seeddemo must never use: not global (private, reserved, documentation...),
    this host's own addresses and networks, and whatever the ban gate refuses or asks to confirm."""
    the_gate = services.current_gate(own_addresses=hostaddrs.addresses(), host_networks=hostaddrs.networks())

    def protected(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
        if not ip.is_global:
            return True
        try:
            the_gate.check_manual(ipaddress.ip_network(ip))
        except gate.BanRefused:  # ConfirmationNeeded too: private space, this host's own networks
            return True
        return False

    return protected


def address_pool(rng: random.Random, size: int, ipv6_share: float,
                 protected: Callable[[ipaddress.IPv4Address | ipaddress.IPv6Address], bool]) -> list[str]:
    """`size` distinct public addresses in networks of heavy-tailed sizes (preferential attachment:
    a new address joins the network of an earlier one with probability 0.35, so a network already
    large is the likeliest to grow)."""
    found: list[str] = []
    seen: set[str] = set()
    # one entry per address drawn: its network's text ("45.9.12", or a /64's first four hextets), so a
    # uniform pick among them picks a network in proportion to its size
    networks: dict[bool, list[str]] = {False: [], True: []}
    tries = 0
    while len(found) < size:
        tries += 1
        if tries > size * 50 + 1000:
            raise DemoRefused("could not find enough public addresses outside the protected networks")
        six = rng.random() < ipv6_share
        earlier = networks[six]
        if earlier and rng.random() < 0.35:
            net = rng.choice(earlier)
        elif six:
            net = f"{rng.choice(IPV6_PREFIXES)}:{rng.randrange(65536):x}:{rng.randrange(65536):x}"
        else:
            net = f"{rng.choice(IPV4_PREFIXES)}.{rng.randrange(256)}"
        text = f"{net}::{rng.randrange(1, 65536):x}" if six else f"{net}.{rng.randrange(1, 255)}"
        ip = ipaddress.ip_address(text)
        address = str(ip)
        if address in seen or protected(ip):
            continue
        seen.add(address)
        found.append(address)
        earlier.append(net)
    rng.shuffle(found)
    return found


def user_table(rng: random.Random) -> list[str]:
    """1,000 draws of a user name: a weighted pick is one index into it."""
    names = [name for name, _ in USER_NAMES] + [f"user{n:03d}" for n in range(1, GENERATED_USERS + 1)]
    weights = [float(w) for _, w in USER_NAMES] + [0.5] * GENERATED_USERS
    return rng.choices(names, weights=weights, k=1000)


# --- time ----------------------------------------------------------------------------------------


def hour_weights(rng: random.Random, hours: int, start_hour: float) -> list[float]:
    """The relative attack rate of each hour: a diurnal rhythm (peaks at night UTC, when Asian and
    American scanners overlap), day-to-day noise, slow growth and a few campaigns."""
    days = hours // 24 + 1
    day_noise = [rng.lognormvariate(0, 0.35) for _ in range(days)]
    weights = []
    for h in range(hours):
        hour_of_day = ((start_hour / 3600) + h) % 24
        rhythm = 1 + 0.55 * math.sin(2 * math.pi * (hour_of_day - 21) / 24)
        weights.append(rhythm * day_noise[h // 24] * (1 + 0.5 * h / max(hours, 1)))
    for _ in range(max(1, days // 6)):  # campaigns: 2 to 18 hours of 4 to 25 times the rate
        first = rng.randrange(hours)
        surge = rng.uniform(4, 25)
        for h in range(first, min(hours, first + rng.randint(2, 18))):
            weights[h] *= surge
    return weights


# --- log lines -----------------------------------------------------------------------------------

DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
USER_KINDS = {"ssh", "nginx-auth", "dovecot", "generic"}
BOT_PATHS = ("/.env", "/wp-admin/setup-config.php", "/phpmyadmin/index.php", "/.git/config", "/admin/config.php",
             "/vendor/phpunit/phpunit/src/Util/PHP/eval-stdin.php", "/cgi-bin/luci", "/boaform/admin/formLogin",
             "/.aws/credentials", "/api/.env", "/server-status", "/actuator/env")


class Lines:
    """A jail's log line for a failure: (time, address, user, aux) -> text, dates cached per second."""

    def __init__(self, kind: str, jail_name: str) -> None:
        self.kind = kind
        self.jail_name = jail_name
        self._stamps: dict[int, tuple[str, str, str, str]] = {}

    def stamps(self, when: int) -> tuple[str, str, str, str]:
        """syslog ("Dec  7 08:40:03"), nginx ("2026/12/07 08:40:03"), access log ("07/Dec/2026:08:40:03"),
        Apache's error log ("Mon Dec 07 08:40:03")."""
        found = self._stamps.get(when)
        if found is None:
            if len(self._stamps) > 200_000:
                self._stamps.clear()
            t = time.gmtime(when)
            clock = f"{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d}"
            found = self._stamps[when] = (f"{MONTHS[t.tm_mon - 1]} {t.tm_mday:2d} {clock}",
                                          f"{t.tm_year}/{t.tm_mon:02d}/{t.tm_mday:02d} {clock}",
                                          f"{t.tm_mday:02d}/{MONTHS[t.tm_mon - 1]}/{t.tm_year}:{clock}",
                                          f"{DAYS[t.tm_wday]} {MONTHS[t.tm_mon - 1]} {t.tm_mday:02d} {clock}")
        return found

    def line(self, when: int, address: str, user: str, aux: int) -> str:
        syslog, nginx, access, apache = self.stamps(when)
        kind, pid, port = self.kind, 1000 + aux % 60000, 1024 + aux % 64000
        if kind == "ssh":
            who = user if user == "root" else f"invalid user {user}"
            return f"{syslog} web1 sshd[{pid}]: Failed password for {who} from {address} port {port} ssh2"
        if kind == "nginx-auth":
            return (f'{nginx} [error] {pid}#{pid}: *{aux % 900000} user "{user}": password mismatch, client: '
                    f'{address}, server: example.net, request: "GET /private/ HTTP/1.1", host: "example.net"')
        if kind == "sasl":
            return (f"{syslog} mail postfix/smtpd[{pid}]: warning: unknown[{address}]: SASL LOGIN authentication "
                    f"failed: UGFzc3dvcmQ6")
        if kind == "postfix":
            return (f"{syslog} mail postfix/smtpd[{pid}]: NOQUEUE: reject: RCPT from unknown[{address}]: 554 5.7.1 "
                    f"<spameri@tiscali.it>: Relay access denied; proto=ESMTP helo=<User>")
        if kind == "dovecot":
            return (f"{syslog} mail dovecot: auth-worker({pid}): pam({user},{address},<{aux % 99999:05d}>): "
                    f"pam_authenticate() failed: Authentication failure")
        if kind == "wordpress":
            return (f'{address} - - [{access} +0000] "POST /wp-login.php HTTP/1.1" 200 4523 "-" '
                    f'"Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:{100 + aux % 30}.0) Gecko/20100101"')
        if kind in ("botsearch", "envscan"):
            return (f'{address} - - [{access} +0000] "GET {BOT_PATHS[aux % len(BOT_PATHS)]} HTTP/1.1" 404 '
                    f'162 "-" "Mozilla/5.0 zgrab/0.x"')
        if kind == "apache-auth":
            return (f"[{apache}.{aux % 1000000:06d} {nginx[:4]}] [auth_basic:error] [pid {pid}] "
                    f"[client {address}:{port}] AH01617: user {user}: authentication failure for \"/admin\": "
                    f"Password Mismatch")
        if kind == "recidive":
            banned_in = ("sshd", "nginx-http-auth", "postfix-sasl", "dovecot")[aux % 4]
            return (f"{nginx.replace('/', '-')},{aux % 1000:03d} fail2ban.actions [{pid}]: NOTICE [{banned_in}] "
                    f"Ban {address}")
        return f'{nginx.replace("/", "-")} {self.jail_name}: login failed for user "{user}" from {address}'

    def fields(self, user: str) -> dict[str, str]:
        return {"user": user} if self.kind in USER_KINDS or self.kind == "apache-auth" else {}


# --- the history in memory -------------------------------------------------------------------------


@dataclass
class JailFailures:
    """One jail's failures, compact (20 bytes each): time, address index, a random aux, user index."""

    jail: Jail
    profile: Profile
    times: array[int] = field(default_factory=lambda: array("q"))
    addresses: array[int] = field(default_factory=lambda: array("l"))
    aux: array[int] = field(default_factory=lambda: array("l"))


@dataclass(frozen=True)
class Candidate:
    """A session that reached maxretry: a ban, if chosen."""

    jail: int  # index into the jails
    address: int
    at: int
    first_row: int  # the session's first failure in its jail's arrays: the evidence starts there


def sessions_of(rng: random.Random, count: int, maxretry: int) -> list[int]:
    """A run of `count` failures of one address in one jail, cut into sessions (bursts): about
    maxretry to 4 x maxretry tries each, as a scanner moves on once banned or after a list."""
    sizes: list[int] = []
    left = count
    while left > 0:
        size = min(left, max(1, int(rng.uniform(maxretry, 4 * maxretry + 1))))
        sizes.append(size)
        left -= size
    return sizes


def split_exactly(rng: random.Random, total: int, weights: Sequence[float]) -> list[int]:
    """`total` shared out in proportion to `weights`, each share at least 1 (when total allows),
    summing to exactly `total`."""
    whole = sum(weights)
    shares = [max(1, int(total * w / whole)) for w in weights]
    diff = total - sum(shares)
    if diff > 0:
        for index in rng.choices(range(len(weights)), weights=weights, k=diff):
            shares[index] += 1
    order = sorted(range(len(shares)), key=shares.__getitem__, reverse=True)
    i = 0
    while diff < 0:  # take the excess from the largest shares, one at a time
        index = order[i % len(order)]
        if shares[index] > 1 or total < len(shares):
            shares[index] -= 1
            diff += 1
        i += 1
    return shares


class Generator:
    def __init__(self, plan: Plan, jails: list[tuple[Jail, Profile]], pool: list[str], say: Progress) -> None:
        self.plan = plan
        self.rng = random.Random(plan.seed * 7 + 3)  # noqa: S311  # made-up history, reproducible by its seed
        self.jails = [JailFailures(jail, profile) for jail, profile in jails]
        self.lines = [Lines(profile.kind, jail.name) for jail, profile in jails]
        self.pool = pool
        self.users = user_table(random.Random(plan.seed + 1))  # noqa: S311  # as above
        self.say = say
        self.candidates: list[Candidate] = []

    def user_of(self, aux: int) -> str:
        """The user a try named: root for a root-only session (ROOT_ONLY set), else a weighted pick."""
        return "root" if aux & ROOT_ONLY else self.users[(aux >> 8) % len(self.users)]

    def generate(self) -> None:
        plan, rng = self.plan, self.rng
        end = int(plan.now)
        start = end - plan.days * 86400
        hours = plan.days * 24
        cum = list(_accumulate(hour_weights(rng, hours, float(start % 86400))))
        # each address's failures (Zipf, s=1), its main jail and, for some, a second one
        per_address = split_exactly(rng, plan.failures, [1.0 / (rank + 1) for rank in range(len(self.pool))])
        jail_weights = [j.profile.weight for j in self.jails]
        for index, count in enumerate(per_address):
            if count <= 0:
                continue
            first = rng.choices(range(len(self.jails)), weights=jail_weights)[0]
            runs = [(first, count)]
            if count > 3 and len(self.jails) > 1 and rng.random() < 0.15:
                second = rng.choices(range(len(self.jails)), weights=jail_weights)[0]
                moved = count * 3 // 10
                runs = [(first, count - moved), (second, moved)]
            for jail_index, n in runs:
                self.add_sessions(jail_index, index, n, cum, start, end)
        self.say(f"generated {plan.failures:,} failures of {len(self.pool):,} addresses, "
                 f"{len(self.candidates):,} sessions reaching maxretry")

    def add_sessions(self, jail_index: int, address: int, count: int, cum: list[float], start: int, end: int) -> None:
        rng = self.rng
        target = self.jails[jail_index]
        profile = target.profile
        total = cum[-1]
        root_only = rng.random() < 0.4
        for size in sessions_of(rng, count, profile.maxretry):
            hour = bisect.bisect_left(cum, rng.random() * total)
            when = start + hour * 3600 + rng.randrange(3600)
            moments = []
            for _ in range(size):
                moments.append(when)
                when += 1 + int(rng.expovariate(1 / profile.gap))
            if moments[-1] > end:  # the session ran past now: it happened just before
                shift = moments[-1] - end
                moments = [m - shift for m in moments]
            base = rng.getrandbits(29)
            flag = ROOT_ONLY if root_only else 0
            for i, moment in enumerate(moments):
                aux = ((base + i * 7919) & 0x1FFFFFFF) | flag
                target.times.append(moment)
                target.addresses.append(address)
                target.aux.append(aux)
            if size >= profile.maxretry:
                first = len(target.times) - size
                self.candidates.append(Candidate(jail_index, address, moments[profile.maxretry - 1], first))

    def line(self, jail_index: int, row: int) -> str:
        target = self.jails[jail_index]
        aux = target.aux[row]
        return self.lines[jail_index].line(target.times[row], self.pool[target.addresses[row]], self.user_of(aux), aux)


def _accumulate(values: Iterable[float]) -> Iterable[float]:
    total = 0.0
    for value in values:
        total += value
        yield total


# --- bans ------------------------------------------------------------------------------------------

BANTIME_LADDER = (600, 3600, 86400, 604800)
NFT_ERROR = "nft: Error: Could not process rule: No such file or directory (table inet ips)"


@dataclass
class BanDraft:
    jail_index: int | None  # None: the blocklist
    address: str
    at: int
    evidence: list[str]
    origin: str = Ban.Origin.JAIL
    reason: str = ""
    state: str = Ban.State.EXPIRED
    bantime: int = 600


def choose_bans(rng: random.Random, plan: Plan, gen: Generator) -> list[BanDraft]:
    """`plan.bans` bans from the sessions that reached maxretry (a sample when there are more), the
    rest (if fewer) as bans by hand of addresses seen elsewhere; then their states."""
    picked = (rng.sample(gen.candidates, plan.bans) if len(gen.candidates) > plan.bans else list(gen.candidates))
    drafts = [BanDraft(c.jail, gen.pool[c.address], c.at,
                       [gen.line(c.jail, c.first_row + i) for i in range(gen.jails[c.jail].profile.maxretry)])
              for c in picked]
    end = int(plan.now)
    for _ in range(plan.bans - len(drafts)):
        drafts.append(BanDraft(None if rng.random() < 0.5 else rng.randrange(len(gen.jails)), rng.choice(gen.pool),
                               end - rng.randrange(plan.days * 86400), [], origin=Ban.Origin.USER,
                               reason="reported by another server of ours"))
    drafts.sort(key=lambda d: d.at)
    assign_states(rng, plan, gen, drafts)
    return drafts


def assign_states(rng: random.Random, plan: Plan, gen: Generator, drafts: list[BanDraft]) -> None:
    """Most bans ended in the past (expired, or lifted by hand); of the newest, some are in force,
    a few waiting for the firewall, failing, or permanent (some of those on the blocklist)."""
    end = int(plan.now)
    n = len(drafts)
    few = max(1, n // 200) if n >= 20 else (1 if n >= 5 else 0)
    wanted = {"pending": few, "failed": few, "permanent": max(few, n // 100) if n >= 5 else 0,
              "active": max(1, n * 4 // 100) if n >= 3 else 0}
    live: set[tuple[str, str]] = set()  # (jail name, address): one live ban each
    recent = list(range(n - 1, -1, -1))  # newest first
    names = [j.jail.name for j in gen.jails]

    def key(d: BanDraft) -> tuple[str, str]:
        return (Ban.BLOCKLIST if d.jail_index is None else names[d.jail_index], d.address)

    order = ("pending", "failed", "active")
    for state in order:
        for index in recent:
            if wanted[state] <= 0:
                break
            draft = drafts[index]
            if draft.state != Ban.State.EXPIRED or key(draft) in live:
                continue
            draft.state = state
            live.add(key(draft))
            wanted[state] -= 1
    # permanent ones among the older bans too: the blocklist (by hand) and recidive-like jail bans
    for index in rng.sample(range(n), min(n, wanted["permanent"] * 3)):
        if wanted["permanent"] <= 0:
            break
        draft = drafts[index]
        to_blocklist = rng.random() < 0.5
        if draft.state != Ban.State.EXPIRED or (Ban.BLOCKLIST if to_blocklist else key(draft)[0],
                                                draft.address) in live:
            continue
        if to_blocklist:
            draft.jail_index, draft.origin = None, Ban.Origin.USER
            draft.reason = "keeps coming back: on the blocklist for good"
        draft.state, draft.bantime = "permanent", -1
        live.add(key(draft))
        wanted["permanent"] -= 1
    for draft in drafts:
        profile = gen.jails[draft.jail_index].profile if draft.jail_index is not None else None
        if draft.state == "permanent":
            continue
        base = profile.bantime if profile is not None else 86400
        if draft.state in ("active", "pending", "failed"):
            # bantime.increment for repeat offenders: long enough to still hold now
            draft.bantime = next((b for b in BANTIME_LADDER if b >= base and draft.at + b > end + 60),
                                 max(base, end - draft.at + 3600))
            continue
        draft.bantime = base if rng.random() < 0.7 else rng.choice([b for b in BANTIME_LADDER if b >= base])
        if draft.at + draft.bantime > end:  # still running: lifted by hand then, or a shorter one
            fits = [b for b in BANTIME_LADDER if draft.at + b <= end]
            if fits:
                draft.bantime = fits[-1]
            else:
                draft.bantime = base
                draft.state = Ban.State.LIFTED
        elif rng.random() < 0.06:
            draft.state = Ban.State.LIFTED


def build_bans(rng: random.Random, plan: Plan, gen: Generator, drafts: list[BanDraft]) -> list[Ban]:
    host = settings.IPS_HOST_NAME
    end = int(plan.now)
    earlier: Counter[str] = Counter()
    bans: list[Ban] = []
    for draft in drafts:
        jail = gen.jails[draft.jail_index].jail if draft.jail_index is not None else None
        network = services.network_of(draft.address)
        started = services.aware(draft.at)
        state = draft.state
        origin = draft.origin
        reason = draft.reason
        if jail is not None and jail.name == schedules.RECIDIVE_JAIL and origin == Ban.Origin.JAIL:
            origin, reason = Ban.Origin.SCHEDULE, "banned 5 times within 86400 s in other jails"
        ban = Ban(jail=jail, jail_name=jail.name if jail is not None else Ban.BLOCKLIST, network=network,
                  family=6 if ":" in network else 4, host=host, started_at=started,
                  expires_at=None if draft.bantime == -1 else started + dt.timedelta(seconds=draft.bantime),
                  bantime=draft.bantime, earlier_bans=earlier[network], evidence=draft.evidence, origin=origin,
                  reason=reason, state=Ban.State.ACTIVE if state == "permanent" else state)
        earlier[network] += 1
        if state in (Ban.State.EXPIRED, Ban.State.LIFTED, Ban.State.ACTIVE, "permanent"):
            ban.applied_at = started + dt.timedelta(seconds=rng.uniform(0.05, 1.5))
            ban.apply_attempts = 1
        if state == Ban.State.EXPIRED:
            ban.ended_at = ban.expires_at
        elif state == Ban.State.LIFTED:
            lifted = draft.at + int(rng.uniform(0.05, 0.9) * max(1, min(draft.bantime, end - draft.at)))
            ban.ended_at = services.aware(min(lifted, end))
        elif state == Ban.State.FAILED:
            ban.apply_attempts = rng.randint(2, 9)
            ban.apply_error = NFT_ERROR
            ban.next_attempt_at = services.aware(end + rng.randint(10, 300))
        bans.append(ban)
    return bans


# --- writing -------------------------------------------------------------------------------------


def ensure_jails(count: int, say: Progress) -> tuple[list[tuple[Jail, Profile]], list[str]]:
    """The plan's jails, created when missing (enabled, with realistic settings and log paths)."""
    builtin.install_builtin_filters()  # what scripts/run.sh does at every start; keeps edited filters
    filters = {f.name: f for f in Filter.objects.all()}
    made: list[str] = []
    jails: list[tuple[Jail, Profile]] = []
    for name, profile in jail_plan(count):
        jail = Jail.objects.filter(name=name).first()
        if jail is None:
            flt = filters.get(profile.filter_name) or demo_filter(filters)
            jail = Jail.objects.create(name=name, filter=flt, enabled=True, logpath=[profile.logpath],
                                       port=profile.port, maxretry=profile.maxretry, findtime=profile.findtime,
                                       bantime=profile.bantime, bantime_increment=name == "sshd",
                                       description="Made by manage.py seeddemo (demo history).")
            made.append(name)
        else:  # a jail of that name is there: its settings win
            profile = Profile(profile.kind, profile.weight, jail.maxretry, jail.findtime, jail.bantime, profile.gap,
                              jail.port, profile.logpath, jail.filter.name)
        jails.append((jail, profile))
    if made:
        say(f"created {len(made)} jails: {', '.join(made)}")
    return jails, made


def demo_filter(filters: dict[str, Filter]) -> Filter:
    found = filters.get(DEMO_FILTER)
    if found is None:
        fields = jail_services.derive_stored_fields(DEMO_FILTER, DEMO_FILTER_SOURCE)
        found = filters[DEMO_FILTER] = Filter.objects.create(
            name=DEMO_FILTER, source=DEMO_FILTER_SOURCE, description="Made by manage.py seeddemo.", **fields)
    return found


def tune_sqlite() -> None:
    """A larger page cache for this connection while it writes (the default 2 MB thrashes on the
    indexes of a million rows); the database file's own settings are left as they are."""
    if connection.vendor == "sqlite":
        with connection.cursor() as cursor:
            cursor.execute("PRAGMA cache_size = -262144")  # 256 MB


def write_failures(gen: Generator, plan: Plan, say: Progress, stats: StatCounter) -> int:
    """Every jail's failures in time order, FAILURES_PER_TRANSACTION rows a transaction."""
    written = 0
    began = time.monotonic()
    for index, target in enumerate(gen.jails):
        order = sorted(range(len(target.times)), key=target.times.__getitem__)
        lines = gen.lines[index]
        jail_name, jail_id = target.jail.name, target.jail.pk
        for chunk_start in range(0, len(order), FAILURES_PER_TRANSACTION):
            chunk = order[chunk_start:chunk_start + FAILURES_PER_TRANSACTION]
            rows = []
            for row in chunk:
                when, aux = target.times[row], target.aux[row]
                address, user = gen.pool[target.addresses[row]], gen.user_of(aux)
                rows.append((address, float(when), lines.line(when, address, user, aux), lines.fields(user)))
            with transaction.atomic():
                adapter = bulk.Adapter()
                bulk.insert_failures(jail_id, rows, created=plan.now, adapter=adapter)
                bulk.add_to_tops(jail_name, ((when, address, fields.get("user")) for address, when, _, fields in rows),
                                 adapter=adapter)
            stats.failures(jail_name, (float(target.times[row]) for row in chunk))
            written += len(rows)
            elapsed = time.monotonic() - began
            say(f"failures: {written:,} / {plan.failures:,} ({jail_name}), {elapsed:.0f} s, "
                f"{written / max(elapsed, 1e-6):,.0f} rows/s")
    return written


def write_bans(bans: list[Ban], say: Progress, stats: StatCounter) -> None:
    for start in range(0, len(bans), BANS_PER_TRANSACTION):
        batch = bans[start:start + BANS_PER_TRANSACTION]
        with transaction.atomic():
            bulk.insert_bans(batch)
        for ban in batch:
            stats.ban(ban.jail_name, ban.started_at.timestamp())
        say(f"bans: {min(start + BANS_PER_TRANSACTION, len(bans)):,} / {len(bans):,}")


class StatCounter:
    """The JailStat counters as the watchers would have added them (bans.bulk.add_to_stats): hour
    buckets for everything; minute buckets only from the horizon the rollup keeps them for."""

    def __init__(self, now: float) -> None:
        self.horizon = now - schedules.MINUTE_BUCKETS_KEPT.total_seconds()
        self.hours: Counter[tuple[str, float, int]] = Counter()
        self.recent_failures: dict[str, list[float]] = {}
        self.recent_bans: dict[str, list[float]] = {}

    def failures(self, jail_name: str, times: Iterable[float]) -> None:
        hours, horizon = self.hours, self.horizon
        recent = self.recent_failures.setdefault(jail_name, [])
        for when in times:
            if when >= horizon:
                recent.append(when)
            else:
                hours[jail_name, when - when % 3600, 0] += 1

    def ban(self, jail_name: str, when: float) -> None:
        if when >= self.horizon:
            self.recent_bans.setdefault(jail_name, []).append(when)
        else:
            self.hours[jail_name, when - when % 3600, 1] += 1

    def write(self) -> int:
        """The old hour buckets (added to any already there), then the recent ones through
        add_to_stats, which adds to the bucket the horizon falls in. Returns the buckets written."""
        merged: dict[tuple[str, float], list[int]] = {}
        for (jail_name, bucket, kind), n in self.hours.items():
            merged.setdefault((jail_name, bucket), [0, 0])[kind] += n
        names = sorted({name for name, _ in merged})
        with transaction.atomic():
            existing = {(row.jail_name, row.bucket.timestamp()): row for row in JailStat.objects.filter(
                resolution=JailStat.Resolution.HOUR, jail_name__in=names,
                bucket__lt=services.aware(self.horizon + 3600))}
            rows = []
            for (jail_name, bucket), (failures, bans) in merged.items():
                held = existing.get((jail_name, bucket))
                rows.append(JailStat(jail_name=jail_name, resolution=JailStat.Resolution.HOUR,
                                     bucket=services.aware(bucket), failures=failures + (held.failures if held else 0),
                                     bans=bans + (held.bans if held else 0)))
            JailStat.objects.bulk_create(rows, batch_size=2000, update_conflicts=True,
                                         unique_fields=["jail_name", "resolution", "bucket"],
                                         update_fields=["failures", "bans"])
            for jail_name in sorted(set(self.recent_failures) | set(self.recent_bans)):
                bulk.add_to_stats(jail_name, self.recent_failures.get(jail_name, ()),
                                  self.recent_bans.get(jail_name, ()))
        return len(rows)


def write_tallies(gen: Generator, plan: Plan, live: set[tuple[str, str]]) -> int:
    """The tallies a watcher would hold now: the addresses that failed within the jail's findtime
    without reaching maxretry (or being banned there)."""
    written = 0
    with transaction.atomic():
        for target in gen.jails:
            findtime, maxretry = target.profile.findtime, target.profile.maxretry
            since = plan.now - findtime
            per: dict[str, list[int]] = {}
            for row in range(len(target.times)):
                if target.times[row] > since:
                    per.setdefault(gen.pool[target.addresses[row]], []).append(target.times[row])
            tallies: list[tuple[str, float, float, int, list[str]]] = [
                (address, float(min(times)), float(max(times)), len(times), [])
                for address, times in sorted(per.items())
                if len(times) < maxretry and (target.jail.name, address) not in live]
            bulk.upsert_tallies(target.jail.pk, settings.IPS_HOST_NAME, tallies)
            written += len(tallies)
    return written


def seed(plan: Plan, *, say: Progress | None = None, actor: audit.Actor | None = None) -> Seeded:
    """Fill the database with the plan's history (see the module's docstring); DemoRefused when the
    database holds failures and the plan does not force it."""
    say = say or (lambda message: None)
    began = time.monotonic()
    refused = refusal(plan.force)
    if refused:
        raise DemoRefused(refused)
    tune_sqlite()
    with transaction.atomic():
        jails, made = ensure_jails(plan.jails, say)
    rng = random.Random(plan.seed)  # noqa: S311  # made-up history, reproducible by its seed: no secret
    pool = address_pool(rng, plan.pool_size, plan.ipv6_share, protected_check())
    say(f"{len(pool):,} addresses drawn (public, none of this host's nor the gate's protected ones)")
    gen = Generator(plan, jails, pool, say)
    gen.generate()
    drafts = choose_bans(rng, plan, gen)
    bans = build_bans(rng, plan, gen, drafts)
    stats = StatCounter(plan.now)
    written = write_failures(gen, plan, say, stats)
    write_bans(bans, say, stats)
    live = {(ban.jail_name, ban.network.split("/")[0]) for ban in bans if ban.state in Ban.LIVE_STATES}
    result = Seeded(failures=written, bans=len(bans), states=dict(Counter(
        "permanent" if ban.bantime == -1 else str(ban.state) for ban in bans)),
        addresses=len(pool), networks=len({policy.attacker_network(a) for a in pool}),
        ipv6_addresses=sum(":" in a for a in pool), jails=[j.name for j, _ in jails], jails_created=made)
    result.tallies = write_tallies(gen, plan, live)
    result.stat_buckets = stats.write()
    result.seconds = time.monotonic() - began
    with transaction.atomic():
        audit.record(actor or audit.Actor.command(), AUDIT_ACTION, object_type="database",
                     object_repr=f"demo history: {written:,} failures, {len(bans):,} bans over {plan.days} days",
                     after=result.as_record(plan))
    say(f"done in {result.seconds:.1f} s")
    return result
