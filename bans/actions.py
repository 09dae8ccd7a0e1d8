"""Changes to bans by a person: lift one, lift those ticked in the bans list, make one permanent,
lift all bans of a jail, lift the bans of an address. New bans by hand are bans.services.ban_by_hand.

Each is one conditional UPDATE (a ban the firewall worker or another person changed meanwhile is
left alone), its audit entries (who: an `audit.Actor`; each ban's state before and after), and a
request to the ban's firewall host to apply it once the transaction commits
(bans.services.request_firewall_sync), all in one transaction. Views, jailctl and Django admin
only call these, so every door records the same entry.
"""

from __future__ import annotations

from django.db import transaction

from bans import fanout, services
from bans.models import Ban, BanQuerySet
from bans.services import BAN_AUDIT_FIELDS
from jails.access import audit
from jails.models import Jail


def lift_ban(ban: Ban, actor: audit.Actor) -> bool:
    """Lift exactly this ban (not the address's bans in other jails); False when it is not live."""
    return bool(_lift(Ban.objects.filter(pk=ban.pk), actor))


def make_permanent(ban: Ban, actor: audit.Actor) -> bool:
    """Make a live timed ban permanent; False when it is not live or permanent already.

    The ban goes back to PENDING so the firewall worker adds it again without a timeout (adding an
    element that is there replaces it); until then the kernel keeps the timed element, so the
    address stays banned throughout.
    """
    with transaction.atomic():
        before = Ban.objects.in_force().exclude(bantime=-1).filter(pk=ban.pk).first()
        if before is None:
            return False
        changed = (Ban.objects.in_force().filter(pk=ban.pk).exclude(bantime=-1)
                   .update(bantime=-1, expires_at=None, state=Ban.State.PENDING, next_attempt_at=None))
        if not changed:
            return False
        # its copies on a fleet's other hosts become permanent with it
        copies = Ban.objects.in_force().filter(primary=ban.pk).exclude(bantime=-1)
        hosts = {ban.host, *copies.values_list("host", flat=True)}
        copies.update(bantime=-1, expires_at=None, state=Ban.State.PENDING, next_attempt_at=None)
        after = Ban.objects.get(pk=ban.pk)
        audit.record(actor, "ban.make_permanent", after, before=audit.snapshot(before, BAN_AUDIT_FIELDS),
                     after=audit.snapshot(after, BAN_AUDIT_FIELDS))
        for host in sorted(hosts):
            services.request_firewall_sync(host)
    return True


def lift_jail(jail_name: str, actor: audit.Actor) -> list[Ban]:
    """Lift every live ban of one jail (on every firewall host), with one audit entry for the jail;
    returns the bans lifted."""
    with transaction.atomic():
        lifted = _lift(Ban.objects.filter(jail_name=jail_name), actor, each=False)
        jail = Jail.objects.filter(name=jail_name).first()
        audit.record(actor, "jail.lift_all", jail, object_type="jail", object_repr=jail_name,
                     after={"jail": jail_name, "lifted": len(lifted), "networks": [b.network for b in lifted]})
    return lifted


# At most this many bans in one "unban selected" (the bans list shows 50 a page).
MAX_SELECTED = 500


def lift_selected(pks: list[int], actor: audit.Actor) -> list[Ban]:
    """Lift the bans a person ticked (those still in force), an audit entry each; returns them.
    ValueError past MAX_SELECTED."""
    if len(pks) > MAX_SELECTED:
        raise ValueError(f"at most {MAX_SELECTED} bans at once")
    return _lift(Ban.objects.filter(pk__in=pks), actor)


def unban(text: str, actor: audit.Actor, *, jail: Jail | None = None, host: str | None = None) -> list[Ban]:
    """Lift the live bans of an address or network (in one jail, or all), made on one host or (None)
    on any host of the fleet, with their copies on the other hosts; returns them. BanRefused when
    `text` is not an address or network."""
    network = str(services.parse_network(text))
    bans = Ban.objects.originals().filter(network=network)
    if host is not None:
        bans = bans.filter(host=host)
    return _lift(bans.filter(jail_name=jail.name) if jail is not None else bans, actor)


def _lift(bans: BanQuerySet, actor: audit.Actor, *, each: bool = True) -> list[Ban]:
    """LIFTING for those of `bans` in force and their copies on a fleet's other hosts, an audit entry
    per ban (`each`; its copies go with it), a sync per host. Returns the bans of `bans` lifted."""
    with transaction.atomic():
        # locked as read (PostgreSQL; SQLite's IMMEDIATE transactions run one writer at a time): a
        # second lift of the same bans waits, then finds them no longer in force, so each ban is
        # lifted, and audited, once
        live = {ban.pk: ban for ban in bans.in_force().select_for_update().order_by("network")}
        if not live:
            return []
        touched = Ban.objects.in_force().filter(fanout.with_copies(live))
        hosts = set(touched.values_list("host", flat=True).distinct())
        touched.update(state=Ban.State.LIFTING, ended_by=actor.user)
        lifted = list(Ban.objects.filter(pk__in=list(live)).order_by("network"))
        if each:
            for ban in lifted:
                audit.record(actor, "ban.lift", ban, before=audit.snapshot(live[ban.pk], BAN_AUDIT_FIELDS),
                             after=audit.snapshot(ban, BAN_AUDIT_FIELDS))
        for host in sorted(hosts):
            services.request_firewall_sync(host)
    return lifted
