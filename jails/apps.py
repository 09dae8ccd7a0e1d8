from django.apps import AppConfig


class JailsConfig(AppConfig):
    name = "jails"
    verbose_name = "Jails and filters"
