"""Reading the bans: the search behind the bans page (by jail, state, origin, time, an address and
the networks holding it, or the bans inside a network, in the order of a column), an address's
history, the live count per jail; and the failures behind the dashboard's bars (keyset pages).

Shared by the bans pages and, later, the API: the filters a person can use in one place. Every
search that a viewer can widen (a network as wide as 0.0.0.0/0) is bounded.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, overload

from django.db.models import Count, F, Max, Min, Q, QuerySet
from django.utils import timezone

from bans import services
from bans.models import Ban, Failure, in_force_at
from jails.models import Jail

HISTORY_ROWS = 50
Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address
# A network search keeps at most this many matches and examines at most this many bans: searching
# 0.0.0.0/0 must not load every ban (nor send SQLite an IN list over its 32,766 variables).
MAX_NETWORK_MATCHES = 1000
MAX_NETWORK_SCAN = 50_000
NARROW = "narrow the search (a smaller network, a jail or a state) to see the others."


def networks_holding(address: Address) -> list[str]:
    """Every network (in the Ban table's CIDR text) that contains `address`, from /32 (/128) up."""
    prefixes = range(address.max_prefixlen + 1)
    return [str(ipaddress.ip_network(f"{address}/{prefix}", strict=False)) for prefix in prefixes]


@dataclass
class Matches:
    """The ids of the bans a network search found, newest first, and why the list may be incomplete."""

    pks: list[int]
    capped_note: str = ""


def bans_inside(bans: QuerySet[Ban], network: Network, *, limit: int | None = None,
                scan_limit: int | None = None, sort: str = "") -> Matches:
    """The bans whose network lies inside `network` (the network itself included), newest first.

    CIDR text cannot be compared as numbers in SQL portably, so the database narrows by family and
    by the address text every member shares, and `ipaddress` decides. Bounded, because a viewer can
    search 0.0.0.0/0: at most `limit` matches are kept and `scan_limit` bans examined (streamed, not
    loaded at once); the caller pages the ids, so no query carries more than a page of them.
    """
    limit = MAX_NETWORK_MATCHES if limit is None else limit
    scan_limit = MAX_NETWORK_SCAN if scan_limit is None else scan_limit
    bans = bans.filter(family=network.version)
    shared = services.shared_text_prefix(network)
    if shared:
        bans = bans.filter(network__startswith=shared)
    rows = (bans.order_by("-started_at", "-pk")
            .values_list("pk", "network", "jail_name", "started_at", "expires_at")[: scan_limit + 1])
    found: list[tuple[Any, ...]] = []
    note = ""
    for seen, row in enumerate(rows.iterator(chunk_size=2000)):
        if seen == scan_limit:
            note = f"Only the newest {scan_limit:,} bans were searched: {NARROW}"
            break
        if ipaddress.ip_network(row[1]).subnet_of(network):  # type: ignore[arg-type]
            if len(found) == limit:
                note = f"Showing the first {limit:,} matches (newest first): {NARROW}"
                break
            found.append(row)
    return Matches([row[0] for row in sorted_matches(found, sort)], note)


def sorted_matches(rows: list[tuple[Any, ...]], sort: str) -> list[tuple[Any, ...]]:
    """(pk, network, jail_name, started_at, expires_at) rows, newest first, in a column's order
    (BAN_ORDER's, in Python: the matches are bounded, and no query should name them all)."""
    key = sort.lstrip("-")
    if key not in ("network", "jail", "until", "started"):
        return rows
    far = dt.datetime.max.replace(tzinfo=dt.UTC)  # a permanent ban (no end) ends last
    value = {"network": lambda r: r[1], "jail": lambda r: r[2], "started": lambda r: r[3],
             "until": lambda r: r[4] or far}[key]
    # a stable sort keeps newest first among equals, as BAN_ORDER's tie-breakers do
    return sorted(rows, key=value, reverse=sort.startswith("-"))


class BansByPk(Sequence[Ban]):
    """Bans in the order of a list of ids, fetched a page at a time when the paginator slices it."""

    def __init__(self, pks: list[int]) -> None:
        self.pks = pks

    def __len__(self) -> int:
        return len(self.pks)

    @overload
    def __getitem__(self, index: int) -> Ban: ...

    @overload
    def __getitem__(self, index: slice) -> list[Ban]: ...

    def __getitem__(self, index: int | slice) -> Ban | list[Ban]:
        if isinstance(index, int):
            return Ban.objects.get(pk=self.pks[index])
        wanted = self.pks[index]
        rows = Ban.objects.select_related("created_by", "jail").in_bulk(wanted)
        return [rows[pk] for pk in wanted if pk in rows]  # one ended and was deleted meanwhile: skipped


def search_bans(cleaned: dict[str, Any]) -> QuerySet[Ban]:
    bans = Ban.objects.originals()
    if cleaned.get("jail"):
        bans = bans.filter(jail_name=cleaned["jail"])
    state = cleaned.get("state")
    now = timezone.now()
    ran_out = Q(state__in=Ban.LIVE_STATES, expires_at__lte=now)  # expired the moment its time is up
    if state == "live":
        bans = bans.in_force(now)
    elif state == "ended":
        bans = bans.filter(Q(state__in=[Ban.State.LIFTED, Ban.State.EXPIRED, Ban.State.REFUSED]) | ran_out)
    elif state == Ban.State.EXPIRED:
        bans = bans.filter(Q(state=state) | ran_out)
    elif state in Ban.LIVE_STATES:
        bans = bans.in_force(now).filter(state=state)
    elif state:
        bans = bans.filter(state=state)
    if cleaned.get("origin") == "manual":
        bans = bans.filter(origin=Ban.Origin.USER)
    elif cleaned.get("origin") == "automatic":
        bans = bans.exclude(origin=Ban.Origin.USER)
    if cleaned.get("since") is not None:
        bans = bans.filter(started_at__gte=cleaned["since"])
    if cleaned.get("until") is not None:
        bans = bans.filter(started_at__lt=cleaned["until"])
    if cleaned.get("host"):  # in that host's kernel: made there, or copied to it
        host = cleaned["host"]
        copied_there = Ban.objects.filter(host=host, primary__isnull=False).values("primary_id")
        bans = bans.filter(Q(host=host) | Q(pk__in=copied_there))
    target = cleaned.get("q")
    if isinstance(target, ipaddress.IPv4Address | ipaddress.IPv6Address):
        bans = bans.filter(network__in=networks_holding(target))
    return bans.order_by(*BAN_ORDER.get(cleaned.get("sort") or "", BAN_ORDER["-started"]))
    # (a network, q, is matched by bans_inside, in matching_bans)


# The bans list's sortable columns (BanSearchForm.SORTS), each ending on the newest first so a page
# is stable; "until": a permanent ban (no end) sorts as the latest.
BAN_ORDER: dict[str, tuple[Any, ...]] = {
    "-started": ("-started_at", "-pk"),
    "started": ("started_at", "pk"),
    "network": ("network", "-started_at", "-pk"),
    "-network": ("-network", "-started_at", "-pk"),
    "jail": ("jail_name", "-started_at", "-pk"),
    "-jail": ("-jail_name", "-started_at", "-pk"),
    "until": (F("expires_at").asc(nulls_last=True), "-started_at", "-pk"),
    "-until": (F("expires_at").desc(nulls_first=True), "-started_at", "-pk"),
}


def grouped_by_network(found: QuerySet[Ban] | list[int]) -> QuerySet[Any]:
    """A search's bans one row per address (or network): how many bans, in how many jails, how many
    in force, the first and the latest start; the latest first."""
    bans = Ban.objects.filter(pk__in=found) if isinstance(found, list) else found
    return (bans.order_by().values("network")
            .annotate(bans=Count("pk"), jails=Count("jail_name", distinct=True),
                      live=Count("pk", filter=in_force_at(timezone.now())), first=Min("started_at"),
                      latest=Max("started_at"))
            .order_by("-latest", "network"))


def live_per_jail() -> list[dict[str, Any]]:
    rows = Ban.objects.originals().in_force().values("jail_name").annotate(count=Count("pk"))
    return [dict(row) for row in rows.order_by("jail_name")]


def address_history(ban: Ban) -> dict[str, Any]:
    """The bans of the same address or network in every jail, and, for one address, its failures."""
    network = ban.ip_network
    if network.num_addresses == 1:
        holders = networks_holding(network.network_address)
        # jail first: the (jail, address, time) index then finds the address in each jail; by the
        # address alone the database read every failure
        jail_ids = list(Jail.objects.values_list("pk", flat=True))
        failures = Failure.objects.filter(jail_id__in=jail_ids, address=str(network.network_address))
    else:
        holders = [ban.network]
        failures = Failure.objects.none()
    bans = Ban.objects.originals().filter(network__in=holders).exclude(pk=ban.pk).order_by("-started_at")
    return {
        "other_bans": bans[:HISTORY_ROWS],
        "failures": failures.select_related("jail").order_by("-time")[:HISTORY_ROWS],
        "failures_per_jail": failures.values("jail__name").annotate(count=Count("pk")).order_by("-count"),
    }


# --- export of a search ----------------------------------------------------------------------------

EXPORT_COLUMNS = ["network", "jail", "state", "origin", "host", "started_at", "expires_at", "ended_at", "bantime",
                  "earlier_bans", "created_by", "reason"]
EXPORT_BATCH = 2000
# An export is streamed by one panel worker: at most this many bans (newest first), about 7 s and
# 12 MB of CSV here, far inside gunicorn's 30 s; a wider search is told to narrow (X-Export-Note).
MAX_EXPORT_ROWS = 100_000
EXPORT_FIELDS = ["network", "jail_name", "state", "origin", "host", "started_at", "expires_at", "ended_at",
                 "bantime", "earlier_bans", "reason", "created_by__username"]


def matching_bans(cleaned: dict[str, Any]) -> tuple[QuerySet[Ban] | list[int], str]:
    """The bans a search finds, as the bans list finds them: a queryset, or for a network the ids
    bans_inside found (bounded), with its note when the list is cut."""
    bans = search_bans(cleaned)
    target = cleaned.get("q")
    if isinstance(target, ipaddress.IPv4Network | ipaddress.IPv6Network):
        matches = bans_inside(bans, target, sort=cleaned.get("sort") or "")  # the newest, bounded; sorted
        return matches.pks, matches.capped_note
    return bans, ""


def bounded_for_export(found: QuerySet[Ban] | list[int], note: str) -> tuple[QuerySet[Ban] | list[int], str]:
    """A search's bans cut to what one export may stream (a network search is bounded already)."""
    if isinstance(found, list) or found.count() <= MAX_EXPORT_ROWS:
        return found, note
    return found[:MAX_EXPORT_ROWS], f"Only the newest {MAX_EXPORT_ROWS:,} bans were exported: {NARROW}"


def export_rows(found: QuerySet[Ban] | list[int]) -> Iterator[dict[str, Any]]:
    """One plain dict per ban, newest first, read in batches (a year of bans is never in memory)."""
    if isinstance(found, list):
        for start in range(0, len(found), EXPORT_BATCH):
            wanted = found[start:start + EXPORT_BATCH]
            rows = Ban.objects.select_related("created_by").only(*EXPORT_FIELDS).in_bulk(wanted)
            yield from (export_row(rows[pk]) for pk in wanted if pk in rows)
        return
    yield from (export_row(ban) for ban in
                found.select_related("created_by").only(*EXPORT_FIELDS).iterator(chunk_size=EXPORT_BATCH))


def export_row(ban: Ban) -> dict[str, Any]:
    def when(value: dt.datetime | None) -> str | None:
        return value.isoformat() if value is not None else None

    return {"network": ban.network, "jail": ban.jail_name, "state": ban.state, "origin": ban.origin,
            "host": ban.host, "started_at": when(ban.started_at), "expires_at": when(ban.expires_at),
            "ended_at": when(ban.ended_at), "bantime": ban.bantime, "earlier_bans": ban.earlier_bans,
            "created_by": ban.created_by.get_username() if ban.created_by is not None else None,
            "reason": ban.reason}


# --- failures (the dashboard's bars link to them) ---------------------------------------------------

FAILURE_PAGE = 50


@dataclass(frozen=True)
class FailurePage:
    """A page of failures, newest first, and the cursor of the next (older) page: (time, pk) of its
    last row. Keyset paging: a page costs the same at the millionth row as at the first, where an
    OFFSET (and a count for "page N of M") would read every row before it."""

    failures: list[Failure]
    older: str | None


def search_failures(cleaned: dict[str, Any]) -> QuerySet[Failure]:
    failures = Failure.objects.all()
    if cleaned.get("jail"):
        # by its id, not joined by name: the planner then knows how many failures the jail has and
        # takes its index for a small one instead of walking every failure newest first
        jail_id = Jail.objects.filter(name=cleaned["jail"]).values_list("pk", flat=True).first()
        failures = failures.filter(jail_id=jail_id) if jail_id is not None else failures.none()
    if cleaned.get("q"):
        # every jail named: the (jail, address, time) index finds the address in each
        failures = failures.filter(jail_id__in=list(Jail.objects.values_list("pk", flat=True)), address=cleaned["q"])
    if cleaned.get("since") is not None:
        failures = failures.filter(time__gte=cleaned["since"])
    if cleaned.get("until") is not None:
        failures = failures.filter(time__lt=cleaned["until"])
    return failures.order_by("-time", "-pk")


def failure_page(failures: QuerySet[Failure], older: str = "") -> FailurePage:
    """The page after the cursor `older` ("" for the newest); a cursor that does not parse starts over."""
    position = parse_cursor(older)
    if position is not None:
        when, pk = position
        failures = failures.filter(Q(time__lt=when) | Q(time=when, pk__lt=pk))
    rows = list(failures.select_related("jail")[:FAILURE_PAGE + 1])
    more = len(rows) > FAILURE_PAGE
    rows = rows[:FAILURE_PAGE]
    return FailurePage(rows, cursor_of(rows[-1]) if more and rows else None)


def cursor_of(failure: Failure) -> str:
    return f"{failure.time.astimezone(dt.UTC).strftime('%Y%m%dT%H%M%S.%f')}_{failure.pk}"


def parse_cursor(text: str) -> tuple[dt.datetime, int] | None:
    stamp, _, pk = text.partition("_")
    try:
        return dt.datetime.strptime(stamp, "%Y%m%dT%H%M%S.%f").replace(tzinfo=dt.UTC), int(pk)
    except ValueError:
        return None
