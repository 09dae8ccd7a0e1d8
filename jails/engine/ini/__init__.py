"""fail2ban's INI dialect: files, includes, layering and both kinds of interpolation.

Four modules, each built on the ones before it:
- `files`: where files come from (`Loader`s), one file read (`parse_ini`), and a
  stack of files merged with its includes and ``.local`` overlays;
- `interpolation`: ``%(name)s`` and ``<name>`` values, each line keeping its place;
- `filters`: a filter's files read into a `FilterDefinition` (`load_filter`...);
- `jails`: the jails of jail.conf and its overlays (`load_jails`, `JailSection`).

The names other modules import from `jails.engine.ini` are handed on here.
"""

from .files import DirectoryLoader, ListingLoader, Loader, MemoryLoader
from .files import parse_ini as parse_ini
from .filters import load_filter, load_filter_file, parse_filter_spec
from .jails import JailSection, Value, load_default, load_jails

__all__ = [
    "DirectoryLoader",
    "JailSection",
    "ListingLoader",
    "Loader",
    "MemoryLoader",
    "Value",
    "load_default",
    "load_filter",
    "load_filter_file",
    "load_jails",
    "parse_filter_spec",
]
