"""Small typed readers of environment variables for settings.py.

Each one fails loudly with ImproperlyConfigured, naming the variable and what it
expects, instead of letting a typo silently change how the firewall panel behaves.
"""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from django.core.exceptions import ImproperlyConfigured

TRUE_WORDS = {"1", "true", "yes", "on"}
FALSE_WORDS = {"0", "false", "no", "off", ""}


def env_str(name: str, default: str) -> str:
    return os.environ.get(name, default)


def env_bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name)
    if raw is None:
        return default
    word = raw.strip().lower()
    if word in TRUE_WORDS:
        return True
    if word in FALSE_WORDS:
        return False
    raise ImproperlyConfigured(f"{name}={raw!r}: expected one of true/false, yes/no, on/off, 1/0")


def env_int(name: str, default: int, minimum: int | None = None, maximum: int | None = None) -> int:
    raw = os.environ.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name}={raw!r}: expected a whole number") from None
    if minimum is not None and value < minimum:
        raise ImproperlyConfigured(f"{name}={raw!r}: must be at least {minimum}")
    if maximum is not None and value > maximum:
        raise ImproperlyConfigured(f"{name}={raw!r}: must be at most {maximum}")
    return value


def env_choice(name: str, default: str, choices: list[str]) -> str:
    value = os.environ.get(name, default).strip().lower()
    if value not in choices:
        raise ImproperlyConfigured(f"{name}={value!r}: expected one of {', '.join(choices)}")
    return value


def env_list(name: str, default: list[str]) -> list[str]:
    raw = os.environ.get(name)
    if raw is None:
        return default
    return [item.strip() for item in raw.split(",") if item.strip()]


IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


def env_networks(name: str, default: list[str]) -> list[IPNetwork]:
    """A comma-separated list of addresses or networks (203.0.113.7, 10.0.0.0/8, ::1)."""
    networks = []
    for item in env_list(name, default):
        try:
            networks.append(ipaddress.ip_network(item, strict=False))
        except ValueError:
            raise ImproperlyConfigured(f"{name}: {item!r} is not an IP address or network") from None
    return networks


def broker_poll_seconds(url: str) -> int:
    """How long an idle worker's BRPOP waits (config/broker.py). 10 s over TCP, where shutdown ends the
    wait at once (CLIENT UNBLOCK finds the connection by its address); 1 s over a Unix socket, where
    it cannot, so a stopping worker still waits at most a second."""
    return 1 if url.startswith(("redis+socket://", "unix://", "socket://")) else 10


# The query parameters of a rediss:// URL that set up its TLS (redis-py's names), e.g.
# rediss://user:secret@central:6379/0?ssl_cert_reqs=required&ssl_ca_certs=/etc/ips/ca.pem
REDIS_TLS_PARAMETERS = ("ssl_cert_reqs", "ssl_ca_certs", "ssl_certfile", "ssl_keyfile", "ssl_check_hostname")


def redis_tls(url: str) -> tuple[str, dict[str, Any] | None]:
    """The broker URL without its TLS parameters, and those parameters (None for plain redis://).
    Certificates are verified unless the URL says otherwise (ssl_cert_reqs=none)."""
    parts = urlsplit(url)
    if parts.scheme != "rediss":
        return url, None
    query = dict(parse_qsl(parts.query))
    unknown = sorted(set(query) - set(REDIS_TLS_PARAMETERS))
    if unknown:
        raise ImproperlyConfigured(f"IPS_REDIS_URL: unknown parameter(s) {', '.join(unknown)}; a rediss:// URL "
                                   f"takes {', '.join(REDIS_TLS_PARAMETERS)}")
    options: dict[str, Any] = {"ssl_cert_reqs": query.pop("ssl_cert_reqs", "required")}
    if options["ssl_cert_reqs"] not in ("required", "optional", "none"):
        raise ImproperlyConfigured(f"IPS_REDIS_URL: ssl_cert_reqs={options['ssl_cert_reqs']!r}: expected required, "
                                   "optional or none")
    for name in ("ssl_ca_certs", "ssl_certfile", "ssl_keyfile"):
        if name in query:
            if not Path(query[name]).is_file():
                raise ImproperlyConfigured(f"IPS_REDIS_URL: {name}={query[name]!r} is not a readable file")
            options[name] = query[name]
    if "ssl_check_hostname" in query:
        options["ssl_check_hostname"] = query["ssl_check_hostname"].lower() in TRUE_WORDS
    return parts._replace(query="").geturl(), options


def read_secret_file(path: Path) -> str:
    """A secret kept in a file (mode 0600); empty when the file does not exist."""
    try:
        return path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        return ""
    except OSError as exc:
        raise ImproperlyConfigured(f"cannot read the secret key file {path}: {exc.strerror}") from None


def database_from_url(url: str, base_dir: Path) -> dict[str, Any]:
    """Turn DATABASE_URL into a Django DATABASES entry.

    Supported: sqlite:///relative/or/absolute/path and postgres://user:pass@host:port/name
    (also postgresql://). Query parameters become OPTIONS (e.g. ?sslmode=require).
    """
    parts = urlsplit(url)
    if parts.scheme == "sqlite":
        return _sqlite(parts.path, base_dir, url)
    if parts.scheme in ("postgres", "postgresql"):
        return _postgres(parts.hostname, parts.port, parts.username, parts.password, parts.path, parts.query, url)
    raise ImproperlyConfigured(
        f"DATABASE_URL={url!r}: unsupported scheme {parts.scheme!r}; use sqlite:///path or postgres://user@host/name"
    )


def _sqlite(path: str, base_dir: Path, url: str) -> dict[str, Any]:
    # sqlite:///db.sqlite3 is relative to the project; sqlite:////var/lib/x.db is absolute.
    rel = path[1:] if path.startswith("/") else path
    if not rel:
        raise ImproperlyConfigured(f"DATABASE_URL={url!r}: no database file; use e.g. sqlite:///db.sqlite3")
    name = Path(rel) if rel.startswith("/") else base_dir / rel
    return {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": str(name),
        # A file, not memory, so that tests can run manage.py in a child process on the same data.
        "TEST": {"NAME": str(name.with_name(f"{name.stem}-test{name.suffix}"))},
        # Kept open between requests and by the long-running loops (beat, the followers, the firewall
        # worker's watch, and the tasks: config/celery.py): opening costs a file open, the schema read
        # and the PRAGMAs below.
        "CONN_MAX_AGE": 600,
        # WAL lets the panel read while a worker writes; IMMEDIATE avoids lock upgrade deadlocks.
        "OPTIONS": {
            "transaction_mode": "IMMEDIATE",
            "timeout": 20,
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        },
    }


def _postgres(
    host: str | None, port: int | None, user: str | None, password: str | None, path: str, query: str, url: str
) -> dict[str, Any]:
    name = unquote(path.lstrip("/"))
    if not name:
        raise ImproperlyConfigured(f"DATABASE_URL={url!r}: no database name; use postgres://user@host:5432/name")
    return {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": name,
        "USER": unquote(user or ""),
        "PASSWORD": unquote(password or ""),
        "HOST": host or "",
        "PORT": str(port or ""),
        "CONN_MAX_AGE": 60,
        # A kept connection is checked before its first use by a request or a task: one that a
        # PostgreSQL restart broke is replaced instead of failing that request or task.
        "CONN_HEALTH_CHECKS": True,
        "OPTIONS": dict(parse_qsl(query)),
    }
