"""Errors raised by the filter engine.

Every error can say where it comes from (a file and a line) so that the admin can
go straight to the broken spot. The engine never imports Django.
"""

from __future__ import annotations


class EngineError(ValueError):
    """Base error of the engine: a message, optionally a file path and line number."""

    def __init__(self, message: str, path: str | None = None, lineno: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.path = path
        self.lineno = lineno

    def __str__(self) -> str:
        where = self.path or ""
        if where and self.lineno:
            where = f"{where}:{self.lineno}"
        return f"{where}: {self.message}" if where else self.message


class ConfigError(EngineError):
    """A fail2ban INI file cannot be read: syntax, missing include, interpolation loop..."""


class FilterError(EngineError):
    """A filter cannot be compiled: bad regex, no host tag, bad datepattern..."""


class RegexTimeout(EngineError):
    """A regex ran longer than its budget on one line (catastrophic backtracking)."""
