"""What `manage.py runstack` becomes once it has started the stack: a supervisor without Django.

runstack needs Django to plan the stack (how many follower shards beat runs, the settings), but
not to watch it: a Django process that only waits would cost the stack about 55 MB. So it starts
the children and replaces itself (exec: same process id, same children) with this script, run by
the same Python with no site packages (about 10 MB). It does what runstack did next: one Ctrl-C
(SIGINT) or SIGTERM stops everything; if one child exits, the others are stopped too and the exit
status says so. One exception: a child that ends with RESTART_STATUS asked to be started again
(the firewall worker ends itself so when a task outlives its hard time limit, bans/watching.py),
and is, with the same command, up to MAX_RESTARTS times in RESTART_WINDOW_SECONDS.

Standard library only, on purpose. Usage (runstack builds it): python -S supervise.py SPEC, SPEC
being JSON: {"children": [{"name": "web", "pid": 123, "argv": [...]}, ...], "grace": 10}.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time

# The supervisor sleeps in sigtimedwait until a child ends (SIGCHLD) or it is asked to stop: an
# idle stack costs no wake-ups here. The wait still ends this often, and reaps, should a SIGCHLD
# ever be missed.
WAKE_SIGNALS = {signal.SIGCHLD, signal.SIGINT, signal.SIGTERM}
BACKSTOP_SECONDS = 5.0
RESTART_STATUS = 70  # bans/watching.py ends the firewall worker with it
MAX_RESTARTS, RESTART_WINDOW_SECONDS = 3, 600.0


def say(text: str, *, error: bool = False) -> None:
    stream = sys.stderr if error else sys.stdout
    stream.write(f"runstack: {text}\n")
    stream.flush()


class Supervisor:
    def __init__(self, children: dict[int, str], grace: float, argvs: dict[str, list[str]] | None = None) -> None:
        self.children = dict(children)  # pid -> name, of those still running
        self.argvs = dict(argvs or {})  # name -> command, for a restart
        self.restarts: list[float] = []
        self.grace = grace
        self.stopping = False

    def reap(self) -> tuple[str, int] | None:
        """(name, exit status) of a child that ended, if any did."""
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return None
        if pid == 0 or pid not in self.children:
            return None
        return self.children.pop(pid), os.waitstatus_to_exitcode(status)

    def watch(self) -> int:
        """With WAKE_SIGNALS blocked: until a child ends (its status) or SIGINT/SIGTERM (0)."""
        while not self.stopping:
            ended = self.reap()
            if ended is not None:
                name, code = ended
                if code == RESTART_STATUS and self.restart(name):
                    continue
                say(f"{name} exited with status {code}; stopping the others", error=True)
                return code or 1
            woken = signal.sigtimedwait(WAKE_SIGNALS, BACKSTOP_SECONDS)
            if woken is not None and woken.si_signo in (signal.SIGINT, signal.SIGTERM):
                self.stopping = True
        say("stopping")
        return 0

    def restart(self, name: str) -> bool:
        """Start `name` again, unless it has no command or asked too often lately."""
        now = time.monotonic()
        self.restarts = [t for t in self.restarts if now - t < RESTART_WINDOW_SECONDS]
        argv = self.argvs.get(name)
        if not argv or len(self.restarts) >= MAX_RESTARTS:
            return False
        self.restarts.append(now)
        # its own session, as runstack started it; without the supervisor's blocked signals
        # S603: the child's own argv as runstack built it (this Python, -m and its arguments), no shell
        child = subprocess.Popen(argv, start_new_session=True,  # noqa: S603
                                 preexec_fn=lambda: signal.pthread_sigmask(signal.SIG_UNBLOCK, WAKE_SIGNALS))
        self.children[child.pid] = name
        say(f"{name} asked to be started again (status {RESTART_STATUS}); started, pid {child.pid}", error=True)
        return True

    def stop_all(self) -> None:
        for pid in self.children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + self.grace
        while self.children and time.monotonic() < deadline:
            if self.reap() is None:
                time.sleep(0.05)
        for pid, name in list(self.children.items()):
            say(f"{name} did not stop in {self.grace:.0f}s; killing it", error=True)
            try:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
            except (ProcessLookupError, ChildProcessError):
                pass
            self.children.pop(pid, None)


def main(argv: list[str]) -> int:
    spec = json.loads(argv[1])
    supervisor = Supervisor({int(c["pid"]): str(c["name"]) for c in spec["children"]}, float(spec.get("grace", 10)),
                            {str(c["name"]): list(c["argv"]) for c in spec["children"] if c.get("argv")})
    supervisor.stopping = bool(spec.get("stopping"))
    # runstack blocked SIGINT and SIGTERM before exec (the mask survives it): one sent meanwhile is
    # pending and ends the first wait. SIGCHLD joins them; a child that ended before is reaped first.
    signal.pthread_sigmask(signal.SIG_BLOCK, WAKE_SIGNALS)
    code = supervisor.watch()
    supervisor.stop_all()
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv))
