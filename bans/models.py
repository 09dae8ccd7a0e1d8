"""Bans, failures and their history: filled by the watchers (see docs/architecture.md)."""
