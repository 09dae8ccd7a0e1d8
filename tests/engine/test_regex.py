"""fail2ban tag translation and regex compilation (jails/engine/regex.py)."""

from __future__ import annotations

import re

import pytest

from jails.engine.definition import RegexLine
from jails.engine.errors import FilterError
from jails.engine.regex import (
    compile_failregex,
    compile_regex,
    first_chars,
    has_host_tag,
    translate,
)


def _groups(pattern: str, text: str) -> dict[str, object]:
    compiled = compile_failregex(RegexLine(pattern))
    m = compiled.regex.search(text)
    assert m is not None, (compiled.source, text)
    return compiled.groups(m)


def test_it_captures_ipv4_ipv6_and_names_with_host() -> None:
    assert _groups(r"^from <HOST>$", "from 192.0.2.7")["ip4"] == "192.0.2.7"
    assert _groups(r"^from <HOST>$", "from 2001:db8::1")["ip6"] == "2001:db8::1"
    assert _groups(r"^from <HOST>$", "from [2001:db8::1]")["ip6"] == "2001:db8::1"
    assert _groups(r"^from <HOST>$", "from ::ffff:192.0.2.7")["ip4"] == "192.0.2.7"
    found = _groups(r"^from <HOST>$", "from mail.example.com")
    assert found["dns"] == "mail.example.com" and found["ip4"] is None


def test_it_keeps_addr_and_ip_tags_to_addresses() -> None:
    assert re.fullmatch(translate("<ADDR>").source, "example.com") is None
    assert re.fullmatch(translate("<ADDR>").source, "192.0.2.1")
    assert re.fullmatch(translate("<IP4>").source, "2001:db8::1") is None
    assert re.fullmatch(translate("<IP6>").source, "2001:db8::1")
    assert re.fullmatch(translate("<HOST>", use_dns="no").source, "example.com") is None


def test_it_reads_subnets_and_cidr() -> None:
    found = _groups(r"^net <SUBNET>$", "net 192.0.2.0/24")
    assert (found["ip4"], found["cidr"]) == ("192.0.2.0", "24")
    found = _groups(r"^net <ADDR>/<CIDR>$", "net 2001:db8::/32")
    assert (found["ip6"], found["cidr"]) == ("2001:db8::", "32")


def test_it_turns_f_tags_into_named_groups() -> None:
    found = _groups(r"^user <F-USER>\S+</F-USER> from <HOST>$", "user root from 192.0.2.1")
    assert found["user"] == "root"
    assert _groups(r"^id <F-ID/> x$", "id abc x")["fid"] == "abc"
    assert _groups(r"^id <F-ID>\d+</F-ID> x$", "id 42 x")["fid"] == "42"
    assert _groups(r"^<HOST>:<F-PORT/>$", "192.0.2.1:ssh")["fport"] == "ssh"
    assert _groups(r"^<F-NOFAIL>ok</F-NOFAIL> <HOST>$", "ok 192.0.2.1")["nofail"] == "ok"


def test_it_leaves_unknown_and_unopened_tags_literal() -> None:
    assert translate("<br> x </F-USER>").source == "<br> x </F-USER>"
    assert translate(r"(?P<name>a)(?P=name)").source == r"(?P<name>a)(?P=name)"


def test_it_merges_alternate_user_groups() -> None:
    pattern = r"^(?:user <F-USER>\S+</F-USER>|login <F-ALT_USER>\S+</F-ALT_USER>) from <HOST>$"
    assert _groups(pattern, "login bob from 192.0.2.1")["user"] == "bob"
    assert _groups(pattern, "user ann from 192.0.2.1")["user"] == "ann"
    numbered = r"^a=<F-ALT_USER_2>\S*</F-ALT_USER_2> b=<F-USER>\S*</F-USER> <HOST>$"
    assert _groups(numbered, "a=x b= 192.0.2.1")["user"] == "x"


def test_it_combines_tuple_groups() -> None:
    found = _groups(r"^<F-ID>\w+</F-ID>/<F-TUPLE_ID>\w+</F-TUPLE_ID> <HOST>$", "a/b 192.0.2.1")
    assert found["fid"] == ("a", "b")


def test_it_makes_global_flags_local() -> None:
    source = translate(r"^x ((?i)login|plain) from <HOST>").source
    assert "(?i:login|plain)" in source
    assert _groups(r"^x ((?i)login|plain) from <HOST>", "x LOGIN from 192.0.2.1")["ip4"] == "192.0.2.1"


def test_it_expands_skiplines_into_numbered_groups() -> None:
    translation = translate(r"^a<SKIPLINES>b<SKIPLINES>c <HOST>$")
    assert translation.skiplines == 2
    compiled = compile_failregex(RegexLine(r"^a<SKIPLINES>^b <HOST>$"), multiline=True)
    m = compiled.regex.search("a\nnoise 1\nnoise 2\nb 192.0.2.1\n")
    assert m is not None
    assert compiled.skipped_lines(m) == ["noise 1", "noise 2"]


def test_it_refuses_a_failregex_without_host_naming_file_and_line() -> None:
    with pytest.raises(FilterError) as caught:
        compile_failregex(RegexLine(r"^Failed password for \S+", "/etc/f/x.conf", 12))
    assert str(caught.value).startswith("/etc/f/x.conf:12: ")
    assert "host" in str(caught.value)


def test_it_accepts_role_groups_or_a_prefregex_with_one() -> None:
    compile_failregex(RegexLine(r"^session <F-MLFID>\d+</F-MLFID> failed"))
    compile_failregex(RegexLine(r"^<F-NOFAIL>hello</F-NOFAIL>"))
    pref = compile_regex(RegexLine(r"^\S+ <HOST> <F-CONTENT>.+</F-CONTENT>$"), kind="prefregex")
    compile_failregex(RegexLine(r"^Failed"), prefregex=pref)


def test_it_reports_regexes_that_do_not_compile_with_position() -> None:
    with pytest.raises(FilterError) as caught:
        compile_failregex(RegexLine(r"^Failed (for <HOST>", "/f/y.conf", 3))
    text = str(caught.value)
    assert text.startswith("/f/y.conf:3: ")
    assert "missing )" in text and "position" in text


def test_it_refuses_empty_regexes() -> None:
    with pytest.raises(FilterError):
        compile_regex(RegexLine("   ", "/f/z.conf", 1))


def test_it_knows_a_raw_regex_has_a_host_tag() -> None:
    assert has_host_tag("Failed from <HOST>")
    assert has_host_tag("<F-ID>x</F-ID>")
    assert not has_host_tag("Failed from nowhere")
    assert not has_host_tag("broken ( <HOST>")


def test_it_lists_first_characters_of_anchored_regexes() -> None:
    assert first_chars(translate(r"^[aA]uth <HOST>").source) == frozenset("aA")
    assert first_chars(translate(r"^(?:x|yz)? ?Failed").source) == frozenset("xy F")
    assert first_chars(r"Failed") is None  # not anchored
    assert first_chars(r"(?i)^Failed") is None
    assert first_chars(r"^\w+ failed") is None
    assert first_chars(r"^(?=a)") is None  # can match empty
    assert first_chars(r"^a", re.MULTILINE) is None
