"""Start the stack's commands as forks of one process that has loaded what they all use.

Started as fresh interpreters, the panel (gunicorn), the watcher worker and the firewall worker
each load Django, Celery, the apps and the engine for themselves: three private copies of about
55-70 MB. Forked from runstack after it has loaded all of that once (`preload`), they share those
pages copy-on-write, as gunicorn's `--preload` does for its own workers: measured on an idle stack,
299 -> 237 MB PSS, the firewall worker alone 71 -> 38 MB.

A fork runs the command as `python -m MODULE ARGS` would (`runpy`), in a session of its own, as
`subprocess.Popen(start_new_session=True)` did. What a fork must not inherit is dealt with here:
open database connections (closed before forking), runstack's signal handlers (reset), buffered
output (flushed). Threads are the one thing a fork cannot carry: when the loaded process has any,
the commands are started as fresh interpreters instead.
"""

from __future__ import annotations

import atexit
import contextlib
import gc
import os
import runpy
import signal
import sys
import threading
import traceback
from collections.abc import Callable, Sequence

from django import db
from django.urls import get_resolver


def preload() -> None:
    """Load, in this process, what the stack's commands load first thing, then freeze it out of the
    cyclic collector (a collection in a fork would otherwise write to every object, copying its page).
    The imports are here, not at the top: runstack loads this module with or without --no-fork, and
    only preload() is to pull in gunicorn, Celery's worker and beat, the WSGI application and the URLconf."""
    import celery.apps.beat  # noqa: PLC0415  # loaded by preload() only, in runstack
    import celery.apps.worker  # noqa: PLC0415  # loaded by preload() only, in runstack
    import celery.bin.celery  # noqa: PLC0415  # loaded by preload() only, in runstack
    import celery.concurrency.prefork  # noqa: PLC0415  # loaded by preload() only, in runstack
    import celery.concurrency.solo  # noqa: PLC0415  # loaded by preload() only, in runstack
    import gunicorn.app.wsgiapp  # noqa: PLC0415  # loaded by preload() only, in runstack
    import gunicorn.arbiter  # noqa: PLC0415  # loaded by preload() only, in runstack
    import gunicorn.workers.sync  # noqa: PLC0415  # loaded by preload() only, in runstack

    import config.wsgi  # noqa: PLC0415  # loaded by preload() only, in runstack
    from config.celery import app  # noqa: PLC0415  # loaded by preload() only, in runstack

    del celery, gunicorn, config  # imported for their modules' sake
    app.loader.import_default_modules()  # the apps' tasks modules (the workers import them at start)
    _views = get_resolver().url_patterns  # the URLconf and the views (gunicorn loads them on the first request)
    db.connections.close_all()  # a connection shared by two processes is a corrupted connection
    gc.collect()
    gc.freeze()


def can_fork() -> bool:
    """A fork copies only the thread that forks: a lock held by another thread stays locked forever.
    The kernel's count, so that threads started by C libraries count too."""
    return len(os.listdir("/proc/self/task")) == 1


def fork_command(argv: Sequence[str], title: str) -> int:
    """Run `argv` (`python -m MODULE ARGS...`) in a child forked from this process; its pid."""
    if len(argv) < 3 or argv[1] != "-m":
        raise ValueError(f"fork_command runs `python -m MODULE ...` commands, not {list(argv)!r}")
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid:
        return pid
    code = 1
    try:
        code = _run_in_child(list(argv), title)
    finally:
        # Whatever happens, the child never returns into the parent's code: it would go on forking
        # the parent's other commands (a second firewall worker) and exec a second supervisor.
        os._exit(code)


def _run_in_child(argv: list[str], title: str) -> int:
    """The command's exit status, as `python -m` would end with it; never raises."""
    code = 1
    try:
        os.setsid()
        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGCHLD):
            signal.signal(signum, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_SETMASK, set())
        _set_title(title)
        module = argv[2]
        sys.argv = [module, *argv[3:]]  # runpy puts the module's path first, as `python -m` does
        runpy.run_module(module, run_name="__main__", alter_sys=True)
        code = 0
    except SystemExit as exc:
        code = exit_status(exc.code)
    except KeyboardInterrupt:
        code = 128 + signal.SIGINT
    except BaseException:
        _quietly(traceback.print_exc)
    # what the interpreter does on its way out, which os._exit does not: join non-daemon threads,
    # run the atexit functions, flush the standard streams
    _quietly(threading._shutdown)  # type: ignore[attr-defined]
    _quietly(atexit._run_exitfuncs)
    _quietly(sys.stdout.flush)
    _quietly(sys.stderr.flush)
    return code


def _quietly(step: Callable[[], object]) -> None:
    with contextlib.suppress(BaseException):  # a broken pipe on the way out changes nothing: the status is decided
        step()


def exit_status(code: object) -> int:
    """The status `sys.exit(code)` gives a process."""
    if code is None:
        return 0
    if isinstance(code, int):
        return code & 0xFF
    _quietly(lambda: print(code, file=sys.stderr))
    return 1


def _set_title(title: str) -> None:
    """What `ps` shows until gunicorn or Celery sets its own title (both do with setproctitle)."""
    try:
        import setproctitle  # noqa: PLC0415  # in the forked child only, and optional
    except ImportError:  # an optional nicety: the command works without it
        return
    setproctitle.setproctitle(title)
