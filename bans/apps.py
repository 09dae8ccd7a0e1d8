from django.apps import AppConfig


class BansConfig(AppConfig):
    name = "bans"
    verbose_name = "Bans, failures and history"
