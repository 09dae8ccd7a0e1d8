"""importconf: the stock fail2ban tree with the seed jail.local laid over it."""

from __future__ import annotations

import re
import shutil
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from jails import ignores
from jails.models import Filter, Jail
from tests.factories import LOGIN_FAILED_SOURCE
from tests.jails.builders import minimal_tree, stock_tree_with_seed

pytestmark = pytest.mark.django_db

SEED_JAILS = {
    "sshd", "apache-botsearch", "wordpress-auth", "wordpress-auth-hook", "apache-envscan", "postfix",
    "postfix-sasl", "postfix-protocol", "postfix-postscreen", "recidive",
}


def run_import(*args: str) -> str:
    out = StringIO()
    call_command("importconf", *args, stdout=out, stderr=StringIO())
    return out.getvalue()


@pytest.fixture
def seed_tree(tmp_path: Path) -> Path:
    return stock_tree_with_seed(tmp_path)


def test_it_imports_every_enabled_jail_of_the_seed(seed_tree: Path) -> None:
    run_import(str(seed_tree))
    assert set(Jail.objects.values_list("name", flat=True)) == SEED_JAILS
    assert Filter.objects.filter(name="apache-envscan", origin=Filter.Origin.IMPORTED).exists()


def test_it_gives_apache_envscan_its_effective_values(seed_tree: Path) -> None:
    run_import(str(seed_tree))
    jail = Jail.objects.get(name="apache-envscan")
    assert (jail.maxretry, jail.findtime, jail.bantime) == (1, 24 * 3600, 7 * 86400)
    assert jail.bantime_increment is True
    assert jail.bantime_factor == 2
    assert jail.bantime_maxtime == 30 * 86400
    assert jail.enabled is True
    assert jail.logpath == ["/var/log/apache2/access.log"]
    assert jail.port == "http,https"


def test_it_inherits_the_seed_default_section(seed_tree: Path) -> None:
    run_import(str(seed_tree))
    sshd = Jail.objects.get(name="sshd")
    assert (sshd.maxretry, sshd.findtime, sshd.bantime) == (3, 600, 3600)
    assert sshd.bantime_maxtime == 7 * 86400
    assert sshd.backend == Jail.Backend.SYSTEMD
    assert sshd.ignoreip == []  # [DEFAULT] ignoreip went to the global list, once, for every jail
    assert ignores.global_entries() == ["127.0.0.1/8", "::1"]
    assert sshd.filter.name == "sshd"
    assert sshd.filter_options == {"mode": "normal"}


def test_it_bans_recidive_on_all_ports(seed_tree: Path) -> None:
    run_import(str(seed_tree))
    recidive = Jail.objects.get(name="recidive")
    assert recidive.port == "all"
    assert (recidive.maxretry, recidive.findtime, recidive.bantime) == (2, 86400, 30 * 86400)


def test_it_changes_nothing_on_a_second_run(seed_tree: Path) -> None:
    run_import(str(seed_tree))
    before = {j.name: j.updated_at for j in Jail.objects.all()}
    output = run_import(str(seed_tree))
    assert "filters: 0 created, 0 updated, 109 unchanged" in output
    assert "jails: 0 created, 0 updated, 10 unchanged" in output
    assert {j.name: j.updated_at for j in Jail.objects.all()} == before


def test_the_same_tree_from_another_directory_is_unchanged(seed_tree: Path, tmp_path: Path) -> None:
    """As a re-upload in the panel (a new temporary directory each time): where a filter file lay is
    not a change of the filter, and a real change still names what changed."""
    run_import(str(seed_tree))
    copy = shutil.copytree(seed_tree, tmp_path / "elsewhere")
    output = run_import(str(copy))
    assert "filters: 0 created, 0 updated, 109 unchanged" in output
    (copy / "filter.d" / "apache-envscan.conf").write_text(
        (copy / "filter.d" / "apache-envscan.conf").read_text() + "\n# a comment changes the text\n")
    output = run_import(str(copy))
    assert "filters: 0 created, 1 updated, 108 unchanged" in output
    assert Filter.objects.get(name="apache-envscan").origin_path.startswith(str(copy))


def test_it_prints_the_old_and_new_value_of_each_changed_field(seed_tree: Path) -> None:
    run_import(str(seed_tree))
    jail_local = seed_tree / "jail.local"
    jail_local.write_text(jail_local.read_text().replace("[sshd]\nenabled = true\n",
                                                         "[sshd]\nenabled = true\nbantime = 2h\n"))
    output = run_import(str(seed_tree))
    assert "  updated jail sshd (changed: bantime)\n      bantime: 1h -> 2h\n" in output
    assert "filter" not in output.split("jails:")[1].split("Skipped:")[0]  # filters only with -v 2

    envscan = seed_tree / "filter.d" / "apache-envscan.conf"
    envscan.write_text(envscan.read_text().replace("ignoreregex =", "ignoreregex = ^127\\.0\\.0\\.1 "))
    output = run_import(str(seed_tree), "--verbosity", "2")
    assert ("  updated filter apache-envscan (changed: source, ignoreregex, definition)\n"
            "      source:\n"
            "        - @@ line 4 @@\n"
            "        - ignoreregex =\n"
            "        + @@ line 4 @@\n"
            "        + ignoreregex = ^127\\.0\\.0\\.1 \n"
            "      ignoreregex: (empty) -> ^127\\.0\\.0\\.1\n") in output


def test_it_reports_what_it_skipped(seed_tree: Path) -> None:
    output = run_import(str(seed_tree))
    assert "Skipped:" in output
    assert "disabled in the configuration" in output


def test_it_imports_disabled_jails_with_all(seed_tree: Path) -> None:
    run_import(str(seed_tree), "--all")
    assert Jail.objects.filter(enabled=False).count() > 50


def test_it_writes_nothing_on_a_dry_run(seed_tree: Path) -> None:
    output = run_import(str(seed_tree), "--dry-run")
    assert output.startswith("Would import")
    assert not Jail.objects.exists()
    assert not Filter.objects.exists()


def test_it_refuses_a_broken_regex_and_writes_nothing(tmp_path: Path) -> None:
    tree = minimal_tree(
        tmp_path,
        "[good]\nenabled = true\nfilter = good\nlogpath = /var/log/x.log\n",
        {"good.conf": LOGIN_FAILED_SOURCE, "broken.conf": "[Definition]\nfailregex = ^(unclosed <HOST>$\n"},
    )
    with pytest.raises(CommandError) as excinfo:
        run_import(str(tree))
    message = str(excinfo.value)
    assert "broken.conf" in message and ":2" in message
    assert "Nothing was imported" in message
    assert not Filter.objects.exists() and not Jail.objects.exists()


def test_it_refuses_a_missing_include(tmp_path: Path) -> None:
    tree = minimal_tree(
        tmp_path, "[good]\nenabled = true\n",
        {"good.conf": "[INCLUDES]\nbefore = nowhere.conf\n" + LOGIN_FAILED_SOURCE},
    )
    with pytest.raises(CommandError, match=re.escape("nowhere.conf")):
        run_import(str(tree))


def test_it_refuses_an_invalid_jail_option_with_file_and_line(tmp_path: Path) -> None:
    tree = minimal_tree(
        tmp_path, "[good]\nenabled = true\nmaxretry = 3\nbantime = 10 parsecs\n", {"good.conf": LOGIN_FAILED_SOURCE}
    )
    with pytest.raises(CommandError) as excinfo:
        run_import(str(tree))
    assert "jail.local:4" in str(excinfo.value)
    assert "bantime" in str(excinfo.value)
    assert not Filter.objects.exists()


def test_it_refuses_a_directory_without_jail_files(tmp_path: Path) -> None:
    with pytest.raises(CommandError, match=re.escape("no jail.conf or jail.local")):
        run_import(str(tmp_path))


def test_it_refuses_a_regex_without_a_host_tag(tmp_path: Path) -> None:
    tree = minimal_tree(tmp_path, "[good]\nenabled = true\n",
                        {"good.conf": "[Definition]\n\nfailregex = ^login failed for \\S+$\n"})
    with pytest.raises(CommandError) as excinfo:
        run_import(str(tree))
    assert "good.conf:3" in str(excinfo.value)
    assert not Filter.objects.exists()


def test_it_refuses_an_interpolation_loop(tmp_path: Path) -> None:
    tree = minimal_tree(tmp_path, "[good]\nenabled = true\n",
                        {"good.conf": "[Definition]\na = %(b)s\nb = %(a)s\nfailregex = ^%(a)s <HOST>$\n"})
    with pytest.raises(CommandError, match=re.escape("good.conf")):
        run_import(str(tree))
    assert not Filter.objects.exists()


@pytest.mark.parametrize("usedns", ["yes", "warn", "raw", "no"])
def test_it_keeps_the_imported_usedns(tmp_path: Path, usedns: str) -> None:
    tree = minimal_tree(tmp_path, f"[good]\nenabled = true\nlogpath = /var/log/x.log\nusedns = {usedns}\n",
                        {"good.conf": LOGIN_FAILED_SOURCE})
    output = run_import(str(tree))
    assert Jail.objects.get(name="good").usedns == usedns
    assert ("usedns is yes/warn for good" in output) is (usedns in ("yes", "warn"))


def test_a_jail_without_usedns_resolves_nothing_and_a_new_value_is_applied_again(tmp_path: Path) -> None:
    tree = minimal_tree(tmp_path, "[good]\nenabled = true\nlogpath = /var/log/x.log\n",
                        {"good.conf": LOGIN_FAILED_SOURCE})
    run_import(str(tree))
    assert Jail.objects.get(name="good").usedns == Jail.UseDns.NO
    (tree / "jail.local").write_text("[good]\nenabled = true\nlogpath = /var/log/x.log\nusedns = Yes\n")
    output = run_import(str(tree))
    assert Jail.objects.get(name="good").usedns == Jail.UseDns.YES
    assert "changed: usedns" in output


def test_the_stock_jail_conf_usedns_warn_is_honoured(seed_tree: Path) -> None:
    output = run_import(str(seed_tree))
    assert set(Jail.objects.values_list("usedns", flat=True)) == {"warn"}  # jail.conf's [DEFAULT]
    assert "usedns is yes/warn for" in output and "whoever controls a name's zone" in output


def test_it_refuses_an_unknown_usedns(tmp_path: Path) -> None:
    tree = minimal_tree(tmp_path, "[good]\nenabled = true\nusedns = sometimes\n", {"good.conf": LOGIN_FAILED_SOURCE})
    with pytest.raises(CommandError, match="usedns"):
        run_import(str(tree))
    assert not Jail.objects.exists()


def test_default_ignoreip_goes_to_the_global_list_and_each_jail_keeps_its_additions(tmp_path: Path) -> None:
    jail_local = ("[DEFAULT]\nignoreip = 127.0.0.1/8 198.51.100.64/26\n\n"
                  "[sshd]\nenabled = true\nfilter = sshd\nlogpath = /var/log/auth.log\n\n"
                  "[web]\nenabled = true\nfilter = sshd\nlogpath = /var/log/auth.log\n"
                  "ignoreip = %(default/ignoreip)s 10.9.9.9\n\n"
                  "[mail]\nenabled = true\nfilter = sshd\nlogpath = /var/log/auth.log\nignoreip = 192.0.2.1\n")
    tree = minimal_tree(tmp_path, jail_local, {"sshd.conf": "[Definition]\nfailregex = ^x <HOST>$\n"})

    dry = run_import(str(tree), "--dry-run")
    assert ignores.global_entries() == []  # a dry run writes nothing
    output = run_import(str(tree))

    assert ignores.global_entries() == ["127.0.0.1/8", "198.51.100.64/26"]
    own = dict(Jail.objects.values_list("name", "ignoreip"))
    assert own == {"sshd": [], "web": ["10.9.9.9"], "mail": ["192.0.2.1"]}
    assert "updated ignore list global" in output and "global" in dry
    assert "jails: 0 created, 0 updated, 3 unchanged" in run_import(str(tree))  # and only once
    assert ignores.global_entries() == ["127.0.0.1/8", "198.51.100.64/26"]


def test_a_jail_named_like_a_panel_page_is_skipped_with_the_reason(tmp_path: Path) -> None:
    jail_local = "[ignore]\nenabled = true\nfilter = sshd\nlogpath = /var/log/auth.log\n"
    tree = minimal_tree(tmp_path, jail_local, {"sshd.conf": "[Definition]\nfailregex = ^x <HOST>$\n"})

    output = run_import(str(tree))

    assert not Jail.objects.filter(name="ignore").exists()
    assert "names one of the panel's pages" in output


def test_a_huge_default_ignoreip_is_refused_with_a_short_message(tmp_path: Path) -> None:
    entries = " ".join(f"10.{n // 65536}.{n // 256 % 256}.{n % 256}" for n in range(3000))
    jail_local = (f"[DEFAULT]\nignoreip = {entries}\n\n"
                  "[sshd]\nenabled = true\nfilter = sshd\nlogpath = /var/log/auth.log\n")
    tree = minimal_tree(tmp_path, jail_local, {"sshd.conf": "[Definition]\nfailregex = ^x <HOST>$\n"})

    with pytest.raises(CommandError) as refused:
        run_import(str(tree))

    assert "holds at most" in str(refused.value) and len(str(refused.value)) < 1000
    assert ignores.global_entries() == [] and not Jail.objects.exists()
