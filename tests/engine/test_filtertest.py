"""The command-line filter tester (jails/engine/filtertest.py), run in-process and once
as a real subprocess."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from jails.engine.definition import FilterDefinition, RegexLine
from jails.engine.filtertest import main
from tests.paths import CORPUS, REPO

SSHD = str(CORPUS / "config" / "filter.d" / "sshd.conf")
NOW = "1700000000"
FAIL = "Mar  1 10:00:00 host sshd[1]: Failed password for root from 192.0.2.1 port 22 ssh2"
NOISE = "Mar  1 10:00:01 host CRON[2]: (root) CMD (true)"


def run(capsys: pytest.CaptureFixture[str], *argv: str, **kw: object) -> tuple[int, str, str]:
    code = main(list(argv), **kw)  # type: ignore[arg-type]
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def log(tmp_path: Path) -> Path:
    path = tmp_path / "auth.log"
    path.write_text("\n".join([FAIL, NOISE, "# a comment", "", FAIL.replace("192.0.2.1", "192.0.2.2")]) + "\n")
    return path


def test_it_reports_like_fail2ban_regex(capsys: pytest.CaptureFixture[str], log: Path) -> None:
    code, out, err = run(capsys, str(log), SSHD)
    assert code == 0 and err == ""
    assert "Running tests" in out and "Results" in out
    assert "Failregex: 2 total" in out
    assert "Ignoreregex: 0 total" in out
    assert "Date template hits:" in out
    assert "Lines: 3 lines, 0 ignored, 2 matched, 1 missed" in out
    assert "lines/s]" in out
    assert "Missed line(s):" in out and "CRON[2]" in out


def test_it_prints_all_matched_and_missed_on_request(capsys: pytest.CaptureFixture[str], log: Path) -> None:
    _, out, _ = run(capsys, str(log), SSHD, "--print-all-matched", "--print-all-missed")
    assert "Matched line(s):" in out and "192.0.2.2" in out
    assert out.count("CRON[2]") == 1


def test_it_counts_ignored_lines(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    conf = tmp_path / "t.conf"
    conf.write_text("[Definition]\nfailregex = ^bad from <HOST>$\nignoreregex = 10\\.0\\.\n")
    logfile = tmp_path / "l.log"
    logfile.write_text("bad from 10.0.0.1\nbad from 192.0.2.1\n")
    _, out, _ = run(capsys, str(logfile), str(conf), "--print-all-ignored")
    assert "Lines: 2 lines, 1 ignored, 1 matched, 0 missed" in out
    assert "Ignored line(s):" in out and "10.0.0.1" in out


def test_it_writes_one_json_object_per_line(capsys: pytest.CaptureFixture[str], log: Path) -> None:
    code, out, _ = run(capsys, "--json", "--now", NOW, str(log), SSHD)
    rows = [json.loads(x) for x in out.splitlines()]
    assert code == 0 and [r["lineno"] for r in rows] == [1, 2, 3, 4, 5]
    assert rows[0]["fails"] == [
        {
            "host": "192.0.2.1",
            "time": rows[0]["fails"][0]["time"],
            "attempts": 1,
            "fields": rows[0]["fails"][0]["fields"],
        }
    ]
    assert rows[0]["fails"][0]["fields"]["user"] == "root"
    assert rows[1]["fails"] == [] and rows[4]["fails"][0]["host"] == "192.0.2.2"


def test_it_uses_now_for_journal_lines(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    logfile = tmp_path / "j.log"
    logfile.write_text("host sshd[1]: Failed password for root from 192.0.2.1 port 22 ssh2\n")
    _, out, _ = run(capsys, "--json", "--journal", "--now", NOW, str(logfile), SSHD + "[logtype=journal]")
    (row,) = [json.loads(x) for x in out.splitlines()]
    assert row["fails"][0]["time"] == float(NOW)


def test_it_takes_a_literal_line_and_a_raw_regex(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "Jan  1 00:00:00 login failed from 192.0.2.9", r"failed from <HOST>$")
    assert code == 0 and "Lines: 1 lines, 0 ignored, 1 matched, 0 missed" in out


def test_it_reads_invalid_utf8_and_still_matches(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    logfile = tmp_path / "bin.log"
    logfile.write_bytes(b"Mar  1 10:00:00 host sshd[1]: Failed password for r\xff\xfet from 192.0.2.4 port 2 ssh2\n")
    _, out, _ = run(capsys, "--json", "--now", NOW, str(logfile), SSHD)
    (row,) = [json.loads(x) for x in out.splitlines()]
    assert row["fails"][0]["host"] == "192.0.2.4"


def test_it_reads_stdin(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    import io

    fake = io.TextIOWrapper(io.BytesIO((FAIL + "\n").encode()))
    monkeypatch.setattr(sys, "stdin", fake)
    _, out, _ = run(capsys, "-", SSHD)
    assert "1 matched" in out


def test_it_applies_filter_options(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    logfile = tmp_path / "d.log"
    logfile.write_text("Mar  1 10:00:00 host sshd[1]: Did not receive identification string from 192.0.2.8\n")
    _, normal, _ = run(capsys, str(logfile), SSHD)
    _, aggressive, _ = run(capsys, str(logfile), SSHD + "[mode=aggressive]")
    assert "0 matched" in normal and "1 matched" in aggressive


def test_it_fails_cleanly_on_a_missing_log(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    missing = str(tmp_path / "nope" / "auth.log")
    code, out, err = run(capsys, missing, SSHD)
    assert code == 1 and out == ""
    assert err.startswith("ERROR: ") and missing in err and "Traceback" not in err


def test_it_fails_cleanly_on_a_broken_filter(capsys: pytest.CaptureFixture[str], tmp_path: Path, log: Path) -> None:
    conf = tmp_path / "broken.conf"
    conf.write_text("[Definition]\nfailregex = ^ok from <HOST>$\n            ^broken (from <HOST>$\n")
    code, _, err = run(capsys, str(log), str(conf))
    assert code == 1 and f"{conf}:3: " in err and "missing )" in err
    code, _, err = run(capsys, str(log), str(tmp_path / "absent.conf"))
    assert code == 1 and "absent.conf" in err


def test_it_wants_a_host_tag_in_a_raw_regex(capsys: pytest.CaptureFixture[str], log: Path) -> None:
    code, _, err = run(capsys, str(log), "Failed password for .* from nowhere")
    assert code == 1 and "host tag" in err


def test_it_resolves_bare_names_only_with_a_resolver(capsys: pytest.CaptureFixture[str], log: Path) -> None:
    code, _, err = run(capsys, str(log), "sshd")
    assert code == 1 and "path" in err
    seen: list[tuple[str, dict[str, str]]] = []

    def resolve(name: str, options: dict[str, str]) -> FilterDefinition:
        seen.append((name, options))
        return FilterDefinition(name, (RegexLine(r"Failed password for \S+ from <HOST>"),))

    code, out, _ = run(capsys, str(log), "sshd[mode=ddos]", resolve_name=resolve)
    assert code == 0 and seen == [("sshd", {"mode": "ddos"})] and "2 matched" in out


def test_it_reports_lines_that_run_out_of_time(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    logfile = tmp_path / "slow.log"
    logfile.write_text("x " + "a" * 40 + "b from 192.0.2.1\nx aaa from 192.0.2.2\n")
    code, out, _ = run(capsys, "--json", "--timeout", "0.2", str(logfile), r"^x (a+)+ from <HOST>$")
    rows = [json.loads(x) for x in out.splitlines()]
    assert code == 0
    assert "timeout" in rows[0] and "failregex 1" in rows[0]["timeout"]
    assert rows[1]["fails"][0]["host"] == "192.0.2.2"  # processing went on


def test_it_runs_as_a_module(log: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "jails.engine.filtertest", str(log), SSHD],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0 and "2 matched" in proc.stdout


# --- the counting fast path (prefilter + CompiledFilter.tally) ------------------------


def _lines_of(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[str, list[str]]:
    code, out, _ = run(capsys, *argv)
    assert code == 0
    summary = [ln for ln in out.splitlines() if ln.startswith("Lines:")]
    hits = [ln for ln in out.splitlines() if ln.startswith("|") and ") [" in ln]
    return summary[0], hits


@pytest.mark.skipif(not CORPUS.is_dir(), reason="fail2ban corpus not present")
@pytest.mark.parametrize("name", ["sshd", "apache-auth", "postfix", "dovecot", "nginx-http-auth", "pam-generic"])
def test_counting_path_counts_like_the_line_by_line_path(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, name: str
) -> None:
    # 30 noise lines first, so that the counting path takes over early; then the
    # sample log three times (sessions and dates carry over between copies)
    sample = (CORPUS / "logs" / name).read_text(errors="surrogateescape")
    path = tmp_path / "log"
    path.write_text("\n".join([NOISE] * 30) + "\n" + sample * 3, errors="surrogateescape")
    conf = str(CORPUS / "config" / "filter.d" / f"{name}.conf")
    fast = _lines_of(capsys, str(path), conf, "--now", NOW)
    # --print-all-missed turns the prefilter off: every line goes through process_line
    slow = _lines_of(capsys, str(path), conf, "--now", NOW, "--print-all-missed")
    assert fast == slow


def test_comment_and_empty_lines_are_counted_like_the_multiline_regex() -> None:
    import random

    from jails.engine.filtertest import _COMMENT_OR_EMPTY_RE, _comment_or_empty_count

    rng = random.Random(7)
    for _ in range(20000):
        text = "".join(rng.choice("#\r\na ") for _ in range(rng.randint(0, 10)))
        assert _comment_or_empty_count(text) == len(_COMMENT_OR_EMPTY_RE.findall(text)), repr(text)
        pos = rng.randint(0, len(text))  # from an offset: as counting the rest of a block
        assert _comment_or_empty_count(text, pos) == len(_COMMENT_OR_EMPTY_RE.findall(text[pos:])), (text, pos)


def test_journal_lines_are_never_dated_also_once_only_counted(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    # past the first missed lines the summary only counts; journal messages carry no date
    # of their own, so a date-like text in them stays message text there too
    fail = "Jan  1 00:00:00 host sshd[1]: Failed password for root from 192.0.2.7 port 22 ssh2"
    log = tmp_path / "journal.txt"
    log.write_text("\n".join([f"host cron[{i}]: nothing" for i in range(25)] + [fail, fail]) + "\n")
    code, out, _ = run(capsys, "--json", "--journal", "--now", NOW, str(log), SSHD)
    failing = sum(1 for row in map(json.loads, out.splitlines()) if row["fails"])
    code, out, _ = run(capsys, "--journal", "--now", NOW, str(log), SSHD)
    assert code == 0
    assert f"Lines: 27 lines, 0 ignored, {failing} matched, {27 - failing} missed" in out
