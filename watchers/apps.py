from django.apps import AppConfig


class WatchersConfig(AppConfig):
    name = "watchers"
    verbose_name = "Log watchers"
