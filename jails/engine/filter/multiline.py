"""What spans several lines: the `maxlines` buffer and `<F-MLFID>` sessions.

The buffer: with `maxlines > 1` the filter keeps the last lines (`BufLine`: the text
the regexes see, date cut out, and the original), joined by newlines for the regexes
(`_join`); a match consumes the lines it covers, except those skipped through
`<SKIPLINES>` (`_split_lines`).

Sessions: `<F-MLFID>` groups the lines of one session (connection id). `_Sessions` is
the bounded, expiring cache (fail2ban keeps 100 sessions for 5 minutes); `_SessionTxn`
holds one line's changes until the line is done, so a timeout leaves the cache as it
was; `_merge_session` folds a line's groups into its session (users, `<F-NOFAIL>`,
`<F-MLFGAINED>`, `<F-MLFFORGET>`, the lines seen), `_count_session` and
`merge_into_session` do the same for counting only.

Built on `regex.py` (for `CompiledRegex`) alone; `compiled.py` builds on this.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from typing import Any, NamedTuple

from ..regex import CompiledRegex


class BufLine(NamedTuple):
    """One buffered line: the text the regexes see (date cut out) and the original."""

    text: str
    original: str


# Session cache bounds (fail2ban keeps 100 sessions for 5 minutes).
_SESSION_MAX = 100
_SESSION_TTL = 300.0


def _join(lines: list[BufLine]) -> str:
    # fail2ban's buffer: lines joined by newlines, always ending with one
    if len(lines) == 1:
        return lines[0].text + "\n"
    return "\n".join([ln.text for ln in lines]) + "\n"


def _split_lines(
    regex: CompiledRegex, m: re.Match[str], buf: str, org: list[BufLine]
) -> tuple[list[BufLine], list[BufLine]]:
    """Which buffered lines a match covers, and which it leaves (skipped lines stay)."""
    if len(org) <= 1:
        return org, []
    start = buf.rfind("\n", 0, m.start() + 1) + 1
    end_nl = buf.find("\n", m.end() - 1 if m.end() > 0 else len(buf) - 1)
    end = end_nl + 1 if end_nl >= 0 else len(buf)
    first = buf.count("\n", 0, start)
    last = buf.count("\n", 0, end)
    matched = org[first:last]
    unmatched = org[:first]
    if regex.skiplines:
        n = 0
        for skipped in regex.skipped_lines(m):
            for k, candidate in enumerate(matched[n:]):
                if candidate.text == skipped:
                    unmatched.append(matched.pop(n + k))
                    n += k
                    break
    unmatched.extend(org[last:])
    return matched, unmatched


class _Sessions:
    """Bounded, expiring map of multi-line failure ids to their accumulated groups."""

    def __init__(self) -> None:
        self._data: OrderedDict[str, tuple[dict[str, Any], float]] = OrderedDict()

    def get(self, key: str, now: float) -> dict[str, Any] | None:
        entry = self._data.get(key)
        if entry is None:
            return None
        if entry[1] > now:
            return entry[0]
        del self._data[key]
        return None

    def set(self, key: str, value: dict[str, Any], now: float) -> None:
        data = self._data
        if len(data) >= _SESSION_MAX:
            # drop from the oldest end: expired ones, then just enough to make room
            while data:
                _, (_, expiry) = data.popitem(last=False)
                if expiry > now and len(data) < _SESSION_MAX:
                    break
        data[key] = (value, now + _SESSION_TTL)

    def put(self, key: str, value: dict[str, Any], now: float) -> None:
        """Store a session: a known one keeps its place and expiry, a new one is added."""
        entry = self._data.get(key)
        if entry is not None and entry[1] > now:
            self._data[key] = (value, entry[1])
        else:
            self.set(key, value, now)

    def unset(self, key: str) -> None:
        self._data.pop(key, None)

    def clear(self) -> None:
        self._data.clear()


class _SessionTxn:
    """Session changes of one line, applied to the cache only by commit().

    Entries are copied before they change (copy on write), so an interrupted line
    leaves the cache untouched; later matches of the same line see earlier changes."""

    def __init__(self, sessions: _Sessions, now: float) -> None:
        self._sessions = sessions
        self._now = now
        self._changes: dict[str, dict[str, Any] | None] = {}

    def get(self, key: str) -> dict[str, Any] | None:
        if key in self._changes:
            return self._changes[key]
        known = self._sessions.get(key, self._now)
        if known is None:
            return None
        entry = dict(known)
        if isinstance(entry.get("users"), set):
            entry["users"] = set(entry["users"])
        return entry

    def put(self, key: str, value: dict[str, Any]) -> None:
        self._changes[key] = value

    def drop(self, key: str) -> None:
        self._changes[key] = None

    def commit(self) -> None:
        for key, value in self._changes.items():
            if value is None:
                self._sessions.unset(key)
            else:
                self._sessions.put(key, value, self._now)


def merge_into_session(known: dict[str, Any], fail: dict[str, Any], gained: bool) -> set[str] | None:
    """Fold a line's fields into its <F-MLFID> session, as fail2ban does; the session's users.

    User names accumulate; a success (<F-MLFGAINED>) cancels the failures still pending. Shared by
    process_line and the block loop, whose results tests/engine/test_tally_block.py compares.
    """
    users = _add_user(known, fail.get("user"))
    known.pop("nofail", None)
    known.pop("mlfgained", None)
    if gained:
        known.pop("mlfpending", None)
    known.update({k: v for k, v in fail.items() if v is not None})
    return users


def _merge_session(sessions: _SessionTxn, mlfid: str, fail: dict[str, Any], matched: list[BufLine]) -> dict[str, Any]:
    """Fold this line's groups into its session (fail2ban's multi-line failure id).

    The session remembers groups (a host seen on an earlier line), the users tried,
    and the lines seen since the last reported failure (the attempts)."""
    known = sessions.get(mlfid)
    gained = bool(fail.get("mlfgained"))
    nofail = gained or bool(fail.get("nofail"))
    if gained and not fail.get("nofail"):
        fail["nofail"] = fail["mlfgained"]
    forget = bool(fail.pop("mlfforget", None))
    users: set[str] | None = None
    if known is not None:
        users = _add_user(known, fail.get("user"))
        was_quiet = bool(known.pop("nofail", None))
        was_quiet = bool(known.pop("mlfgained", None)) or was_quiet
        if gained:
            known.pop("mlfpending", None)  # a success cancels pending failures
        if not was_quiet and not known.get("mlfpending"):
            known.pop("matches", None)  # already reported: count afresh
        known.update({k: v for k, v in fail.items() if v is not None})
        fail = known
        if forget:
            sessions.drop(mlfid)
        else:
            sessions.put(mlfid, fail)
    elif not forget:
        users = _add_user(fail, fail.get("user"))
        sessions.put(mlfid, fail)
    if fail.pop("mlfpending", 0) or (users and len(users) > 1):
        # pending failures or several users tried: this is a failure after all
        fail.pop("nofail", None)
        fail.pop("mlfgained", None)
        nofail = gained = False
    if not nofail:
        lines: list[BufLine] = fail.pop("nofail-matches", [])
        lines = lines + (fail.get("matches") or [])
        if not gained:
            lines = lines + matched
        fail["matches"] = lines
    elif not forget:
        fail["nofail-matches"] = (fail.get("nofail-matches") or []) + matched
    return fail


def _count_session(
    fail: dict[str, Any], mlfid: str, changes: dict[str, dict[str, Any] | None], store: _Sessions, now: float
) -> dict[str, Any]:
    """_merge_session for counting: the same groups, users and flags, no lines.

    `changes` holds the line's session changes (committed by the caller once the
    line is done); a known session's groups are updated in place."""
    known = changes[mlfid] if mlfid in changes else store.get(mlfid, now)
    mlfgained = fail.get("mlfgained")
    gained = bool(mlfgained)
    if gained and not fail.get("nofail"):
        fail["nofail"] = mlfgained
    forget = bool(fail.pop("mlfforget", None))
    users: set[str] | None = None
    if known is not None:
        users = merge_into_session(known, fail, gained)
        fail = known
        changes[mlfid] = None if forget else fail
    elif not forget:
        users = _add_user(fail, fail.get("user"))
        changes[mlfid] = fail
    if fail.pop("mlfpending", 0) or (users and len(users) > 1):
        # pending failures or several users tried: this is a failure after all
        fail.pop("nofail", None)
        fail.pop("mlfgained", None)
    return fail


def _add_user(groups: dict[str, Any], user: Any) -> set[str] | None:
    users: set[str] | None = groups.get("users")
    if user:
        if not users:
            users = set()
            groups["users"] = users
        users.add(user)
    return users
