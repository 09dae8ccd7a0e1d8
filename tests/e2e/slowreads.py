"""The Celery app of the fault tests' watcher worker: ours, with each log read holding its
transaction 50 ms longer.

Killing the watcher inside a read's transaction is what tests/e2e/test_faults.py proves harmless.
The reads' writes now take a few milliseconds (bans/bulk.py), as short as the firewall worker's,
so the test could no longer tell a read's transaction from another's, nor land inside one. Here,
in the worker's pool processes only (a test-only app, never the product's), every read waits
50 ms after its writes, before its commit, with SQLite's write lock held.
"""

from __future__ import annotations

import time
from typing import Any

from celery.signals import worker_process_init

from config.celery import app

__all__ = ["app"]

HELD_SECONDS = 0.05


@worker_process_init.connect
def hold_each_read_open(**kwargs: Any) -> None:
    from watchers import services  # Django is set up in the pool process by now

    counting = services.act_on

    def held(*args: Any, **options: Any) -> Any:
        report = counting(*args, **options)
        time.sleep(HELD_SECONDS)  # inside read_source's transaction: the commit comes after
        return report

    services.act_on = held
