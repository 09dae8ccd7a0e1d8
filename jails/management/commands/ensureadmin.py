"""Create the first administrator when there is none, so a fresh install can be logged into.

The password is random, printed once and kept in var/initial-admin-password (mode 0600) until
the admin changes it. Nothing happens when a superuser already exists.
"""

from __future__ import annotations

import os
import secrets
from argparse import ArgumentParser
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand

from jails.access import audit, users
from jails.access.roles import Role


class Command(BaseCommand):
    help = "Create an 'admin' superuser with a random password if no superuser exists yet."

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("--username", default="admin")

    def handle(self, *args: Any, **options: Any) -> None:
        user_model = get_user_model()
        if user_model.objects.filter(is_superuser=True).exists():
            return
        password = secrets.token_urlsafe(18)
        # normalised as create_superuser and the login form do (a full-width name could not log in)
        user = user_model(username=user_model.normalize_username(options["username"]), email="",
                          is_superuser=True, is_staff=True)
        user.set_password(password)
        users.create_user(user, Role.ADMIN.group_name, audit.Actor.command())
        path = settings.BASE_DIR / "var" / "initial-admin-password"
        path.parent.mkdir(mode=0o700, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(password + "\n")
        self.stdout.write(
            f"Created the administrator '{options['username']}' with password: {password}\n"
            f"(also saved in {path}; change it after the first login, then delete that file)"
        )
