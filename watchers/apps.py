"""The watchers app: log sources, the followers and readers that turn log lines into failures."""

from django.apps import AppConfig


class WatchersConfig(AppConfig):
    name = "watchers"
    verbose_name = "Log watchers"
