"""installfilters: the built-in library arrives on first run and never overwrites an admin's filter."""

from __future__ import annotations

from io import StringIO
from pathlib import Path

import pytest
from django.core.management import call_command

from jails import services
from jails.builtin import FILTER_DIR
from jails.models import Filter
from tests.jails.builders import stock_tree_with_seed

pytestmark = pytest.mark.django_db

EXPECTED = {
    "sshd", "apache-auth", "nginx-http-auth", "apache-botsearch", "nginx-botsearch", "wordpress-auth",
    "wordpress-auth-hook", "apache-envscan", "postfix", "postfix-sasl", "postfix-protocol", "postfix-postscreen",
    "dovecot", "recidive", "panel",
}


def install() -> str:
    out = StringIO()
    call_command("installfilters", stdout=out)
    return out.getvalue()


def test_it_installs_every_builtin_filter() -> None:
    install()
    usable = set(Filter.objects.filter(kind=Filter.Kind.FILTER).values_list("name", flat=True))
    assert usable >= EXPECTED
    assert Filter.objects.filter(origin=Filter.Origin.BUILTIN).count() == len(list(FILTER_DIR.glob("*.conf")))


def test_it_derives_the_regexes_of_each_filter() -> None:
    install()
    sshd = Filter.objects.get(name="sshd")
    assert sshd.failregex and all("<HOST>" in r or "<ADDR>" in r or "<F-" in r for r in sshd.failregex)


def test_it_is_quiet_and_changes_nothing_the_second_time() -> None:
    install()
    stamps = dict(Filter.objects.values_list("name", "updated_at"))
    assert install() == ""
    assert dict(Filter.objects.values_list("name", "updated_at")) == stamps


def test_it_keeps_a_filter_the_admin_replaced() -> None:
    install()
    mine = "[Definition]\nfailregex = ^x <HOST>$\n"
    Filter.objects.filter(name="sshd").update(origin=Filter.Origin.CUSTOM, source=mine)
    Filter.objects.filter(name="dovecot").update(source="stale")
    output = install()
    assert Filter.objects.get(name="sshd").source.endswith("^x <HOST>$\n")
    assert Filter.objects.get(name="dovecot").source == (FILTER_DIR / "dovecot.conf").read_text()
    assert "1 refreshed" in output and "1 kept" in output


def test_it_keeps_builtin_filters_working_after_a_fail2ban_import(tmp_path: Path) -> None:
    # fail2ban's own common.conf arrives with the import; ours is ips-common.conf, so the built-in
    # filters that were not replaced must still read and compile exactly as before.
    install()
    call_command("importconf", str(stock_tree_with_seed(tmp_path)), stdout=StringIO(), stderr=StringIO())
    still_builtin = Filter.objects.filter(origin=Filter.Origin.BUILTIN, kind=Filter.Kind.FILTER)
    assert still_builtin.filter(name="panel").exists()
    for row in still_builtin:
        services.compile_stored_filter(row.name)
