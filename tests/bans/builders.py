"""Small builders for bans tests."""

from __future__ import annotations

from typing import Any

from jails.models import Filter, Jail


def make_jail(name: str = "sshd", **options: Any) -> Jail:
    flt, _ = Filter.objects.get_or_create(name="test-filter",
                                          defaults={"source": "[Definition]\nfailregex = ^fail <HOST>$\n"})
    values: dict[str, Any] = {"enabled": True, "maxretry": 3, "findtime": 600, "bantime": 3600, "filter": flt}
    values.update(options)
    return Jail.objects.create(name=name, **values)
