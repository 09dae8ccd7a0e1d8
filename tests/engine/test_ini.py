"""fail2ban's INI dialect: parsing, stacking, interpolation, filters and jails.

Expected values for the stock corpus were taken from fail2ban 1.0.2's own reading of
the same files (FilterReader / ConfigReader) while writing this module.
"""

from __future__ import annotations

import functools
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from jails.engine.errors import ConfigError
from jails.engine.ini import (
    DirectoryLoader,
    JailSection,
    MemoryLoader,
    load_filter,
    load_filter_file,
    load_jails,
    parse_filter_spec,
)
from tests.paths import CORPUS, SEED_CONFIGS, corpus_tool

FIXTURES = Path(__file__).parent / "fixtures" / "ini"
STOCK = CORPUS / "config"
needs_corpus = pytest.mark.skipif(not STOCK.is_dir(), reason="shared fail2ban corpus not available")


def memory_filter(text: str, name: str = "t", options: dict[str, str] | None = None, **files: str) -> Any:
    loader = MemoryLoader({f"filter.d/{name}.conf": text, **{k.replace("__", "/"): v for k, v in files.items()}})
    return load_filter(loader, name, options)


def config_error(call: Callable[[], object]) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        call()
    return info.value


# --------------------------------------------------------------------------- dialect


def test_it_reads_both_separators_comments_and_multiline_values() -> None:
    definition = memory_filter(
        "# comment\n"
        "; another comment\n"
        "[Definition]\n"
        "FailRegex: ^one <HOST>$\n"
        "    # a comment inside the value is skipped\n"
        "\n"
        "    ^two <HOST>$ ; inline comment after whitespace\n"
        "    ^three#not-a-comment <HOST>;still-regex$\n"
        "ignoreregex =\n"
        "maxlines = 3\n"
    )
    assert [r.pattern for r in definition.failregex] == [
        "^one <HOST>$",
        "^two <HOST>$",
        "^three#not-a-comment <HOST>;still-regex$",
    ]
    assert [r.lineno for r in definition.failregex] == [4, 7, 8]
    assert definition.failregex[0].path == "filter.d/t.conf"
    assert definition.ignoreregex == ()
    assert definition.maxlines == 3


def test_it_ends_a_value_at_a_line_indented_no_deeper_than_its_key() -> None:
    definition = memory_filter("[Definition]\n  failregex = ^a <HOST>$\n  ignoreregex = ^b$\n")
    assert [r.pattern for r in definition.failregex] == ["^a <HOST>$"]
    assert [r.pattern for r in definition.ignoreregex] == ["^b$"]


def test_it_unescapes_double_percent_and_leaves_unknown_tags_alone() -> None:
    definition = memory_filter(
        "[Definition]\n"
        "failregex = ^<F-USER>\\S+</F-USER> 100%% from <HOST><SKIPLINES>x <ADDR>$\n"
        "datepattern = ^%%Y-%%m-%%d\n"
    )
    assert definition.failregex[0].pattern == "^<F-USER>\\S+</F-USER> 100% from <HOST><SKIPLINES>x <ADDR>$"
    assert definition.datepattern == "^%Y-%m-%d"


def test_it_interpolates_name_and_section_options() -> None:
    definition = memory_filter(
        "[DEFAULT]\n_daemon = food\n"
        "[other]\nthing = other-%(__name__)s\n"
        "[Definition]\n"
        "failregex = ^%(_daemon)s %(__name__)s %(other/thing)s %(default/_daemon)s <HOST>$\n"
    )
    assert definition.failregex[0].pattern == "^food Definition other-Definition food <HOST>$"


def test_it_has_no_datepattern_when_empty_or_absent() -> None:
    assert memory_filter("[Definition]\nfailregex = x<HOST>\ndatepattern =\n").datepattern is None
    assert memory_filter("[Definition]\nfailregex = x<HOST>\n").datepattern is None


@pytest.mark.parametrize(
    ("text", "lineno", "message"),
    [
        ("failregex = x\n", 1, "before any [section]"),
        ("[Definition]\njust words\n", 2, "expected 'name = value'"),
        ("[Definition]\n= value\n", 2, "expected 'name = value'"),
        ("[Definition]\na = 1\nA = 2\n", 3, "set twice"),
        ("[Definition]\na = 1\n[Definition]\n", 3, "appears twice"),
    ],
)
def test_it_reports_syntax_errors_with_file_and_line(text: str, lineno: int, message: str) -> None:
    error = config_error(lambda: memory_filter(text))
    assert (error.path, error.lineno) == ("filter.d/t.conf", lineno)
    assert message in error.message
    assert str(error).startswith(f"filter.d/t.conf:{lineno}: ")


# --------------------------------------------------------------------------- interpolation errors


def test_it_reports_an_interpolation_loop() -> None:
    error = config_error(lambda: memory_filter("[Definition]\na = %(b)s\nb = %(a)s\nfailregex = %(a)s\n"))
    assert "interpolation loop" in error.message
    assert error.path == "filter.d/t.conf" and error.lineno in (2, 3)


def test_it_reports_a_tag_loop() -> None:
    error = config_error(lambda: memory_filter("[Definition]\na = <b>\nb = x<a>\nfailregex = <a>\n"))
    assert "tag loop" in error.message
    assert error.path == "filter.d/t.conf" and error.lineno in (2, 3, 4)


def test_it_reports_an_undefined_reference() -> None:
    error = config_error(lambda: memory_filter("[Definition]\n\nfailregex = ^%(nowhere)s <HOST>\n"))
    assert "%(nowhere)s" in error.message and "not defined" in error.message
    assert (error.path, error.lineno) == ("filter.d/t.conf", 3)


def test_it_reports_a_lone_percent_sign() -> None:
    error = config_error(lambda: memory_filter("[Definition]\nfailregex = 100% <HOST>\n"))
    assert "'%%'" in error.message and error.lineno == 2


def test_it_reports_maxlines_that_is_not_a_number() -> None:
    error = config_error(lambda: memory_filter("[Definition]\nfailregex = x <HOST>\n\n[Init]\nmaxlines = ten\n"))
    assert "maxlines" in error.message and (error.path, error.lineno) == ("filter.d/t.conf", 5)


def test_it_reports_a_missing_include_but_not_a_missing_local_include() -> None:
    error = config_error(lambda: memory_filter("[INCLUDES]\nbefore = nothere.conf\n[Definition]\nfailregex = x\n"))
    assert "nothere.conf" in error.message and (error.path, error.lineno) == ("filter.d/t.conf", 2)
    definition = memory_filter("[INCLUDES]\nafter = t-extra.local\n[Definition]\nfailregex = x<HOST>\n")
    assert [r.pattern for r in definition.failregex] == ["x<HOST>"]


def test_it_reports_a_missing_filter() -> None:
    error = config_error(lambda: load_filter(MemoryLoader({}), "nope"))
    assert "nope" in str(error)


@pytest.mark.parametrize("name", ["../etc/passwd", "/etc/passwd", "", "a//b"])
def test_it_refuses_filter_names_that_leave_filter_d(name: str) -> None:
    config_error(lambda: load_filter(MemoryLoader({}), name))


# --------------------------------------------------------------------------- tags and options


def test_it_substitutes_nested_tags_innermost_first() -> None:
    text = (
        "[Definition]\n"
        "failregex = <mdre-<mode>>\n"
        "mdre-normal = ^normal <HOST>$\n"
        "mdre-aggressive = <mdre-normal>\n"
        "                  ^aggressive <HOST>$\n"
        "[Init]\nmode = normal\n"
    )
    normal = memory_filter(text)
    assert [(r.pattern, r.lineno) for r in normal.failregex] == [("^normal <HOST>$", 3)]
    aggressive = memory_filter(text, options={"mode": "aggressive"})
    assert [(r.pattern, r.lineno) for r in aggressive.failregex] == [("^normal <HOST>$", 3), ("^aggressive <HOST>$", 5)]
    assert aggressive.options == {"mode": "aggressive", "logtype": "file"}


def test_it_lets_jail_options_reach_percent_interpolation_and_known_init_values() -> None:
    text = "[Definition]\nfailregex = ^%(mode)s <known/mode> <mode> <HOST>$\nmode = definition\n[Init]\nmode = init\n"
    assert memory_filter(text).failregex[0].pattern == "^definition init init <HOST>$"
    passed = memory_filter(text, options={"mode": "jail"})
    assert passed.failregex[0].pattern == "^jail init jail <HOST>$"


def test_it_takes_maxlines_from_init_and_lets_the_jail_override_it() -> None:
    text = "[Definition]\nfailregex = x <HOST>\nmaxlines = 1\n[Init]\nmaxlines = 5\n"
    assert memory_filter(text).maxlines == 5
    assert memory_filter(text, options={"maxlines": "7"}).maxlines == 7


def test_it_sets_logtype_from_the_backend_unless_given() -> None:
    text = "[Definition]\nfailregex = ^<logtype> <HOST>\n"
    loader = MemoryLoader({"filter.d/t.conf": text})
    assert load_filter(loader, "t").failregex[0].pattern == "^file <HOST>"
    assert load_filter(loader, "t", backend="systemd").failregex[0].pattern == "^journal <HOST>"
    assert load_filter(loader, "t", {"logtype": "short"}, backend="systemd").failregex[0].pattern == "^short <HOST>"


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("sshd", ("sshd", {})),
        ("sshd[mode=aggressive]", ("sshd", {"mode": "aggressive"})),
        (" sshd[mode=aggressive, x=\"a,b\", y='c]d'] ", ("sshd", {"mode": "aggressive", "x": "a,b", "y": "c]d"})),
        ("f[a=1][b = 2 ,]", ("f", {"a": "1", "b": "2"})),
        ("f[]", ("f", {})),
        ('sendmail-reject[mta_dname="[^,]+"]', ("sendmail-reject", {"mta_dname": "[^,]+"})),
    ],
)
def test_it_parses_filter_specs(spec: str, expected: tuple[str, dict[str, str]]) -> None:
    assert parse_filter_spec(spec) == expected


@pytest.mark.parametrize("spec", ["", "[a=1]", "f[a=1", "f[a]", "f[a=1] junk", 'f[a="x" b=2]'])
def test_it_rejects_bad_filter_specs(spec: str) -> None:
    config_error(lambda: parse_filter_spec(spec))


# --------------------------------------------------------------------------- layering on disk


def test_it_layers_conf_d_and_local_files_with_known_references() -> None:
    loader = DirectoryLoader(FIXTURES / "overlay")
    definition = load_filter(loader, "demo", {"mode": "aggressive"})
    folder = str(FIXTURES / "overlay" / "filter.d")
    assert [(r.pattern, Path(r.path or "").name, r.lineno) for r in definition.failregex] == [
        (r"^demod\[\d+\]:\s+bad password for user <F-USER>\S+</F-USER> from <HOST>$", "demo.conf", 10),
        (r"^demod\[\d+\]:\s+probe from <HOST>$", "demo.conf", 14),
        (r"^demod\[\d+\]:\s+scan from <HOST>$", "demo.conf", 15),
        (r"^demod\[\d+\]:\s+too many errors from <HOST>$", "10-extra.conf", 3),
        (r"^demod\[\d+\]:\s+locked out <HOST>", "demo.local", 4),
    ]
    assert [(r.pattern, r.lineno) for r in definition.ignoreregex] == [(r"^10\.0\.0\.1$", 17)]
    assert definition.datepattern == "^%Y-%m-%d %H:%M:%S"
    assert definition.maxlines == 2
    assert definition.journalmatch == "_SYSTEMD_UNIT=demo.service"
    assert definition.options == {"mode": "aggressive", "ignored": r"10\.0\.0\.1", "maxlines": "2", "logtype": "file"}
    assert definition.variables["_daemon"] == "demod"
    assert definition.sources == tuple(
        f"{folder}/{name}"
        for name in ("demo-common.conf", "demo-common.local", "demo.conf", "demo.d/10-extra.conf", "demo.local")
    )


def test_it_loads_a_filter_file_by_path_with_its_overlays() -> None:
    by_path = load_filter_file(FIXTURES / "overlay" / "filter.d" / "demo.conf")
    assert len(by_path.failregex) == 3  # mode normal: no mdre lines, plus the two overlays


def test_it_loads_the_same_filter_from_memory() -> None:
    folder = FIXTURES / "overlay"
    files = {str(p.relative_to(folder)): p.read_text() for p in folder.rglob("*") if p.is_file()}
    from_memory = load_filter(MemoryLoader(files), "demo")
    from_disk = load_filter(DirectoryLoader(folder), "demo")
    assert [r.pattern for r in from_memory.failregex] == [r.pattern for r in from_disk.failregex]
    assert from_memory.failregex[-1].path == "filter.d/demo.local"


# --------------------------------------------------------------------------- the stock corpus


@needs_corpus
def test_it_loads_every_stock_filter_with_the_corpus_options() -> None:
    tool = corpus_tool()
    runs = list(tool.all_runs(CORPUS))
    assert runs
    for run in runs:
        definition = load_filter_file(run["conf"], run["options"])
        assert definition.failregex, run["key"]


@needs_corpus
def test_it_loads_every_stock_and_test_filter_file() -> None:
    files = sorted((STOCK / "filter.d").glob("*.conf"))
    files += sorted((CORPUS / "fail2ban" / "tests" / "config" / "filter.d").glob("zzz-*.conf"))
    assert len(files) > 80
    started = time.perf_counter()
    for path in files:
        if path.name == "selinux-common.conf":
            # a template: its failregex uses %(_type)s... that only selinux-*.conf define,
            # so fail2ban refuses it on its own as well
            error = config_error(functools.partial(load_filter_file, path))
            assert (error.path, error.lineno) == (str(path), 17)
            continue
        definition = load_filter_file(path)
        for regex in (*definition.failregex, *definition.ignoreregex):
            assert "%(" not in regex.pattern and regex.path and regex.lineno, (path, regex)
    assert time.perf_counter() - started < 5


@needs_corpus
@pytest.mark.parametrize(("mode", "count"), [("normal", 22), ("ddos", 29), ("extra", 26), ("aggressive", 33)])
def test_it_resolves_sshd_like_fail2ban(mode: str, count: int) -> None:
    definition = load_filter_file(STOCK / "filter.d" / "sshd.conf", {"mode": mode})
    patterns = [r.pattern for r in definition.failregex]
    assert len(patterns) == count
    assert patterns[0] == (
        r"^[aA]uthentication (?:failure|error|failed) for <F-USER>.*?</F-USER> (?:from )?<HOST>( via \S+)?"
        r"(?: (?:port \d+|on \S+|\[preauth\])){0,3}\s*$"
    )
    assert patterns[-1] == r"^<F-NOFAIL>Connection from</F-NOFAIL> <HOST>"
    assert all("<mdre" not in p and "%(" not in p and "<cmnf" not in p for p in patterns)
    assert definition.prefregex is not None
    assert definition.prefregex.pattern == (
        r"^<F-MLFID>(?:\[\])?\s*(?:<[^.]+\.[^.]+>\s+)?(?:\S+\s+)?(?:kernel:\s?\[ *\d+\.\d+\]:?\s+)?"
        r"(?:@vserver_\S+\s+)?(?:(?:(?:\[\d+\])?:\s+[\[\(]?sshd(?:-session)?(?:\(\S+\))?[\]\)]?:?|"
        r"[\[\(]?sshd(?:-session)?(?:\(\S+\))?[\]\)]?:?(?:\[\d+\])?:?)\s+)?(?:\[ID \d+ \S+\]\s+)?</F-MLFID>"
        r"(?:(?:error|fatal): (?:PAM: )?)?<F-CONTENT>.+</F-CONTENT>$"
    )
    assert definition.datepattern == "{^LN-BEG}"
    assert definition.journalmatch == "_SYSTEMD_UNIT=sshd.service + _COMM=sshd + _COMM=sshd-session"
    assert definition.options["mode"] == mode


@needs_corpus
def test_it_points_each_sshd_regex_at_the_line_that_wrote_it() -> None:
    path = STOCK / "filter.d" / "sshd.conf"
    lines = path.read_text().splitlines()
    definition = load_filter_file(path, {"mode": "aggressive"})
    root_line = next(i for i, line in enumerate(lines, 1) if "LOGIN REFUSED FROM" in line)
    refused = next(r for r in definition.failregex if "LOGIN REFUSED" in r.pattern)
    assert (refused.path, refused.lineno) == (str(path), root_line)
    ddos_line = next(i for i, line in enumerate(lines, 1) if "Did not receive identification" in line)
    ddos = next(r for r in definition.failregex if "Did not receive identification" in r.pattern)
    assert ddos.lineno == ddos_line


@needs_corpus
def test_it_resolves_a_known_reference_to_the_overridden_value() -> None:
    # sendmail-auth: __prefix_line = %(known/__prefix_line)s(?:\w{14,20}: )?
    common = load_filter_file(STOCK / "filter.d" / "common.conf")
    sendmail = load_filter_file(STOCK / "filter.d" / "sendmail-auth.conf")
    assert sendmail.variables["__prefix_line"].endswith(r"(?:\w{14,20}: )?")
    assert sendmail.variables["__prefix_line"].startswith(r"(?:\[\])?\s*(?:<[^.]+\.[^.]+>\s+)?")
    assert "known/" not in sendmail.prefregex.pattern if sendmail.prefregex else True
    assert common.failregex == () and common.datepattern is None  # no [Definition]: no filter


@needs_corpus
def test_it_applies_a_local_overlay_on_the_stock_tree(tmp_path: Path) -> None:
    tree = tmp_path / "conf"
    shutil.copytree(STOCK / "filter.d", tree / "filter.d")
    (tree / "filter.d" / "sshd.local").write_text(
        "[Definition]\nfailregex = %(known/failregex)s\n            ^my own <HOST> rule$\n\n[Init]\nmode = ddos\n"
    )
    (tree / "filter.d" / "common.local").write_text("[DEFAULT]\n_daemon = myssh\n")
    definition = load_filter(DirectoryLoader(tree), "sshd")
    assert len(definition.failregex) == 30  # ddos mode (29) + the local rule
    assert definition.failregex[-1].pattern == "^my own <HOST> rule$"
    assert (definition.failregex[-1].path, definition.failregex[-1].lineno) == (str(tree / "filter.d/sshd.local"), 3)
    assert definition.options["mode"] == "ddos"
    # sshd.conf's own [DEFAULT] _daemon still wins over common.local: it is read later
    assert definition.variables["_daemon"] == "sshd(?:-session)?"
    assert str(tree / "filter.d/common.local") in definition.sources


@needs_corpus
def test_it_loads_the_seed_custom_filters(tmp_path: Path) -> None:
    tree = tmp_path / "conf"
    shutil.copytree(STOCK, tree)
    for path in (SEED_CONFIGS / "filter.d").glob("*.conf"):
        shutil.copy(path, tree / "filter.d")
        definition = load_filter(DirectoryLoader(tree), path.stem)
        assert definition.failregex and definition.sources[-1] == str(tree / "filter.d" / path.name)


# --------------------------------------------------------------------------- jails


def jail(jails: list[JailSection], name: str) -> JailSection:
    return next(j for j in jails if j.name == name)


def test_it_stacks_jail_files_in_fail2ban_order() -> None:
    jails = load_jails(DirectoryLoader(FIXTURES / "jails"))
    assert [j.name for j in jails] == ["web", "ssh", "extra"]
    web = jail(jails, "web")
    texts = {key: value.text for key, value in web.values.items()}
    assert texts["layer"] == "jail.conf+web+a.conf+jail.local+b.local"
    assert texts["maxretry"] == "3" and texts["bantime"] == "1h" and texts["bantime.increment"] == "true"
    assert texts["filter"] == "web[mode=normal]"
    assert texts["action"] == 'nftables[name=web, port="http,https"]'
    assert texts["logpath"] == "/var/log/web/*access.log"
    assert Path(web.values["maxretry"].path).name == "jail.local" and web.values["maxretry"].lineno == 6
    assert Path(web.values["filter"].path).name == "jail.conf" and web.values["filter"].lineno == 10
    assert web.enabled and not jail(jails, "extra").enabled
    assert jail(jails, "ssh").values["maxretry"].text == "5"


def test_it_refuses_an_enabled_jail_whose_needed_option_cannot_be_resolved() -> None:
    files = {"jail.conf": "[DEFAULT]\nhelper = %(missing)s\n[a]\nenabled = true\nlogpath = %(nowhere)s\n"}
    error = config_error(lambda: load_jails(MemoryLoader(files)))
    assert "[a]" in str(error) and "logpath" in str(error) and "jail.conf:5" in str(error)
    files["jail.conf"] = files["jail.conf"].replace("enabled = true", "enabled = false")
    (disabled,) = load_jails(MemoryLoader(files))
    assert set(disabled.errors) == {"helper", "logpath"}


@needs_corpus
def test_it_loads_the_stock_jails_with_the_seed_jail_local(tmp_path: Path) -> None:
    tree = tmp_path / "conf"
    shutil.copytree(STOCK, tree)
    shutil.copy(SEED_CONFIGS / "jail.local", tree / "jail.local")
    started = time.perf_counter()
    jails = load_jails(DirectoryLoader(tree))
    elapsed = time.perf_counter() - started
    assert elapsed < 1.0

    stock_names = [
        line.strip()[1:-1]
        for line in (STOCK / "jail.conf").read_text().splitlines()
        if line.startswith("[") and line.strip() not in ("[INCLUDES]", "[DEFAULT]")
    ]
    names = [j.name for j in jails]
    assert names[: len(stock_names)] == stock_names

    envscan = {k: v.text for k, v in jail(jails, "apache-envscan").values.items()}
    assert {k: envscan[k] for k in ("maxretry", "findtime", "bantime", "enabled")} == {
        "maxretry": "1",
        "findtime": "24h",
        "bantime": "7d",
        "enabled": "true",
    }
    assert envscan["bantime.increment"] == "true"
    assert envscan["bantime.factor"] == "2"
    assert envscan["bantime.maxtime"] == "30d"

    sshd = jail(jails, "sshd")
    assert sshd.values["backend"].text == "systemd"
    assert sshd.values["maxretry"].text == "3"
    assert (Path(sshd.values["maxretry"].path).name, sshd.values["maxretry"].lineno) == ("jail.local", 5)
    assert sshd.values["filter"].text == "sshd[mode=normal]"
    assert sshd.values["logpath"].text == "/var/log/auth.log"  # %(sshd_log)s from paths-debian.conf
    assert jail(jails, "apache-auth").values["logpath"].text == "/var/log/apache2/*error.log"
    assert "action_cf_mwl" in sshd.errors  # needs %(cfemail)s, which only the cloudflare action sets
    for section in jails:
        for value in section.values.values():
            assert "%(" not in value.text.replace("%%", ""), (section.name, value)


@pytest.mark.parametrize("reference", ["<a{n}><a{n}>", "%(a{n})s%(a{n})s"])
def test_it_stops_values_that_grow_exponentially(reference: str) -> None:
    chain = "".join(f"a{i} = {reference.format(n=i + 1)}\n" for i in range(40))
    error = config_error(lambda: memory_filter(f"[Definition]\n{chain}a40 = x\nfailregex = <a0>\n"))
    assert "grows beyond" in error.message and error.path == "filter.d/t.conf"
