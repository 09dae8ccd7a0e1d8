"""Forms of the jails pages: jails (every fail2ban option, explained), filters, the tester, imports.

Durations are typed as fail2ban writes them (600, 10m, 1h, 1d, -1) and shown back that way; lists
(log paths, ignoreip) are one entry per line. Every help text says what the option does, in
fail2ban's terms, because the people editing these know fail2ban.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Any

from django import forms
from django.core.exceptions import ValidationError

from jails import services, validators
from jails.engine import ini
from jails.engine.durations import format_duration
from jails.engine.errors import EngineError
from jails.models import Filter, Jail
from jails.tester import MAX_LINES, TAIL_MAX_LINES, private_file_reason

MAX_FILTER_CHARS = 200_000
MAX_REGEX_CHARS = 20_000  # the tester's raw failregex / ignoreregex boxes
RESERVED_NAMES = validators.RESERVED_NAMES


def check_not_reserved(name: str) -> str:
    if name.lower() in RESERVED_NAMES:
        raise ValidationError(f"{name!r} is reserved by the panel's pages; choose another name.")
    return name


# --- fields ---------------------------------------------------------------------------------------


class DurationField(forms.CharField):
    """fail2ban's duration text in, seconds out; seconds shown back as the shortest text (1h)."""

    def __init__(self, *, permanent_ok: bool = False, **kwargs: Any) -> None:
        self.permanent_ok = permanent_ok
        kwargs.setdefault("widget", forms.TextInput(attrs={"size": 10, "spellcheck": "false"}))
        super().__init__(**kwargs)

    def prepare_value(self, value: Any) -> Any:
        if isinstance(value, int) and not isinstance(value, bool):
            return "-1" if value == -1 else format_duration(value)
        return value

    def to_python(self, value: Any) -> int | None:  # type: ignore[override]
        text = super().to_python(value)
        if not text:
            return None
        try:
            seconds = validators.validate_duration_text(text)
        except ValidationError:
            if self.permanent_ok:
                raise
            # the engine's message offers -1/permanent, which this field refuses
            raise ValidationError(f'"{text.strip()}" is not a duration: write a positive one such as 600, 10m, '
                                  "1h, 1d or 1w.") from None
        if seconds == -1 and not self.permanent_ok:
            raise ValidationError("Only the ban time can be permanent (-1); give a duration such as 10m.")
        return seconds


class LinesField(forms.CharField):
    """A list typed one entry per line (commas and spaces also separate, when `words`)."""

    def __init__(self, *, words: bool = False, **kwargs: Any) -> None:
        self.words = words
        kwargs.setdefault("widget", forms.Textarea(attrs={"rows": 3, "spellcheck": "false"}))
        super().__init__(**kwargs)

    def prepare_value(self, value: Any) -> Any:
        return "\n".join(value) if isinstance(value, list) else value

    def to_python(self, value: Any) -> list[str]:  # type: ignore[override]
        text = super().to_python(value) or ""
        parts = re.split(r"[\s,]+", text) if self.words else text.splitlines()
        return [part.strip() for part in parts if part.strip()]


class OptionsField(forms.CharField):
    """Filter options as a jail passes them (`mode=aggressive`), shown back the same way."""

    def prepare_value(self, value: Any) -> Any:
        if isinstance(value, dict):
            return ", ".join(f"{key}={text}" for key, text in value.items())
        return value

    def to_python(self, value: Any) -> dict[str, str]:  # type: ignore[override]
        text = (super().to_python(value) or "").strip()
        if not text:
            return {}
        try:
            _, options = ini.parse_filter_spec(f"x[{text}]")
        except EngineError as exc:
            raise ValidationError(f"Write options as name=value, separated by commas ({exc.message}).") from None
        return dict(options)


def ipv4_unmapped(entry: str) -> str:
    """`::ffff:192.0.2.0/120` -> `192.0.2.0/24`; anything else as written."""
    try:
        network = ipaddress.ip_network(entry, strict=False)
    except ValueError:
        return entry  # a host name (or an error the model's validator reports)
    mapped = network.network_address.ipv4_mapped if isinstance(network, ipaddress.IPv6Network) else None
    if mapped is None or network.prefixlen < 96:
        return entry
    text = f"{mapped}/{network.prefixlen - 96}"
    return str(ipaddress.ip_network(text, strict=False)).removesuffix("/32")


# --- jails ----------------------------------------------------------------------------------------

# The form's sections, in order: (legend, explanation, fields).
JAIL_GROUPS: list[tuple[str, str, list[str]]] = [
    ("Basics", "What the jail watches.",
     ["name", "enabled", "description", "filter", "filter_options", "logpath", "backend", "journalmatch",
      "logencoding", "logtimezone"]),
    ("Matching", "How log lines become failures, and how many make a ban.",
     ["maxretry", "findtime", "datepattern", "maxlines", "maxmatches", "usedns"]),
    ("Banning", "How long a ban lasts, and on which hosts of a fleet.", ["bantime", "ban_scope", "ban_group"]),
    ("Increment", "Repeat offenders get longer bans (fail2ban's bantime.* options).",
     ["bantime_increment", "bantime_factor", "bantime_formula", "bantime_multipliers", "bantime_maxtime",
      "bantime_rndtime", "bantime_overalljails"]),
    ("Ignore", "Addresses that are never banned.", ["ignoreip", "ignoreself", "ignorecommand"]),
    ("Action", "What a ban does in the firewall.", ["port", "protocol", "banaction", "blocktype"]),
]

JAIL_HELP: dict[str, str] = {
    "name": "The jail's name, as in [sshd]. Letters, digits, '-', '_', '.', '@'. Used in the firewall set names.",
    "enabled": "Only enabled jails are watched. Disabling keeps the jail's bans until they expire.",
    "description": "A note for other admins (not used by the engine).",
    "filter": "The filter (filter.d) whose failregexes find failures in the log.",
    "filter_options": "Options passed to the filter, as in filter = sshd[mode=aggressive]: write "
                      "mode=aggressive. Empty: the filter's defaults.",
    "logpath": "Log files to watch, one absolute path per line; globs such as /var/log/nginx/*error.log "
               "work and new matching files are picked up. Not used with the systemd backend.",
    "backend": "How changes are noticed: inotify (instant), polling (every second; for network file systems), "
               "auto (inotify, else polling), or systemd (the journal, with journalmatch).",
    "journalmatch": "systemd backend only: which journal entries to read, e.g. _SYSTEMD_UNIT=sshd.service + "
                    "_COMM=sshd. Empty: the filter's journalmatch.",
    "logencoding": "Encoding of the log files: auto (UTF-8, keeping invalid bytes) or a name such as latin-1.",
    "logtimezone": "Time zone of dates written without one, e.g. UTC or UTC+0200. Empty: this server's zone.",
    "maxretry": "Failures of one address within findtime that trigger a ban.",
    "findtime": "The window in which maxretry failures must happen: 600, 10m, 1h, 1d. Older failures no "
                "longer count.",
    "datepattern": "Overrides the filter's datepattern (fail2ban's syntax, e.g. {^LN-BEG}%Y-%m-%d %H:%M:%S). "
                   "Empty: the filter's, or fail2ban's default templates.",
    "maxlines": "Lines kept together for multi-line failregexes. Empty: the filter's maxlines.",
    "maxmatches": "Log lines kept as evidence with each ban. Empty: as many as maxretry.",
    "usedns": "What a host name written in the log (instead of an address) counts for. 'no' (the default, "
              "and the safest): nothing; only addresses count, and nobody can make the panel look up a name. "
              "'yes' looks the name up in DNS and counts a failure for every address it has (at most 16); "
              "'warn' does the same and logs each lookup. Both cost: the log's writer chooses the name, and "
              "whoever controls that name's DNS zone chooses the addresses, so can get any address banned "
              "(yours, your users', a partner's); each lookup takes time, and the watcher waits up to "
              "0.5 s a read for answers before reading on (answers are kept 5 minutes; a name without an answer in "
              "time is not counted). Addresses are never looked up. 'raw': the text as written (a name then "
              "bans nothing).",
    "bantime": "How long a ban lasts: 600, 10m, 1h, 1d, 1w, or -1 for a permanent ban.",
    "bantime_increment": "Ban again-offenders longer: the ban time grows with each earlier ban of the address.",
    "bantime_factor": "Multiplies the increment (fail2ban's bantime.factor): 1 doubles each time, 2 grows faster.",
    "bantime_formula": "An arithmetic formula for the ban time (ban.Time, ban.Count, banFactor, ban.Time * "
                       "(1<<(ban.Count if ban.Count<20 else 20)) * banFactor). Empty: fail2ban's default. "
                       "Ignored when multipliers are set.",
    "bantime_multipliers": "Instead of a formula: multipliers per earlier ban, e.g. 1 2 4 8 16 32 64.",
    "bantime_maxtime": "The longest an increased ban may last, e.g. 1w. Empty: no limit.",
    "bantime_rndtime": "A random extra of up to this long, so botnets cannot predict the unban, e.g. 5m.",
    "bantime_overalljails": "Count earlier bans of the address in every jail, not only this one.",
    "ignoreip": "Addresses, networks (192.0.2.0/24) or host names never banned, one per line or separated by "
                "spaces. Loopback is always ignored.",
    "ignoreself": "Never ban this server's own addresses.",
    "ignorecommand": "fail2ban's ignorecommand (a program asked whether to ignore an address). Kept for "
                     "reference; the panel does not run commands.",
    "port": "Ports the ban blocks: all, numbers (22), names (ssh) or ranges (8000:8100), comma separated.",
    "protocol": "Protocol of the blocked ports; 'all protocols' blocks the address entirely.",
    "banaction": "fail2ban's banaction. Every ban goes to the panel's own nftables table (inet ips).",
    "ban_scope": "In a fleet of several servers: ban only on the host whose log showed the failures, on "
                 "every host, or on the hosts of a group. A single server bans on itself whatever this says.",
    "ban_group": "The group of hosts (hostctl add --group) the bans apply on, when the scope is a group.",
    "blocktype": "drop: packets vanish (scanners wait for a timeout). reject: the client is told at once.",
}


class JailForm(forms.ModelForm[Jail]):
    # fail2ban's defaults (findtime 10m, bantime 10m), shown as "10m" on a new jail
    findtime = DurationField(initial=600, help_text=JAIL_HELP["findtime"])
    bantime = DurationField(permanent_ok=True, initial=600, help_text=JAIL_HELP["bantime"])
    bantime_maxtime = DurationField(required=False, help_text=JAIL_HELP["bantime_maxtime"])
    bantime_rndtime = DurationField(required=False, help_text=JAIL_HELP["bantime_rndtime"])
    logpath = LinesField(required=False, help_text=JAIL_HELP["logpath"])
    ignoreip = LinesField(words=True, required=False, help_text=JAIL_HELP["ignoreip"])
    filter_options = OptionsField(required=False, help_text=JAIL_HELP["filter_options"])
    banaction = forms.ChoiceField(
        choices=[("nftables", "nftables (the panel's inet ips table)")], help_text=JAIL_HELP["banaction"])

    class Meta:
        model = Jail
        fields = [name for _, _, names in JAIL_GROUPS for name in names]
        widgets = {
            "description": forms.Textarea(attrs={"rows": 2}),
            "journalmatch": forms.TextInput(attrs={"spellcheck": "false"}),
            "datepattern": forms.TextInput(attrs={"spellcheck": "false"}),
            "bantime_formula": forms.TextInput(attrs={"spellcheck": "false", "size": 60}),
            "ignorecommand": forms.TextInput(attrs={"spellcheck": "false"}),
        }

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["filter"].queryset = Filter.objects.filter(kind=Filter.Kind.FILTER)  # type: ignore[attr-defined]
        for name, field in self.fields.items():
            field.help_text = JAIL_HELP.get(name, field.help_text)
            # labelled with fail2ban's own option names (bantime.increment), which the admins know
            field.label = "bantime." + name.removeprefix("bantime_") if name.startswith("bantime_") else name
            field.widget.attrs["aria-describedby"] = f"id_{name}-help"
        if self.instance.pk is not None:
            # the name is in the firewall's set names and in ban history: renaming is not offered
            self.fields["name"].disabled = True

    def clean_name(self) -> str:
        return check_not_reserved(self.cleaned_data["name"])

    def clean_logpath(self) -> list[str]:
        """System and panel files are no logs (the tester shows a log's last lines, and the web
        process may run as root); the tester checks the files a glob finds again when it reads."""
        paths: list[str] = self.cleaned_data["logpath"]
        for path in paths:
            refused = private_file_reason(path) if path.startswith("/") else None  # the model says "absolute"
            if refused:
                raise ValidationError(refused)
        return paths

    def clean_ignoreip(self) -> list[str]:
        """IPv4-mapped entries (::ffff:192.0.2.1) written as the IPv4 they are: the kernel sees IPv4
        packets, and the lockout guard and the counting compare IPv4 with IPv4."""
        return [ipv4_unmapped(entry) for entry in self.cleaned_data["ignoreip"]]

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        backend = data.get("backend")
        if backend and backend != Jail.Backend.SYSTEMD and not data.get("logpath") and "logpath" not in self.errors:
            self.add_error("logpath", "Give at least one log file, or choose the systemd backend.")
        flt = data.get("filter")
        if flt is not None and "filter_options" not in self.errors:
            try:
                services.compile_stored_filter(flt.name, data.get("filter_options") or {})
            except EngineError as exc:
                self.add_error("filter_options" if data.get("filter_options") else "filter",
                               f"This filter cannot be used with these options: {exc}")
        maxtime = data.get("bantime_maxtime")
        bantime = data.get("bantime")
        if maxtime and bantime and bantime != -1 and maxtime < bantime:
            self.add_error("bantime_maxtime", "The longest ban cannot be shorter than the ban time itself.")
        return data

    def groups(self) -> list[dict[str, Any]]:
        """The bound fields by section, for the template."""
        return [{"legend": legend, "about": about, "id": "group-" + legend.lower(),
                 "fields": [self[name] for name in names]} for legend, about, names in JAIL_GROUPS]


# --- filters --------------------------------------------------------------------------------------


class FilterSourceMixin:
    """Checks the filter text with the engine and keeps the derived fields for saving.

    A regex that can backtrack catastrophically (guard.dangerous_regex) is refused unless the
    admin ticks `accept_backtracking`; the view audits a save made that way (`dangerous`)."""

    derived: dict[str, object]
    dangerous: tuple[services.DangerousRegex, ...] = ()

    def derive(self, name: str, conf: str, local: str) -> None:
        try:
            self.derived = services.derive_stored_fields(name, conf, local)
        except EngineError as exc:
            raise ValidationError(f"The filter does not work: {exc}") from None
        self.dangerous = tuple(services.dangerous_in_save(name, conf, local, self.derived))

    def check_dangerous(self, accepted: bool) -> None:
        """Refuse the dangerous regexes found by derive(), each named with its shape, unless accepted."""
        if not self.dangerous or accepted:
            return
        raise ValidationError(
            [f"This regex can backtrack catastrophically, so a crafted log line can stall log reading: {d}."
             for d in self.dangerous]
            + [f"Rewrite it (the tester shows the shape), or tick “{services.OVERRIDE_LABEL}” below: "
               "the override is recorded in the audit log."])


def override_field() -> forms.BooleanField:
    return forms.BooleanField(required=False, label=services.OVERRIDE_LABEL,
                              help_text="Only needed when a regex is refused for catastrophic backtracking.")


class SourceField(forms.CharField):
    """Text kept as written (no stripping), with browsers' CRLF line ends made LF."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("strip", False)
        super().__init__(**kwargs)

    def to_python(self, value: Any) -> str:
        return str(super().to_python(value) or "").replace("\r\n", "\n")


class FilterForm(FilterSourceMixin, forms.ModelForm[Filter]):
    accept_backtracking = override_field()
    source = SourceField(
        widget=forms.Textarea(attrs={"rows": 24, "spellcheck": "false", "class": "code"}),
        help_text="The filter file (.conf) in fail2ban's format: [INCLUDES] before = common.conf, [Definition] "
                  "failregex / ignoreregex / prefregex / datepattern, [Init] options. Includes are read from the "
                  "other stored filters.")
    source_local = SourceField(
        required=False, label="Source (.local overlay)",
        widget=forms.Textarea(attrs={"rows": 6, "spellcheck": "false", "class": "code"}),
        help_text="An optional .local overlay, read after the .conf (fail2ban's way to change a stock filter "
                  "without editing it).")

    class Meta:
        model = Filter
        fields = ["name", "description", "source", "source_local"]
        widgets = {"description": forms.Textarea(attrs={"rows": 2})}

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.instance.pk is not None:
            # other filters include this one by name, and jails use it: renaming is not offered
            self.fields["name"].disabled = True

    def clean_name(self) -> str:
        return check_not_reserved(self.cleaned_data["name"])

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        for key in ("source", "source_local"):
            if len(data.get(key) or "") > MAX_FILTER_CHARS:
                self.add_error(key, f"At most {MAX_FILTER_CHARS:,} characters.")
        if self.errors:
            return data
        try:
            self.derive(data["name"], data["source"], data.get("source_local", ""))
            self.check_dangerous(bool(data.get("accept_backtracking")))
        except ValidationError as exc:
            self.add_error("source", exc)
        return data


class FilterImportForm(FilterSourceMixin, forms.Form):
    """A fail2ban filter.d file, pasted or uploaded, saved under a name (with an optional .local)."""

    name = forms.CharField(max_length=100, validators=[validators.validate_name],
                           help_text="The filter's name (what a jail writes in filter = NAME). Empty: the "
                                     "uploaded file's name without .conf.", required=False)
    conf_text = SourceField(label="Filter (.conf) text", required=False,
                                widget=forms.Textarea(attrs={"rows": 14, "spellcheck": "false", "class": "code"}))
    conf_file = forms.FileField(label="or upload the .conf", required=False)
    local_text = SourceField(label="Optional .local overlay", required=False,
                                 widget=forms.Textarea(attrs={"rows": 4, "spellcheck": "false", "class": "code"}))
    local_file = forms.FileField(label="or upload the .local", required=False)
    replace = forms.BooleanField(required=False, label="Replace the filter of that name if it exists")
    accept_backtracking = override_field()

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        conf = self._text(data, "conf_text", "conf_file")
        local = self._text(data, "local_text", "local_file")
        if self.errors:
            return data
        if not conf.strip():
            self.add_error("conf_text", "Paste the filter's text or upload its .conf file.")
            return data
        name = data.get("name") or ""
        upload = data.get("conf_file")
        if not name and upload is not None:
            name = re.sub(r"\.(conf|local)$", "", upload.name.rsplit("/", 1)[-1])
            try:
                validators.validate_name(name)
            except ValidationError:
                self.add_error("name", "Give the filter a name.")
                return data
        if not name:
            self.add_error("name", "Give the filter a name.")
            return data
        try:
            check_not_reserved(name)
        except ValidationError as exc:
            self.add_error("name", exc)
            return data
        existing = Filter.objects.filter(name=name).first()
        if existing is not None and not data.get("replace"):
            self.add_error("name", f"A filter named {name!r} exists; tick 'replace' to overwrite it.")
            return data
        data.update(name=name, conf=conf, local=local)
        try:
            self.derive(name, conf, local)
            self.check_dangerous(bool(data.get("accept_backtracking")))
        except ValidationError as exc:
            self.add_error("conf_text", exc)
        return data

    def _text(self, data: dict[str, Any], text_key: str, file_key: str) -> str:
        upload = data.get(file_key)
        if upload is None:
            return str(data.get(text_key) or "")
        if upload.size > MAX_FILTER_CHARS:
            self.add_error(file_key, f"At most {MAX_FILTER_CHARS:,} bytes.")
            return ""
        try:
            return str(upload.read().decode("utf-8")).replace("\r\n", "\n")
        except UnicodeDecodeError as exc:
            self.add_error(file_key, f"Not UTF-8 text ({exc.reason} at byte {exc.start}).")
            return ""


# --- the tester -----------------------------------------------------------------------------------


class TesterForm(forms.Form):
    SOURCES = [("stored", "a stored filter"), ("jail", "a jail's filter and settings"),
               ("pasted", "a pasted filter (.conf)"), ("regex", "raw regexes")]

    source = forms.ChoiceField(choices=SOURCES, initial="stored", widget=forms.RadioSelect, label="Test")
    filter = forms.ChoiceField(required=False, label="Filter")
    options = OptionsField(required=False, max_length=2000, label="Options", help_text="e.g. mode=aggressive",
                           widget=forms.TextInput(attrs={"spellcheck": "false", "size": 24}))
    jail = forms.ChoiceField(required=False, label="Jail")
    filter_source = SourceField(required=False, max_length=MAX_FILTER_CHARS, label="Filter (.conf) text",
                                    widget=forms.Textarea(attrs={"rows": 10, "spellcheck": "false", "class": "code"}))
    failregex = forms.CharField(required=False, strip=False, max_length=MAX_REGEX_CHARS,
                                label="failregex (one per line)",
                                widget=forms.Textarea(attrs={"rows": 3, "spellcheck": "false", "class": "code"}))
    ignoreregex = forms.CharField(required=False, strip=False, max_length=MAX_REGEX_CHARS,
                                  label="ignoreregex (one per line)",
                                  widget=forms.Textarea(attrs={"rows": 2, "spellcheck": "false", "class": "code"}))
    datepattern = forms.CharField(required=False, strip=False, max_length=500, label="datepattern (optional override)",
                                  widget=forms.TextInput(attrs={"spellcheck": "false", "size": 40}))
    log = forms.CharField(required=False, strip=False, label="Log lines",
                          help_text=f"Paste up to {MAX_LINES:,} lines (1 MB).",
                          widget=forms.Textarea(attrs={"rows": 12, "spellcheck": "false", "class": "code",
                                                       "id": "tester-log"}))
    filter_local = SourceField(required=False, max_length=MAX_FILTER_CHARS, label="Its .local overlay (optional)",
                               widget=forms.Textarea(attrs={"rows": 3, "spellcheck": "false", "class": "code"}))
    # which lines the results list, and which page of them (the summary always counts every line)
    show = forms.ChoiceField(required=False, initial="all", widget=forms.RadioSelect, label="Show",
                             choices=[("all", "all lines"), ("matched", "matched"), ("missed", "missed"),
                                      ("ignored", "ignored")])
    line_page = forms.IntegerField(required=False, min_value=1, widget=forms.HiddenInput)
    tail_jail = forms.ChoiceField(required=False, label="Load the last lines of")
    tail_count = forms.IntegerField(required=False, min_value=1, max_value=TAIL_MAX_LINES, initial=50,
                                    label="lines", widget=forms.NumberInput(attrs={"size": 5}))

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        filters = list(Filter.objects.filter(kind=Filter.Kind.FILTER).values_list("name", flat=True))
        jails = list(Jail.objects.values_list("name", flat=True))
        self.fields["filter"].choices = [("", "—")] + [(n, n) for n in filters]  # type: ignore[attr-defined]
        self.fields["jail"].choices = [("", "—")] + [(n, n) for n in jails]  # type: ignore[attr-defined]
        self.fields["tail_jail"].choices = [("", "—")] + [(n, n) for n in jails]  # type: ignore[attr-defined]

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        source = data.get("source")
        needed = {"stored": "filter", "jail": "jail", "pasted": "filter_source", "regex": "failregex"}
        key = needed.get(str(source))
        if key and not str(data.get(key) or "").strip():
            self.add_error(key, "Needed for this kind of test.")
        return data


# --- import ---------------------------------------------------------------------------------------


class MultipleFileInput(forms.ClearableFileInput):
    allow_multiple_selected = True


class MultipleFileField(forms.FileField):
    """Several files in one input (Django's documented recipe)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("widget", MultipleFileInput(attrs={"accept": ".conf,.local"}))
        super().__init__(*args, **kwargs)

    def clean(self, data: Any, initial: Any = None) -> Any:
        single = super().clean
        if isinstance(data, list | tuple):
            return [single(item, initial) for item in data if item]
        return [single(data, initial)] if data else []


class ImportForm(forms.Form):
    jail_local = SourceField(
        label="jail.local text", required=False,
        widget=forms.Textarea(attrs={"rows": 12, "spellcheck": "false", "class": "code"}),
        help_text="Paste a jail.local. Filters it names must be uploaded below or already be in the panel.")
    jail_files = MultipleFileField(
        label="Jail files", required=False,
        help_text="jail.local, jail.conf and paths-*.conf (kept at the top) and jail.d files (any other name).")
    filter_files = MultipleFileField(label="Filter files (filter.d)", required=False,
                                     help_text="filter.d/*.conf and *.local files.")
    archive = forms.FileField(
        label="or an archive", required=False,
        widget=forms.ClearableFileInput(attrs={"accept": ".tar.gz,.tgz,.tar,.zip"}),
        help_text="A .tar.gz, .tgz, .tar or .zip of a fail2ban directory (e.g. tar czf f2b.tgz -C /etc fail2ban).")
    include_disabled = forms.BooleanField(required=False, label="Also import disabled jails (as disabled)")
