"""The data that flows between the engine's parts.

`ini/` turns fail2ban files into a `FilterDefinition`; `filter/` compiles one into
a matcher. Keeping this plain (no Django, no I/O) lets the CLI, the tester page and
the workers share it.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class RegexLine:
    """One regex as written in a filter, with where it was written (for error messages)."""

    pattern: str
    path: str | None = None
    lineno: int | None = None


@dataclass(frozen=True)
class FilterDefinition:
    """A filter after INI reading and interpolation, before regex compilation.

    Regexes still carry fail2ban's tags (<HOST>, <F-USER>, ...); `<name>` references to
    definition variables are already substituted.
    """

    name: str
    failregex: tuple[RegexLine, ...]
    ignoreregex: tuple[RegexLine, ...] = ()
    prefregex: RegexLine | None = None
    datepattern: str | None = None
    maxlines: int = 1
    journalmatch: str = ""
    # every effective [Definition]/[Init] value after interpolation, for display
    variables: dict[str, str] = field(default_factory=dict)
    # the [Init] options in force (defaults overridden by options passed from the jail)
    options: dict[str, str] = field(default_factory=dict)
    # files read to build this definition, in reading order
    sources: tuple[str, ...] = ()
