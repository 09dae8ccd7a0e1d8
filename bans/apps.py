"""The bans app: failures, tallies, bans, the firewall and what decides and schedules them; its signal
receivers are connected when the app is ready."""

from django.apps import AppConfig


class BansConfig(AppConfig):
    name = "bans"
    verbose_name = "Bans, failures and history"

    def ready(self) -> None:
        # Django's idiom: the receivers are connected once the app registry (and so the models) is ready
        from bans import signals  # noqa: F401, PLC0415  # imported for its receivers, here on purpose
