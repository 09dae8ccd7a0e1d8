"""Shared fixtures. (Test-only environment variables are set in tests/testenv.py.)"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.db import connection, connections
from django.db.backends.sqlite3.creation import DatabaseCreation as SQLiteDatabaseCreation
from django.test import Client
from pytest_django import DjangoCaptureOnCommitCallbacks

from tests.bans.netns import NamespacePair, netns_unusable
from tests.clients import client_for


def host_tables() -> str | None:
    """The host's own nftables tables (`nft list tables`), or None where nft cannot say."""
    if shutil.which("nft") is None:
        return None
    done = subprocess.run(["nft", "list", "tables"], capture_output=True, text=True, timeout=10, check=False)
    return done.stdout if done.returncode == 0 else None


@pytest.fixture(scope="session", autouse=True)
def the_hosts_ruleset_is_left_alone() -> Iterator[None]:
    """No test may change the ruleset of the machine running the tests: real bans are tested in
    network namespaces (tests/bans/netns.py). Checked once for the whole run."""
    before = host_tables()
    yield
    after = host_tables()
    assert before is None or after is None or before == after, (
        f"a test changed the host's own nftables tables:\nbefore:\n{before}\nafter:\n{after}")


@pytest.fixture(scope="session")
def django_db_modify_db_settings(django_db_modify_db_settings_parallel_suffix: None) -> None:
    """Before the SQLite test database is created: a -wal/-shm pair left by a session whose last
    connection was killed (the fault tests SIGKILL workers) would meet the new file and fail every
    connection with "disk I/O error". Nothing else uses the test database before it is created."""
    creation = connections["default"].creation
    if connections["default"].vendor != "sqlite":
        return
    assert isinstance(creation, SQLiteDatabaseCreation)
    name = creation._get_test_db_name()  # type: ignore[attr-defined]  # Django's private method, not in django-stubs
    if creation.is_in_memory_db(name):
        return
    for suffix in ("-wal", "-shm"):
        Path(f"{name}{suffix}").unlink(missing_ok=True)


@pytest.fixture
def settings_db_env(db: None) -> dict[str, str]:
    """Environment for a child `manage.py` process that must see this test's database.

    Use it from tests marked django_db(transaction=True): their rows are committed, so the child,
    opening the same test database, sees them.
    """
    env = dict(os.environ)
    name = connection.settings_dict["NAME"]
    env["DATABASE_URL"] = f"sqlite:///{name}" if connection.vendor == "sqlite" else f"postgres:///{name}"
    return env


# This host as the tests see it (TEST-NET-1; a machine's own addresses differ, and a ban near them
# would need confirmation): modules that create bans use it with pytest.mark.usefixtures("this_host").
HOST_ADDRESS = "192.0.2.1"
HOST_NETWORK = "192.0.2.0/24"


@pytest.fixture
def this_host(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """This host as bans.hostaddrs reads it, without running `ip -j addr`: HOST_ADDRESS in HOST_NETWORK."""
    from bans import hostaddrs

    monkeypatch.setattr(hostaddrs, "read_addresses", lambda: [HOST_ADDRESS, "127.0.0.1", "::1"])
    monkeypatch.setattr(hostaddrs, "read_networks", lambda: [HOST_NETWORK])
    hostaddrs.forget()  # what an earlier test read
    yield
    hostaddrs.forget()  # not these for the next test


@pytest.fixture
def no_broker(django_capture_on_commit_callbacks: DjangoCaptureOnCommitCallbacks) -> Iterator[None]:
    """Callbacks registered on commit (the firewall worker's sync request) are captured, not run: no
    Redis needed. Modules that create bans use it with pytest.mark.usefixtures("no_broker")."""
    with django_capture_on_commit_callbacks():
        yield


@pytest.fixture
def pair() -> Iterator[NamespacePair]:
    """A server and an attacker network namespace joined by a veth pair, deleted after the test."""
    reason = netns_unusable()
    if reason:
        pytest.skip(reason)
    created = NamespacePair.create()
    try:
        yield created
    finally:
        created.destroy()


# --- logged-in clients, one per role (tests.clients.client_for); a module needing another address
# or other users defines its own fixture of the same name ----------------------------------------


@pytest.fixture
def viewer() -> Client:
    return client_for("viewer")


@pytest.fixture
def operator() -> Client:
    return client_for("operator")


@pytest.fixture
def admin() -> Client:
    return client_for("admin")
