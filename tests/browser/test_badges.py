"""The status badges in the browser: every state a page shows as a badge has the colour of its kind
(green ok, amber warn, red bad, grey off, blue info), taken from panel.css's one badge vocabulary.

The rows are made directly (no watcher, no firewall worker), one for each state the badges show:
bans in every state, an enabled and a disabled jail, a sound and a broken filter, an active and an
inactive user, replays in every state and a replay's verdicts. Each page is saved as a screenshot.
"""

from __future__ import annotations

import datetime as dt

from django.contrib.auth.models import User
from django.utils import timezone
from playwright.sync_api import Page, expect

from bans.models import Ban, ReplayRun
from jails.models import Filter, Jail
from tests.browser.conftest import shot

SOURCE = "[Definition]\nfailregex = ^fail <HOST>$\n"

# The badge's colours against the custom properties of its kind, both as the browser computes them.
BADGE_KINDS = """(selector) => {
  const probe = document.createElement("span");
  document.body.appendChild(probe);
  const kinds = {};
  for (const kind of ["ok", "warn", "bad", "off", "info"]) {
    probe.style.background = `var(--${kind}-bg)`; probe.style.color = `var(--${kind})`;
    const style = getComputedStyle(probe);
    kinds[`${style.backgroundColor} ${style.color}`] = kind;
  }
  probe.remove();
  return Array.from(document.querySelectorAll(selector)).map((badge) => {
    const style = getComputedStyle(badge);
    return [badge.textContent.trim(), kinds[`${style.backgroundColor} ${style.color}`] || "none"];
  });
}"""


def badge_kinds(page: Page, selector: str) -> list[tuple[str, str]]:
    return [(text, kind) for text, kind in page.evaluate(BADGE_KINDS, selector)]


def test_every_badge_has_the_colour_of_its_kind(admin_page: Page) -> None:
    page = admin_page
    now = timezone.now()
    sound = Filter.objects.create(name="sound", source=SOURCE)
    Filter.objects.create(name="broken", source="[Definition]\n", parse_error="no failregex")
    sshd = Jail.objects.create(name="sshd", filter=sound, enabled=True, logpath=["/var/log/auth.log"])
    Jail.objects.create(name="nginx", filter=sound, enabled=False, logpath=["/var/log/nginx/error.log"])
    states = ["pending", "applying", "active", "failed", "lifting", "lifted", "expired", "refused", "covered"]
    for number, state in enumerate(states, start=1):
        Ban.objects.create(jail=sshd, jail_name="sshd", network=f"192.0.2.{number}/32", family=4,
                           bantime=365 * 86400, started_at=now - dt.timedelta(minutes=number), state=state)
    User.objects.create_user("retired", "retired@example.org", "x", is_active=False)
    for state in ["queued", "running", "done", "failed"]:
        ReplayRun.objects.create(jail=sshd, state=state)
    verdicts = ReplayRun.objects.create(
        jail=sshd, state="done", finished_at=now,
        summary={"networks": 2, "bans": 2, "both": 1, "replay": 1, "live": 1},
        comparison=[{"network": "198.51.100.1/32", "verdict": "both"},
                    {"network": "198.51.100.2/32", "verdict": "replay"},
                    {"network": "198.51.100.3/32", "verdict": "live"}])

    page.goto("/")
    expect(page.locator("#panel-latest-bans")).to_be_visible()
    assert badge_kinds(page, "#panel-latest-bans .badge") == [
        ("pending", "warn"), ("applying", "warn"), ("active", "ok"), ("failed, retrying", "bad"),
        ("lifting", "warn"), ("lifted", "off"), ("expired", "off"), ("refused", "off"), ("covered", "off")]
    shot(page, "badges-dashboard")

    page.goto("/bans/")
    expect(page.locator("main .badge").first).to_be_visible()
    assert dict(badge_kinds(page, "main .badge")) == {
        "pending": "warn", "applying": "warn", "active": "ok", "failed, retrying": "bad", "lifting": "warn",
        "lifted": "off", "expired": "off", "refused": "off", "covered": "off"}
    shot(page, "badges-bans")

    page.goto("/jails/")
    assert sorted(badge_kinds(page, "#jail-table .badge")) == [("disabled", "off"), ("enabled", "ok")]
    shot(page, "badges-jails")

    page.goto("/jails/sshd/")
    assert badge_kinds(page, "#jail-state") == [("enabled", "ok")]
    shot(page, "badges-jail")
    page.goto("/jails/nginx/")
    assert badge_kinds(page, "#jail-state") == [("disabled", "off")]

    page.goto("/filters/")
    assert sorted(badge_kinds(page, "main .badge")) == [("broken", "bad"), ("ok", "ok")]
    shot(page, "badges-filters")

    page.goto("/users/")
    assert sorted(badge_kinds(page, "main .badge")) == [("active", "ok"), ("inactive", "off")]
    shot(page, "badges-users")

    page.goto("/replay/")
    assert sorted(badge_kinds(page, "#replay-runs .badge")) == [
        ("done", "ok"), ("done", "ok"), ("failed", "bad"),
        ("reading the log", "warn"), ("waiting for a worker", "warn")]
    shot(page, "badges-replays")

    page.goto(f"/replay/{verdicts.pk}/")
    verdict_kinds = [("both", "ok"), ("would ban", "warn"), ("did ban", "info")]
    assert badge_kinds(page, "#replay-diff-summary .badge") == verdict_kinds
    assert badge_kinds(page, "#replay-results .badge") == verdict_kinds
    shot(page, "badges-replay")
