"""The filter tester page: live results (htmx partial) and plain POST, highlight escaping, limits, timeouts."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from django.test import Client
from django.urls import reverse
from pytest_django import Settings

from jails import tester
from jails.builtin import install_builtin_filters
from jails.models import Filter, Jail
from tests.clients import client_for

pytestmark = pytest.mark.django_db

SSHD_FAIL = "Nov 22 03:04:05 host sshd[1]: Invalid user bob from 192.0.2.7 port 22"
SSHD_OTHER = "Nov 22 03:04:06 host sshd[1]: Accepted publickey for alice from 192.0.2.8 port 22 ssh2"
HOSTILE = "Nov 22 03:04:07 host sshd[1]: Invalid user <script>alert(1)</script> from 192.0.2.9 port 22"


@pytest.fixture
def viewer() -> Client:
    install_builtin_filters()
    return client_for("viewer")


def post(client: Client, htmx: bool = False, url: str | None = None, **data: str) -> str:
    headers = {"HX-Request": "true"} if htmx else {}
    response = client.post(url or reverse("filter_tester"), {"source": "stored", **data}, headers=headers)
    assert response.status_code == 200
    return response.content.decode()


def test_it_shows_the_page_to_a_viewer(viewer: Client) -> None:
    html = viewer.get(reverse("filter_tester")).content.decode()
    assert 'id="tester-form"' in html and 'id="tester-log"' in html
    assert 'hx-trigger="input changed delay:300ms"' in html and 'id="tester-results"' in html


def test_it_preselects_the_filter_of_its_url(viewer: Client) -> None:
    html = viewer.get(reverse("filter_tester_for", args=["sshd"])).content.decode()
    assert '<option value="sshd" selected>' in html
    assert viewer.get(reverse("filter_tester_for", args=["nope"])).status_code == 404


def test_it_answers_htmx_with_the_results_partial_only(viewer: Client) -> None:
    html = post(viewer, htmx=True, filter="sshd", log=SSHD_FAIL)
    assert html.strip().startswith('<section id="tester-results"')
    assert "<html" not in html and 'id="tester-form"' not in html
    assert 'class="tester-lines"' in html


def test_it_renders_the_whole_page_without_javascript(viewer: Client) -> None:
    html = post(viewer, filter="sshd", log=SSHD_FAIL)
    assert "<html" in html and 'id="tester-form"' in html and 'class="tester-lines"' in html
    assert SSHD_FAIL.split(": ")[1].split(" from")[0] in html  # the log box keeps what was typed


def test_it_reports_each_line_with_regex_host_date_and_fields(viewer: Client) -> None:
    html = post(viewer, htmx=True, filter="sshd", log="\n".join([SSHD_FAIL, SSHD_OTHER, "# a comment"]))
    assert 'id="tester-summary"' in html
    assert '<span class="count-lines">2</span>' in html
    assert '<span class="count-matched">1</span>' in html
    line1 = html.split('id="line-1"')[1].split("</tr>")[0]
    assert "status-matched" in line1 and "failregex 2" in line1
    assert 'from <mark class="host">192.0.2.7</mark> port 22' in line1
    assert "03:04:05 UTC" in line1 and "date-template" in line1
    assert '<span class="field-name">user</span>=<span class="field-value">bob</span>' in line1
    line2 = html.split('id="line-2"')[1].split("</tr>")[0]
    assert "status-missed" in line2 or "status-ignored" in line2
    assert "status-skipped" in html.split('id="line-3"')[1]


def test_it_escapes_a_hostile_line_around_the_highlight(viewer: Client) -> None:
    html = post(viewer, htmx=True, filter="sshd", log=HOSTILE)
    assert "<script>" not in html
    assert 'Invalid user &lt;script&gt;alert(1)&lt;/script&gt; from <mark class="host">192.0.2.9</mark>' in html


def test_it_highlights_the_address_the_regex_took_not_an_earlier_one(viewer: Client) -> None:
    line = "Nov 22 03:04:05 host sshd[1]: Invalid user 192.0.2.50 from 192.0.2.7 port 22"
    html = post(viewer, htmx=True, filter="sshd", log=line)
    assert 'user 192.0.2.50 from <mark class="host">192.0.2.7</mark>' in html


def test_it_counts_ignored_lines(viewer: Client) -> None:
    html = post(viewer, htmx=True, source="regex", failregex=r"^login failed from <HOST>$",
                ignoreregex=r"192\.0\.2\.1\b", log="login failed from 192.0.2.1\nlogin failed from 192.0.2.2\nnoise")
    assert '<span class="count-ignored">1</span>' in html
    assert '<span class="count-matched">1</span>' in html and '<span class="count-missed">1</span>' in html
    assert "ignoreregex 1" in html
    assert "an ignoreregex matched" in html


def test_an_ignored_line_says_why_and_internal_groups_stay_hidden(viewer: Client) -> None:
    nofail = post(viewer, htmx=True, source="regex",
                  failregex=r"^(?:<F-NOFAIL>accepted</F-NOFAIL>|failed) login from <HOST>$",
                  log="accepted login from 192.0.2.1")
    assert "status-ignored" in nofail and "only an &lt;F-NOFAIL&gt; part matched" in nofail
    sshd = post(viewer, htmx=True, filter="sshd",
                log="Nov 22 03:04:05 host sshd[1]: Failed password for invalid user bob from 192.0.2.7 port 22 ssh2")
    assert "status-matched" in sshd and "bob" in sshd
    assert "cond_inv" not in sshd and "cond_user" not in sshd  # the filter's regex conditionals, not fields
    mixed = post(viewer, htmx=True, source="regex", failregex="^<F-NOFAIL>x</F-NOFAIL> from <HOST>$\n^x from <HOST>$",
                 log="x from 192.0.2.1")
    assert "a failregex matched an &lt;F-NOFAIL&gt; part" in mixed and "multi-line session" not in mixed


def test_it_flags_an_unsafe_regex_with_its_explanation(viewer: Client) -> None:
    html = post(viewer, htmx=True, source="regex", failregex="^.* from <HOST>", log="user x from 192.0.2.1")
    assert 'id="regex-warnings"' in html and "greedy catch-all" in html and "end anchor" in html


def test_it_reports_a_regex_that_does_not_compile(viewer: Client) -> None:
    html = post(viewer, htmx=True, source="regex", failregex="^(unclosed <HOST>", log="x 192.0.2.1")
    assert 'id="tester-error"' in html and "does not compile" in html


def test_it_reports_a_regex_that_runs_out_of_time(viewer: Client, settings: Settings) -> None:
    settings.IPS_REGEX_BUDGET_SECONDS = 0.05
    evil = "a" * 40 + "!"
    html = post(viewer, htmx=True, source="regex", failregex=r"^(a|aa)+$<HOST>", log="\n".join([evil] * 5))
    assert "status-timeout" in html and "ran longer than" in html
    assert 'id="tester-stopped"' in html  # stopped after MAX_TIMEOUTS lines, the rest untested
    assert "status-untested" in html


def test_it_refuses_too_many_lines_with_a_clear_message(viewer: Client) -> None:
    html = post(viewer, htmx=True, filter="sshd", log="\n".join([SSHD_FAIL] * (tester.MAX_LINES + 1)))
    assert 'id="tester-error"' in html and f"at most {tester.MAX_LINES:,}" in html
    assert "tester-lines" not in html


def test_it_tests_a_pasted_filter_with_stored_includes(viewer: Client) -> None:
    source = ("[INCLUDES]\nbefore = ips-common.conf\n[Definition]\n_daemon = sshd\n"
              "failregex = ^%(__prefix_line)sInvalid user \\S+ from <HOST> port \\d+$\n")
    html = post(viewer, htmx=True, source="pasted", filter_source=source, log=SSHD_FAIL)
    assert '<span class="count-matched">1</span>' in html


def test_it_loads_the_last_lines_of_a_jails_log(viewer: Client, tmp_path: Path) -> None:
    log = tmp_path / "auth.log"
    log.write_text("\n".join(["noise"] * 10 + [SSHD_FAIL, SSHD_OTHER]) + "\n")
    Jail.objects.create(name="sshd", filter=Filter.objects.get(name="sshd"), logpath=[str(tmp_path / "*.log")])
    html = post(client_for("operator"), source="jail", jail="sshd", tail_jail="sshd", tail_count="2", load_tail="1")
    assert 'id="tester-loaded"' in html and str(log) in html
    assert '<span class="count-lines">2</span>' in html and '<span class="count-matched">1</span>' in html


def test_it_says_why_it_cannot_load_a_journal_jail(viewer: Client) -> None:
    Jail.objects.create(name="sshd", filter=Filter.objects.get(name="sshd"), backend=Jail.Backend.SYSTEMD)
    html = post(client_for("operator"), tail_jail="sshd", load_tail="1", filter="sshd")
    assert 'id="tester-load-error"' in html and "journal" in html


def test_it_needs_a_filter_for_the_chosen_kind(viewer: Client) -> None:
    html = post(viewer, htmx=True, source="regex", log=SSHD_FAIL)
    assert "tester-lines" not in html
    html = post(viewer, source="regex", log=SSHD_FAIL)
    assert "Needed for this kind of test." in html


def test_a_viewer_cannot_load_a_jails_log(viewer: Client, tmp_path: Path) -> None:
    # a log holds more than failures (successful logins, who and from where): operators only
    (tmp_path / "auth.log").write_text(SSHD_OTHER + "\n")
    Jail.objects.create(name="sshd", filter=Filter.objects.get(name="sshd"), logpath=[str(tmp_path / "auth.log")])

    html = post(viewer, source="jail", jail="sshd", tail_jail="sshd", load_tail="1")

    assert 'id="tester-load-error"' in html and "operator" in html
    assert "alice" not in html and 'id="tester-load"' not in html


@pytest.mark.parametrize("target", ["/etc/passwd", "settings"])
def test_it_never_shows_system_or_panel_files_even_through_a_link(target: str, tmp_path: Path) -> None:
    from django.conf import settings

    install_builtin_filters()
    operator = client_for("operator")
    real = "/etc/passwd" if target == "/etc/passwd" else str(settings.BASE_DIR / "config" / "settings.py")
    (tmp_path / "app.log").symlink_to(real)
    # stored as an admin could have before the form refused such paths (or through a glob)
    Jail.objects.create(name="app", filter=Filter.objects.get(name="sshd"), logpath=[str(tmp_path / "*.log")])

    html = post(operator, source="jail", jail="app", tail_jail="app", load_tail="1")

    assert 'id="tester-load-error"' in html and "not a log file the tester shows" in html
    assert "root:" not in html and "SECRET_KEY" not in html


def test_it_bounds_the_regex_boxes(viewer: Client) -> None:
    html = post(viewer, source="regex", failregex="^<HOST> " + "a" * 30_000, log=SSHD_FAIL)

    assert "at most 20000 characters" in html and "tester-lines" not in html


def test_it_stops_a_user_who_spent_the_minutes_regex_budget(viewer: Client, monkeypatch: pytest.MonkeyPatch) -> None:
    from jails import views_tester

    assert 'id="tester-summary"' in post(viewer, htmx=True, filter="sshd", log=SSHD_FAIL)
    monkeypatch.setattr(views_tester, "BUDGET_SECONDS_PER_MINUTE", 0.0)  # the run above spent it
    html = post(viewer, htmx=True, filter="sshd", log=SSHD_FAIL)
    assert "used this minute&#x27;s tester time" in html
    assert 'id="tester-summary"' not in html
    other = client_for("operator")  # the budget is per user: someone else still gets results
    monkeypatch.setattr(views_tester, "BUDGET_SECONDS_PER_MINUTE", 60.0)
    assert 'id="tester-summary"' in post(other, htmx=True, filter="sshd", log=SSHD_FAIL)


def test_it_answers_about_a_catastrophic_regex_on_hostile_lines(viewer: Client) -> None:
    """The reviewer's case: ^(a+)+$ <HOST> and three lines of 5,000 'a'. Each line is stopped after the
    tester's per-line budget and the run after its total, so the page answers (the outcome is asserted,
    not the time: tester.MAX_LINE_SECONDS and MAX_SECONDS bound it)."""
    html = post(viewer, htmx=True, source="regex", failregex="^(a+)+$ <HOST>", log="\n".join(["a" * 5000] * 3))
    assert 'id="tester-summary"' in html and '<span class="count-timeouts">3</span>' in html
    for number in (1, 2, 3):
        assert "status-timeout" in html.split(f'id="line-{number}"')[1].split("</tr>")[0]
    assert "ran longer than 0.3s" in html  # the tester's own budget, not the workers' second
    assert "regex-dangerous" in html and "catastrophic backtracking" in html and "nested quantifier" in html


def test_its_budgets_fit_in_two_seconds() -> None:
    assert tester.line_budget() <= tester.MAX_LINE_SECONDS
    assert tester.MAX_SECONDS + tester.MAX_LINE_SECONDS * 1.125 <= 1.6


# --- the result list: which lines, pages; test this draft ------------------------------------------


def lines_listed(html: str) -> list[int]:
    return [int(part.split('"')[0]) for part in html.split('id="line-')[1:]]


def test_a_missed_line_says_why(viewer: Client) -> None:
    html = post(viewer, htmx=True, filter="sshd", log=f"{SSHD_OTHER}\nno date, no match")

    # sshd has a prefregex: the reason names it
    assert "neither the prefregex nor a failregex matched" in html.split('id="line-1"')[1].split("</tr>")[0]
    assert "no date was recognised in it either" in html.split('id="line-2"')[1].split("</tr>")[0]
    raw = post(viewer, htmx=True, source="regex", failregex=r"^login failed from <HOST>$", log="noise")
    assert "no failregex matched; no date" in raw


@pytest.mark.parametrize(("show", "listed"), [("all", [1, 2, 3]), ("matched", [2]), ("missed", [1]),
                                              ("ignored", [3]), ("bogus", [])])
def test_it_lists_only_the_lines_of_one_result_and_still_counts_them_all(
        viewer: Client, show: str, listed: list[int]) -> None:
    html = post(viewer, htmx=True, source="regex", failregex=r"^login failed from <HOST>$",
                ignoreregex=r"192\.0\.2\.1\b", log="noise\nlogin failed from 192.0.2.2\nlogin failed from 192.0.2.1",
                show=show)

    if show == "bogus":
        assert 'id="tester-results"' in html and 'id="tester-summary"' not in html  # an invalid choice: no run
        return
    assert lines_listed(html) == listed
    assert '<span class="count-lines">3</span>' in html
    assert ('id="tester-shown"' in html) is (show != "all")


def test_past_two_hundred_lines_the_list_comes_in_pages(viewer: Client) -> None:
    log = "\n".join(f"login failed from 192.0.2.{n % 250 + 1}" for n in range(450))

    first = post(viewer, htmx=True, source="regex", failregex=r"^login failed from <HOST>$", log=log)
    third = post(viewer, htmx=True, source="regex", failregex=r"^login failed from <HOST>$", log=log, line_page="3")
    beyond = post(viewer, htmx=True, source="regex", failregex=r"^login failed from <HOST>$", log=log, line_page="99")

    assert lines_listed(first) == list(range(1, 201))
    assert '<span class="count-matched">450</span>' in first and "page 1 of 3" in first
    assert first.count('name="line_page"') == 2 * 2  # pages 2 and 3, above and below the list
    assert lines_listed(third) == list(range(401, 451))
    assert lines_listed(beyond) == lines_listed(third)  # past the end: the last page
    assert len(first) < 400_000


def test_test_this_draft_takes_a_filters_unsaved_text() -> None:
    install_builtin_filters()
    client = client_for("admin")
    html = client.get(reverse("filter_edit", args=["sshd"])).content.decode()
    assert 'id="filter-test-draft"' in html and 'formtarget="_blank"' in html
    assert html.index('id="filter-save"') < html.index('id="filter-test-draft"')  # Enter still saves

    page = client.post(reverse("filter_tester_for", args=["sshd"]), {"test_draft": "filter",
                                                  "source": "[Definition]\nfailregex = ^draft from <HOST>$\n",
                                                  "source_local": ""}).content.decode()
    tried = client.post(reverse("filter_tester"), {"source": "pasted", "filter_source": "[Definition]\n"
                                                   "failregex = ^draft from <HOST>$\n", "log": "draft from 192.0.2.7"},
                        headers={"HX-Request": "true"}).content.decode()

    assert 'id="tester-draft"' in page and "the unsaved filter sshd" in page
    assert re.search(r'value="pasted"[^>]* checked', page) and "^draft from &lt;HOST&gt;$" in page
    assert '<span class="count-matched">1</span>' in tried
    assert Filter.objects.get(name="sshd").source.find("draft") == -1  # nothing saved


def test_test_this_draft_takes_a_jails_filter_options_and_datepattern() -> None:
    install_builtin_filters()
    client = client_for("admin")
    jail = Jail.objects.create(name="web", filter=Filter.objects.get(name="sshd"), enabled=True)
    other = Filter.objects.get(name="nginx-http-auth")

    page = client.post(reverse("filter_tester"), {"test_draft": "jail", "name": "web", "filter": str(other.pk),
                                                  "filter_options": "mode=aggressive", "datepattern": "{^LN-BEG}"}
                       ).content.decode()

    assert "the unsaved jail web" in page
    assert '<option value="nginx-http-auth" selected>' in page
    assert 'value="mode=aggressive"' in page and 'value="{^LN-BEG}"' in page
    assert f'<option value="{jail.name}" selected>' in page  # its log, to load


@pytest.mark.parametrize("chosen", ["²", "99999999999999999999999", "x"])
def test_a_jail_draft_with_an_odd_filter_id_is_no_crash(viewer: Client, chosen: str) -> None:
    response = viewer.post(reverse("filter_tester"), {"test_draft": "jail", "name": "web", "filter": chosen})

    assert response.status_code == 200 and b'id="tester-draft"' in response.content
