#!/usr/bin/env python3
"""Generate the deterministic benchmark logs: an sshd auth.log and an Apache access log.

Both logs come from a fixed seed, so every run writes the same bytes (the manifest in
the cache directory records each file's sha256 to prove it). They mix realistic noise
with about 10% attack lines that fail2ban's filters match, plus near-misses: lines that
look like attacks but that the filters must *not* count. Near-misses are what catch a
filter engine that is fast because it is sloppy.

Every generated line carries the class fail2ban-regex gives it (matched, ignored or
missed); the generator counts them and stores the totals in the manifest so the
benchmark has a third witness besides the two tools.

Run it alone to look at the logs:  python3 bench/genlogs.py --lines 2000 --print
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import random
import sys
from bisect import bisect_right
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from datetime import datetime, timedelta
from itertools import accumulate
from pathlib import Path
from typing import NamedTuple, TypeVar

# Fixed so that the files never depend on the clock. The logs cover most of one day
# that is in the past relative to when this benchmark was written (2026-11-22): the
# sshd filter reads year-less syslog dates as "this year", and a date in the future
# would make fail2ban-regex guess a different year than we do.
START = datetime(2026, 11, 20, 0, 0, 0)
SPAN_SECONDS = 86_000
DEFAULT_SEED = 20261122
DEFAULT_LINES = 1_000_000
HOST = "host"

T = TypeVar("T")

# fail2ban-regex sorts each line into one of three buckets; every template is
# labelled with the bucket it lands in so the generator can predict the totals.
MATCHED, IGNORED, MISSED = "matched", "ignored", "missed"
Labelled = tuple[str, str]  # (label, text without timestamp)

MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


# --------------------------------------------------------------------------- helpers


class Pools:
    """Random material shared by both logs: addresses, user names, agents."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        # Attackers come back again and again; a few thousand addresses is what a
        # public server sees in a day. Clients are fewer and more regular.
        self.attackers = [self._public_ipv4() for _ in range(4000)]
        self.attackers += [self._ipv6() for _ in range(200)]
        self.clients = [self._public_ipv4() for _ in range(600)]
        self.clients += [self._ipv6() for _ in range(40)]
        self.admins = [self._private_ipv4() for _ in range(12)]
        # who logs in with a key: the admins' own network and a few regular clients
        self.regulars = self.admins + self.clients[:40]

    def _public_ipv4(self) -> str:
        r = self.rng.randrange
        first = r(1, 224)
        while first in (10, 127, 172, 192):  # keep clear of private/loopback ranges
            first = r(1, 224)
        return f"{first}.{r(0, 256)}.{r(0, 256)}.{r(1, 255)}"

    def _private_ipv4(self) -> str:
        return f"10.0.{self.rng.randrange(0, 4)}.{self.rng.randrange(2, 250)}"

    def _ipv6(self) -> str:
        r = self.rng.randrange
        return f"2001:db8:{r(0, 0xFFFF):x}:{r(0, 0xFFFF):x}::{r(1, 0xFFFF):x}"

    def pick(self, items: Sequence[T]) -> T:
        # random() indexing is ~3x faster than Random.choice and just as deterministic;
        # the generator makes millions of picks
        return items[int(self.rng.random() * len(items))]

    def attacker(self) -> str:
        return self.pick(self.attackers)

    def client(self) -> str:
        return self.pick(self.clients)

    def port(self) -> int:
        return self.rng.randrange(1024, 65536)


def weighted_index(rng: random.Random, cumulative: list[float]) -> int:
    """Index drawn with the given cumulative weights (Random.choices without its overhead)."""
    return bisect_right(cumulative, rng.random() * cumulative[-1])


def syslog_stamp(moment: datetime) -> str:
    # syslog pads the day with a space ("Nov  2"), not a zero
    return f"{MONTHS[moment.month - 1]} {moment.day:2d} {moment:%H:%M:%S}"


def apache_stamp(moment: datetime) -> str:
    return f"{moment.day:02d}/{MONTHS[moment.month - 1]}/{moment:%Y:%H:%M:%S} +0000"


def timestamps(lines: int, fmt: Callable[[datetime], str]) -> Iterator[str]:
    """Increasing timestamps spread evenly over SPAN_SECONDS; formatted once per second."""
    last_second = -1
    text = ""
    for index in range(lines):
        second = index * SPAN_SECONDS // lines
        if second != last_second:
            last_second = second
            text = fmt(START + timedelta(seconds=second))
        yield text


def write_lines(path: Path, stamped: Iterator[str]) -> None:
    # Writing in large batches keeps the generator at a few seconds per million lines.
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    with tmp.open("w", encoding="utf-8", newline="\n") as out:
        batch: list[str] = []
        for line in stamped:
            batch.append(line)
            if len(batch) >= 20_000:
                out.write("\n".join(batch) + "\n")
                batch.clear()
        if batch:
            out.write("\n".join(batch) + "\n")
    tmp.replace(path)  # never leave a half-written log behind under the final name


# --------------------------------------------------------------------------- sshd


class SshdLog:
    """Blocks of auth.log messages: whole sshd connections plus single noise lines.

    sshd logs one connection under one pid and fail2ban follows connections by that pid
    (`mlfid`): a failure followed by a successful login, or a disconnect, changes how
    later lines of the same pid are counted. So connections are generated as whole
    sessions with their own pid, and a few of them are interleaved as on a real server.
    Every pid is fresh so that no line ever joins an older, unrelated connection.
    """

    ATTACK_USERS = (
        "admin", "test", "user", "oracle", "ubuntu", "pi", "git", "postgres", "ftpuser",
        "guest", "support", "deploy", "www-data", "hadoop", "minecraft", "jenkins",
        "ansible", "steam", "mysql", "nagios", "tomcat", "elastic", "dev", "backup",
    )
    USERS = ("alice", "bob", "carol", "deploy", "backup", "ci-runner")
    UIDS = {"alice": 1000, "bob": 1001, "carol": 1002, "deploy": 1003, "backup": 1004,
            "ci-runner": 1005}
    CRON_COMMANDS = (
        "cd / && run-parts --report /etc/cron.hourly",
        "command -v debian-sa1 > /dev/null && debian-sa1 1 1",
        "/usr/local/bin/backup.sh --incremental",
        "[ -x /usr/lib/php/sessionclean ] && if [ ! -d /run/systemd/system ]; then /usr/lib/php/sessionclean; fi",
    )
    SUDO_COMMANDS = (
        "/usr/bin/systemctl restart nginx", "/usr/bin/apt update", "/usr/bin/journalctl -u sshd",
        "/usr/bin/tail -f /var/log/auth.log", "/usr/sbin/nft list ruleset",
    )

    def __init__(self, rng: random.Random, pools: Pools) -> None:
        self.rng = rng
        self.pools = pools
        self.next_pid = 2000
        self.session_id = 100
        self.uptime = 86_400.0 * 12
        # (weight, block maker); weights tuned so ~10% of lines are matched
        self.sessions: list[tuple[float, Callable[[], list[Labelled]]]] = [
            (10, self.publickey_login),
            (6, self.password_login),
            (12, self.invalid_user),
            (6, self.root_bruteforce),
            (3, self.other_failures),
            (16, self.scanner),
            (1.5, self.near_miss_session),
        ]
        self.noise: list[tuple[float, Callable[[], list[Labelled]]]] = [
            (14, self.cron),
            (8, self.systemd),
            (3, self.sudo),
            (8, self.kernel),
            (8, self.other_daemons),
            (2, self.near_miss_other_daemon),
        ]
        self.session_makers = [maker for _, maker in self.sessions]
        self.session_weights = list(accumulate(weight for weight, _ in self.sessions))
        self.noise_makers = [maker for _, maker in self.noise]
        self.noise_weights = list(accumulate(weight for weight, _ in self.noise))

    def _pid(self) -> int:
        self.next_pid += self.rng.randrange(1, 40)
        if self.next_pid > 4_000_000:  # pid_max wraps; long after fail2ban forgot it
            self.next_pid = 2000
        return self.next_pid

    @staticmethod
    def _sshd(pid: int) -> Callable[[str, str], Labelled]:
        """A function that writes labelled sshd lines for one connection (one pid)."""
        prefix = f"{HOST} sshd[{pid}]: "

        def say(label: str, message: str) -> Labelled:
            return label, prefix + message

        return say

    def _fingerprint(self) -> str:
        # 32 random bytes in unpadded base64, like sshd prints a SHA256 fingerprint
        return base64.b64encode(self.rng.getrandbits(256).to_bytes(32, "big")).decode()[:43]

    # -- benign sessions

    def publickey_login(self) -> list[Labelled]:
        pid, user = self._pid(), self.pools.pick(self.USERS)
        ip, port = self.pools.pick(self.pools.regulars), self.pools.port()
        say = self._sshd(pid)
        self.session_id += 1
        session, uid = self.session_id, self.UIDS[user]
        lines = []
        if self.rng.random() < 0.15:
            # an agent offering a stale key first: "Failed publickey" is not a failure
            lines.append(say(IGNORED, f"Failed publickey for {user} from {ip} port {port} ssh2: "
                                      f"RSA SHA256:{self._fingerprint()}"))
        lines += [
            say(IGNORED, f"Accepted publickey for {user} from {ip} port {port} ssh2: "
                         f"ED25519 SHA256:{self._fingerprint()}"),
            say(MISSED, f"pam_unix(sshd:session): session opened for user {user}(uid={uid}) by (uid=0)"),
            (MISSED, f"{HOST} systemd-logind[612]: New session {session} of user {user}."),
            say(IGNORED, f"Received disconnect from {ip} port {port}:11: disconnected by user"),
            say(MISSED, f"Disconnected from user {user} {ip} port {port}"),
            say(MISSED, f"pam_unix(sshd:session): session closed for user {user}"),
            (MISSED, f"{HOST} systemd-logind[612]: Session {session} logged out. Waiting for processes to exit."),
            (MISSED, f"{HOST} systemd-logind[612]: Removed session {session}."),
        ]
        return lines

    def password_login(self) -> list[Labelled]:
        pid, user = self._pid(), self.pools.pick(self.USERS)
        ip, port = self.pools.client(), self.pools.port()
        say = self._sshd(pid)
        return [
            say(IGNORED, f"Accepted password for {user} from {ip} port {port} ssh2"),
            say(MISSED, f"pam_unix(sshd:session): session opened for user {user}(uid={self.UIDS[user]}) by (uid=0)"),
            say(IGNORED, f"Received disconnect from {ip} port {port}:11: Session closed"),
            say(MISSED, f"pam_unix(sshd:session): session closed for user {user}"),
        ]

    # -- attacks (the ~10% that fail2ban matches)

    def invalid_user(self) -> list[Labelled]:
        pid, ip, port = self._pid(), self.pools.attacker(), self.pools.port()
        say = self._sshd(pid)
        user = self.pools.pick(self.ATTACK_USERS)
        if self.rng.random() < 0.03:
            user = ""  # sshd really logs "Invalid user  from ..." for an empty name
        lines = [say(MATCHED, f"Invalid user {user} from {ip} port {port}")]
        if self.rng.random() < 0.7:
            lines += [
                say(MISSED, "pam_unix(sshd:auth): check pass; user unknown"),
                say(IGNORED, "pam_unix(sshd:auth): authentication failure; "
                             f"logname= uid=0 euid=0 tty=ssh ruser= rhost={ip}"),
                say(MATCHED, f"Failed password for invalid user {user} from {ip} port {port} ssh2"),
            ]
        lines += [
            say(IGNORED, f"Received disconnect from {ip} port {port}:11: Bye Bye [preauth]"),
            say(IGNORED, f"Disconnected from invalid user {user} {ip} port {port} [preauth]"),
        ]
        return lines

    def root_bruteforce(self) -> list[Labelled]:
        pid, ip, port = self._pid(), self.pools.attacker(), self.pools.port()
        say = self._sshd(pid)
        pam = f"logname= uid=0 euid=0 tty=ssh ruser= rhost={ip}  user=root"
        lines = [say(IGNORED, f"pam_unix(sshd:auth): authentication failure; {pam}")]
        attempts = self.pools.pick((1, 2, 3, 6))
        lines += [say(MATCHED, f"Failed password for root from {ip} port {port} ssh2")] * attempts
        if attempts == 6:  # sshd's default MaxAuthTries
            lines += [
                say(MATCHED, "error: maximum authentication attempts exceeded for root "
                             f"from {ip} port {port} ssh2 [preauth]"),
                say(MISSED, f"Disconnecting authenticating user root {ip} port {port}: "
                            "Too many authentication failures [preauth]"),
                say(MISSED, f"PAM 5 more authentication failures; {pam}"),
            ]
        else:
            lines.append(say(IGNORED, f"Connection closed by authenticating user root {ip} port {port} [preauth]"))
        return lines

    def other_failures(self) -> list[Labelled]:
        """Rarer failure messages, one per connection, all matched by the stock filter."""
        pid, ip, port = self._pid(), self.pools.attacker(), self.pools.port()
        say = self._sshd(pid)
        user = self.pools.pick(self.ATTACK_USERS)
        kind = self.rng.randrange(7)
        if kind == 0:
            return [
                say(MATCHED, f"Failed none for invalid user {user} from {ip} port {port} ssh2"),
                say(IGNORED, f"Connection closed by invalid user {user} {ip} port {port} [preauth]"),
            ]
        if kind == 1:
            return [say(MATCHED, f"Failed keyboard-interactive/pam for invalid user {user} from {ip} port {port} ssh2")]
        if kind == 2:
            return [say(MATCHED, f"User {user} from {ip} not allowed because not listed in AllowUsers")]
        if kind == 3:
            return [say(MATCHED, f"User root from {ip} not allowed because "
                                 "none of user's groups are listed in AllowGroups")]
        if kind == 4:
            return [say(MATCHED, f"Received disconnect from {ip} port {port}:3: "
                                 "com.jcraft.jsch.JSchException: Auth fail [preauth]")]
        if kind == 5:
            return [say(MATCHED, f"error: PAM: Authentication failure for {user} from {ip}")]
        # a user name that itself contains "from <address>": the banned address must be
        # the real peer, and the line must still count once
        return [say(MATCHED, f"Failed password for invalid user from 1.2.3.4 from {ip} port {port} ssh2")]

    # -- sshd lines that are not failures in normal mode

    def scanner(self) -> list[Labelled]:
        pid, ip, port = self._pid(), self.pools.attacker(), self.pools.port()
        say = self._sshd(pid)
        kind = self.rng.randrange(6)
        if kind == 0:  # only the "ddos" mode counts these
            return [say(MISSED, f"Did not receive identification string from {ip} port {port}")]
        if kind == 1:
            return [say(MISSED, "error: kex_exchange_identification: Connection closed by remote host"),
                    say(IGNORED, f"Connection closed by {ip} port {port}")]
        if kind == 2:  # only the "extra" mode counts these
            return [say(MISSED, f"Unable to negotiate with {ip} port {port}: no matching host key type found. "
                                "Their offer: ssh-rsa,ssh-dss [preauth]")]
        if kind == 3:
            return [say(MISSED, f"banner exchange: Connection from {ip} port {port}: invalid format")]
        if kind == 4:
            return [say(IGNORED, f"Connection reset by {ip} port {port} [preauth]")]
        return [say(IGNORED, f"Connection closed by {ip} port {port} [preauth]")]

    def near_miss_session(self) -> list[Labelled]:
        """sshd lines that look like failures but must not count."""
        pid, ip, port = self._pid(), self.pools.client(), self.pools.port()
        say = self._sshd(pid)
        kind = self.rng.randrange(4)
        if kind == 0:  # a real account called "invalid"
            return [say(IGNORED, f"Accepted password for invalid from {ip} port {port} ssh2"),
                    say(MISSED, "pam_unix(sshd:session): session opened for user invalid(uid=1010) by (uid=0)")]
        if kind == 1:  # a user name containing "from <address>" cannot be a login name
            return [say(MISSED, f"Accepted password for from 1.2.3.4 from {ip} port {port} ssh2")]
        if kind == 2:
            return [say(MISSED, f"Postponed keyboard-interactive for bob from {ip} port {port} ssh2 [preauth]")]
        return [say(MISSED, "Server listening on 0.0.0.0 port 22."),
                say(MISSED, "Server listening on :: port 22.")]

    # -- other daemons: never matched (the filter is anchored on the sshd daemon)

    def cron(self) -> list[Labelled]:
        pid = self._pid()
        return [
            (MISSED, f"{HOST} CRON[{pid}]: pam_unix(cron:session): session opened for user root(uid=0) by (uid=0)"),
            (MISSED, f"{HOST} CRON[{pid}]: (root) CMD ({self.pools.pick(self.CRON_COMMANDS)})"),
            (MISSED, f"{HOST} CRON[{pid}]: pam_unix(cron:session): session closed for user root"),
        ]

    def systemd(self) -> list[Labelled]:
        unit = self.pools.pick(("apt-daily.service", "logrotate.service", "man-db.service",
                                "phpsessionclean.service", "certbot.service", "sysstat-collect.service"))
        name = unit.removesuffix(".service")
        return [
            (MISSED, f"{HOST} systemd[1]: Starting {unit} - {name} job..."),
            (MISSED, f"{HOST} systemd[1]: {unit}: Deactivated successfully."),
            (MISSED, f"{HOST} systemd[1]: Finished {unit} - {name} job."),
        ]

    def sudo(self) -> list[Labelled]:
        user = self.pools.pick(("alice", "bob"))
        uid = self.UIDS[user]
        command = self.pools.pick(self.SUDO_COMMANDS)
        return [
            (MISSED, f"{HOST} sudo:    {user} : TTY=pts/0 ; PWD=/home/{user} ; USER=root ; COMMAND={command}"),
            (MISSED, f"{HOST} sudo: pam_unix(sudo:session): session opened for user root(uid=0) by {user}(uid={uid})"),
            (MISSED, f"{HOST} sudo: pam_unix(sudo:session): session closed for user root"),
        ]

    def kernel(self) -> list[Labelled]:
        self.uptime += self.rng.random() * 3
        src, port = self.pools.attacker(), self.pools.pick((23, 445, 3389, 5900, 8080, 2375))
        return [(MISSED, f"{HOST} kernel: [{self.uptime:12.6f}] [UFW BLOCK] IN=eth0 OUT= "
                 f"MAC=52:54:00:12:34:56:52:54:00:65:43:21:08:00 SRC={src} DST=203.0.113.10 LEN=44 "
                 f"TOS=0x00 PREC=0x00 TTL=241 ID={self.rng.randrange(65536)} PROTO=TCP "
                 f"SPT={self.pools.port()} DPT={port} WINDOW=1024 RES=0x00 SYN URGP=0")]

    def other_daemons(self) -> list[Labelled]:
        pid, ip = self._pid(), self.pools.attacker()
        kind = self.rng.randrange(4)
        if kind == 0:
            return [(MISSED, f"{HOST} postfix/smtpd[{pid}]: connect from unknown[{ip}]"),
                    (MISSED, f"{HOST} postfix/smtpd[{pid}]: disconnect from unknown[{ip}] "
                             "ehlo=1 auth=0/1 quit=1 commands=2/3")]
        if kind == 1:
            source = f"162.159.200.{self.rng.randrange(1, 255)}"
            return [(MISSED, f"{HOST} chronyd[540]: Selected source {source} (2.debian.pool.ntp.org)")]
        if kind == 2:
            return [(MISSED, f"{HOST} dhclient[733]: DHCPREQUEST for 203.0.113.10 on eth0 to 203.0.113.1 port 67"),
                    (MISSED, f"{HOST} dhclient[733]: DHCPACK of 203.0.113.10 from 203.0.113.1")]
        return [(MISSED, f'{HOST} rsyslogd[421]: [origin software="rsyslogd" swVersion="8.2302.0" '
                         'x-pid="421"] rsyslogd was HUPed')]

    def near_miss_other_daemon(self) -> list[Labelled]:
        """Failure wording inside other daemons' messages: not sshd, so never a match."""
        pid, ip, port = self._pid(), self.pools.attacker(), self.pools.port()
        kind = self.rng.randrange(4)
        if kind == 0:
            return [(MISSED, f"{HOST} myapp[{pid}]: audit: Failed password for root from {ip} port {port} ssh2")]
        if kind == 1:
            return [(MISSED, f"{HOST} sshguard[{pid}]: Attack from \"{ip}\" on service SSH with danger 10.")]
        if kind == 2:
            return [(MISSED, f"{HOST} sudo: pam_unix(sudo:auth): authentication failure; "
                             "logname=bob uid=1001 euid=0 tty=/dev/pts/1 ruser=bob rhost=  user=bob")]
        return [(MISSED, f"{HOST} postfix/smtpd[{pid}]: warning: unknown[{ip}]: "
                         f"SASL LOGIN authentication failed: Invalid user admin from {ip}")]

    # -- the mixer

    def lines(self, count: int) -> Iterator[Labelled]:
        """Interleave up to three live sshd connections with single noise blocks."""
        rng = self.rng
        active: list[list[Labelled]] = []
        pending: list[Labelled] = []  # rest of the current noise block
        emitted = 0
        while emitted < count:
            if pending:
                yield pending.pop(0)
                emitted += 1
                continue
            if rng.random() < 0.30:
                pending = self.noise_makers[weighted_index(rng, self.noise_weights)]()
                continue
            while len(active) < 3 and (not active or rng.random() < 0.3):
                block = self.session_makers[weighted_index(rng, self.session_weights)]()
                block.reverse()  # pop() from the end is O(1)
                active.append(block)
            session = active[rng.randrange(len(active))]
            yield session.pop()
            emitted += 1
            if not session:
                active.remove(session)


# --------------------------------------------------------------------------- apache


class Hit(NamedTuple):
    """One access-log request before its timestamp is known."""

    label: str
    ip: str
    request: str  # method and target
    status: int
    size: int
    referer: str
    agent: str


class AccessLog:
    """Apache "combined" lines for one web site, with secret scans and near-misses."""

    _CHROME = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko)"
    _SAFARI = "AppleWebKit/605.1.15 (KHTML, like Gecko)"
    AGENTS = (
        f"{_CHROME} Chrome/130.0.0.0 Safari/537.36",
        f"Mozilla/5.0 (Macintosh; Intel Mac OS X 14_6) {_SAFARI} Version/18.0 Safari/605.1.15",
        "Mozilla/5.0 (X11; Linux x86_64; rv:132.0) Gecko/20100101 Firefox/132.0",
        f"Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) {_SAFARI} Version/18.1 Mobile/15E148 Safari/604.1",
        "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
        "Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)",
        "curl/8.5.0",
    )
    SCAN_AGENTS = (
        f"{_CHROME} Chrome/91.0.4472.124 Safari/537.36",
        "python-requests/2.31.0", "Go-http-client/1.1", "curl/7.88.1", "l9explore/1.2.2",
        "Mozilla/5.0 (l9scan/2.0.; +https://leakix.net)",
    )
    PAGES = (
        ("/", 200, 18_432), ("/blog/", 200, 24_310), ("/blog/2026/11/nftables-sets/", 200, 31_877),
        ("/blog/2026/10/django-celery-beat/", 200, 28_640), ("/about/", 200, 9_120),
        ("/contact/", 200, 7_734), ("/feed.xml", 200, 52_019), ("/robots.txt", 200, 67),
        ("/sitemap.xml", 200, 4_410), ("/favicon.ico", 404, 196),
        ("/api/v1/items?page=2&sort=-created", 200, 3_211), ("/search?q=nftables+sets", 200, 12_881),
    )
    ASSETS = (
        ("/static/css/site.8f3a1c.css", 20_117), ("/static/js/app.4b2e9d.js", 88_305),
        ("/static/img/logo.svg", 4_096), ("/static/img/hero.webp", 141_877),
        ("/static/fonts/inter-var.woff2", 97_108), ("/static/js/environment.js", 1_204),
    )
    POSTS = (("/login/", 302), ("/login/", 200), ("/contact/", 302), ("/api/v1/items", 201))
    # matched by apache-envscan when answered 400/403/404 to GET, POST or HEAD
    SECRETS = (
        "/.env", "/.env.production", "/.env.local", "/api/.env", "/backend/.env.bak", "/laravel/.env",
        "/.git/config", "/.git/HEAD", "/app/.git/index", "/docker-compose.yml", "/docker-compose.prod.yaml",
        "/.aws/credentials", "/.aws/config", "/proc/self/environ", "/index.php?page=../../../../proc/self/environ",
        "/@fs/etc/passwd", "/.streamlit/secrets.toml", "/.envoy",
    )
    OTHER_SCANS = (
        "/wp-login.php", "/xmlrpc.php", "/phpmyadmin/index.php", "/vendor/phpunit/phpunit/src/Util/PHP/eval-stdin.php",
        "/cgi-bin/luci/;stok=/locale", "/boaform/admin/formLogin", "/.well-known/security.txt",
    )

    def __init__(self, rng: random.Random, pools: Pools) -> None:
        self.rng = rng
        self.pools = pools
        # (weight, maker); weights give ~10% secret scans
        table: list[tuple[float, Callable[[], Hit]]] = [
            (38, self.page),
            (40, self.asset),
            (3, self.post),
            (10, self.secret_scan),
            (5, self.other_scan),
            (4, self.near_miss),
        ]
        self.makers = [maker for _, maker in table]
        self.weights = list(accumulate(weight for weight, _ in table))

    def visitor(self, request: str, status: int, size: int, referer: str = "-") -> Hit:
        """A request from an ordinary browser or crawler."""
        return Hit(MISSED, self.pools.client(), request, status, size, referer, self.pools.pick(self.AGENTS))

    def scanner(self, label: str, request: str, status: int, size: int = 196) -> Hit:
        """A request from a vulnerability scanner."""
        return Hit(label, self.pools.attacker(), request, status, size, "-", self.pools.pick(self.SCAN_AGENTS))

    def page(self) -> Hit:
        path, status, size = self.pools.pick(self.PAGES)
        method = "HEAD" if self.rng.random() < 0.02 else "GET"
        if status == 200 and self.rng.random() < 0.1:
            status, size = 304, 0
        referer = self.pools.pick(("-", "https://www.google.com/", "https://example.org/blog/"))
        return self.visitor(f"{method} {path}", status, size, referer)

    def asset(self) -> Hit:
        path, size = self.pools.pick(self.ASSETS)
        if self.rng.random() < 0.25:
            return self.visitor(f"GET {path}", 304, 0, "https://example.org/")
        return self.visitor(f"GET {path}", 200, size, "https://example.org/")

    def post(self) -> Hit:
        path, status = self.pools.pick(self.POSTS)
        return self.visitor(f"POST {path}", status, 512, "https://example.org/login/")

    def secret_scan(self) -> Hit:
        path = self.pools.pick(self.SECRETS)
        method = self.pools.pick(("GET", "GET", "GET", "GET", "POST", "HEAD"))
        if self.rng.random() < 0.05:  # proxy-style absolute URL
            path = "http://203.0.113.10" + path
        return self.scanner(MATCHED, f"{method} {path}", self.pools.pick((404, 404, 404, 404, 403, 400)))

    def other_scan(self) -> Hit:
        return self.scanner(MISSED, f"GET {self.pools.pick(self.OTHER_SCANS)}", 404)

    def near_miss(self) -> Hit:
        """Requests that look like secret scans but that apache-envscan must not match."""
        kind = self.rng.randrange(7)
        if kind == 0:  # a secret path the server answered: not a failed probe
            return self.scanner(MISSED, f"GET {self.pools.pick(self.SECRETS)}", self.pools.pick((200, 301)), 0)
        if kind == 1:  # "env" without the dot
            return self.visitor("GET /environment.html", 404, 196)
        if kind == 2:  # ".envoy" answered 200/301 (with a 4xx the filter's ".env[^ ]*" does match it)
            return self.visitor("GET /.envoy", self.pools.pick((200, 301)), 320)
        if kind == 3:  # ".env" in the query string of a page that exists
            return self.visitor("GET /search?q=.env+file+format", 200, 11_402, "https://example.org/")
        if kind == 4:  # a method the filter does not list
            return self.scanner(MISSED, f"{self.pools.pick(('OPTIONS', 'PUT', 'PROPFIND'))} /.env", 405, 224)
        if kind == 5:  # docker-compose only counts right under the web root
            return self.scanner(MISSED, "GET /app/docker-compose.yml", 404)
        return self.scanner(MISSED, "GET /.gitignore", 200, 74)

    def lines(self, count: int) -> Iterator[Labelled]:
        rng = self.rng
        for _ in range(count):
            hit = self.makers[weighted_index(rng, self.weights)]()
            size = str(hit.size) if hit.size else "-"
            # the timestamp is spliced in later; "\0" marks where it goes
            request = f'"{hit.request} HTTP/1.1" {hit.status} {size}'
            yield hit.label, f'{hit.ip} - - [\0] {request} "{hit.referer}" "{hit.agent}"'


# --------------------------------------------------------------------------- files


def write_auth_log(path: Path, count: int, seed: int) -> dict[str, int]:
    rng = random.Random(seed)
    log = SshdLog(rng, Pools(rng))
    totals = {MATCHED: 0, IGNORED: 0, MISSED: 0}

    def stamped() -> Iterator[str]:
        for stamp, (label, text) in zip(timestamps(count, syslog_stamp), log.lines(count), strict=True):
            totals[label] += 1
            yield f"{stamp} {text}"

    write_lines(path, stamped())
    return totals


def write_access_log(path: Path, count: int, seed: int) -> dict[str, int]:
    rng = random.Random(seed + 1)
    log = AccessLog(rng, Pools(rng))
    totals = {MATCHED: 0, IGNORED: 0, MISSED: 0}

    def stamped() -> Iterator[str]:
        for stamp, (label, text) in zip(timestamps(count, apache_stamp), log.lines(count), strict=True):
            totals[label] += 1
            yield text.replace("\0", stamp, 1)

    write_lines(path, stamped())
    return totals


LOGS: dict[str, Callable[[Path, int, int], dict[str, int]]] = {
    "auth": write_auth_log,
    "access": write_access_log,
}


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def generator_key(count: int, seed: int) -> str:
    """Identifies what produced a cached file: this source code, the size and the seed."""
    source = Path(__file__).read_bytes()
    return hashlib.sha256(source + f"|{count}|{seed}".encode()).hexdigest()[:16]


def build_log(kind: str, path: Path, count: int, seed: int, key: str) -> dict[str, object]:
    """Write one log and describe it for the manifest (runs in a worker process)."""
    expected = LOGS[kind](path, count, seed)
    return {"key": key, "lines": count, "bytes": path.stat().st_size, "sha256": sha256_of(path),
            "expected": expected}


def ensure_logs(cache_dir: Path, count: int, seed: int = DEFAULT_SEED, force: bool = False,
                verbose: bool = True) -> dict[str, dict[str, object]]:
    """Write (or reuse from the cache) both logs; return their manifest entries.

    Each entry: path, key, lines, bytes, sha256, expected (the generator's own counts).
    """
    cache_dir.mkdir(parents=True, exist_ok=True)
    manifest_path = cache_dir / "manifest.json"
    manifest: dict[str, dict[str, object]] = {}
    if manifest_path.exists():
        manifest = json.loads(manifest_path.read_text())
    key = generator_key(count, seed)
    paths = {kind: cache_dir / f"{kind}-{count}.log" for kind in LOGS}

    def is_fresh(path: Path) -> bool:
        entry = manifest.get(path.name)
        return (not force and entry is not None and entry.get("key") == key and path.exists()
                and path.stat().st_size == entry.get("bytes"))

    stale = [kind for kind, path in paths.items() if not is_fresh(path)]
    if stale:
        if verbose:
            names = ", ".join(str(paths[kind]) for kind in stale)
            print(f"generating {names} ({count:,} lines each)...", file=sys.stderr, flush=True)
        # the two logs are independent: one process each halves the wait on two cores
        with ProcessPoolExecutor(max_workers=len(stale)) as pool:
            futures = {kind: pool.submit(build_log, kind, paths[kind], count, seed, key) for kind in stale}
            for kind, future in futures.items():
                manifest[paths[kind].name] = future.result()
        manifest_path.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return {kind: {"path": str(path), **manifest[path.name]} for kind, path in paths.items()}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=(
            "Write the benchmark's deterministic logs: an sshd auth.log (syslog format) and an "
            "Apache combined access log, each with ~10% attack lines and tricky near-misses. "
            "Files are cached under --cache-dir and only rewritten when this script, the size "
            "or the seed changes. Prints the manifest (paths, sha256, expected counts) as JSON."
        ),
    )
    here = Path(__file__).resolve().parent
    parser.add_argument("--lines", type=int, default=DEFAULT_LINES,
                        help="lines per log (default: %(default)s)")
    parser.add_argument("--quick", action="store_true", help="shorthand for --lines 100000")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED,
                        help="random seed; the same seed gives the same bytes (default: %(default)s)")
    parser.add_argument("--cache-dir", type=Path, default=here / ".cache",
                        help="where the logs go (default: bench/.cache)")
    parser.add_argument("--force", action="store_true", help="rewrite even if the cache is fresh")
    parser.add_argument("--print", action="store_true",
                        help="also print every generated line with its expected class (for small --lines)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    count = 100_000 if args.quick else args.lines
    manifest = ensure_logs(args.cache_dir, count, args.seed, args.force)
    if args.print:
        # regenerate in memory to show labels next to lines (debugging the templates)
        rng = random.Random(args.seed)
        for label, text in SshdLog(rng, Pools(rng)).lines(count):
            print(f"{label:8} {text}")
        rng = random.Random(args.seed + 1)
        for label, text in AccessLog(rng, Pools(rng)).lines(count):
            print(f"{label:8} {text}")
    print(json.dumps(manifest, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
