"""watchers.journal: journalctl's command line, its JSON, and read_journal against a stand-in
journalctl and, where root may unshare a mount namespace, a real systemd-journald.

This machine (the CI image) has journalctl but no running journald and no journal files, so the
system journal itself cannot be read here: the last tests start a private journald in a private
mount namespace (a tmpfs over /run and /var/log/journal, nothing outside is touched), and skip
when that is not possible.
"""

from __future__ import annotations

import functools
import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from tests.paths import REPO
from watchers import journal
from watchers.journal import (
    JournalEntry,
    JournalMatchError,
    journalctl_command,
    parse_entry,
    parse_journalmatch,
    read_journal,
)
from watchers.tail import SourceUnavailable

# Recorded from `journalctl --output=json --all` (systemd 252, Debian 12), _CMDLINE shortened:
# a plain entry, then one sent with a binary MESSAGE (invalid UTF-8, a newline) and a field set twice.
RECORDED = [
    '{"_SOURCE_REALTIME_TIMESTAMP":"1795319751997122","__REALTIME_TIMESTAMP":"1795319751997182",'
    '"SYSLOG_IDENTIFIER":"sshd","_COMM":"python3","__CURSOR":"s=3b0b6b2fdbbe4869ace883cca873a6d1;i=157;'
    'b=fc069bc1a997475aa39778f268d99631;m=d804a8ae;t=660d5741376fe;x=64fa3d49b1f2d1f","_PID":"5150",'
    '"_MACHINE_ID":"3d1219c7c4c5404aaa1f6d2a48adfda4","_RUNTIME_SCOPE":"system","MESSAGE":"Invalid user x '
    'from 192.0.2.7","_CAP_EFFECTIVE":"1fffeffffff","SYSLOG_PID":"42","_BOOT_ID":"fc069bc1a997475aa39778f268d99631",'
    '"__MONOTONIC_TIMESTAMP":"3624183982","_GID":"0","_HOSTNAME":"vm","_UID":"0","_TRANSPORT":"journal",'
    '"_CMDLINE":"python3 -c send","_EXE":"/usr/bin/python3.11"}',
    '{"_UID":"0","_CMDLINE":"python3 -c send","FOO":["1","2"],"_HOSTNAME":"vm","_GID":"0","_PID":"5150",'
    '"_COMM":"python3","__REALTIME_TIMESTAMP":"1795319752001737","_MACHINE_ID":"3d1219c7c4c5404aaa1f6d2a48adfda4",'
    '"_CAP_EFFECTIVE":"1fffeffffff","__MONOTONIC_TIMESTAMP":"3624188536","_RUNTIME_SCOPE":"system",'
    '"_SOURCE_REALTIME_TIMESTAMP":"1795319751997314","SYSLOG_IDENTIFIER":"sshd","_TRANSPORT":"journal",'
    '"_EXE":"/usr/bin/python3.11","__CURSOR":"s=3b0b6b2fdbbe4869ace883cca873a6d1;i=158;'
    'b=fc069bc1a997475aa39778f268d99631;m=d804ba78;t=660d5741388c9;x=e8e26db5631ae963",'
    '"MESSAGE":[98,97,100,32,255,32,98,121,116,101,115,10,115,101,99,111,110,100,32,108,105,110,101],'
    '"_BOOT_ID":"fc069bc1a997475aa39778f268d99631"}',
]
CURSORS = [json.loads(line)["__CURSOR"] for line in RECORDED]


# --- the command line ---------------------------------------------------------------------------------


def test_it_reads_json_after_the_cursor_with_matches_after_a_double_dash() -> None:
    assert journalctl_command("_SYSTEMD_UNIT=sshd.service + _COMM=sshd", "s=1;i=2", since_seconds=600) == [
        "journalctl", "--no-pager", "--output=json", "--all", "--after-cursor=s=1;i=2",
        "--", "_SYSTEMD_UNIT=sshd.service", "+", "_COMM=sshd",
    ]


def test_it_starts_since_seconds_ago_without_a_cursor() -> None:
    assert journalctl_command("", None, since_seconds=600) == [
        "journalctl", "--no-pager", "--output=json", "--all", "--since=-600s"]
    assert journalctl_command("", None, since_seconds=None)[-1] == "--all"


def test_it_reads_fail2bans_journalmatch_syntax() -> None:
    # space-separated terms: AND; "+": OR; each line: OR; quotes as in a shell
    assert parse_journalmatch("_SYSTEMD_UNIT=sshd.service _COMM=sshd") == [["_SYSTEMD_UNIT=sshd.service", "_COMM=sshd"]]
    assert parse_journalmatch("_SYSTEMD_UNIT=sshd.service + _SYSTEMD_UNIT=ssh.service\n_COMM=dropbear") == [
        ["_SYSTEMD_UNIT=sshd.service"], ["_SYSTEMD_UNIT=ssh.service"], ["_COMM=dropbear"]]
    assert parse_journalmatch("MESSAGE='two words' +") == [["MESSAGE=two words"]]
    assert parse_journalmatch("  \n") == []


@pytest.mark.parametrize("bad", ["sshd", "_comm=sshd", "-f=x", "--file=/etc/shadow", "1X=y", "A=\"open"])
def test_it_refuses_terms_journalctl_would_take_for_something_else(bad: str) -> None:
    with pytest.raises(JournalMatchError, match="journalmatch"):
        journalctl_command(bad, None, since_seconds=None)


# --- the JSON ------------------------------------------------------------------------------------------


def test_it_parses_a_recorded_entry() -> None:
    entry = parse_entry(RECORDED[0])
    assert entry.message == "Invalid user x from 192.0.2.7"
    assert entry.time == 1795319751.997122  # _SOURCE_REALTIME_TIMESTAMP: when it was logged
    assert entry.cursor == CURSORS[0]
    assert entry.fields["_COMM"] == "python3"
    assert entry.line == "vm sshd[42]: Invalid user x from 192.0.2.7"


def test_it_decodes_binary_messages_and_repeated_fields() -> None:
    entry = parse_entry(RECORDED[1].encode())
    assert entry.message == "bad \ufffd bytes\nsecond line"
    assert entry.fields["FOO"] == ["1", "2"]
    assert entry.line == "vm sshd[5150]: bad \ufffd bytes\\nsecond line"  # fail2ban escapes newlines


def test_it_formats_lines_as_fail2bans_systemd_backend() -> None:
    def line(**fields: object) -> str:
        return parse_entry(json.dumps({"__REALTIME_TIMESTAMP": "1000000", **fields})).line

    assert line(MESSAGE="m") == "m"
    assert line(_COMM="cron", _PID="77", MESSAGE="m") == "cron[77]: m"
    assert line(SYSLOG_IDENTIFIER="x", SYSLOG_PID="0x1f", MESSAGE="m") == "x[31]: m"
    assert line(SYSLOG_IDENTIFIER="x", SYSLOG_PID="abc", MESSAGE="m") == "x[abc]: m"
    assert line(_HOSTNAME="h", SYSLOG_IDENTIFIER="kernel", __MONOTONIC_TIMESTAMP="12345678", MESSAGE="m") == \
        "h kernel: [   12.345678] m"
    assert line(MESSAGE=["first", "second"]) == "first second"
    assert line(MESSAGE=[0, 65]) == "\ufffdA"  # NUL replaced, as in files
    assert line(MESSAGE=None) == ""
    assert parse_entry(json.dumps({"__REALTIME_TIMESTAMP": "1500000", "MESSAGE": "m"})).time == 1.5


# --- read_journal with a stand-in journalctl --------------------------------------------------------------


def fake_journalctl(tmp_path: Path, body: str) -> str:
    """An executable that records its arguments in args.json, then runs `body` (Python)."""
    script = tmp_path / "journalctl"
    script.write_text(f"#!{sys.executable}\nimport json, sys, time\n"
                      f"json.dump(sys.argv[1:], open({str(tmp_path / 'args.json')!r}, 'w'))\n"
                      + textwrap.dedent(body))
    script.chmod(0o755)
    return str(script)


@pytest.fixture
def journal_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A journal directory with one journal file in it, in place of the system's."""
    directory = tmp_path / "var-log-journal"
    (directory / "machine-id").mkdir(parents=True)
    (directory / "machine-id" / "system.journal").write_bytes(b"")
    monkeypatch.setattr(journal, "JOURNAL_DIRECTORIES", (str(directory),))
    return directory


def test_it_returns_entries_and_the_cursor_of_the_last(tmp_path: Path, journal_files: Path) -> None:
    executable = fake_journalctl(tmp_path, f"print({RECORDED[0]!r}); print({RECORDED[1]!r})")
    result = read_journal("_COMM=sshd", "s=old", max_entries=10, since_seconds=600, executable=executable)
    assert [entry.message for entry in result.entries] == ["Invalid user x from 192.0.2.7",
                                                           "bad \ufffd bytes\nsecond line"]
    assert result.cursor == CURSORS[1]
    assert json.loads((tmp_path / "args.json").read_text()) == [
        "--no-pager", "--output=json", "--all", "--after-cursor=s=old", "--", "_COMM=sshd"]


def test_it_stops_journalctl_after_max_entries(tmp_path: Path, journal_files: Path) -> None:
    executable = fake_journalctl(tmp_path, f"""
        for line in {RECORDED!r}:
            print(line, flush=True)
        time.sleep(30)  # a big backlog: journalctl would go on
    """)
    started = time.monotonic()
    result = read_journal("", None, max_entries=2, since_seconds=None, executable=executable)
    assert time.monotonic() - started < 10
    assert result.cursor == CURSORS[1]
    assert len(read_journal("", None, max_entries=1, since_seconds=None, executable=executable).entries) == 1


def test_it_keeps_the_cursor_when_nothing_is_new(tmp_path: Path, journal_files: Path) -> None:
    executable = fake_journalctl(tmp_path, "")
    result = read_journal("", "s=kept", max_entries=5, since_seconds=None, executable=executable)
    assert (result.entries, result.cursor) == ([], "s=kept")


def test_it_returns_what_came_before_journalctl_hung(tmp_path: Path, journal_files: Path) -> None:
    executable = fake_journalctl(tmp_path, f"print({RECORDED[0]!r}, flush=True); time.sleep(30)")
    result = read_journal("", None, max_entries=5, since_seconds=None, executable=executable, timeout=0.5)
    assert result.cursor == CURSORS[0]
    hung = fake_journalctl(tmp_path, "time.sleep(30)")
    with pytest.raises(SourceUnavailable, match=re.escape("no entry within 0.5 s")):
        read_journal("", None, max_entries=5, since_seconds=None, executable=hung, timeout=0.5)


def test_it_says_when_the_saved_cursor_is_refused(tmp_path: Path, journal_files: Path) -> None:
    executable = fake_journalctl(tmp_path, "print('Failed to seek to cursor: Invalid argument', file=sys.stderr)"
                                           "; sys.exit(1)")
    with pytest.raises(SourceUnavailable) as caught:
        read_journal("", "garbage", max_entries=5, since_seconds=None, executable=executable)
    assert caught.value.code == "bad-cursor"
    assert "Failed to seek to cursor" in caught.value.reason


def test_it_says_when_the_watcher_may_not_read_the_journal(tmp_path: Path, journal_files: Path) -> None:
    # what systemd 252 prints to a user outside the systemd-journal and adm groups
    executable = fake_journalctl(tmp_path, "print('No journal files were opened due to insufficient permissions.',"
                                           " file=sys.stderr); sys.exit(1)")
    with pytest.raises(SourceUnavailable) as caught:
        read_journal("", None, max_entries=5, since_seconds=None, executable=executable)
    assert caught.value.code == "permission"
    assert "add it to group systemd-journal" in caught.value.reason


def test_it_reports_other_failures_with_journalctls_words(tmp_path: Path, journal_files: Path) -> None:
    executable = fake_journalctl(tmp_path, "print('Failed to parse timestamp: -xs', file=sys.stderr); sys.exit(1)")
    with pytest.raises(SourceUnavailable, match=r"failed \(exit status 1\): Failed to parse timestamp: -xs"):
        read_journal("", None, max_entries=5, since_seconds=None, executable=executable)


def test_it_says_when_journalctl_is_not_installed(tmp_path: Path) -> None:
    with pytest.raises(SourceUnavailable) as caught:
        read_journal("", None, max_entries=5, since_seconds=None, executable=str(tmp_path / "journalctl"))
    assert caught.value.code == "missing"
    assert "is not installed" in caught.value.reason


def test_it_says_when_there_is_no_journal_at_all(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # in JSON mode journalctl exits 0 and prints nothing when no journal file exists
    monkeypatch.setattr(journal, "JOURNAL_DIRECTORIES", (str(tmp_path / "none"), str(tmp_path)))
    with pytest.raises(SourceUnavailable) as caught:
        read_journal("", None, max_entries=5, since_seconds=None, executable=fake_journalctl(tmp_path, ""))
    assert caught.value.code == "missing"
    assert caught.value.reason.startswith("missing: no systemd journal on this machine")


def test_it_refuses_a_nonsense_max_entries() -> None:
    with pytest.raises(ValueError, match="max_entries must be at least 1"):
        read_journal("", None, max_entries=0, since_seconds=None)


# --- the real journalctl ---------------------------------------------------------------------------------


def journal_files_here() -> bool:
    return any(path.endswith(".journal") for directory in journal.JOURNAL_DIRECTORIES
               for _, _, names in os.walk(directory) for path in names)


@pytest.mark.skipif(shutil.which("journalctl") is None or journal_files_here(),
                    reason="this test is for machines without a journal")
def test_it_says_the_real_journal_is_missing_on_this_machine() -> None:
    with pytest.raises(SourceUnavailable) as caught:
        read_journal("_COMM=sshd", None, max_entries=5, since_seconds=600)
    assert caught.value.code == "missing"


NAMESPACE_SCRIPT = """
set -e
mount -t tmpfs tmpfs /run
if [ -d /var/log/journal ]; then mount -t tmpfs tmpfs /var/log/journal; fi
mkdir -p /run/systemd/journal /run/systemd/journald.conf.d /run/log/journal
printf '[Journal]\\nStorage=volatile\\nForwardToSyslog=no\\nForwardToWall=no\\nForwardToConsole=no\\n' \
    > /run/systemd/journald.conf.d/test.conf
SYSTEMD_LOG_TARGET=console {journald} 2>/dev/null &
JOURNALD=$!
trap 'kill $JOURNALD' EXIT
for i in $(seq 100); do [ -S /run/systemd/journal/socket ] && break; sleep 0.05; done
"$@"
"""

HELPER = """
import json, socket, struct, sys, time
from watchers.journal import read_journal

def send(**fields):
    payload = b""
    for name, value in fields.items():
        value = value if isinstance(value, bytes) else value.encode()
        payload += name.encode() + b"\\n" + struct.pack("<Q", len(value)) + value + b"\\n"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.sendto(payload, "/run/systemd/journal/socket")

send(MESSAGE="Invalid user admin from 192.0.2.7 port 22", SYSLOG_IDENTIFIER="sshd", SYSLOG_PID="42")
send(MESSAGE="session opened", SYSLOG_IDENTIFIER="cron")
send(MESSAGE=b"bad \\xff bytes\\nfrom 192.0.2.8", SYSLOG_IDENTIFIER="sshd", SYSLOG_PID="43")
send(MESSAGE="Failed password for root from 192.0.2.9", SYSLOG_IDENTIFIER="sshd", SYSLOG_PID="44")
out = {}
for _ in range(100):  # journald writes asynchronously
    first = read_journal("SYSLOG_IDENTIFIER=sshd", None, max_entries=2, since_seconds=600)
    if len(first.entries) == 2:
        break
    time.sleep(0.05)
rest = read_journal("SYSLOG_IDENTIFIER=sshd", first.cursor, max_entries=10, since_seconds=None)
nothing = read_journal("SYSLOG_IDENTIFIER=sshd", rest.cursor, max_entries=10, since_seconds=None)
either = read_journal("SYSLOG_IDENTIFIER=cron + SYSLOG_PID=44", None, max_entries=10, since_seconds=600)
print(json.dumps({
    "first": [e.line for e in first.entries], "rest": [e.line for e in rest.entries],
    "nothing": [len(nothing.entries), nothing.cursor == rest.cursor],
    "either": [e.line.split(": ", 1)[1] for e in either.entries],
}))
"""


@functools.cache
def private_journald_possible() -> str | None:
    """Why a private journald cannot run here, or None when it can."""
    journald = shutil.which("systemd-journald", path="/lib/systemd:/usr/lib/systemd")
    if journald is None or shutil.which("journalctl") is None or shutil.which("unshare") is None:
        return "systemd-journald, journalctl or unshare is not installed"
    if os.geteuid() != 0:
        return "needs root to mount a private /run"
    probe = subprocess.run(["unshare", "-m", "--propagation", "private", "mount", "-t", "tmpfs", "tmpfs", "/mnt"],
                           capture_output=True)
    return None if probe.returncode == 0 else "this container may not create a mount namespace"


@pytest.mark.skipif(private_journald_possible() is not None, reason=str(private_journald_possible()))
def test_it_reads_a_real_journal_from_a_private_journald() -> None:
    journald = shutil.which("systemd-journald", path="/lib/systemd:/usr/lib/systemd")
    completed = subprocess.run(
        ["unshare", "-m", "--propagation", "private", "sh", "-c", NAMESPACE_SCRIPT.format(journald=journald),
         "sh", sys.executable, "-c", HELPER],
        cwd=REPO, capture_output=True, text=True, timeout=60)
    assert completed.returncode == 0, completed.stderr
    result = json.loads(completed.stdout)
    host = os.uname().nodename
    assert result["first"] == [f"{host} sshd[42]: Invalid user admin from 192.0.2.7 port 22",
                               f"{host} sshd[43]: bad \ufffd bytes\\nfrom 192.0.2.8"]
    assert result["rest"] == [f"{host} sshd[44]: Failed password for root from 192.0.2.9"]
    assert result["nothing"] == [0, True]
    assert result["either"] == ["session opened", "Failed password for root from 192.0.2.9"]


def test_journal_entries_are_plain_values() -> None:
    entry = JournalEntry("m", 1.0, {"__CURSOR": "c"})
    assert (entry.cursor, entry.line) == ("c", "m")
