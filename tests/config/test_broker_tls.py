"""A fleet agent over TLS: `rediss://` with the certificates' settings as URL parameters (config/env.py
redis_tls), against a real redis-server of the test's own listening with TLS only, its certificate
signed by a CA made here (openssl). A real agent firewall worker takes a sync request over it; a
client that does not trust that CA is refused, and so is a plain connection."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlencode

import pytest
import redis
from django.core.exceptions import ImproperlyConfigured

from bans.dispatch import sync_task
from bans.models import FirewallHost
from config.celery import app
from config.env import redis_tls
from jails.fleet import redis_acl
from tests.paths import REPO

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl makes the certificates")


def openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=60)


def certificates(directory: Path, name: str) -> tuple[Path, Path, Path]:
    """A CA, and a certificate for 127.0.0.1 it signed: (ca, certificate, key)."""
    ca_key, ca = directory / f"{name}-ca.key", directory / f"{name}-ca.pem"
    key, request, cert = directory / f"{name}.key", directory / f"{name}.csr", directory / f"{name}.pem"
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", f"/CN={name} test CA",
            "-keyout", str(ca_key), "-out", str(ca))
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1", "-keyout", str(key), "-out", str(request))
    (directory / "san.cnf").write_text("subjectAltName=IP:127.0.0.1\n")
    openssl("x509", "-req", "-in", str(request), "-CA", str(ca), "-CAkey", str(ca_key), "-CAcreateserial", "-days", "2",
            "-extfile", str(directory / "san.cnf"), "-out", str(cert))
    return ca, cert, key


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def tls_redis(tmp_path: Path) -> Iterator[tuple[int, Path]]:
    """redis-server on loopback with TLS only (no plain port), until the test ends: (port, CA file)."""
    ca, cert, key = certificates(tmp_path, "central")
    port = free_port()
    server = subprocess.Popen(["redis-server", "--port", "0", "--tls-port", str(port), "--bind", "127.0.0.1",
                               "--tls-cert-file", str(cert), "--tls-key-file", str(key), "--tls-ca-cert-file", str(ca),
                               "--tls-auth-clients", "no", "--save", "", "--appendonly", "no", "--dir", str(tmp_path)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        client = redis.Redis(host="127.0.0.1", port=port, ssl=True, ssl_ca_certs=str(ca))
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        yield port, ca
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=10)


def test_a_rediss_url_carries_its_certificate_settings_and_refuses_unknown_ones(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("x")
    url, options = redis_tls(f"rediss://u:p@central:6380/0?{urlencode({'ssl_ca_certs': str(ca)})}")
    assert url == "rediss://u:p@central:6380/0" and options == {"ssl_cert_reqs": "required", "ssl_ca_certs": str(ca)}
    assert redis_tls("redis://127.0.0.1:6379/0") == ("redis://127.0.0.1:6379/0", None)
    with pytest.raises(ImproperlyConfigured, match="unknown parameter"):
        redis_tls("rediss://central/0?ssl_verify=no")
    with pytest.raises(ImproperlyConfigured, match="not a readable file"):
        redis_tls("rediss://central/0?ssl_ca_certs=/nonexistent/ca.pem")


def test_an_untrusted_or_plain_client_is_refused(tls_redis: tuple[int, Path], tmp_path: Path) -> None:
    port, _ = tls_redis
    other_ca, _, _ = certificates(tmp_path, "other")
    with pytest.raises(redis.ConnectionError, match="certificate verify failed"):
        redis.Redis(host="127.0.0.1", port=port, ssl=True, ssl_ca_certs=str(other_ca)).ping()
    with pytest.raises(redis.ConnectionError):
        redis.Redis(host="127.0.0.1", port=port, socket_timeout=3).ping()


@pytest.mark.django_db(transaction=True)
def test_an_agent_worker_takes_its_work_over_tls_under_its_own_user(
        tls_redis: tuple[int, Path], settings_db_env: dict[str, str]) -> None:
    port, ca = tls_redis
    admin = redis.Redis(host="127.0.0.1", port=port, ssl=True, ssl_ca_certs=str(ca))
    redis_acl.create_user(admin, "tlsagent", "tls-agent-password")
    url = f"rediss://ips-agent-tlsagent:tls-agent-password@127.0.0.1:{port}/0?" + urlencode(
        {"ssl_cert_reqs": "required", "ssl_ca_certs": str(ca)})
    env = {**settings_db_env, "IPS_FLEET_ROLE": "agent", "IPS_HOST_NAME": "tlsagent", "IPS_REDIS_URL": url,
           "IPS_FIREWALL": "off"}
    worker = subprocess.Popen([sys.executable, "-m", "celery", "-A", "config", "worker", "--pool", "solo", "--queues",
                               "firewall.tlsagent", "--hostname", "tls@%h"], cwd=REPO, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        deadline = time.monotonic() + 30
        while not FirewallHost.objects.filter(name="tlsagent").exists():  # its reconcile at start
            assert time.monotonic() < deadline and worker.poll() is None, "the agent worker never reported"
            time.sleep(0.2)
        # the central side asks, over TLS too (a connection of its own: this process's Celery app keeps
        # the broker it was configured with, whatever override_settings says later)
        central_url, tls = redis_tls(f"rediss://127.0.0.1:{port}/0?" + urlencode({"ssl_ca_certs": str(ca)}))
        with app.connection_for_write(central_url, ssl=tls) as conn:
            sync_task().apply_async(kwargs={"host": "tlsagent"}, queue="firewall.tlsagent", connection=conn)
        # taken: the message left the queue and the agent's in-flight keys (the watch alone would move
        # the firewall row's heartbeat, so that proves nothing)
        while admin.llen("firewall.tlsagent") or admin.hlen("unacked.tlsagent"):
            assert time.monotonic() < deadline + 30, "the sync sent over TLS was never taken"
            time.sleep(0.2)
        refused = [entry for entry in admin.acl_log(count=50) if entry.get("username") == "ips-agent-tlsagent"]
        assert refused == []
    finally:
        os.killpg(worker.pid, signal.SIGTERM)
        try:
            worker.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(worker.pid, signal.SIGKILL)
