"""Log sources and read positions of the watchers (see docs/architecture.md)."""
