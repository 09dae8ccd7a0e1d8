"""Forms of the bans pages: searching bans, a manual ban, lifting a jail's bans, a replay.

Everything typed by a person is parsed here (addresses with `ipaddress` through bans.services,
durations with fail2ban's syntax); the views only act on cleaned values.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import re
from typing import Any

from django import forms
from django.utils import timezone

from bans import replay, services
from bans.models import Ban
from jails.engine.durations import parse_duration
from jails.engine.errors import EngineError
from jails.models import Host, Jail

OPTION_NAME = re.compile(r"^[A-Za-z_][\w.-]*$")
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def jail_names() -> list[str]:
    """Every jail name a ban may carry: the jails, and names kept by bans of deleted jails."""
    names = set(Jail.objects.values_list("name", flat=True))
    names.update(Ban.objects.values_list("jail_name", flat=True).distinct())
    return sorted(names)


# datetime-local inputs: a minute in the panel's time zone (IPS_TIME_ZONE); a link may also carry an
# offset or seconds (the dashboard's drill-down does not).
LOCAL_MINUTE = "%Y-%m-%dT%H:%M"
MAX_RANGE = dt.timedelta(days=400)  # the dashboard's custom range: a year of history and some


# Times before or after these are refused: far dates overflow date arithmetic (a range's buckets).
EARLIEST = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
LATEST = dt.datetime(2100, 1, 1, tzinfo=dt.UTC)


class LocalMinuteInput(forms.DateTimeInput):
    """datetime-local shows a minute without an offset: a time given with one (the dashboard's links
    carry their offset, so an hour that happens twice on the night the clocks go back stays one
    moment) is shown in the panel's time zone."""

    input_type = "datetime-local"

    def format_value(self, value: Any) -> str | None:
        if isinstance(value, str):
            try:
                parsed = dt.datetime.fromisoformat(value)
            except ValueError:
                return value
            if parsed.tzinfo is not None:
                return timezone.localtime(parsed).strftime(LOCAL_MINUTE)
        return super().format_value(value)


class TimeField(forms.DateTimeField):
    def clean(self, value: Any) -> dt.datetime | None:
        cleaned: dt.datetime | None = super().clean(value)
        if cleaned is not None and not EARLIEST <= cleaned < LATEST:
            raise forms.ValidationError("give a time between 1970 and 2100")
        return cleaned


def time_field(label: str, help_text: str = "") -> forms.DateTimeField:
    return TimeField(required=False, label=label, help_text=help_text, widget=LocalMinuteInput(format=LOCAL_MINUTE))


def check_time_range(form: forms.Form, cleaned: dict[str, Any]) -> None:
    since, until = cleaned.get("since"), cleaned.get("until")
    if since is not None and until is not None and until <= since:
        form.add_error("until", "the end must come after the start")


class BanSearchForm(forms.Form):
    """The ban list's filters (GET). Every field is optional; an invalid one is simply ignored."""

    STATES = [("", "any state"), ("live", "in force or waiting"), ("ended", "ended"),
              *[(value, label) for value, label in Ban.State.choices]]
    ORIGINS = [("", "any origin"), ("manual", "manual"), ("automatic", "automatic (jail or schedule)")]
    # the bans table's sortable columns: ?sort=key (ascending) or -key; newest first by default
    SORTS = ["started", "-started", "network", "-network", "jail", "-jail", "until", "-until"]

    q = forms.CharField(required=False, max_length=100, label="Address or network",
                        widget=forms.TextInput(attrs={"type": "search", "placeholder": "203.0.113.9 or 198.51.100.0/24",
                                                      "autocomplete": "off"}))
    jail = forms.ChoiceField(required=False, label="Jail")
    state = forms.ChoiceField(required=False, choices=STATES, label="State")
    origin = forms.ChoiceField(required=False, choices=ORIGINS, label="Origin")
    since = time_field("Started from")
    until = time_field("before")
    sort = forms.ChoiceField(required=False, choices=[(key, key) for key in SORTS], widget=forms.HiddenInput)
    group = forms.ChoiceField(required=False, label="Show",
                              choices=[("", "each ban"), ("address", "one row per address")])
    # a fleet: the bans in a host's kernel (made there, or copied to it); shown once there are several hosts
    host = forms.ChoiceField(required=False, label="Host")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        jail_field = self.fields["jail"]
        assert isinstance(jail_field, forms.ChoiceField)  # noqa: S101  # type narrowing: declared above
        jail_field.choices = [("", "any jail"), *[(name, name) for name in jail_names()]]
        host_field = self.fields["host"]
        assert isinstance(host_field, forms.ChoiceField)  # noqa: S101  # type narrowing: declared above
        hosts = list(Host.objects.order_by("name").values_list("name", flat=True))
        host_field.choices = [("", "any host"), *[(name, name) for name in hosts]]
        self.fleet = len(hosts) > 1

    def clean_q(self) -> Network | ipaddress.IPv4Address | ipaddress.IPv6Address | None:
        text = self.cleaned_data["q"].strip()
        if not text:
            return None
        try:
            if "/" not in text:
                address = services.parse_address(text)
                if address is None:
                    raise ValueError(text)
                return ipaddress.ip_address(address)
            return services.parse_network(text)
        except (ValueError, services.BanRefused):
            raise forms.ValidationError(f"{text!r} is not an address or a network (CIDR)") from None

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        check_time_range(self, cleaned)
        return cleaned


class DashboardRangeForm(forms.Form):
    """The dashboard's custom time range (?period=custom&since=&until=): both ends, in order, at most
    the history kept."""

    since = time_field("From")
    until = time_field("to")

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        for name in ("since", "until"):
            if cleaned.get(name) is None and name not in self.errors:
                self.add_error(name, "give both ends of the range")
        check_time_range(self, cleaned)
        since, until = cleaned.get("since"), cleaned.get("until")
        if since is not None and until is not None and until - since > MAX_RANGE:
            self.add_error("until", f"at most {MAX_RANGE.days} days at once")
        return cleaned


class FailureSearchForm(forms.Form):
    """The failures list's filters (GET): a jail, an address, a time range (the dashboard's bars link here)."""

    jail = forms.ChoiceField(required=False, label="Jail")
    q = forms.CharField(required=False, max_length=100, label="Address",
                        widget=forms.TextInput(attrs={"type": "search", "placeholder": "203.0.113.9",
                                                      "autocomplete": "off"}))
    since = time_field("From")
    until = time_field("before")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        jail_field = self.fields["jail"]
        assert isinstance(jail_field, forms.ChoiceField)  # noqa: S101  # type narrowing: declared above
        jail_field.choices = [("", "any jail"), *[(name, name) for name in
                                                  Jail.objects.order_by("name").values_list("name", flat=True)]]

    def clean_q(self) -> str | None:
        text = self.cleaned_data["q"].strip()
        if not text:
            return None
        address = services.parse_address(text)
        if address is None:
            raise forms.ValidationError(f"{text!r} is not an address")
        return address

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        check_time_range(self, cleaned)
        return cleaned


def parse_bantime(text: str, *, allow_permanent: bool = True) -> int | None:
    """Seconds (-1 permanent) from fail2ban's duration syntax; None for an empty field."""
    text = text.strip()
    if not text:
        return None
    try:
        seconds = parse_duration(text)
    except ValueError as exc:
        raise forms.ValidationError(str(exc)) from None
    if seconds == -1 and not allow_permanent:
        raise forms.ValidationError("a period is needed here, not permanent")
    if seconds != -1 and seconds < 1:
        raise forms.ValidationError("the duration must be at least one second")
    return seconds


class BanCreateForm(forms.Form):
    """A ban by hand. The lockout guard itself runs in bans.services.ban_by_hand (the view adds its
    refusal as a form error), so jailctl and the panel refuse exactly the same things."""

    address = forms.CharField(max_length=50, label="Address or network",
                              widget=forms.TextInput(attrs={"placeholder": "203.0.113.9 or 198.51.100.0/24",
                                                            "autocomplete": "off", "spellcheck": "false"}))
    jail = forms.ChoiceField(label="Jail")
    duration = forms.CharField(required=False, max_length=40, label="Duration",
                               help_text="e.g. 10m, 1h, 1d, 1w or permanent; empty: the jail's ban time.",
                               widget=forms.TextInput(attrs={"placeholder": "1h"}))
    reason = forms.CharField(required=False, max_length=500, label="Reason",
                             widget=forms.Textarea(attrs={"rows": 2}))
    # Shown once the gate asked for it (services.ConfirmationNeeded): private space, this host's network.
    confirm = forms.BooleanField(required=False, label="Yes, ban it anyway",
                                 help_text="This network may hold your own machines or people.")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.needs_confirmation = bool(self.data.get("confirm"))  # keep the box once it was shown
        jails = [(name, name) for name in Jail.objects.order_by("name").values_list("name", flat=True)]
        jail_field = self.fields["jail"]
        assert isinstance(jail_field, forms.ChoiceField)  # noqa: S101  # type narrowing: declared above
        jail_field.choices = [*jails, (Ban.BLOCKLIST, "all ports: the permanent blocklist")]

    def ask_confirmation(self, message: str) -> None:
        """The gate wants a yes (services.ConfirmationNeeded): show the box, with the reason."""
        self.needs_confirmation = True
        self.add_error("confirm", message)

    def clean_address(self) -> str:
        text = self.cleaned_data["address"].strip()
        try:
            return str(services.parse_network(text))
        except services.BanRefused as exc:
            raise forms.ValidationError(str(exc)) from None

    def clean_duration(self) -> int | None:
        return parse_bantime(self.cleaned_data["duration"])

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        if cleaned.get("jail") == Ban.BLOCKLIST and cleaned.get("duration") not in (None, -1):
            self.add_error("duration", "bans in the blocklist (all ports) are permanent: leave the duration "
                                       "empty or write permanent, or choose a jail for a timed ban")
        return cleaned

    @property
    def chosen_jail(self) -> Jail | None:
        """The jail to ban in; None is the blocklist."""
        name = self.cleaned_data["jail"]
        return None if name == Ban.BLOCKLIST else Jail.objects.get(name=name)

    def bantime_for(self, jail: Jail | None) -> int:
        duration = self.cleaned_data.get("duration")
        if jail is None:
            return -1
        return jail.bantime if duration is None else int(duration)


class LiftAllForm(forms.Form):
    confirm = forms.BooleanField(required=True, label="Yes, lift every ban of this jail",
                                 error_messages={"required": "Tick the box to confirm."})


class ReplayForm(forms.Form):
    """Which jail to replay, and what to change in its settings for the replay (all optional)."""

    jail = forms.ModelChoiceField(queryset=Jail.objects.exclude(backend=Jail.Backend.SYSTEMD).select_related("filter"),
                                  label="Jail")
    maxretry = forms.IntegerField(required=False, min_value=1, max_value=100000, label="Max retry")
    findtime = forms.CharField(required=False, max_length=40, label="Find time", help_text="e.g. 10m, 1h.")
    bantime = forms.CharField(required=False, max_length=40, label="Ban time", help_text="e.g. 1h, 1d, permanent.")
    filter_options = forms.CharField(required=False, max_length=2000, label="Filter options",
                                     help_text="One name=value per line, e.g. mode=aggressive.",
                                     widget=forms.Textarea(attrs={"rows": 2, "spellcheck": "false"}))
    failregex = forms.CharField(required=False, max_length=20000, label="failregex",
                                help_text="Replaces the filter's failregex; one regex per line, with <HOST>.",
                                widget=forms.Textarea(attrs={"rows": 4, "spellcheck": "false"}))

    def clean_findtime(self) -> int | None:
        return parse_bantime(self.cleaned_data["findtime"], allow_permanent=False)

    def clean_bantime(self) -> int | None:
        return parse_bantime(self.cleaned_data["bantime"])

    def clean_filter_options(self) -> dict[str, str]:
        options: dict[str, str] = {}
        for number, line in enumerate(self.cleaned_data["filter_options"].splitlines(), start=1):
            if not line.strip():
                continue
            name, sep, value = line.partition("=")
            name = name.strip()
            if not sep or not OPTION_NAME.match(name):
                raise forms.ValidationError(f"line {number}: write name=value, e.g. mode=aggressive")
            options[name] = value.strip()
        return options

    def clean_failregex(self) -> str:
        lines = [line.strip() for line in self.cleaned_data["failregex"].splitlines() if line.strip()]
        return "\n".join(lines)

    def clean(self) -> dict[str, Any]:
        """The filter must compile with the options and failregex given, before any worker runs it."""
        cleaned = super().clean() or {}
        jail = cleaned.get("jail")
        if jail is None or self.errors:
            return cleaned
        try:
            replay.compile_filter(jail, replay.effective_parameters(jail, self.overrides()))
        except EngineError as exc:
            field = "failregex" if cleaned.get("failregex") else "filter_options"
            self.add_error(field, f"the filter does not compile: {exc}")
        return cleaned

    def overrides(self) -> dict[str, Any]:
        """What differs from the jail, as ReplayRun.overrides (only the fields filled in)."""
        values = {key: self.cleaned_data.get(key) for key in ("maxretry", "findtime", "bantime",
                                                               "filter_options", "failregex")}
        return {key: value for key, value in values.items() if value not in (None, "", {})}
