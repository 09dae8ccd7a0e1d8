"""The import page: bring a fail2ban configuration in from the browser, preview it, then apply it.

The work is jails.importer.import_tree, the same as `manage.py importconf`: uploads are laid out as
a fail2ban directory in a private temporary folder (jail.conf / jail.local / paths-*.conf at the
top, jail.d/, filter.d/) and imported from there, first as a dry run (the preview), then for real
when the admin applies the very files previewed (kept in the session, checked by digest).

The stock fail2ban tree is not shipped with the panel, so an upload must be self-contained: a jail
names a filter that is uploaded too or already stored in the panel (the built-in library), and
values jail.conf would have supplied (`%(sshd_log)s`, `[DEFAULT]` settings) must be in the upload
(upload jail.conf and paths-*.conf too, or an archive of /etc/fail2ban) or written out in jail.local.

Archives are read in memory, never extracted by their own names: only regular files whose names
fit the layout are kept, with size and count limits (no path traversal, no links, no bombs).
"""

from __future__ import annotations

import bz2
import gzip
import hashlib
import io
import json
import lzma
import posixpath
import re
import stat
import tarfile
import tempfile
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from django.contrib import messages
from django.core.files.uploadedfile import UploadedFile
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods, require_POST

from jails.access import audit
from jails.access.roles import Role, role_required
from jails.engine.errors import EngineError
from jails.forms import ImportForm
from jails.importer import Change, ImportReport, import_tree

SESSION_KEY = "jails.import.staged"
MAX_FILE_BYTES = 1 << 20  # one configuration file
MAX_TOTAL_BYTES = 4 << 20  # everything kept (it waits in the session between preview and apply)
MAX_FILES = 1000
MAX_ARCHIVE_BYTES = 16 << 20  # the uploaded archive itself
MAX_ARCHIVE_MEMBERS = 5000
MAX_PREVIEW_VALUE_CHARS = 1 << 20  # old and new values on one preview page (each field is bounded too)
MAX_ARCHIVE_EXPANDED = 64 << 20  # declared sizes of all members, read or skipped
MAX_TAR_STREAM = MAX_ARCHIVE_EXPANDED + (16 << 20)  # the decompressed tar: members plus their headers
SAFE_FILE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@+-]{0,120}\.(?:conf|local)$")
TOP_LEVEL = re.compile(r"^(?:jail\.(?:conf|local)|paths-[A-Za-z0-9_.-]+\.conf)$")


class StagingRefused(Exception):
    """The upload cannot be laid out as a fail2ban tree; nothing was kept."""


# --- laying the upload out ------------------------------------------------------------------------


def staged_files(form: ImportForm) -> tuple[dict[str, str], list[str]]:
    """{relative path: text} of everything uploaded or pasted, and notes on what was left out."""
    data = form.cleaned_data
    files: dict[str, str] = {}
    notes: list[str] = []
    if data.get("archive"):
        files.update(from_archive(data["archive"], notes))
    for upload in data.get("jail_files") or []:
        name = safe_name(upload.name)
        files[name if TOP_LEVEL.match(name) else "jail.d/" + name] = read_upload(upload)
    for upload in data.get("filter_files") or []:
        files["filter.d/" + safe_name(upload.name)] = read_upload(upload)
    if (data.get("jail_local") or "").strip():
        if "jail.local" in files:
            raise StagingRefused("a jail.local was both pasted and uploaded: keep one")
        files["jail.local"] = data["jail_local"]
    if not files:
        raise StagingRefused("nothing to import: paste a jail.local, or upload files or an archive")
    if "jail.conf" not in files and "jail.local" not in files:
        files["jail.local"] = ""  # filters only: the importer needs a jail file, an empty one has no jails
        notes.append("no jail.conf or jail.local: only the filters are imported")
    check_totals(files)
    return files, notes


def safe_name(uploaded: str) -> str:
    name = uploaded.replace("\\", "/").rsplit("/", 1)[-1]
    if not SAFE_FILE.match(name):
        raise StagingRefused(f"{uploaded!r}: expected a fail2ban file name ending in .conf or .local")
    return name


def read_upload(upload: UploadedFile[Any]) -> str:
    if (upload.size or 0) > MAX_FILE_BYTES:
        raise StagingRefused(f"{upload.name}: larger than {MAX_FILE_BYTES // 1024} KB")
    return decode(upload.read(MAX_FILE_BYTES + 1), str(upload.name))


def decode(data: bytes, name: str) -> str:
    if len(data) > MAX_FILE_BYTES:
        raise StagingRefused(f"{name}: larger than {MAX_FILE_BYTES // 1024} KB")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise StagingRefused(f"{name}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None


def check_totals(files: dict[str, str]) -> None:
    if len(files) > MAX_FILES:
        raise StagingRefused(f"{len(files)} files: at most {MAX_FILES} at once")
    total = sum(len(text.encode("utf-8")) for text in files.values())
    if total > MAX_TOTAL_BYTES:
        raise StagingRefused(f"{total // 1024} KB of configuration: at most {MAX_TOTAL_BYTES // (1 << 20)} MB")


def from_archive(upload: UploadedFile[Any], notes: list[str]) -> dict[str, str]:
    """The fail2ban files inside a .tar(.gz) or .zip, by their place in the tree."""
    if (upload.size or 0) > MAX_ARCHIVE_BYTES:
        raise StagingRefused(f"the archive is larger than {MAX_ARCHIVE_BYTES // (1 << 20)} MB")
    data = upload.read()
    members = dict(zip_members(data) if zipfile.is_zipfile(io.BytesIO(data)) else tar_members(data))
    return lay_out(members, notes)


def decompressed(data: bytes) -> bytes:
    """The tar stream inside a .tar.gz / .tgz / .tar.bz2 / .tar.xz (a plain .tar as is), read no
    further than MAX_TAR_STREAM: tarfile reads pax and GNU long-name headers whole, whatever size
    they claim, so a small compressed upload must not be able to unpack into gigabytes of memory."""
    opener: Any = (gzip.open if data[:2] == b"\x1f\x8b" else bz2.open if data[:3] == b"BZh"
                   else lzma.open if data[:6] == b"\xfd7zXZ\x00" else None)
    if opener is None:
        return data
    try:
        with opener(io.BytesIO(data)) as stream:
            stream_bytes: bytes = stream.read(MAX_TAR_STREAM + 1)
    except (OSError, EOFError, lzma.LZMAError):
        raise StagingRefused("the archive is damaged: it cannot be decompressed") from None
    if len(stream_bytes) > MAX_TAR_STREAM:
        raise StagingRefused("the archive is too large once unpacked")
    return stream_bytes


def tar_members(data: bytes) -> Iterator[tuple[str, bytes]]:
    try:
        # SIM115: closed by `with archive:` below; opened apart so that only opening errors are caught here
        archive = tarfile.open(fileobj=io.BytesIO(decompressed(data)), mode="r:")  # noqa: SIM115
    except (tarfile.TarError, EOFError, OSError):
        raise StagingRefused("not a .tar.gz, .tgz, .tar or .zip archive") from None
    declared = 0
    with archive:
        for count, member in enumerate(iter_tar(archive), 1):
            declared += member.size
            if count > MAX_ARCHIVE_MEMBERS or declared > MAX_ARCHIVE_EXPANDED:
                raise StagingRefused("the archive is too large once unpacked")
            # regular files only: links and devices could point outside the tree
            if not member.isreg() or not wanted_path(member.name):
                continue
            if member.size > MAX_FILE_BYTES:
                raise StagingRefused(f"{member.name}: larger than {MAX_FILE_BYTES // 1024} KB")
            handle = archive.extractfile(member)
            if handle is not None:
                yield member.name, handle.read(MAX_FILE_BYTES + 1)


def iter_tar(archive: tarfile.TarFile) -> Iterator[tarfile.TarInfo]:
    try:
        while (member := archive.next()) is not None:
            yield member
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise StagingRefused(f"the archive is damaged: {exc}") from None


def zip_members(data: bytes) -> Iterator[tuple[str, bytes]]:
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except (zipfile.BadZipFile, OSError):
        raise StagingRefused("not a valid .zip archive") from None
    with archive:
        infos = archive.infolist()
        if len(infos) > MAX_ARCHIVE_MEMBERS or sum(i.file_size for i in infos) > MAX_ARCHIVE_EXPANDED:
            raise StagingRefused("the archive is too large once unpacked")
        for info in infos:
            mode = info.external_attr >> 16
            if info.is_dir() or stat.S_ISLNK(mode) or not wanted_path(info.filename):
                continue
            if info.file_size > MAX_FILE_BYTES:
                raise StagingRefused(f"{info.filename}: larger than {MAX_FILE_BYTES // 1024} KB")
            try:
                with archive.open(info) as handle:
                    yield info.filename, handle.read(MAX_FILE_BYTES + 1)  # bounded: sizes can lie
            except (zipfile.BadZipFile, RuntimeError, OSError) as exc:
                raise StagingRefused(f"{info.filename}: cannot be read ({exc})") from None


def wanted_path(name: str) -> bool:
    """A member worth reading: a clean relative path ending in a fail2ban file name."""
    clean = posixpath.normpath(name.replace("\\", "/"))
    parts = clean.split("/")
    return not clean.startswith("/") and ".." not in parts and bool(SAFE_FILE.match(parts[-1]))


def lay_out(members: dict[str, bytes], notes: list[str]) -> dict[str, str]:
    """Find the fail2ban directory in the archive (where jail.conf/jail.local is, else filter.d's
    parent) and keep its files by their place in the tree."""
    paths = {posixpath.normpath(name.replace("\\", "/")): name for name in members}
    roots = sorted((posixpath.dirname(p) for p in paths if posixpath.basename(p) in ("jail.conf", "jail.local")),
                   key=len)
    if not roots:
        roots = sorted((posixpath.dirname(posixpath.dirname(p)) for p in paths
                        if posixpath.basename(posixpath.dirname(p)) == "filter.d"), key=len)
    if not roots:
        raise StagingRefused("the archive holds no jail.conf, jail.local or filter.d folder")
    root = roots[0]
    prefix = root + "/" if root else ""
    files: dict[str, str] = {}
    skipped = 0
    for path, original in sorted(paths.items()):
        rel = path[len(prefix):] if path.startswith(prefix) else None
        if rel is None or not (TOP_LEVEL.match(rel) or re.fullmatch(r"(?:jail|filter)\.d/[^/]+", rel)):
            skipped += 1
            continue
        files[rel] = decode(members[original], path)
    if skipped:
        notes.append(f"{skipped} file(s) of the archive are not used (action.d and others: every ban goes to "
                     "the panel's nftables table)")
    return files


def digest(files: dict[str, str], include_disabled: bool) -> str:
    payload = json.dumps({"files": files, "all": include_disabled}, sort_keys=True).encode("utf-8")
    return hashlib.sha256(payload).hexdigest()


# --- importing ------------------------------------------------------------------------------------


def run_import(files: dict[str, str], include_disabled: bool, dry_run: bool,
               actor: audit.Actor | None = None) -> ImportReport:
    """import_tree over the files laid out in a private temporary directory; EngineError on refusal
    with paths shown relative to the upload (jail.local:12, not /tmp/xyz/jail.local:12)."""
    with tempfile.TemporaryDirectory(prefix="ips-import-") as tmp:
        root = Path(tmp)
        for rel, text in files.items():
            target = root / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text, encoding="utf-8")
        try:
            report = import_tree(root, include_disabled=include_disabled, dry_run=dry_run, actor=actor,
                                 described=(f"{len(files)} file(s)", {"files": sorted(files)}))
        except EngineError as exc:
            raise EngineError(exc.message.replace(tmp + "/", ""), relative(exc.path, tmp), exc.lineno) from None
    report.root = "the upload"
    for change in report.changes:
        change.detail = change.detail.replace(tmp + "/", "")
        change.fields = {key: (old.replace(tmp + "/", ""), new.replace(tmp + "/", ""))
                         for key, (old, new) in change.fields.items()}
    return report


def relative(path: str | None, tmp: str) -> str | None:
    return path.replace(tmp + "/", "") if path else path


def report_context(report: ImportReport) -> dict[str, Any]:
    rows = {kind: {a: report.count(kind, a) for a in ("created", "updated", "unchanged")}
            for kind in ("filter", "jail")}
    return {"report": report, "counts": rows, "changed": real_changes(report),
            "unchanged": sum(row["unchanged"] for row in rows.values()),
            "skipped": [web_skipped(c) for c in report.of("skipped")]}


def real_changes(report: ImportReport) -> list[Change]:
    """What the import would create or update (unchanged rows are only counted), updates first and
    jails before filters: a re-upload's one edited jail leads the list instead of ending it."""
    order = {("updated", "jail"): 0, ("updated", "filter"): 1, ("created", "jail"): 2, ("created", "filter"): 3}
    changed = [c for c in report.changes if c.action in ("created", "updated")]
    return within_page(sorted(changed, key=lambda c: order.get((c.action, c.kind), 4)))


def within_page(changes: list[Change]) -> list[Change]:
    """Each field is bounded already; this bounds their sum, so a thousand rewritten filters still
    make a page a phone can open: past MAX_PREVIEW_VALUE_CHARS a change names its fields only."""
    room = MAX_PREVIEW_VALUE_CHARS
    shown: list[Change] = []
    for change in changes:
        size = sum(len(old) + len(new) for old, new in change.fields.values())
        if size > room:
            change = Change(change.kind, change.name, change.action,
                            f"changed: {', '.join(change.fields)}; values not shown, the preview is full")
        else:
            room -= size
        shown.append(change)
    return shown


def web_skipped(change: Change) -> Change:
    """The importer's line about disabled jails names its command-line flag (--all); this page
    has a checkbox for it instead."""
    if change.kind != "jails" or not change.name.endswith(" disabled"):
        return change
    names = change.detail.rpartition("): ")[2] or change.detail
    return Change("disabled jails", names, "skipped",
                  'disabled in the configuration; tick “Also import disabled jails” below to import them too')


@require_http_methods(["GET", "POST"])
@role_required(Role.ADMIN)
def import_config(request: HttpRequest) -> HttpResponse:
    """Upload or paste, then see the dry run (the preview)."""
    form = ImportForm(request.POST or None, request.FILES or None)
    context: dict[str, Any] = {"form": form}
    if request.method == "POST" and "discard" in request.POST:
        request.session.pop(SESSION_KEY, None)
        return redirect("import_config")
    if request.method == "POST" and form.is_valid():
        include_disabled = bool(form.cleaned_data.get("include_disabled"))
        try:
            files, notes = staged_files(form)
            report = run_import(files, include_disabled, dry_run=True)
        except StagingRefused as exc:
            context["error"] = str(exc)
        except EngineError as exc:
            context["error"] = f"The configuration cannot be imported, nothing would change: {exc}"
        else:
            request.session[SESSION_KEY] = {"files": files, "all": include_disabled, "notes": notes,
                                            "digest": digest(files, include_disabled)}
            context.update(report_context(report), files=sorted(files), notes=notes,
                           digest=digest(files, include_disabled))
    status = 400 if request.method == "POST" and ("error" in context or form.errors) else 200
    return render(request, "jails/import.html", context, status=status)


@require_POST
@role_required(Role.ADMIN)
def import_apply(request: HttpRequest) -> HttpResponse:
    """Apply exactly what was previewed (in one transaction, with its audit entry)."""
    staged = request.session.get(SESSION_KEY)
    if not staged or staged.get("digest") != request.POST.get("digest"):
        messages.error(request, "That preview is gone or was replaced by another upload: upload again.")
        return redirect("import_config")
    files, include_disabled = staged["files"], bool(staged["all"])
    try:
        report = run_import(files, include_disabled, dry_run=False, actor=audit.Actor.of_request(request))
    except EngineError as exc:
        # the database changed since the preview (a filter edited meanwhile...): nothing was written
        messages.error(request, f"Nothing was imported: {exc}")
        return redirect("import_config")
    request.session.pop(SESSION_KEY, None)
    counts = report_context(report)["counts"]
    messages.success(request, "Imported: filters {f[created]} created, {f[updated]} updated; jails {j[created]} "
                     "created, {j[updated]} updated. Enabled jails are watched within seconds."
                     .format(f=counts["filter"], j=counts["jail"]))
    if report.dangerous:
        messages.warning(request, f"{len(report.dangerous)} imported regex(es) can backtrack catastrophically (a "
                         "crafted log line can stall log reading): " + "; ".join(map(str, report.dangerous)))
    return redirect("jail_list")
