"""Redis down, or unreachable (a ban that dropped its packets): nothing that asks the firewall worker
hangs. The panel and the services commit and say the ban waits; `jailctl ban` and `unban` apply the
change themselves, against the database and the kernel, or fail within seconds saying why.

"Redis" here is a server of the test's own that accepts connections and never answers (a hung
Redis, or one behind a dropped route, as the report had it), on a unix socket, which processes in
a network namespace reach too."""

from __future__ import annotations

import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.utils import timezone

from bans import services
from bans.models import Ban
from config.celery import app
from jails.access import audit
from tests.bans.netns import PYTHON, ROOT, NamespacePair, RemoteFirewall
from tests.factories import make_jail

# The bound the publisher sets (bans.tasks.PUBLISH_*), with room for a loaded machine.
GIVES_UP_WITHIN = 10.0


class MuteRedis:
    """Accepts every connection on a unix socket and never says a word."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.server.bind(str(path))
        self.server.listen(64)
        self.held: list[socket.socket] = []
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"redis+socket://{self.path}?virtual_host=0"

    def _accept(self) -> None:
        while True:
            try:
                connection, _ = self.server.accept()
            except OSError:
                return
            self.held.append(connection)

    def close(self) -> None:
        self.server.close()
        for connection in self.held:
            connection.close()


@pytest.fixture
def mute(tmp_path: Path) -> Iterator[MuteRedis]:
    server = MuteRedis(tmp_path / "redis.sock")
    try:
        yield server
    finally:
        server.close()


@pytest.mark.django_db(transaction=True)
def test_a_ban_from_the_panel_or_a_jail_commits_and_never_hangs(mute: MuteRedis, monkeypatch: pytest.MonkeyPatch,
                                                                 this_host: None) -> None:
    monkeypatch.setattr(app.conf, "broker_url", mute.url)
    services.UNDELIVERED.clear()
    jail = make_jail("sshd")
    started = time.monotonic()
    ban = services.ban_by_hand(jail, "203.0.113.9", 600, actor=audit.Actor.command(), own_addresses=["192.0.2.1"])
    took = time.monotonic() - started
    assert took < GIVES_UP_WITHIN, f"asking the firewall worker took {took:.1f} s"
    assert Ban.objects.get(pk=ban.pk).state == Ban.State.PENDING and "local" in services.UNDELIVERED


def jailctl(pair: NamespacePair, env: dict[str, str], *args: str) -> tuple[subprocess.CompletedProcess[str], float]:
    started = time.monotonic()
    done = subprocess.run(["ip", "netns", "exec", pair.server, str(PYTHON), "manage.py", "jailctl", *args],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=False)
    return done, time.monotonic() - started


@pytest.mark.netns
@pytest.mark.django_db(transaction=True)
def test_jailctl_applies_itself_when_redis_does_not_answer(pair: NamespacePair, mute: MuteRedis,
                                                           settings_db_env: dict[str, str]) -> None:
    make_jail("sshd")
    env = {**settings_db_env, "IPS_REDIS_URL": mute.url, "IPS_FIREWALL": "nftables", "IPS_HOST_NAME": "local"}
    done, took = jailctl(pair, env, "ban", "sshd", "203.0.113.9", "--time", "1h")
    print(f"jailctl ban without Redis: {took:.1f} s")
    assert done.returncode == 0, done.stderr
    assert "applying here" in done.stderr and "in the firewall" in done.stdout
    assert took < GIVES_UP_WITHIN + 5
    kernel = RemoteFirewall(pair.driver(pair.server)).snapshot()
    assert {str(n) for n in kernel["sshd"]} == {"203.0.113.9/32"}
    assert Ban.objects.get().state == Ban.State.ACTIVE

    done, took = jailctl(pair, env, "unban", "--all", "203.0.113.9")
    print(f"jailctl unban --all without Redis: {took:.1f} s")
    assert done.returncode == 0, done.stderr
    assert "lifted 1 ban(s)" in done.stdout and took < GIVES_UP_WITHIN + 5
    assert RemoteFirewall(pair.driver(pair.server)).snapshot()["sshd"] == {}
    lifted = Ban.objects.get()
    assert lifted.state == Ban.State.LIFTED and lifted.ended_at is not None and lifted.ended_at <= timezone.now()


@pytest.mark.netns
@pytest.mark.django_db(transaction=True)
def test_jailctl_says_so_within_seconds_when_it_cannot_apply_either(pair: NamespacePair, mute: MuteRedis,
                                                                    settings_db_env: dict[str, str]) -> None:
    make_jail("sshd")
    env = {**settings_db_env, "IPS_REDIS_URL": mute.url, "IPS_FIREWALL": "off", "IPS_HOST_NAME": "local"}
    done, took = jailctl(pair, env, "ban", "sshd", "203.0.113.9")
    assert done.returncode != 0 and took < GIVES_UP_WITHIN + 5
    assert "recorded, but NOT applied: Redis does not answer" in done.stderr
    assert Ban.objects.get().state == Ban.State.PENDING
