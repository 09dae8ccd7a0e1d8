"""The panel's own login: failures throttled per address + user name, written to IPS_PANEL_LOG in
panel.conf's format, and read back by our own "panel" filter (jails.engine), injections included."""

from __future__ import annotations

import ipaddress
import re
import time
from pathlib import Path
from typing import TYPE_CHECKING, TypedDict, Unpack

import pytest
from django.contrib.auth.models import User
from django.core.cache import cache
from django.test import Client
from pytest_django import Settings

from jails.access import logins
from jails.builtin import FILTER_DIR
from jails.engine import ini
from jails.engine.filter import CompiledFilter

if TYPE_CHECKING:
    from django.test.client import _MonkeyPatchedWSGIResponse  # (django-stubs' name: no runtime class)

pytestmark = pytest.mark.django_db

PASSWORD = "correct-horse-battery-9"
LOGIN = "/accounts/login/"
LINE = re.compile(r'^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}\+00:00 panel\[\d+\]: login failed from (\S+) user="(.*)"$')


@pytest.fixture(autouse=True)
def panel_log(settings: Settings, tmp_path: Path) -> Path:
    log = tmp_path / "log" / "panel.log"
    settings.IPS_PANEL_LOG = log  # its directory does not exist yet
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]  # fast, tests only
    cache.clear()
    return log


@pytest.fixture
def admin_user() -> User:
    return User.objects.create_superuser("admin", "admin@example.org", PASSWORD)


class Headers(TypedDict, total=False):
    """The request headers (WSGI names) an attempt may add."""

    HTTP_X_FORWARDED_FOR: str


def attempt(username: str, password: str, address: str = "203.0.113.9", path: str = LOGIN,
            **extra: Unpack[Headers]) -> _MonkeyPatchedWSGIResponse:
    return Client(REMOTE_ADDR=address, **extra).post(path, {"username": username, "password": password})


def logged_lines(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").splitlines() if path.exists() else []


def panel_filter() -> CompiledFilter:
    return CompiledFilter.from_definition(ini.load_filter(ini.DirectoryLoader(FILTER_DIR.parent), "panel"))


def test_it_writes_a_failed_login_in_the_panel_filter_format(admin_user: User, panel_log: Path) -> None:
    response = attempt("admin", "wrong")
    assert response.status_code == 200
    assert "correct username and password" in response.content.decode()
    [line] = logged_lines(panel_log)
    match = LINE.match(line)
    assert match is not None and match.groups() == ("203.0.113.9", "admin")


def test_it_logs_nothing_for_a_successful_login(admin_user: User, panel_log: Path) -> None:
    assert attempt("admin", PASSWORD).status_code == 302
    assert logged_lines(panel_log) == []


@pytest.mark.parametrize(("username", "written"), [
    ('x" from 198.51.100.1 user="y', r'x\" from 198.51.100.1 user=\"y'),
    ("a\\b", "a\\\\b"),
    ("evil\n2026-11-22T03:04:05.000000+00:00 panel[1]: login failed from 198.51.100.1 user=\"z\"",
     'evil\\n2026-11-22T03:04:05.000000+00:00 panel[1]: login failed from 198.51.100.1 user=\\"z\\"'),
    ("\x1b[31mred\r\tx\x07\x85\x7f", "\\x1b[31mred\\r\\tx\\x07\\x85\\x7f"),
    ("line\u2028sep\u202eevil", "line\\u2028sep\\u202eevil"),
    ("ünïcødé", "ünïcødé"),
])
def test_it_escapes_the_user_name_so_our_filter_blames_only_the_client(
        panel_log: Path, username: str, written: str) -> None:
    attempt(username, "wrong", address="203.0.113.9")
    [line] = logged_lines(panel_log)
    assert line.endswith(f'user="{written}"')
    result = panel_filter().process_line(line, now=time.time())
    [failure] = result.failures
    assert failure.host == "203.0.113.9"  # never the address smuggled into the user name
    assert failure.fields.get("user") == written


def test_it_escapes_what_the_login_form_never_lets_through() -> None:
    # NUL is refused by the form (no login attempt at all); the writer escapes it anyway
    assert logins.escape_username("a\x00b\ud800" + "x" * 500) == "a\\x00b\\ud800" + "x" * 196


def test_it_writes_ipv6_client_addresses_plainly(panel_log: Path) -> None:
    attempt("root", "wrong", address="2001:db8::a1")
    [line] = logged_lines(panel_log)
    [failure] = panel_filter().process_line(line, now=time.time()).failures
    assert failure.host == "2001:db8::a1"


def test_it_blames_the_forwarded_client_behind_a_trusted_proxy(settings: Settings, panel_log: Path) -> None:
    settings.IPS_TRUSTED_PROXIES = [ipaddress.ip_network("10.0.0.1/32")]
    attempt("admin", "wrong", address="10.0.0.1", HTTP_X_FORWARDED_FOR="198.51.100.1, 192.0.2.44")
    attempt("admin", "wrong", address="192.0.2.99", HTTP_X_FORWARDED_FOR="198.51.100.2")  # not a proxy: ignored
    matches = [LINE.match(line) for line in logged_lines(panel_log)]
    assert all(matches)
    addresses = [match.group(1) for match in matches if match]
    assert addresses == ["192.0.2.44", "192.0.2.99"]


def test_it_refuses_a_client_after_five_failures_even_with_the_right_password(admin_user: User,
                                                                               panel_log: Path) -> None:
    for _ in range(logins.MAX_FAILURES_PER_USER):
        attempt("admin", "wrong")
    response = attempt("admin", PASSWORD)
    assert response.status_code == 200
    assert "Too many failed logins" in response.content.decode()
    assert "_auth_user_id" not in response.client.session
    # the refused attempt is logged too, so the jail keeps counting a guesser who does not stop
    assert len(logged_lines(panel_log)) == logins.MAX_FAILURES_PER_USER + 1


def test_it_never_locks_the_admin_out_from_another_address(admin_user: User) -> None:
    for _ in range(logins.MAX_FAILURES_PER_USER + 3):
        attempt("admin", "wrong", address="198.51.100.7")
    assert attempt("admin", PASSWORD, address="192.0.2.10").status_code == 302


def test_it_lets_another_user_log_in_from_the_same_address(admin_user: User) -> None:
    User.objects.create_user("ops", password=PASSWORD)
    for _ in range(logins.MAX_FAILURES_PER_USER):
        attempt("admin", "wrong")
    assert attempt("ops", PASSWORD).status_code == 302


def test_it_forgets_the_failures_after_a_successful_login(admin_user: User) -> None:
    for _ in range(logins.MAX_FAILURES_PER_USER - 1):
        attempt("admin", "wrong")
    assert attempt("admin", PASSWORD).status_code == 302
    for _ in range(logins.MAX_FAILURES_PER_USER - 1):
        attempt("admin", "wrong")
    assert attempt("admin", PASSWORD).status_code == 302


def test_it_lets_the_client_try_again_after_the_window(admin_user: User) -> None:
    now = 1_800_000_000.0
    for _ in range(logins.MAX_FAILURES_PER_USER):
        logins.count_failure("203.0.113.9", "admin", now=now)
    assert logins.seconds_locked("203.0.113.9", "admin", now=now + 60) == logins.WINDOW_SECONDS - 60
    assert logins.seconds_locked("203.0.113.9", "admin", now=now + logins.WINDOW_SECONDS) == 0


def test_it_slows_password_spraying_from_one_address_but_not_from_loopback() -> None:
    for number in range(logins.MAX_FAILURES_PER_ADDRESS):
        logins.count_failure("198.51.100.9", f"user{number}")
        logins.count_failure("127.0.0.1", f"user{number}")
    assert logins.seconds_locked("198.51.100.9", "someone-else") > 0
    # a tunnel or a local proxy makes every client loopback: one address must not lock everyone out
    assert logins.seconds_locked("127.0.0.1", "someone-else") == 0


def test_it_throttles_and_logs_the_django_admin_login_too(admin_user: User, panel_log: Path) -> None:
    for _ in range(logins.MAX_FAILURES_PER_USER):
        attempt("admin", "wrong", path="/admin/login/")
    response = attempt("admin", PASSWORD, path="/admin/login/")
    assert response.status_code == 200
    assert "Too many failed logins" in response.content.decode()
    assert len(logged_lines(panel_log)) == logins.MAX_FAILURES_PER_USER + 1


def test_it_still_logs_in_when_the_cache_fails(admin_user: User, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("cache down")

    monkeypatch.setattr(cache, "get", broken)  # django.core.cache.cache: the one logins uses
    monkeypatch.setattr(cache, "set", broken)
    attempt("admin", "wrong")
    assert attempt("admin", PASSWORD).status_code == 302


def test_it_counts_an_ipv6_client_by_its_slash_64() -> None:
    # one host usually holds a whole /64: a fresh address per attempt must not mean a fresh counter
    for number in range(logins.MAX_FAILURES_PER_USER):
        logins.count_failure(f"2001:db8:1:2::{number + 1:x}", "admin")
    assert logins.seconds_locked("2001:db8:1:2:ffff::9", "admin") > 0
    assert logins.seconds_locked("2001:db8:1:3::1", "admin") == 0
