"""`manage.py ensureadmin`: the first administrator, made once, audited, and able to log in."""

from __future__ import annotations

from io import StringIO
from pathlib import Path

import pytest
from django.conf import settings as django_settings
from django.contrib.auth.models import User
from django.core.management import call_command
from pytest_django import Settings

from jails.access.users import role_name
from jails.models import AuditEntry

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def password_file(tmp_path: Path, settings: Settings) -> None:
    settings.BASE_DIR = tmp_path  # the password file goes under var/ here, not the project's


def run(*args: str) -> str:
    out = StringIO()
    call_command("ensureadmin", *args, stdout=out)
    return out.getvalue()


def test_it_makes_one_superuser_once_and_audits_it() -> None:
    text = run()
    user = User.objects.get()
    assert user.is_superuser and user.is_staff and user.get_username() == "admin"
    assert "password:" in text and (Path(django_settings.BASE_DIR) / "var" / "initial-admin-password").exists()
    assert role_name(user) == "admin" and not user.groups.exists()  # an admin by being a superuser
    entry = AuditEntry.objects.get(action="user.create")
    assert entry.via == "cli" and entry.after is not None
    assert entry.after["role"] == "admin" and entry.after["is_superuser"] is True
    assert run() == "" and User.objects.count() == 1  # a superuser exists: nothing more


def test_the_name_is_normalised_as_the_login_form_normalises_what_is_typed() -> None:
    run("--username", "\uff21dmin")  # a full-width A
    assert User.objects.get().get_username() == "Admin"
