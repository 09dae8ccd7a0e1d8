"""Test and benchmark harness shared by tests/ and bench/ (neither imports the other): network
namespaces (netns.py) and child processes with a Redis bridge into a namespace (processes.py).
Not part of the product: nothing in config/, jails/, bans/ or watchers/ imports it."""
