"""The import page: paste or upload, preview (dry run, nothing written), apply (audited), safe archives."""

from __future__ import annotations

import io
import tarfile
import zipfile

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.urls import reverse

from jails import views_import
from jails.models import AuditEntry, Filter, Jail
from tests.clients import client_for
from tests.factories import LOGIN_FAILED_SOURCE

pytestmark = pytest.mark.django_db

JAIL_LOCAL = """[DEFAULT]
bantime = 1h

[myapp]
enabled = true
filter = myapp
logpath = /var/log/myapp.log
port = http,https
maxretry = 3
findtime = 10m

[off]
enabled = false
filter = myapp
logpath = /var/log/off.log
"""


def filter_upload(name: str = "myapp.conf", text: str = LOGIN_FAILED_SOURCE) -> SimpleUploadedFile:
    return SimpleUploadedFile(name, text.encode())


def preview(client: Client, **data: object) -> str:
    response = client.post(reverse("import_config"), data)
    return response.content.decode()


def digest_of(html: str) -> str:
    return html.split('name="digest" value="')[1].split('"')[0]


def test_it_refuses_a_viewer_and_an_operator() -> None:
    for role in ("viewer", "operator"):
        client = client_for(role)
        assert client.get(reverse("import_config")).status_code == 403
        assert client.post(reverse("import_config"), {"jail_local": JAIL_LOCAL}).status_code == 403
        assert client.post(reverse("import_apply"), {"digest": "x"}).status_code == 403


def test_it_previews_without_writing_then_applies_with_an_audit_entry(admin: Client) -> None:
    html = preview(admin, jail_local=JAIL_LOCAL, filter_files=[filter_upload()])
    assert 'id="import-preview"' in html
    assert 'id="import-diff-jail-myapp"' in html and 'data-field="bantime"' in html  # what the new jail does
    assert 'data-kind="jail" data-name="myapp"' in html and 'data-kind="filter" data-name="myapp"' in html
    assert "disabled in the configuration" in html  # [off] is skipped, and the page says why
    assert not Jail.objects.exists() and not Filter.objects.exists()
    response = admin.post(reverse("import_apply"), {"digest": digest_of(html)})
    assert response.status_code == 302
    jail = Jail.objects.get(name="myapp")
    assert (jail.maxretry, jail.findtime, jail.bantime, jail.port) == (3, 600, 3600, "http,https")
    assert Filter.objects.get(name="myapp").origin == Filter.Origin.IMPORTED
    entry = AuditEntry.objects.get(action="config.import")
    assert entry.after is not None
    assert "created jail myapp" in entry.after["changes"] and "jail.local" in entry.after["files"]
    assert entry.before is None  # all new: the after holds the main values of the jail created
    assert entry.after["jail myapp"] == {"enabled": "true", "filter": "myapp", "logpath": "/var/log/myapp.log",
                                         "port": "http,https", "maxretry": "3", "findtime": "10m", "bantime": "1h"}


def test_it_applies_only_the_preview_it_showed(admin: Client) -> None:
    preview(admin, jail_local=JAIL_LOCAL, filter_files=[filter_upload()])
    response = admin.post(reverse("import_apply"), {"digest": "0" * 64})
    assert response.status_code == 302 and response["Location"] == reverse("import_config")
    assert not Jail.objects.exists() and not AuditEntry.objects.exists()


def test_it_imports_disabled_jails_when_asked(admin: Client) -> None:
    html = preview(admin, jail_local=JAIL_LOCAL, filter_files=[filter_upload()], include_disabled="on")
    admin.post(reverse("import_apply"), {"digest": digest_of(html)})
    assert Jail.objects.get(name="off").enabled is False


def test_it_resolves_filters_already_in_the_panel(admin: Client) -> None:
    Filter.objects.create(name="myapp", source=LOGIN_FAILED_SOURCE, failregex=["^login failed from <HOST>$"])
    html = preview(admin, jail_local=JAIL_LOCAL)
    assert 'data-kind="jail" data-name="myapp"' in html


def test_it_shows_a_refusal_with_file_and_line(admin: Client) -> None:
    html = preview(admin, jail_local="[sshd]\nenabled = true\nlogpath = %(sshd_log)s\n")
    assert 'id="import-error"' in html and "jail.local" in html and "/tmp/" not in html
    broken = "[Definition]\nfailregex = (<HOST>\n"
    html = preview(admin, jail_local=JAIL_LOCAL, filter_files=[filter_upload(text=broken)])
    assert "filter.d/myapp.conf" in html and ":2" in html and "/tmp/" not in html
    assert not Filter.objects.exists()


def test_it_refuses_a_bad_option_with_its_line(admin: Client) -> None:
    html = preview(admin, jail_local=JAIL_LOCAL.replace("maxretry = 3", "maxretry = many"),
                   filter_files=[filter_upload()])
    assert 'id="import-error"' in html and "maxretry" in html and "jail.local:9" in html


def test_it_imports_filters_alone(admin: Client) -> None:
    html = preview(admin, filter_files=[filter_upload()])
    assert "only the filters are imported" in html
    admin.post(reverse("import_apply"), {"digest": digest_of(html)})
    assert Filter.objects.filter(name="myapp").exists() and not Jail.objects.exists()


def tar_gz(members: dict[str, bytes], links: dict[str, str] | None = None) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
        for name, target in (links or {}).items():
            info = tarfile.TarInfo(name)
            info.type = tarfile.SYMTYPE
            info.linkname = target
            archive.addfile(info)
    return buffer.getvalue()


def test_it_reads_an_archive_of_etc_fail2ban(admin: Client) -> None:
    data = tar_gz({"etc/fail2ban/jail.local": JAIL_LOCAL.encode(),
                   "etc/fail2ban/filter.d/myapp.conf": LOGIN_FAILED_SOURCE.encode(),
                   "etc/fail2ban/action.d/mail.conf": b"[Definition]\n"})
    html = preview(admin, archive=SimpleUploadedFile("f2b.tgz", data))
    assert 'data-kind="jail" data-name="myapp"' in html
    assert "not used" in html  # action.d is left out, and the page says so


def test_it_never_follows_traversal_or_links_in_an_archive(admin: Client) -> None:
    data = tar_gz({"fail2ban/jail.local": JAIL_LOCAL.encode(),
                   "fail2ban/filter.d/myapp.conf": LOGIN_FAILED_SOURCE.encode(),
                   "../../evil.conf": b"[Definition]\nfailregex = ^evil <HOST>$\n",
                   "/etc/fail2ban/filter.d/abs.conf": b"[Definition]\nfailregex = ^abs <HOST>$\n"},
                  links={"fail2ban/filter.d/link.conf": "/etc/shadow"})
    html = preview(admin, archive=SimpleUploadedFile("f2b.tar.gz", data))
    assert 'data-kind="filter" data-name="myapp"' in html
    staged = admin.session[views_import.SESSION_KEY]["files"]
    assert set(staged) == {"jail.local", "filter.d/myapp.conf"}


def test_it_reads_a_zip(admin: Client) -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("jail.local", JAIL_LOCAL)
        archive.writestr("filter.d/myapp.conf", LOGIN_FAILED_SOURCE)
        archive.writestr("../escape.conf", LOGIN_FAILED_SOURCE)
    html = preview(admin, archive=SimpleUploadedFile("f2b.zip", buffer.getvalue()))
    assert 'data-kind="jail" data-name="myapp"' in html
    assert set(admin.session[views_import.SESSION_KEY]["files"]) == {"jail.local", "filter.d/myapp.conf"}


def test_it_refuses_an_archive_too_large_once_unpacked(admin: Client, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(views_import, "MAX_ARCHIVE_EXPANDED", 1000)
    data = tar_gz({"fail2ban/jail.local": JAIL_LOCAL.encode(), "fail2ban/big.bin": b"\0" * 5000})
    html = preview(admin, archive=SimpleUploadedFile("f2b.tgz", data))
    assert "too large once unpacked" in html


def test_it_refuses_something_that_is_no_archive(admin: Client) -> None:
    html = preview(admin, archive=SimpleUploadedFile("f2b.tgz", b"not an archive at all"))
    assert 'id="import-error"' in html and "archive" in html


def test_it_refuses_odd_file_names(admin: Client) -> None:
    html = preview(admin, filter_files=[filter_upload(name="evil.sh")])
    assert 'id="import-error"' in html and "ending in .conf or .local" in html


def test_it_places_jail_d_files(admin: Client) -> None:
    Filter.objects.create(name="myapp", source=LOGIN_FAILED_SOURCE, failregex=["^login failed from <HOST>$"])
    extra = SimpleUploadedFile("custom.local", b"[myapp]\nmaxretry = 7\n")
    html = preview(admin, jail_local=JAIL_LOCAL, jail_files=[extra])
    admin.post(reverse("import_apply"), {"digest": digest_of(html)})
    assert Jail.objects.get(name="myapp").maxretry == 7
    after = AuditEntry.objects.get().after
    assert after is not None and "jail.d/custom.local" in after["files"]


def test_it_refuses_a_tar_whose_headers_unpack_too_large(admin: Client, monkeypatch: pytest.MonkeyPatch) -> None:
    # tarfile reads a pax header whole, whatever size it claims: compressed, a few KB can be gigabytes
    monkeypatch.setattr(views_import, "MAX_TAR_STREAM", 1 << 20)
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz", format=tarfile.PAX_FORMAT) as archive:
        info = tarfile.TarInfo("fail2ban/jail.local")
        info.size = len(JAIL_LOCAL)
        info.pax_headers = {"comment": "x" * (2 << 20)}
        archive.addfile(info, io.BytesIO(JAIL_LOCAL.encode()))
    assert len(buffer.getvalue()) < 64 << 10

    html = preview(admin, archive=SimpleUploadedFile("f2b.tgz", buffer.getvalue()))

    assert "too large once unpacked" in html and views_import.SESSION_KEY not in admin.session


def test_it_imports_a_catastrophic_regex_with_a_warning_and_audits_it(admin: Client) -> None:
    evil = "[Definition]\nfailregex = ^(\\w+\\s?)+$ <HOST>\n"
    html = preview(admin, jail_local=JAIL_LOCAL, filter_files=[filter_upload(text=evil)])
    assert "backtrack" in html and "myapp: failregex 1" in html and "imported anyway" in html
    response = admin.post(reverse("import_apply"), {"digest": digest_of(html)})
    assert response.status_code == 302  # a migration is never stopped by it
    assert Filter.objects.get(name="myapp").failregex == ["^(\\w+\\s?)+$ <HOST>"]
    entry = AuditEntry.objects.get(action="config.import")
    assert entry.after is not None
    assert entry.after["dangerous_regexes"] == [{"filter": "myapp", "regex": "failregex 1",
                                                 "pattern": "^(\\w+\\s?)+$ <HOST>", "shape": "(\\w+\\s?)+",
                                                 "kind": "nested quantifier"}]
