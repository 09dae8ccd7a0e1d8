#!/usr/bin/env python3
"""The panel at a year of attacks: each page's latency against a database seeded by `manage.py seeddemo`.

    .venv/bin/python bench/panel.py --quick      # 20,000 failures, well under a minute
    .venv/bin/python bench/panel.py              # 1,000,000 failures, 50,000 bans, 365 days, 10 jails
    .venv/bin/python bench/panel.py --help

Issue 12's measurement. By default a fresh SQLite file in a temporary directory: migrated, the
built-in filters installed (as scripts/run.sh does), then seeded by `manage.py seeddemo` (its time is
reported). With --database-url, an existing database is used as it is (seed it first). Then the
web part is started exactly as production starts it: the gunicorn command line
`manage.py runstack` builds (its plan(), --preload, 2 workers unless --web-workers), on a free
loopback port, with the firewall off and no Celery. A bench admin logs in through the login form and
requests each page many times in a row over one keep-alive connection (after one warm-up request):
the dashboard for each period, its JSON, the bans list without and with searches, a ban's page, the
jails list, a jail's page, the filters list, the audit log, the users page and the filter tester.

Reported per page: median and p95 latency (request sent -> body read) and the response size, as a
table on stdout and JSON in bench/results/panel.json (panel_quick.json with --quick). Then the
"does a slow request block the others?" probes: while --probe-loaders clients load the month
dashboard again and again, and while one client more than there are web workers downloads the bans
export again and again (a client told the panel is busy waits half a second), another requests
/bans/; its latency then, against /bans/ alone.

Figures only: nothing here asserts a timing. A page that does not answer 200 is reported as such
(and the run exits 1). The machine's load is recorded with the figures: on a shared machine, read
them next to it.
"""

from __future__ import annotations

import argparse
import datetime as dt
import http.client
import json
import os
import platform
import re
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
RESULTS = BENCH_DIR / "results"
PYTHON = sys.executable

FULL = {"failures": 1_000_000, "bans": 50_000, "days": 365, "jails": 10, "requests": 20}
QUICK = {"failures": 20_000, "bans": 1_000, "days": 30, "jails": 10, "requests": 10}
BENCH_USER = "bench-admin"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Median and p95 latency of every panel page against a database seeded by manage.py seeddemo "
                    "(issue 12). Figures only, no timing assertions.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--quick", action="store_true",
                        help=f"small scale: {QUICK['failures']:,} failures, {QUICK['bans']:,} bans, {QUICK['days']} "
                             f"days, {QUICK['requests']} requests a page (default scale: {FULL['failures']:,} "
                             f"failures, {FULL['bans']:,} bans, {FULL['days']} days, {FULL['jails']} jails)")
    parser.add_argument("--failures", type=int, default=None, help="seeddemo --failures (overrides the scale's)")
    parser.add_argument("--bans", type=int, default=None, help="seeddemo --bans")
    parser.add_argument("--days", type=int, default=None, help="seeddemo --days")
    parser.add_argument("--jails", type=int, default=None, help="seeddemo --jails")
    parser.add_argument("--seed", type=int, default=1, help="seeddemo --seed: the same history on every run")
    parser.add_argument("--database-url", default=None,
                        help="use this database as it is (already seeded; e.g. sqlite:////tmp/demo.sqlite3 or "
                             "postgres:///ips_demo) instead of a fresh SQLite file seeded here")
    parser.add_argument("--requests", type=int, default=None, help="timed requests per page (after one warm-up)")
    parser.add_argument("--page-seconds", type=float, default=90.0,
                        help="stop timing a page after this long, once it has 5 requests")
    parser.add_argument("--web-workers", type=int, default=2, help="gunicorn workers (runstack's --web-workers)")
    parser.add_argument("--probe-loaders", type=int, default=1,
                        help="clients loading the month dashboard during the blocking probe")
    parser.add_argument("--probe-requests", type=int, default=10, help="/bans/ requests during the probe")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory (database, gunicorn log)")
    parser.add_argument("--json-out", type=Path, default=None,
                        help="where the JSON goes (default bench/results/panel.json, panel_quick.json with --quick)")
    args = parser.parse_args(argv)
    scale = QUICK if args.quick else FULL
    for key in ("failures", "bans", "days", "jails", "requests"):
        if getattr(args, key) is None:
            setattr(args, key, scale[key])
    if args.json_out is None:
        args.json_out = RESULTS / ("panel_quick.json" if args.quick else "panel.json")
    return args


# --- the stack -------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def environment(database_url: str, workdir: Path) -> dict[str, str]:
    """The panel's environment: this database, plain HTTP on loopback (as scripts/run.sh sets it for
    a loopback bind), no firewall, logs in the temporary directory."""
    env = dict(os.environ)
    env.update({
        "DATABASE_URL": database_url,
        "IPS_SECRET_KEY": env.get("IPS_SECRET_KEY") or secrets.token_urlsafe(50),
        "IPS_SSL_REDIRECT": "false", "IPS_SECURE_COOKIES": "false", "IPS_HSTS_SECONDS": "0",
        "IPS_DEBUG": "false", "IPS_FIREWALL": "off",
        "IPS_PANEL_LOG": str(workdir / "panel.log"),
        "IPS_STATIC_ROOT": str(workdir / "static"),
        "IPS_RUN_DIR": str(workdir / "run"),  # the web workers' slow lanes (jails/slowlane.py)
    })
    return env


def manage(env: dict[str, str], *args: str, echo: bool = False) -> str:
    """`manage.py ARGS` in the repository; its stdout (its stderr passed through when `echo`)."""
    done = subprocess.run([PYTHON, "manage.py", *args], cwd=REPO, env=env, text=True, stdout=subprocess.PIPE,
                          stderr=None if echo else subprocess.PIPE, check=False)
    if done.returncode != 0:
        raise SystemExit(f"manage.py {' '.join(args)} failed ({done.returncode}):\n{done.stdout}\n{done.stderr or ''}")
    return done.stdout


HELPER = r"""
import json, sys
from django.contrib.auth.models import User
from bans.models import Ban, Failure
from jails.access import users
from jails.access.audit import Actor
from jails.access.roles import Role
name, password = sys.argv[1], sys.argv[2]
user = User.objects.filter(username=name).first()
if user is None:
    user = User(username=name, is_superuser=True, is_staff=True)
    user.set_password(password)
    users.create_user(user, Role.ADMIN.group_name, Actor.command())
else:
    user.set_password(password)
    user.save()
ban = Ban.objects.order_by("-started_at", "-pk").first()
top = (Failure.objects.values_list("address", flat=True).order_by("-time").first())
print(json.dumps({"ban": ban.pk if ban else None, "ban_network": ban.network if ban else None,
                  "address": top, "failures": Failure.objects.count(), "bans": Ban.objects.count()}))
"""


def prepare(env: dict[str, str], password: str) -> dict[str, Any]:
    """The bench admin (created or its password set) and what the page list needs from the data."""
    done = subprocess.run([PYTHON, "manage.py", "shell", "-c", HELPER.replace("sys.argv[1], sys.argv[2]",
                                                                             f"{BENCH_USER!r}, {password!r}")],
                          cwd=REPO, env=env, text=True, capture_output=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"preparing the bench user failed:\n{done.stdout}\n{done.stderr}")
    found: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return found


def gunicorn_argv(env: dict[str, str], bind: str, workers: int, control_socket: Path) -> list[str]:
    """The web child's command line as `manage.py runstack` plans it (the production one)."""
    code = ("import json, django; django.setup(); "
            "from watchers.management.commands.runstack import Command; "
            f"plan = Command().plan({{'bind': {bind!r}, 'web_workers': {workers}, 'followers': 0, "
            f"'concurrency': 1, 'no_beat': True, 'beat_schedule': '', 'control_socket': {str(control_socket)!r}}}); "
            "print(json.dumps(next(c.argv for c in plan if c.name == 'web')))")
    done = subprocess.run([PYTHON, "-c", code], cwd=REPO, env={**env, "DJANGO_SETTINGS_MODULE": "config.settings"},
                          text=True, capture_output=True, check=True)
    argv: list[str] = json.loads(done.stdout.strip().splitlines()[-1])
    return argv


def start_web(argv: list[str], env: dict[str, str], log_path: Path, port: int) -> subprocess.Popen[bytes]:
    with open(log_path, "ab") as log:
        process = subprocess.Popen(argv, cwd=REPO, env=env, stdout=log, stderr=log, start_new_session=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"gunicorn exited ({process.returncode}); see {log_path}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return process
        except OSError:
            time.sleep(0.2)
    stop_web(process)
    raise SystemExit(f"gunicorn did not listen on port {port} within 60 s; see {log_path}")


def stop_web(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


# --- a logged-in client ----------------------------------------------------------------------------


class Client:
    """One keep-alive HTTP connection with the session's cookies (http.client: nothing between the
    clock and the socket but the request itself)."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.cookies: dict[str, str] = {}
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=600)

    def request(self, method: str, path: str, body: str | None = None,
                headers: dict[str, str] | None = None) -> tuple[int, bytes, dict[str, str]]:
        sent = {"Host": f"127.0.0.1:{self.port}", **(headers or {})}
        if self.cookies:
            sent["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        for attempt in (1, 2):
            try:
                self.conn.request(method, path, body=body, headers=sent)
                response = self.conn.getresponse()
                data = response.read()
                break
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                self.conn.close()  # gunicorn's sync workers close idle keep-alive connections: reconnect once
                self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=600)
                if attempt == 2:
                    raise
        for header, value in response.getheaders():
            if header.lower() == "set-cookie":
                name, _, rest = value.partition("=")
                self.cookies[name.strip()] = rest.split(";", 1)[0]
        return response.status, data, {k.lower(): v for k, v in response.getheaders()}

    def login(self, username: str, password: str) -> None:
        status, page, _ = self.request("GET", "/accounts/login/")
        match = re.search(rb'name="csrfmiddlewaretoken" value="([^"]+)"', page)
        if status != 200 or match is None:
            raise SystemExit(f"the login page answered {status} without a CSRF token")
        form = urllib.parse.urlencode({"username": username, "password": password,
                                       "csrfmiddlewaretoken": match.group(1).decode(), "next": "/"})
        status, _, headers = self.request("POST", "/accounts/login/", form, {
            "Content-Type": "application/x-www-form-urlencoded", "Referer": f"http://127.0.0.1:{self.port}/accounts/login/"})
        if status != 302 or "sessionid" not in self.cookies:
            raise SystemExit(f"logging in as {username} failed (status {status}, location {headers.get('location')})")

    def timed(self, path: str) -> tuple[float, int, int]:
        began = time.perf_counter()
        status, body, _ = self.request("GET", path)
        return time.perf_counter() - began, status, len(body)


# --- measuring -------------------------------------------------------------------------------------


@dataclass
class PageResult:
    name: str
    path: str
    requests: int = 0
    statuses: list[int] = field(default_factory=list)
    median_ms: float = 0.0
    p95_ms: float = 0.0
    min_ms: float = 0.0
    max_ms: float = 0.0
    bytes: int = 0
    samples_ms: list[float] = field(default_factory=list)


def percentile(values: list[float], share: float) -> float:
    """The nearest-rank percentile (p95 of 20 samples is the 19th smallest)."""
    ordered = sorted(values)
    rank = max(1, -(-int(share * 100) * len(ordered) // 100))
    return ordered[min(rank, len(ordered)) - 1]


def summarize(result: PageResult) -> PageResult:
    samples = result.samples_ms
    result.requests = len(samples)
    result.median_ms = round(statistics.median(samples), 1)
    result.p95_ms = round(percentile(samples, 0.95), 1)
    result.min_ms, result.max_ms = round(min(samples), 1), round(max(samples), 1)
    result.samples_ms = [round(s, 1) for s in samples]
    return result


def measure(client: Client, name: str, path: str, requests: int, budget: float) -> PageResult:
    result = PageResult(name, path)
    _, status, _ = client.timed(path)  # warm-up: connection, the worker's first render of this page
    result.statuses.append(status)
    began = time.monotonic()
    for _ in range(requests):
        seconds, status, size = client.timed(path)
        result.samples_ms.append(seconds * 1000)
        result.statuses.append(status)
        result.bytes = size
        if len(result.samples_ms) >= 5 and time.monotonic() - began > budget:
            break
    result.statuses = sorted(set(result.statuses))
    return summarize(result)


def pages(found: dict[str, Any]) -> list[tuple[str, str]]:
    listed = [(f"dashboard {period}", f"/?period={period}") for period in ("hour", "day", "week", "month")]
    listed.append(("dashboard data month (JSON)", "/dashboard/data/?period=month"))
    listed.append(("bans list", "/bans/"))
    if found.get("address"):
        listed.append(("bans search address", "/bans/?" + urllib.parse.urlencode({"q": found["address"]})))
        first_two = ".".join(str(found["address"]).split(".")[:2]) if "." in str(found["address"]) else None
        if first_two:
            listed.append(("bans search /16", "/bans/?" + urllib.parse.urlencode({"q": f"{first_two}.0.0/16"})))
    listed.append(("bans list live", "/bans/?state=live"))
    listed.append(("bans list by address", "/bans/?sort=network"))
    listed.append(("bans list by end", "/bans/?sort=-until"))
    listed.append(("failures list", "/failures/"))
    listed.append(("failures of a jail, a day back", "/failures/?" + urllib.parse.urlencode(
        {"jail": "sshd", "since": (dt.datetime.now(dt.UTC) - dt.timedelta(days=1)).strftime("%Y-%m-%dT%H:%M")})))
    if found.get("address"):
        listed.append(("failures of an address", "/failures/?" + urllib.parse.urlencode({"q": found["address"]})))
    listed.append(("dashboard custom 10 days", "/?" + urllib.parse.urlencode({
        "period": "custom", "since": (dt.datetime.now(dt.UTC) - dt.timedelta(days=10)).strftime("%Y-%m-%dT%H:%M"),
        "until": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M")})))
    if found.get("ban"):
        listed.append(("ban page", f"/bans/{found['ban']}/"))
    listed += [("jails list", "/jails/"), ("jail page sshd", "/jails/sshd/"), ("filters list", "/filters/"),
               ("audit log", "/audit/"), ("users", "/users/"), ("tester (GET)", "/filters/test/")]
    return listed


def blocking_probe(port: int, cookies: dict[str, str], loaders: int, requests: int, alone_ms: float,
                   load_path: str = "/?period=month") -> dict[str, Any]:
    """/bans/ while `loaders` clients load `load_path` without pause (a client told the panel is
    busy, 503, waits half a second before asking again)."""
    stop = threading.Event()
    loads: list[float] = []
    busy: list[int] = []

    def load() -> None:
        client = Client(port)
        client.cookies = dict(cookies)
        while not stop.is_set():
            seconds, status, _ = client.timed(load_path)
            if status == 503:
                busy.append(1)
                time.sleep(0.5)
            else:
                loads.append(seconds * 1000)

    threads = [threading.Thread(target=load, daemon=True) for _ in range(loaders)]
    for thread in threads:
        thread.start()
    time.sleep(0.3)  # the loaders' first requests are in the workers
    probe = Client(port)
    probe.cookies = dict(cookies)
    samples = []
    for _ in range(requests):
        seconds, _, _ = probe.timed("/bans/")
        samples.append(seconds * 1000)
        time.sleep(0.05)
    stop.set()
    for thread in threads:
        thread.join(timeout=600)
    return {"loaders": loaders, "loading": load_path, "page": "/bans/", "requests": len(samples),
            "median_ms": round(statistics.median(samples), 1), "p95_ms": round(percentile(samples, 0.95), 1),
            "max_ms": round(max(samples), 1), "alone_median_ms": round(alone_ms, 1),
            "loads": len(loads), "loads_told_busy": len(busy),
            "load_median_ms": round(statistics.median(loads), 1) if loads else None,
            "samples_ms": [round(s, 1) for s in samples]}


# --- the run ---------------------------------------------------------------------------------------


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def table(results: list[PageResult]) -> str:
    width = max(len(r.name) for r in results)
    lines = [f"{'page':<{width}}  {'n':>3}  {'median ms':>10}  {'p95 ms':>10}  {'max ms':>10}  {'bytes':>9}  status"]
    for r in results:
        lines.append(f"{r.name:<{width}}  {r.requests:>3}  {r.median_ms:>10.1f}  {r.p95_ms:>10.1f}  {r.max_ms:>10.1f}  "
                     f"{r.bytes:>9,}  {','.join(map(str, r.statuses))}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="panel-bench-"))
    database_url = args.database_url or f"sqlite:///{workdir / 'panel.sqlite3'}"
    env = environment(database_url, workdir)
    env["IPS_WEB_WORKERS"] = str(args.web_workers)
    report: dict[str, Any] = {
        "benchmark": "panel", "when": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "load_at_start": load_average()},
        "database": "given" if args.database_url else "sqlite (fresh, seeded here)",
        "vendor": database_url.split(":", 1)[0],
    }
    print(f"panel bench: work directory {workdir}; load {report['machine']['load_at_start']}", file=sys.stderr)
    manage(env, "migrate", "--noinput", "-v", "0")
    manage(env, "installfilters")
    if args.database_url is None:
        seed_args = ["seeddemo", "--failures", str(args.failures), "--bans", str(args.bans), "--days", str(args.days),
                     "--jails", str(args.jails), "--seed", str(args.seed)]
        began = time.monotonic()
        summary = manage(env, *seed_args, echo=True)
        report["seeding"] = {"command": "manage.py " + " ".join(seed_args),
                             "seconds": round(time.monotonic() - began, 1), "summary": summary.strip(),
                             "load_after": load_average()}
        print(summary.strip(), file=sys.stderr)
    password = secrets.token_urlsafe(18)
    found = prepare(env, password)
    report["data"] = {"failures": found["failures"], "bans": found["bans"]}
    port = free_port()
    argv_web = gunicorn_argv(env, f"127.0.0.1:{port}", args.web_workers, workdir / "gunicorn.ctl")
    report["web"] = {"argv": [Path(a).name if a == PYTHON else a for a in argv_web], "workers": args.web_workers}
    web = start_web(argv_web, env, workdir / "gunicorn.log", port)
    failed = False
    try:
        client = Client(port)
        client.login(BENCH_USER, password)
        results: list[PageResult] = []
        report["load_before_pages"] = load_average()
        for name, path in pages(found):
            result = measure(client, name, path, args.requests, args.page_seconds)
            failed |= result.statuses != [200]
            results.append(result)
            print(f"  {name}: median {result.median_ms:.1f} ms, p95 {result.p95_ms:.1f} ms, {result.bytes:,} bytes "
                  f"({result.requests} requests, status {','.join(map(str, result.statuses))})", file=sys.stderr)
        alone = next(r.median_ms for r in results if r.path == "/bans/")
        probes = [blocking_probe(port, client.cookies, args.probe_loaders, args.probe_requests, alone),
                  # exports stream for seconds: they may hold all workers but one (jails/slowlane.py)
                  blocking_probe(port, client.cookies, args.web_workers + 1, args.probe_requests, alone,
                                 load_path="/bans/export.csv")]
        report["load_after_pages"] = load_average()
    finally:
        stop_web(web)
    report["pages"] = [asdict(r) for r in results]
    report["blocking_probes"] = probes
    report["scale"] = {k: getattr(args, k) for k in ("failures", "bans", "days", "jails", "seed")}
    report["requests_per_page"] = args.requests
    args.json_out.parent.mkdir(parents=True, exist_ok=True)
    args.json_out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")

    scale = report.get("seeding", {}).get("command", f"database {args.database_url}")
    print(f"panel at {found['failures']:,} failures, {found['bans']:,} bans ({scale})")
    if "seeding" in report:
        print(f"seeding: {report['seeding']['seconds']} s")
    print(f"gunicorn: {args.web_workers} workers (runstack's command line); load 1/5/15 min before the pages "
          f"{report['load_before_pages']}, after {report['load_after_pages']}; {os.cpu_count()} CPUs")
    print(table(results))
    for probe in probes:
        print(f"blocking probe: /bans/ while {probe['loaders']} client(s) load {probe['loading']}: median "
              f"{probe['median_ms']:.1f} ms, p95 {probe['p95_ms']:.1f} ms, max {probe['max_ms']:.1f} ms "
              f"(alone: median {probe['alone_median_ms']:.1f} ms; the loads meanwhile: median "
              f"{probe['load_median_ms']} ms over {probe['loads']}, {probe['loads_told_busy']} told busy)")
    print(f"JSON: {args.json_out.relative_to(REPO) if args.json_out.is_relative_to(REPO) else args.json_out}")
    if args.keep:
        print(f"kept: {workdir}", file=sys.stderr)
    else:
        shutil.rmtree(workdir)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
