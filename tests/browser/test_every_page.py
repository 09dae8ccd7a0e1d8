"""Every page of the panel in a real browser, at a desktop's width (1440 px) and a phone's (390 px),
with data in it: each answers, fits the screen (no sideways scrolling of the page: wide tables and
log lines scroll inside their own frames), logs no console error, and is saved as a screenshot
(var/screenshots/every-NAME-WIDTH.png) to be looked at."""

from __future__ import annotations

import datetime as dt

import pytest
from django.contrib.auth.models import User
from django.core.management import call_command
from django.utils import timezone
from playwright.sync_api import Page

from bans.models import Ban, ReplayRun
from jails.access import audit
from jails.models import Filter, Jail
from tests.browser.conftest import log_in_as, shot
from tests.factories import stored_failure

WIDTHS = [1440, 390]
LONG_LINE = ("Dec  7 10:00:00 web1 sshd[77]: Failed password for invalid user " + "x" * 180
             + " from 203.0.113.9 port 22 ssh2")


def history() -> dict[str, int]:
    """A jail with failures (one with a very long line), bans in several states, a replay, audit entries."""
    call_command("installfilters", verbosity=0)
    sshd = Jail.objects.create(name="sshd", filter=Filter.objects.get(name="sshd"), enabled=True,
                               logpath=["/var/log/auth.log"], ignoreip=["192.0.2.0/24"])
    now = timezone.now()
    for minutes in range(12):
        stored_failure(sshd, f"203.0.113.{minutes % 4 + 1}", now - dt.timedelta(minutes=minutes * 7),
                       line=LONG_LINE, user="root" if minutes % 2 else "a-rather-long-user-name-tried-by-a-bot")
    ban = None
    for index, state in enumerate([Ban.State.ACTIVE, Ban.State.EXPIRED, Ban.State.LIFTED, Ban.State.PENDING]):
        ban = Ban.objects.create(jail=sshd, jail_name="sshd", network=f"203.0.113.{index + 1}/32", family=4,
                                 bantime=3600, state=state, started_at=now - dt.timedelta(hours=index),
                                 expires_at=now + dt.timedelta(hours=1), evidence=[LONG_LINE] * 3)
    Ban.objects.create(jail=sshd, jail_name="sshd", network="2001:db8:aaaa:bbbb:cccc:dddd:eeee:ffff/128", family=6,
                       bantime=-1, state=Ban.State.ACTIVE)
    replay = ReplayRun.objects.create(jail=sshd, state=ReplayRun.State.DONE, lines_read=2, bytes_total=200,
                                      failures_found=2, summary={"networks": 1, "bans": 1, "ignored": 0})
    audit.record(audit.Actor.command(), "jail.update", sshd, before={"maxretry": 5}, after={"maxretry": 3})
    assert ban is not None
    return {"ban": ban.pk, "replay": replay.pk, "user": User.objects.order_by("pk").values_list("pk", flat=True)[0]}


def pages(ids: dict[str, int]) -> list[tuple[str, str]]:
    return [
        ("dashboard", "/"), ("dashboard-week", "/?period=week"), ("failures", "/failures/"),
        ("jails", "/jails/"), ("jail", "/jails/sshd/"), ("jail-edit", "/jails/sshd/edit/"), ("jail-new", "/jails/new/"),
        ("jail-ignore", "/jails/sshd/ignore/"), ("global-ignore", "/jails/ignore/"),
        ("filters", "/filters/"), ("filter", "/filters/sshd/"), ("filter-edit", "/filters/sshd/edit/"),
        ("filter-new", "/filters/new/"), ("filter-import", "/filters/import/"), ("tester", "/filters/test/"),
        ("bans", "/bans/"), ("bans-grouped", "/bans/?group=address"), ("ban", f"/bans/{ids['ban']}/"),
        ("ban-new", "/bans/new/"), ("lift-all", "/bans/lift-all/sshd/"),
        ("replay-new", "/replay/"), ("replay", f"/replay/{ids['replay']}/"),
        ("import", "/import/"), ("audit", "/audit/"), ("users", "/users/"), ("user-new", "/users/new/"),
        ("hosts", "/hosts/"),
    ]


@pytest.mark.parametrize("width", WIDTHS)
def test_every_page_answers_and_fits_the_screen(page: Page, transactional_db: None, width: int) -> None:
    log_in_as(page, "root", "superuser")
    ids = history()
    errors: list[str] = []
    page.on("console", lambda message: errors.append(f"{page.url}: {message.text}")
            if message.type == "error" else None)
    page.on("pageerror", lambda error: errors.append(f"{page.url}: {error}"))
    page.set_viewport_size({"width": width, "height": 900})
    too_wide: list[str] = []
    for name, path in pages(ids):
        response = page.goto(path)
        assert response is not None and response.status == 200, (path, response and response.status)
        page.wait_for_load_state("load")
        overflow = page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth")
        if overflow > 0:
            too_wide.append(f"{path}: {overflow} px")
        shot(page, f"every-{name}-{width}")
    assert not too_wide, f"wider than a {width} px screen: {too_wide}"
    assert not errors, errors
