"""Jails: every section of fail2ban's jail files, its options interpolated.

Owns `load_jails` (``jail.conf``, ``jail.d/*.conf``, ``jail.local``,
``jail.d/*.local`` in fail2ban's order, plus the two defaults fail2ban adds),
`JailSection` and `Value` (an effective option and where it was written), and which
broken options are errors: those fail2ban reads for an enabled jail (JAIL_OPTIONS),
while a broken helper option is only reported in the jail's `errors`.

Built on `files.py` and `interpolation.py`; `filters.py` gives the filter options a
jail may set.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import ConfigError
from .files import (
    _CONDITIONAL_RE,
    DEFAULT,
    DEFINITION,
    INCLUDES,
    INIT,
    Loader,
    _Config,
    _Line,
    _Raw,
    _stack_for,
    _StackReader,
)
from .filters import FILTER_OPTIONS
from .interpolation import _Interpolator


@dataclass(frozen=True)
class Value:
    """An effective, interpolated option value and where it was written."""

    text: str
    path: str
    lineno: int


@dataclass
class JailSection:
    """A jail: its effective options (own, then [DEFAULT]), interpolated."""

    name: str
    values: dict[str, Value]
    # where the section header is (first file that opened it); added for error messages
    path: str = ""
    lineno: int = 0
    # options that cannot be interpolated, with the reason ("path:line: message"); added
    # because jail.conf's [DEFAULT] holds helpers (action_cf_mwl...) that only work when
    # an action supplies their variables, and fail2ban only complains about what it uses
    errors: dict[str, str] = field(default_factory=dict)

    @property
    def enabled(self) -> bool:
        value = self.values.get("enabled")
        return value is not None and value.text.strip().lower() in ("1", "on", "true", "yes")


# Sections of jail files that are not jails.
_NOT_JAILS = frozenset({INCLUDES, DEFINITION, INIT})

# The options fail2ban itself reads for an enabled jail (JailReader._configOpts): a
# broken one is an error; a broken helper option is only reported in `errors`.
JAIL_OPTIONS = frozenset(
    {
        "enabled", "backend", "maxretry", "maxmatches", "findtime", "bantime", "bantime.increment",
        "bantime.factor", "bantime.formula", "bantime.multipliers", "bantime.maxtime", "bantime.rndtime",
        "bantime.overalljails", "ignorecommand", "ignoreself", "ignoreip", "ignorecache", "filter",
        "logtimezone", "logencoding", "logpath", "action", *FILTER_OPTIONS,
    }
)  # fmt: skip


def load_jails(loader: Loader, *, confpath: str | None = None) -> list[JailSection]:
    """Every jail of jail.conf, jail.d/*.conf, jail.local, jail.d/*.local (fail2ban's order).

    Raises ConfigError for a syntax error anywhere, and for an option fail2ban needs
    (JAIL_OPTIONS) that cannot be interpolated in an enabled jail.
    """
    files = _stack_for(loader, "jail")
    if not files:
        raise ConfigError("no jail.conf or jail.local found")
    config = _StackReader(loader).read_all(files)
    _add_builtin_defaults(config, loader, confpath)
    interpolator = _Interpolator(config)
    jails: list[JailSection] = []
    for name, options in config.sections.items():
        if name in _NOT_JAILS or _CONDITIONAL_RE.match(name):
            continue
        path, lineno = config.section_origins.get(name, ("", 0))
        jail = JailSection(name, {}, path, lineno)
        for key in dict.fromkeys([*options, *config.defaults]):
            layers = options.get(key) or config.defaults[key]
            try:
                lines = interpolator.get(name, key, use_vars=False) or []
            except ConfigError as exc:
                jail.errors[key] = str(exc)
                continue
            jail.values[key] = Value(_joined_value(lines), layers[-1].path, layers[-1].linenos[0])
        _check_needed_options(jail)
        jails.append(jail)
    return jails


def load_default(loader: Loader, key: str, *, confpath: str | None = None) -> Value | None:
    """[DEFAULT]'s own value of `key` across the jail files (its last layer, interpolated as
    [DEFAULT] sees it), or None when no [DEFAULT] sets it. What a jail that does not set `key`
    inherits (the importer keeps `[DEFAULT] ignoreip` once, as the global ignore list)."""
    files = _stack_for(loader, "jail")
    if not files:
        raise ConfigError("no jail.conf or jail.local found")
    config = _StackReader(loader).read_all(files)
    _add_builtin_defaults(config, loader, confpath)
    layers = config.defaults.get(key.lower())
    if not layers:
        return None
    lines = _Interpolator(config).get(DEFAULT, key, use_vars=False) or []
    return Value(_joined_value(lines), layers[-1].path, layers[-1].linenos[0])


def _check_needed_options(jail: JailSection) -> None:
    if "enabled" in jail.errors:
        raise ConfigError(f"jail [{jail.name}]: {jail.errors['enabled']}")
    if not jail.enabled:
        return
    for key, message in jail.errors.items():
        if key in JAIL_OPTIONS:
            raise ConfigError(f"jail [{jail.name}], option {key!r}: {message}")


def _joined_value(lines: list[_Line]) -> str:
    return "\n".join(line[0] for line in lines).rstrip()


def _add_builtin_defaults(config: _Config, loader: Loader, confpath: str | None) -> None:
    """fail2ban adds these two defaults before interpolating jails (jail.conf uses both)."""
    root = confpath if confpath is not None else getattr(loader, "root", "/etc/fail2ban")
    builtin = {"fail2ban_version": "1.0.2", "fail2ban_confpath": str(root)}
    for key, text in builtin.items():
        # jail files may not override them: fail2ban's merge_defaults comes last
        config.defaults[key] = [_Raw.make((text,), (0,), "<fail2ban>")]
