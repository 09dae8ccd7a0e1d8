"""Our own filter library, written by us, in fail2ban's filter dialect (see README.md here)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from django.db import transaction

from jails import services
from jails.engine import ini
from jails.models import Filter

FILTER_DIR = Path(__file__).resolve().parent / "filter.d"


@dataclass
class InstallResult:
    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)


def builtin_sources() -> dict[str, str]:
    return {path.stem: path.read_text(encoding="utf-8") for path in sorted(FILTER_DIR.glob("*.conf"))}


def install_builtin_filters() -> InstallResult:
    """Create missing built-in filters and refresh stale ones, all or nothing."""
    sources = builtin_sources()
    loader = ini.MemoryLoader({f"filter.d/{name}.conf": text for name, text in sources.items()})
    result = InstallResult()
    existing = {f.name: f for f in Filter.objects.filter(name__in=sources)}
    with transaction.atomic():
        for name, text in sources.items():
            fields = builtin_fields(loader, name, text)
            install_one(existing.get(name), name, text, fields, result)
    return result


def builtin_fields(loader: ini.MemoryLoader, name: str, text: str) -> dict[str, object]:
    if services.is_include_only(name, text):
        return services.include_fields(f"jails/builtin/filter.d/{name}.conf", text)
    definition = ini.load_filter(loader, name)
    services.check_definition(definition)
    return services.derive_fields(definition, text)


def install_one(row: Filter | None, name: str, text: str, fields: dict[str, object], result: InstallResult) -> None:
    values = {"source": text, "source_local": "", "origin": Filter.Origin.BUILTIN,
              "origin_path": f"jails/builtin/filter.d/{name}.conf", **fields}
    if row is None:
        Filter.objects.create(name=name, **values)
        result.created.append(name)
    elif row.origin != Filter.Origin.BUILTIN:
        result.kept.append(name)
    elif any(getattr(row, key) != value for key, value in values.items()):
        Filter.objects.filter(pk=row.pk).update(**values)
        result.updated.append(name)
    else:
        result.unchanged.append(name)
