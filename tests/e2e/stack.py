"""The end-to-end tests' stack helpers live in the shared harness (scripts/harness/processes.py),
which the benchmarks use too; this module keeps the names the tests import."""

from scripts.harness.processes import Child, RedisBridge, bridged_redis, stop_children, wait_for

__all__ = ["Child", "RedisBridge", "bridged_redis", "stop_children", "wait_for"]
