"""Jail option validators: fail2ban's syntax accepted, mistakes explained."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError

from jails import validators
from jails.models import Filter, Jail


@pytest.mark.parametrize(("text", "seconds"), [("600", 600), ("10m", 600), ("1h", 3600), ("7d", 604800),
                                           ("1w", 604800), ("-1", -1), ("permanent", -1)])
def test_it_reads_fail2ban_durations(text: str, seconds: int) -> None:
    assert validators.validate_duration_text(text) == seconds


def test_it_explains_a_bad_duration() -> None:
    with pytest.raises(ValidationError, match="10m"):
        validators.validate_duration_text("ten minutes-ish")


@pytest.mark.parametrize("entry", ["192.0.2.1", "192.0.2.0/24", "127.0.0.1/8", "::1", "2001:db8::/32",
                                   "mail.example.org"])
def test_it_accepts_ignoreip_entries(entry: str) -> None:
    validators.validate_ignore_entry(entry)


@pytest.mark.parametrize("entry", ["192.0.2.300", "10.0.0.0/33", "exa mple", "1.2.3"])
def test_it_refuses_bad_ignoreip_entries(entry: str) -> None:
    with pytest.raises(ValidationError):
        validators.validate_ignore_entry(entry)


@pytest.mark.parametrize("spec", ["ssh", "http,https", "22", "8000:8100", "smtp,submission,smtps", "all", "0:65535"])
def test_it_accepts_port_specs(spec: str) -> None:
    validators.validate_port_spec(spec)


@pytest.mark.parametrize("spec", ["70000", "9000:8000", "ssh;rm -rf", "$(reboot)"])
def test_it_refuses_bad_port_specs(spec: str) -> None:
    with pytest.raises(ValidationError):
        validators.validate_port_spec(spec)


def test_it_accepts_fail2ban_default_formula() -> None:
    validators.validate_formula("ban.Time * math.exp(float(ban.Count+1)*banFactor)/math.exp(1*banFactor)")


@pytest.mark.parametrize("formula", ["__import__('os').system('id')", "ban.__class__", "open('/etc/shadow')",
                                     "[x for x in ()]", "lambda: 1"])
def test_it_refuses_a_formula_that_is_not_arithmetic(formula: str) -> None:
    with pytest.raises(ValidationError):
        validators.validate_formula(formula)


@pytest.mark.django_db
def test_it_validates_every_jail_field_together() -> None:
    flt = Filter.objects.create(name="x", source="[Definition]\nfailregex = ^<HOST>$\n")
    jail = Jail(name="bad name!", filter=flt, maxretry=0, findtime=0, bantime=-5, logpath=["relative.log"],
                ignoreip=["nope nope"], port="99999")
    with pytest.raises(ValidationError) as excinfo:
        jail.full_clean()
    assert set(excinfo.value.message_dict) == {"name", "maxretry", "findtime", "bantime", "logpath", "ignoreip",
                                                "port"}
