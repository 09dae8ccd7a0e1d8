"""The import preview lists only real changes, each with its old -> new values, and the audit entry
keeps them: re-uploads of the seed configuration (the stock tree with a real admin's jail.local and
filters), bounded values for huge texts, escaped values."""

from __future__ import annotations

import io
import json
import re
import tarfile
from pathlib import Path

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.urls import reverse

from jails import importer
from jails.importer import Change
from jails.models import AuditEntry, Filter, Jail
from tests.jails.builders import stock_tree_with_seed

pytestmark = pytest.mark.django_db

SSHD_SECTION = "[sshd]\nenabled = true\nbackend = systemd\n"


def archive_of(root: Path) -> bytes:
    """The tree as `tar czf fail2ban.tgz -C /etc fail2ban` makes it (action.d and all)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        archive.add(root, arcname="fail2ban")
    return buffer.getvalue()


def upload(client: Client, root: Path) -> str:
    response = client.post(reverse("import_config"), {"archive": SimpleUploadedFile("f2b.tgz", archive_of(root))})
    html = response.content.decode()
    assert response.status_code == 200, re.findall(r'id="import-error">(.*?)</p>', html)
    return html


def apply(client: Client, html: str) -> None:
    digest = html.split('name="digest" value="')[1].split('"')[0]
    response = client.post(reverse("import_apply"), {"digest": digest})
    assert response.status_code == 302 and response["Location"] == reverse("jail_list")


def change_items(html: str) -> list[str]:
    """The preview's listed changes, as "action kind name"."""
    return [" ".join(found) for found in
            re.findall(r'<li class="change-(\w+)" data-kind="([^"]+)" data-name="([^"]+)"', html)]


def diff_block(html: str, kind: str, name: str) -> str:
    start = html.index(f'id="import-diff-{kind}-{name}"')
    return html[start:html.index("</dl>", start)]


@pytest.fixture
def imported_seed(admin: Client, tmp_path: Path) -> Path:
    """The seed tree, imported once through the page as an admin does it the first time."""
    root = stock_tree_with_seed(tmp_path)
    apply(admin, upload(admin, root))
    assert Jail.objects.count() == 10 and AuditEntry.objects.filter(action="config.import").count() == 1
    return root


def test_a_reupload_with_one_changed_jail_shows_that_change_with_old_and_new(admin: Client,
                                                                             imported_seed: Path) -> None:
    jail_local = imported_seed / "jail.local"
    jail_local.write_text(jail_local.read_text().replace(SSHD_SECTION, SSHD_SECTION + "bantime = 2h\n"))

    html = upload(admin, imported_seed)

    assert change_items(html) == ["updated jail sshd"]  # not the 109 unchanged filters
    assert "Unchanged filters and jails (118)" in html
    block = diff_block(html, "jail", "sshd")
    assert 'data-field="bantime"' in block
    assert re.search(r'class="diff-old">.*?<pre>1h</pre>.*?class="diff-new">.*?<pre>2h</pre>', block, re.S)
    assert block.count('class="diff-field"') == 1
    assert "/tmp/" not in html
    assert Jail.objects.get(name="sshd").bantime == 3600  # a preview writes nothing

    apply(admin, html)
    assert Jail.objects.get(name="sshd").bantime == 7200
    entry = AuditEntry.objects.filter(action="config.import").latest("at")
    assert entry.before == {"jail sshd": {"bantime": "1h"}}
    assert entry.after is not None and entry.after["jail sshd"] == {"bantime": "2h"}
    assert entry.after["changes"] == ["updated jail sshd"] and "jail.local" in entry.after["files"]


def test_the_audit_page_shows_the_import_s_old_and_new_values(admin: Client, imported_seed: Path) -> None:
    jail_local = imported_seed / "jail.local"
    jail_local.write_text(jail_local.read_text().replace(SSHD_SECTION, SSHD_SECTION + "maxretry = 9\n"))
    apply(admin, upload(admin, imported_seed))

    html = admin.get("/audit/", {"action": "config.import"}).content.decode()

    row = re.search(r'<th scope="row">jail sshd</th>(.*?)</tr>', html, re.S)
    assert row is not None
    before, after = re.findall(r'<span class="pre">(.*?)</span>', row.group(1))
    # (jail.conf's maxmatches = %(maxretry)s follows it)
    assert before == "{&quot;maxmatches&quot;: &quot;3&quot;, &quot;maxretry&quot;: &quot;3&quot;}"
    assert after == "{&quot;maxmatches&quot;: &quot;9&quot;, &quot;maxretry&quot;: &quot;9&quot;}"


def test_a_reupload_of_the_same_tree_changes_nothing_and_audits_nothing(admin: Client, imported_seed: Path) -> None:
    html = upload(admin, imported_seed)

    assert 'id="import-nothing"' in html and "Nothing would change." in html
    assert change_items(html) == [] and "import-diff-" not in html
    apply(admin, html)
    assert AuditEntry.objects.filter(action="config.import").count() == 1  # the first import only


def test_a_changed_stock_filter_shows_only_its_differing_lines(admin: Client, imported_seed: Path) -> None:
    sshd = imported_seed / "filter.d" / "sshd.conf"
    lines = sshd.read_text().split("\n")
    number = next(i for i, line in enumerate(lines) if line.startswith("maxlines")) + 1
    lines[number - 1] = "maxlines = 2"
    lines[0] += " <script>alert(1)</script>"  # a comment an attacker could have written
    sshd.write_text("\n".join(lines))

    html = upload(admin, imported_seed)

    assert change_items(html) == ["updated filter sshd"]
    block = diff_block(html, "filter", "sshd")
    assert 'data-field="source"' in block and 'data-field="maxlines"' in block
    old, new = re.findall(r"<pre>(.*?)</pre>", block, re.S)[:2]  # source comes first
    assert old == f"@@ line 1 @@\n# Fail2Ban filter for openssh\n@@ line {number} @@\nmaxlines = 1"
    assert new == (f"@@ line 1 @@\n# Fail2Ban filter for openssh &lt;script&gt;alert(1)&lt;/script&gt;\n"
                   f"@@ line {number} @@\nmaxlines = 2")
    assert "<script>alert" not in html
    assert "failregex" not in re.findall(r'data-field="([^"]+)"', block)  # its regexes did not change
    apply(admin, html)
    entry = AuditEntry.objects.filter(action="config.import").latest("at")
    assert entry.before is not None and entry.before["filter sshd"]["maxlines"] == "1"
    assert entry.after is not None and entry.after["filter sshd"]["maxlines"] == "2"


def test_a_huge_source_change_is_bounded_in_the_preview_and_the_audit(admin: Client, tmp_path: Path) -> None:
    old_lines = [f"# comment line {i}" for i in range(4000)]
    Filter.objects.create(name="big", source="[Definition]\nfailregex = ^x <HOST>$\n" + "\n".join(old_lines),
                          failregex=["^x <HOST>$"], origin=Filter.Origin.IMPORTED)
    new_source = "[Definition]\nfailregex = ^x <HOST>$\n" + "\n".join(f"# changed line {i} " + "y" * 200
                                                                      for i in range(4000))  # 0.8 MB
    root = tmp_path / "f2b"
    (root / "filter.d").mkdir(parents=True)
    (root / "jail.local").write_text("")
    (root / "filter.d" / "big.conf").write_text(new_source)

    html = upload(admin, root)

    block = diff_block(html, "filter", "big")
    # the source's old and new come first (the row had no derived columns yet: those changed too)
    values = re.findall(r"<pre>(.*?)</pre>", block, re.S)[:2]
    for value in values:
        assert len(value.encode()) <= importer.MAX_FIELD_BYTES
        assert value.count("\n") <= importer.MAX_FIELD_LINES
        assert "… cut here:" in value
    assert values[0].startswith("@@ lines 3-4002 @@\n# comment line 0\n")
    apply(admin, html)
    entry = AuditEntry.objects.get(action="config.import")
    assert len(json.dumps(entry.before)) + len(json.dumps(entry.after)) < 3 * importer.MAX_FIELD_BYTES


def test_a_created_jail_lists_its_main_values() -> None:
    # (a unit of the importer: the view shows these, see test_import_views for the page)
    change = Change("jail", "myapp", "created", fields={"bantime": ("", "2h"), "logpath": ("", "/a\n/b")})
    assert list(importer.difference_lines(change)) == ["      bantime: 2h", "      logpath:", "        /a",
                                                       "        /b"]


def test_difference_keeps_short_values_whole_and_cuts_long_ones() -> None:
    assert importer.difference("bantime", 600, 3600) == ("10m", "1h")
    assert importer.difference("ignoreip", ["127.0.0.1/8"], ["127.0.0.1/8", "::1"]) == (
        "127.0.0.1/8", "127.0.0.1/8\n::1")
    assert importer.difference("enabled", False, True) == ("false", "true")
    assert importer.difference("journalmatch", "a\x1b[31mb", "") == ("a\\x1b[31mb", "")
    old, new = importer.difference("source", "x" * 1_000_000, "y" * 1_000_000)  # one endless line
    assert len(old.encode()) <= importer.MAX_FIELD_BYTES and new.endswith("more character(s)")
    many = "\n".join(str(i) for i in range(100))
    old, new = importer.difference("source", many, many.replace("\n50\n", "\nfifty\n"))
    assert (old, new) == ("@@ line 51 @@\n50", "@@ line 51 @@\nfifty")
    old, new = importer.difference("source", many, many + "\n100")
    assert (old, new) == ("@@ after line 100: nothing @@", "@@ line 101 @@\n100")


def test_the_audit_entry_keeps_values_up_to_its_bound() -> None:
    big = ("a" * 4000, "b" * 4000)
    changes = [Change("filter", f"f{i}", "updated", fields={"source": big, "definition": big}) for i in range(100)]
    before, after = importer.audited_values(changes)
    assert len(json.dumps(before)) + len(json.dumps(after)) < importer.MAX_AUDIT_VALUE_CHARS + 20_000
    assert "filter f99: source, definition" in after["values_not_kept"]  # type: ignore[operator]
    assert before["filter f0"] == {"source": big[0], "definition": big[0]}
