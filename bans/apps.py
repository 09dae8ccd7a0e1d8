from django.apps import AppConfig


class BansConfig(AppConfig):
    name = "bans"
    verbose_name = "Bans, failures and history"

    def ready(self) -> None:
        # Django's idiom: the receivers are connected once the app registry (and so the models) is ready
        from bans import signals  # noqa: F401, PLC0415  # imported for its receivers, here on purpose
