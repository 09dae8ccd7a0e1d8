"""Settings for the intrusion-prevention panel, all driven by environment variables.

One file, no split trees: every knob is an environment variable read through the typed
helpers in config/env.py, which refuse bad values loudly. Defaults suit a single server:
SQLite in the project directory, Redis on loopback.
"""

from __future__ import annotations

import os
from pathlib import Path

import django_stubs_ext
from django.core.exceptions import ImproperlyConfigured

from config import fleet
from config.env import (
    broker_poll_seconds,
    database_from_url,
    env_bool,
    env_choice,
    env_int,
    env_list,
    env_networks,
    env_str,
    read_secret_file,
    redis_tls,
)

# Generic Django classes (ModelAdmin[Filter], QuerySet[Jail]) become subscriptable at run time.
django_stubs_ext.monkeypatch()

BASE_DIR = Path(__file__).resolve().parent.parent

# Django sets the process's TZ to TIME_ZONE right after reading this file; log lines without a
# zone must still be read in the host's local time (as fail2ban reads them), so the host's TZ is
# kept here and put back by JailsConfig.ready() (see jails/apps.py).
HOST_TZ = os.environ.get("TZ")

DEBUG = env_bool("IPS_DEBUG", False)
# The key comes from IPS_SECRET_KEY, else from the file scripts/run.sh generates on first run, so
# that `manage.py importconf ...` works in a shell without exporting anything.
SECRET_KEY = env_str("IPS_SECRET_KEY", "") or read_secret_file(
    Path(env_str("IPS_SECRET_KEY_FILE", str(BASE_DIR / "var" / "secret_key")))
)
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured(
            "IPS_SECRET_KEY is not set: set it to a long random string, or run scripts/run.sh once "
            "(it writes var/secret_key), or set IPS_DEBUG=true for local development"
        )
    # S105: a known key on purpose, for IPS_DEBUG only: without a key, production refuses to start above
    SECRET_KEY = "insecure-development-key-only-used-with-IPS_DEBUG"  # noqa: S105

ALLOWED_HOSTS = env_list("IPS_ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]"])
CSRF_TRUSTED_ORIGINS = env_list("IPS_CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_htmx",
    "template_partials",
    "django_celery_beat",
    "jails",
    "bans",
    "watchers",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.auth.middleware.LoginRequiredMiddleware",
    # the address of every live session, which no ban may cover (jails/access/sessions.py)
    "jails.access.sessions.SessionAddressMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "jails.context_processors.panel",
                "bans.context_processors.firewall",
            ],
        },
    },
]

DATABASES = {"default": database_from_url(env_str("DATABASE_URL", "sqlite:///db.sqlite3"), BASE_DIR)}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
# The database cache (table ips_cache): the login throttle's counters must be shared by every
# gunicorn worker and survive a restart, which the per-process memory cache does not; the database
# is there anyway, while Redis is the broker and the panel's login should not depend on it.
# `manage.py installfilters` (run at every start) creates the table; test databases get it too.
CACHES = {"default": {"BACKEND": "django.core.cache.backends.db.DatabaseCache", "LOCATION": "ips_cache"}}

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator", "OPTIONS": {"min_length": 12}},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
# Django's ModelBackend with the login throttle (jails/access/logins.py): it covers the panel's login page
# and Django admin's alike.
AUTHENTICATION_BACKENDS = ["jails.access.logins.ThrottledModelBackend"]
LOGIN_URL = "/accounts/login/"
LOGIN_REDIRECT_URL = "/"

LANGUAGE_CODE = "en-us"
TIME_ZONE = env_str("IPS_TIME_ZONE", "UTC")
USE_I18N = False
USE_TZ = True
# One date format on every page (2026-12-03 13:55), even where a template gives none: see
# config/formats/en/formats.py (the "en" locale's formats would win over DATETIME_FORMAT here).
FORMAT_MODULE_PATH = ["config.formats"]
DATE_FORMAT = "Y-m-d"
DATETIME_FORMAT = "Y-m-d H:i"

STATIC_URL = "static/"
STATICFILES_DIRS: list[Path | tuple[str, Path]] = [BASE_DIR / "static"]
# Chart.js, installed pinned from the npm registry by scripts/setup.sh (package-lock.json), served
# as static/vendor/chartjs/. Without it the dashboard says so and shows its figures as tables.
CHARTJS_DIST = BASE_DIR / "node_modules" / "chart.js" / "dist"
if CHARTJS_DIST.is_dir():
    STATICFILES_DIRS.append(("vendor/chartjs", CHARTJS_DIST))
STATIC_ROOT = Path(env_str("IPS_STATIC_ROOT", str(BASE_DIR / "var" / "static")))
# Static files are found in the apps too, so the panel is styled even before collectstatic ran.
WHITENOISE_USE_FINDERS = True

# Security: the panel controls a firewall. Production (IPS_DEBUG off) gets secure cookies,
# HSTS and HTTPS redirects unless the admin says TLS ends elsewhere (IPS_BEHIND_TLS_PROXY).
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
SESSION_COOKIE_HTTPONLY = True
CSRF_COOKIE_HTTPONLY = True
SESSION_COOKIE_SECURE = env_bool("IPS_SECURE_COOKIES", not DEBUG)
CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE
SECURE_SSL_REDIRECT = env_bool("IPS_SSL_REDIRECT", not DEBUG)
SECURE_HSTS_SECONDS = env_int("IPS_HSTS_SECONDS", 0 if DEBUG else 31536000, minimum=0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("IPS_HSTS_INCLUDE_SUBDOMAINS", not DEBUG)
# The preload token only declares consent; nothing happens unless the domain owner submits it.
SECURE_HSTS_PRELOAD = env_bool("IPS_HSTS_PRELOAD", not DEBUG)
if env_bool("IPS_BEHIND_TLS_PROXY", False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")

# The fleet (docs/fleet.md). IPS_HOST_NAME names this host: its firewall worker consumes
# firewall.<name> and applies only that host's bans. IPS_FLEET_ROLE: "central" (the panel, the
# database, Redis and beat: a single server is a fleet of one) or "agent" (a server that joined with
# `hostctl add`: its own watchers and firewall worker, under credentials of its own).
IPS_HOST_NAME = env_str("IPS_HOST_NAME", "local")
IPS_FLEET_ROLE = env_choice("IPS_FLEET_ROLE", "central", list(fleet.ROLES))
# The address agents reach this (central) server at, written into their environment by `hostctl add`.
IPS_FLEET_CENTRAL = env_str("IPS_FLEET_CENTRAL", "")
if IPS_FLEET_ROLE == "agent" and IPS_HOST_NAME == "local":
    raise ImproperlyConfigured("IPS_FLEET_ROLE=agent needs IPS_HOST_NAME: the name given to `hostctl add` on the panel")

# Celery: Redis on loopback by default; tasks acknowledged after they ran so a killed worker's
# work is redelivered (tasks are idempotent).
# rediss:// (TLS, for a fleet's agents) takes its certificates' settings as URL parameters: they
# become CELERY_BROKER_USE_SSL, and the URL itself goes without them (config/env.py redis_tls).
CELERY_BROKER_URL, CELERY_BROKER_USE_SSL = redis_tls(env_str("IPS_REDIS_URL", "redis://127.0.0.1:6379/0"))
# kombu's Redis transport with the fix in config/broker.py (workers survive a Redis restart).
CELERY_BROKER_TRANSPORT = "config.broker:Transport"
# An idle worker waits this long in one BRPOP (kombu's default 1 s woke it and Redis every second).
# One priority step fleet-wide, and on an agent its own keys for in-flight messages (config/fleet.py).
CELERY_BROKER_TRANSPORT_OPTIONS = fleet.transport_options(IPS_FLEET_ROLE, IPS_HOST_NAME,
                                                          broker_poll_seconds(CELERY_BROKER_URL))
# Each worker's remote-control queue (celery inspect/control) expires this long after its worker
# stopped; Celery's 10 s made every worker refresh it in Redis every 3.3 s (config/broker.py)
CELERY_CONTROL_QUEUE_EXPIRES = 300.0
# Celery's consumer, reconnecting every second after losing Redis (config/broker.py).
CELERY_WORKER_CONSUMER = "config.broker:Consumer"
CELERY_RESULT_BACKEND = None
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TIMEZONE = "UTC"
CELERY_TASK_ALWAYS_EAGER = env_bool("IPS_CELERY_EAGER", False)
if IPS_FLEET_ROLE == "agent":
    # An agent's Redis user may touch only its own queues (jails/fleet/redis_acl.py): no remote
    # control (its broadcast channel reaches every worker of the fleet), its own default queue.
    CELERY_WORKER_ENABLE_REMOTE_CONTROL = False
    CELERY_TASK_DEFAULT_QUEUE = fleet.watch_queue(IPS_HOST_NAME)
# A pool process that has held more than this in RAM (its peak RSS, shared pages included: a fresh
# one holds about 80 MB) is replaced by a fresh fork once its task returns. A follower whose process
# passed it hands over when its backlog is read (watchers/follow.py), so a flood's leftovers (~50
# MB a follower) go back. 0: never. Applies to the watcher worker's process pool, not to solo pools.
CELERY_WORKER_MAX_MEMORY_PER_CHILD = env_int("IPS_WORKER_MAX_MEMORY_MB", 120, minimum=0) * 1024
# Schedules live in the database (django-celery-beat), editable in Django admin; the defaults are
# created by the migration watchers/0002_default_schedules. config/beat.py asks whether an admin
# changed them every 10 s, not on every tick.
CELERY_BEAT_SCHEDULER = "config.beat:Scheduler"
# Beat sleeps until its next task is due, but at most this long (django-celery-beat's default: 5 s,
# twelve idle wakes a minute where the shortest schedule is 30 s); an admin's change to a schedule
# takes effect within about this plus config/beat.py's 10 s.
CELERY_BEAT_MAX_LOOP_INTERVAL = 15
# Celery would close every database connection around each task; config/celery.py closes them as
# Django does around a request instead (broken or older than CONN_MAX_AGE). Celery's own count
# still closes them after this many tasks.
CELERY_DB_REUSE_MAX = 1000

# The firewall: "nftables" (our own inet table, through libnftables' JSON API) or "off" (bans are
# recorded and shown, the kernel is not touched). IPS_HOST_NAME names this firewall host: each host
# has its own Celery queue (firewall.<name>) and applies only its own bans.
IPS_FIREWALL = env_choice("IPS_FIREWALL", "nftables", ["nftables", "off"])
# How many log followers (shards of the enabled jails, each in its own worker process) beat keeps
# running; 0: as many as are scheduled now, or 1 on SQLite and 2 on PostgreSQL for a new install.
# Applied by `manage.py installschedules` (bans/periodic.py).
IPS_FOLLOWER_SHARDS = env_int("IPS_FOLLOWER_SHARDS", 0, minimum=0, maximum=64)
IPS_NFT_TABLE = env_str("IPS_NFT_TABLE", "ips")
# The longest any one firewall step may take (waiting for the firewall lock, one libnftables call,
# abandoned in its killed helper process past it); the ban then fails and is retried with backoff.
IPS_FIREWALL_TIMEOUT_SECONDS = env_int("IPS_FIREWALL_TIMEOUT_SECONDS", 5, minimum=1, maximum=300)
# The widest network a ban by hand may cover (a prefix length): wider ones are refused, whoever asks.
IPS_MAX_BAN_PREFIX_V4 = env_int("IPS_MAX_BAN_PREFIX_V4", 16, minimum=0, maximum=32)
IPS_MAX_BAN_PREFIX_V6 = env_int("IPS_MAX_BAN_PREFIX_V6", 48, minimum=0, maximum=128)
# Days of failures, ended bans and hourly statistics kept (bans.schedules.cleanup_history).
IPS_HISTORY_DAYS = env_int("IPS_HISTORY_DAYS", 90, minimum=1)

# The filter engine: where the built-in filter library lives, and how long one regex may run on
# one line before it is stopped and reported.
IPS_BUILTIN_FILTERS = BASE_DIR / "jails" / "builtin" / "filter.d"
IPS_REGEX_BUDGET_SECONDS = env_int("IPS_REGEX_BUDGET_MS", 1000, minimum=10) / 1000
# The live path (log followers) is stricter: a line that keeps one regex busy this long is skipped,
# counted and the filter shown as degraded; one read matches for at most IPS_LIVE_READ_BUDGET_MS
# (the rest of its lines are read next, after the other sources had their turn).
IPS_LIVE_REGEX_BUDGET_SECONDS = env_int("IPS_LIVE_REGEX_BUDGET_MS", 250, minimum=10, maximum=10_000) / 1000
IPS_LIVE_READ_BUDGET_SECONDS = env_int("IPS_LIVE_READ_BUDGET_MS", 500, minimum=50, maximum=60_000) / 1000
# Log lines longer than this are skipped whole (counted, never matched): a line is never split.
IPS_MAX_LINE_BYTES = env_int("IPS_MAX_LINE_BYTES", 64 << 10, minimum=1024, maximum=16 << 20)

# The panel's web workers (gunicorn processes; runstack and the ips-web unit start this many). Slow
# requests (exports, tester runs) may hold all but one of them at once (jails/slowlane.py), so a page
# always finds a free worker. Workers share the master's pages (--preload) and grow while serving a big page.
IPS_WEB_WORKERS = env_int("IPS_WEB_WORKERS", 2, minimum=1, maximum=64)
# Where the slow lanes' lock files live (one per lane; any directory all web workers can write).
IPS_RUN_DIR = Path(env_str("IPS_RUN_DIR", str(BASE_DIR / "var" / "run")))

# The panel's own client address: REMOTE_ADDR, unless the request comes from one of these proxies
# (addresses or networks), then the nearest untrusted address of X-Forwarded-For (jails/access/client.py).
IPS_TRUSTED_PROXIES = env_networks("IPS_TRUSTED_PROXIES", [])
# The panel's failed logins go to this file, one line each, for its built-in jail (filter "panel").
IPS_PANEL_LOG = Path(env_str("IPS_PANEL_LOG", str(BASE_DIR / "var" / "log" / "panel.log")))

IPS_LOG_LEVEL = env_str("IPS_LOG_LEVEL", "INFO").upper()
# INFO is for events (bans and unbans, start-up, a log that went missing); the idle stack is quiet.
# Celery writes a line for every task received and succeeded, and beat one per task it sends:
# the fallback read and the followers' schedule every 30 s, so those lines show only with IPS_LOG_TASKS
# (or IPS_LOG_LEVEL=DEBUG); a task's failure is an ERROR and always shows. tests/config/test_logging.py.
IPS_LOG_TASKS = env_bool("IPS_LOG_TASKS", False) or IPS_LOG_LEVEL == "DEBUG"
# NOTSET: as the root (IPS_LOG_LEVEL)
_ROUTINE_LEVEL = "NOTSET" if IPS_LOG_TASKS or IPS_LOG_LEVEL in ("ERROR", "CRITICAL") else "WARNING"
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "filters": {"routine": {"()": "config.logs.RoutineFilter", "level": _ROUTINE_LEVEL}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": IPS_LOG_LEVEL},
    "loggers": {
        "celery.worker.strategy": {"level": _ROUTINE_LEVEL},  # "Task ... received"
        "celery.app.trace": {"level": _ROUTINE_LEVEL},  # "Task ... succeeded" (failures are ERROR)
        "celery.beat": {"filters": ["routine"]},  # "Scheduler: Sending due task"; "beat: Starting..." stays
    },
}
