"""Logged-in test clients with a role (jails.access.roles): the view tests' one way to be someone."""

from __future__ import annotations

from django.contrib.auth.models import Group, User
from django.test import Client


def client_for(role: str, remote_addr: str = "198.51.100.50") -> Client:
    """A client logged in as a new user `<role>-user` in the role's group (viewer/operator/admin)."""
    user = User.objects.create_user(f"{role}-user", password="x")
    # get_or_create: a transactional test starts without the groups the migration made
    user.groups.add(Group.objects.get_or_create(name=role)[0])
    client = Client(REMOTE_ADDR=remote_addr)
    client.force_login(user)
    return client
