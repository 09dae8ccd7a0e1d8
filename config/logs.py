"""Logging helpers for config/settings.py's LOGGING."""

from __future__ import annotations

import logging


class RoutineFilter(logging.Filter):
    """Drops beat's line per task sent ("Scheduler: Sending due task ...", every 2 s for the firewall
    watch and the log reads) below `level`, keeping beat's other lines (its start-up, its errors)."""

    ROUTINE = ("Scheduler: Sending due task",)

    def __init__(self, level: str | int = logging.WARNING) -> None:
        super().__init__()
        self.level = logging.getLevelName(level) if isinstance(level, str) else level

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= self.level or not str(record.msg).startswith(self.ROUTINE)
