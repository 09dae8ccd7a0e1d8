"""Micro-benchmark: the literal prefilter in front of the stock sshd filter.

Builds a deterministic synthetic auth.log (default 1M lines, about 10% sshd
failures, the rest realistic noise) and times:

  (a) a plain Python loop: cut the date, prefregex, then every failregex, per line;
  (b) Prefilter.candidate_offsets over the whole buffer, then (a)'s per-line work
      on the candidate lines only;
  (c) Prefilter.candidate_masks, then on each candidate line only the failregexes
      whose literals the line holds.

Both find the same lines (checked). Run:  .venv/bin/python bench/micro_prefilter.py
[--lines N] [--fail2ban] (the latter also times Debian's fail2ban-regex on the file).
"""

from __future__ import annotations

import argparse
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from jails.engine.ini import load_filter_file  # noqa: E402
from jails.engine.literals import Prefilter, date_cut_for  # noqa: E402
from jails.engine.regex import translate  # noqa: E402

SSHD_CONF = REPO.parent / "shared" / "corpus" / "fail2ban" / "config" / "filter.d" / "sshd.conf"

MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
USERS = ("root", "admin", "oracle", "test", "ubuntu", "git", "postgres", "pi", "guest", "deploy")


def _ip(rng: random.Random) -> str:
    return f"{rng.randint(1, 223)}.{rng.randint(0, 255)}.{rng.randint(0, 255)}.{rng.randint(1, 254)}"


def _failure(rng: random.Random) -> str:
    user, ip, port = rng.choice(USERS), _ip(rng), rng.randint(1024, 65535)
    return rng.choice(
        (
            f"sshd[{rng.randint(100, 99999)}]: Failed password for {user} from {ip} port {port} ssh2",
            f"sshd[{rng.randint(100, 99999)}]: Failed password for invalid user {user} from {ip} port {port} ssh2",
            f"sshd[{rng.randint(100, 99999)}]: Invalid user {user} from {ip} port {port}",
            f"sshd[{rng.randint(100, 99999)}]: error: PAM: Authentication failure for {user} from {ip}",
            f"sshd[{rng.randint(100, 99999)}]: User {user} from {ip} not allowed because not listed in AllowUsers",
        )
    )


def _noise(rng: random.Random) -> str:
    pid, user, ip = rng.randint(100, 99999), rng.choice(USERS), _ip(rng)
    session = rng.randint(1, 9999)
    return rng.choice(
        (
            f"CRON[{pid}]: pam_unix(cron:session): session opened for user root(uid=0) by (uid=0)",
            f"CRON[{pid}]: pam_unix(cron:session): session closed for user root",
            f"CRON[{pid}]: (root) CMD (command -v debian-sa1 > /dev/null && debian-sa1 1 1)",
            f"systemd[1]: Started Session {session} of user {user}.",
            f"systemd-logind[{pid}]: New session {session} of user {user}.",
            f"systemd-logind[{pid}]: Removed session {session}.",
            "systemd[1]: Starting Daily apt download activities...",
            f"sshd[{pid}]: Accepted publickey for {user} from 10.0.0.{session % 250} port 52144 ssh2: RSA SHA256:xyz",
            f"sshd[{pid}]: pam_unix(sshd:session): session opened for user {user}(uid=1000) by (uid=0)",
            f"sshd[{pid}]: Disconnected from user {user} 10.0.0.{session % 250} port 52144",
            f"sshd[{pid}]: Received disconnect from 10.0.0.{session % 250} port 52144:11: disconnected by user",
            f"sshd[{pid}]: Server listening on 0.0.0.0 port 22.",
            f"kernel: [{pid}.{session:06d}] IPv4: martian source 10.1.1.1 from {ip}, on dev eth0",
            f"kernel: [{pid}.{session:06d}] [UFW BLOCK] IN=eth0 OUT= SRC={ip} DST=10.0.0.2 PROTO=TCP",
            f"sudo:   {user} : TTY=pts/0 ; PWD=/home/{user} ; USER=root ; COMMAND=/usr/bin/apt update",
            f"sudo: pam_unix(sudo:session): session opened for user root(uid=0) by {user}(uid=1000)",
            "sudo: pam_unix(sudo:session): session closed for user root",
        )
    )


def synthetic_log(lines: int, seed: int = 20240601) -> str:
    rng = random.Random(seed)
    out = []
    for n in range(lines):
        day, clock = 1 + (n // 3000) % 28, f"{n // 3600 % 24:02d}:{n // 60 % 60:02d}:{n % 60:02d}"
        stamp = f"{MONTHS[(n // 80000) % 12]} {day:2d} {clock}"
        body = _failure(rng) if rng.random() < 0.10 else _noise(rng)
        out.append(f"{stamp} host1 {body}")
    return "\n".join(out) + "\n"


def _sshd_matcher() -> tuple[Callable[..., bool], list[str], str | None]:
    definition = load_filter_file(SSHD_CONF)
    fails = [translate(r.pattern).source for r in definition.failregex]
    assert definition.prefregex is not None
    pref = re.compile(translate(definition.prefregex.pattern).source)
    searches: list[Callable[[str], re.Match[str] | None]] = [re.compile(source).search for source in fails]
    every = (1 << len(searches)) - 1
    by_mask: dict[int, list[Callable[[str], re.Match[str] | None]]] = {every: searches}
    # The date of these lines is the first 15 characters ("Jun  1 12:00:00"): cut it
    # the way the engine does, so all loops do the same per-line work.

    def line_fails(line: str, mask: int = every) -> bool:
        text = line[15:]
        found = pref.search(text)
        if found is None:
            return False
        content = found.group("content")
        chosen = by_mask.get(mask)
        if chosen is None:  # a handful of distinct masks: pick each list once
            chosen = by_mask[mask] = [search for bit, search in enumerate(searches) if mask >> bit & 1]
        return any(search(content) for search in chosen)

    return line_fails, fails, definition.datepattern


def _lines_per_second(count: int, seconds: float) -> str:
    return f"{count / seconds:>12,.0f} lines/s ({seconds:.2f} s)"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lines", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=2, help="best of N timings (shared machines are noisy)")
    parser.add_argument("--fail2ban", action="store_true", help="also time fail2ban-regex")
    args = parser.parse_args()

    buffer = synthetic_log(args.lines)
    lines = buffer.splitlines()
    line_fails, fails, datepattern = _sshd_matcher()
    print(f"{len(lines):,} lines, {len(buffer) / 1e6:.1f} MB, {len(fails)} sshd failregexes")

    plain_time = float("inf")
    for _ in range(args.repeat):
        started = time.perf_counter()
        plain = [n for n, line in enumerate(lines) if line_fails(line)]
        plain_time = min(plain_time, time.perf_counter() - started)
    print(f"(a) every line through the regexes:  {_lines_per_second(len(lines), plain_time)}")

    build_started = time.perf_counter()
    prefilter = Prefilter.build(fails, date_cut=date_cut_for(datepattern))
    assert prefilter is not None, "the sshd filter should have a prefilter"
    build_time = time.perf_counter() - build_started

    find = buffer.find
    scan_time = both_time = float("inf")
    for _ in range(args.repeat):
        started = time.perf_counter()
        offsets = prefilter.candidate_offsets(buffer)
        scanned = time.perf_counter()
        matched_offsets = [off for off in offsets if line_fails(buffer[off : find("\n", off)])]
        scan_time = min(scan_time, scanned - started)
        both_time = min(both_time, time.perf_counter() - started)
    print(f"(b) prefilter + regexes on candidates:{_lines_per_second(len(lines), both_time)}")
    masked_time = float("inf")
    for _ in range(args.repeat):
        started = time.perf_counter()
        masks = prefilter.candidate_masks(buffer)
        masked_offsets = [off for off, mask in masks if line_fails(buffer[off : find("\n", off)], mask)]
        masked_time = min(masked_time, time.perf_counter() - started)
    print(f"(c) prefilter masks + only their regexes:{_lines_per_second(len(lines), masked_time)}")
    assert masked_offsets == matched_offsets, "masks changed the result"
    print(f"    speed-up (b) {plain_time / both_time:.1f}x, (c) {plain_time / masked_time:.1f}x")
    print(f"    scan alone {scan_time:.2f} s ({len(lines) / scan_time:,.0f} lines/s); build {build_time * 1000:.1f} ms")
    print(
        f"    {len(prefilter.literals)} literals, {len(offsets):,} candidates "
        f"({100 * len(offsets) / len(lines):.1f}%), {len(matched_offsets):,} lines matched by a failregex"
    )

    starts = [0]
    for line in lines[:-1]:
        starts.append(starts[-1] + len(line) + 1)
    assert [starts[n] for n in plain] == matched_offsets, "prefilter changed the result"
    print("    same failures found both ways")

    if args.fail2ban:
        _time_fail2ban(buffer, len(lines))
    return 0


def _time_fail2ban(buffer: str, count: int) -> None:
    tool = shutil.which("fail2ban-regex")
    if tool is None:
        print("fail2ban-regex not installed")
        return
    with tempfile.NamedTemporaryFile("w", suffix=".log") as log:
        log.write(buffer)
        log.flush()
        started = time.perf_counter()
        subprocess.run([tool, log.name, str(SSHD_CONF)], check=True, capture_output=True)
        print(f"(f) fail2ban-regex:                  {_lines_per_second(count, time.perf_counter() - started)}")


if __name__ == "__main__":
    raise SystemExit(main())
