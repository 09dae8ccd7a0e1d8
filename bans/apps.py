from django.apps import AppConfig


class BansConfig(AppConfig):
    name = "bans"
    verbose_name = "Bans, failures and history"

    def ready(self) -> None:
        from bans import signals  # noqa: F401  (connects the receivers)
