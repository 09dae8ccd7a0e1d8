"""The panel's built-in jail: installfilters creates it (once) on the panel log, and five failed
logins written by the panel make the log watcher ban the client (through the real pipeline)."""

from __future__ import annotations

import time
from io import StringIO
from pathlib import Path

import pytest
from django.core.cache import cache
from django.core.management import call_command
from django.test import Client
from pytest_django import Settings

from bans.models import Ban
from jails.models import AuditEntry, Jail
from jails.services import compile_stored_filter
from watchers.services import read_source, sync_sources

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def panel_log(settings: Settings, tmp_path: Path) -> Path:
    log = tmp_path / "log" / "panel.log"
    settings.IPS_PANEL_LOG = log
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    cache.clear()
    return log


def install() -> str:
    out = StringIO()
    call_command("installfilters", stdout=out)
    return out.getvalue()


def test_it_creates_the_panel_jail_once(panel_log: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IPS_BIND", "127.0.0.1:8000")
    assert "Created the jail 'panel'" in install()
    jail = Jail.objects.get(name="panel")
    assert (jail.enabled, jail.maxretry, jail.findtime, jail.bantime) == (True, 5, 900, 3600)
    assert jail.logpath == [str(panel_log)] and jail.filter.name == "panel"
    assert jail.port == "http,https,8000"
    assert panel_log.exists()  # so the watcher finds its source from the start
    assert AuditEntry.objects.get(action="jail.create").via == "system"
    Jail.objects.filter(name="panel").update(maxretry=9)  # the admin's edit is kept
    assert install() == ""
    assert Jail.objects.get(name="panel").maxretry == 9


def test_it_creates_the_login_throttle_cache_table() -> None:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("DROP TABLE IF EXISTS ips_cache")
    install()
    cache.set("probe", 1)
    assert cache.get("probe") == 1


def test_its_stored_filter_matches_what_the_panel_writes(panel_log: Path) -> None:
    install()
    injection = {"username": 'x" from 192.0.2.1 user="', "password": "p"}
    Client(REMOTE_ADDR="198.51.100.23").post("/accounts/login/", injection)
    [line] = panel_log.read_text().splitlines()
    [failure] = compile_stored_filter("panel").process_line(line, now=time.time()).failures
    assert failure.host == "198.51.100.23"


def test_five_failed_logins_get_the_client_banned(panel_log: Path, no_broker: None) -> None:
    install()
    for number in range(5):
        Client(REMOTE_ADDR="203.0.113.77").post("/accounts/login/", {"username": f"guess{number}", "password": "p"})
    [source] = sync_sources(Jail.objects.get(name="panel"))
    read_source(source.pk, own_addresses=[])
    ban = Ban.objects.get()
    assert (ban.network, ban.jail_name, ban.bantime) == ("203.0.113.77/32", "panel", 3600)
