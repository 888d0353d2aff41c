# Copyright: selfhost.dify contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Unit tests for the selfhost.dify.firewall_rules and firewall_rules_errors filters."""

from __future__ import annotations

import pytest

from ansible.errors import AnsibleFilterError
from ansible_collections.selfhost.dify.plugins.filter.firewall import (
    FilterModule,
    firewall_rules,
    firewall_rules_errors,
)

HOSTVARS = {
    "app1": {"selfhost_private_address": "10.0.1.11", "ansible_default_ipv4": {"address": "192.0.2.11"}},
    "app2": {"ansible_default_ipv4": {"address": "10.0.1.12"}},
    "app3": {"ansible_facts": {"default_ipv4": {"address": "10.0.1.13"}}},
    "v6host": {"selfhost_private_address": "2001:db8::10"},
    "nofacts": {},
    "badaddr": {"selfhost_private_address": "not-an-ip"},
}
GROUPS = {
    "all": sorted(HOSTVARS),
    "dify": ["app1", "app2"],
    "mixed": ["app3", "v6host"],
    "empty": [],
    "broken": ["app1", "nofacts"],
}


def rules_of(rules, var="base_firewall_rules"):
    return firewall_rules({var: rules}, HOSTVARS, GROUPS)


def errors_of(rules, var="base_firewall_rules"):
    return firewall_rules_errors({var: rules}, HOSTVARS, GROUPS)


def test_filters_are_registered():
    assert set(FilterModule().filters()) == {
        "firewall_rules", "firewall_rules_errors", "source_networks", "source_networks_errors"}


def test_minimal_rule_is_normalized_with_tcp_default():
    result = rules_of([{"name": "metrics", "port": 9100, "sources": ["10.0.0.5"]}])
    assert result == [{
        "name": "metrics", "port": "9100", "proto": "tcp",
        "sources_ipv4": ["10.0.0.5"], "sources_ipv6": [], "published": False, "origin": "base_firewall_rules[0]",
    }]


def test_range_udp_and_address_families_are_split_sorted_and_deduplicated():
    result = rules_of([{
        "name": "media", "port": "60000-60010", "proto": "udp",
        "sources": ["2001:db8::/32", "10.0.1.0/24", "10.0.0.9/32", "10.0.1.77/24", "10.0.0.9"],
    }])
    assert result[0]["port"] == "60000-60010"
    assert result[0]["proto"] == "udp"
    # host bits are dropped (10.0.1.77/24 is 10.0.1.0/24), /32 prints as a bare address
    assert result[0]["sources_ipv4"] == ["10.0.0.9", "10.0.1.0/24"]
    assert result[0]["sources_ipv6"] == ["2001:db8::/32"]


def test_hosts_and_groups_resolve_to_private_addresses():
    result = rules_of([
        {"name": "by-host", "port": 5432, "sources": ["app1"]},
        {"name": "by-group", "port": 6379, "sources": ["dify"]},
        {"name": "by-facts", "port": 9000, "sources": ["mixed"]},
    ])
    # selfhost_private_address wins over the default IPv4 address from facts
    assert result[0]["sources_ipv4"] == ["10.0.1.11"]
    assert result[1]["sources_ipv4"] == ["10.0.1.11", "10.0.1.12"]
    assert result[2]["sources_ipv4"] == ["10.0.1.13"]
    assert result[2]["sources_ipv6"] == ["2001:db8::10"]


def test_empty_group_opens_nothing_but_is_valid():
    result = rules_of([{"name": "nobody", "port": 80, "sources": ["empty"]}])
    assert result[0]["sources_ipv4"] == [] and result[0]["sources_ipv6"] == []


def test_several_variables_merge_in_order_with_their_origin():
    rule_sets = {
        "base_firewall_rules": [{"name": "a", "port": 1, "sources": ["10.0.0.1"]}],
        "selfhost_firewall_rules_postgresql": [{"name": "postgresql", "port": 5432, "sources": ["dify"]}],
    }
    result = firewall_rules(rule_sets, HOSTVARS, GROUPS)
    assert [r["name"] for r in result] == ["a", "postgresql"]
    assert result[1]["origin"] == "selfhost_firewall_rules_postgresql[0]"


def test_bare_list_and_missing_variables_are_accepted():
    assert firewall_rules([{"name": "a", "port": 22, "sources": ["::1"]}])[0]["sources_ipv6"] == ["::1"]
    assert firewall_rules({"base_firewall_rules": None}) == []
    assert firewall_rules({}) == []


@pytest.mark.parametrize("rule, expected", [
    ({"name": "x", "port": 0, "sources": ["10.0.0.1"]}, "base_firewall_rules[0].port: 0 is outside 1-65535"),
    ({"name": "x", "port": 65536, "sources": ["10.0.0.1"]}, "base_firewall_rules[0].port: 65536 is outside 1-65535"),
    ({"name": "x", "port": "9000-8000", "sources": ["10.0.0.1"]}, "start 9000 is above its end 8000"),
    ({"name": "x", "port": "1-70000", "sources": ["10.0.0.1"]}, "has port 70000 outside 1-65535"),
    ({"name": "x", "port": "http", "sources": ["10.0.0.1"]}, 'is neither a port 1-65535 nor a range "A-B"'),
    ({"name": "x", "port": True, "sources": ["10.0.0.1"]}, "base_firewall_rules[0].port: True is not a port number"),
    ({"name": "x", "sources": ["10.0.0.1"]}, "base_firewall_rules[0].port: missing"),
    ({"name": "x", "port": 1, "proto": "icmp", "sources": ["10.0.0.1"]},
     "base_firewall_rules[0].proto: must be tcp or udp, got 'icmp'"),
    ({"name": "x", "port": 1, "sources": ["10.0.0.300/24"]},
     "base_firewall_rules[0].sources: '10.0.0.300/24' is neither an IP/CIDR nor an inventory host or group"),
    ({"name": "x", "port": 1, "sources": ["10.0.0.0/33"]}, "'10.0.0.0/33' is neither an IP/CIDR"),
    ({"name": "x", "port": 1, "sources": ["2001:db8::/129"]}, "'2001:db8::/129' is neither an IP/CIDR"),
    ({"name": "x", "port": 1, "sources": ["fe80::1%eth0"]}, "'fe80::1%eth0' is neither an IP/CIDR"),
    ({"name": "x", "port": 1, "sources": ["no-such-host"]},
     "base_firewall_rules[0].sources: 'no-such-host' is neither an IP/CIDR nor an inventory host or group"),
    ({"name": "x", "port": 1, "sources": ["nofacts"]}, "host 'nofacts' has no selfhost_private_address and no gathered facts"),
    ({"name": "x", "port": 1, "sources": ["broken"]}, "group 'broken': host 'nofacts' has no selfhost_private_address"),
    ({"name": "x", "port": 1, "sources": ["badaddr"]},
     "selfhost_private_address of host 'badaddr' is 'not-an-ip', which is not an IP address"),
    ({"name": "x", "port": 1, "sources": []}, "base_firewall_rules[0].sources: must be a non-empty list"),
    ({"name": "x", "port": 1, "sources": "10.0.0.1"}, "base_firewall_rules[0].sources: must be a non-empty list"),
    ({"name": "x", "port": 1, "sources": [None]}, "None is neither an IP/CIDR"),
    ({"port": 1, "sources": ["10.0.0.1"]}, "base_firewall_rules[0].name: None is not a rule name"),
    ({"name": "has space", "port": 1, "sources": ["10.0.0.1"]}, "base_firewall_rules[0].name: 'has space' is not a rule name"),
    ({"name": "x", "ports": 1, "sources": ["10.0.0.1"]}, "base_firewall_rules[0]: unknown key(s) ports"),
    ("port 22", "base_firewall_rules[0]: must be a dict"),
])
def test_invalid_rules_are_reported_with_the_variable_path(rule, expected):
    errors = errors_of([rule])
    assert any(expected in e for e in errors), errors
    with pytest.raises(AnsibleFilterError, match="invalid firewall rules"):
        rules_of([rule])


def test_all_problems_are_collected_not_just_the_first():
    errors = errors_of([
        {"name": "ok", "port": 80, "sources": ["10.0.0.1"]},
        {"name": "bad", "port": 0, "proto": "sctp", "sources": ["10.0.0.300/24", "unknown"]},
    ])
    assert len(errors) == 4
    assert all(e.startswith("base_firewall_rules[1].") for e in errors)


def test_duplicate_names_are_reported_across_variables():
    errors = firewall_rules_errors({
        "base_firewall_rules": [{"name": "pg", "port": 5432, "sources": ["10.0.0.1"]}],
        "selfhost_firewall_rules_postgresql": [{"name": "pg", "port": 5433, "sources": ["10.0.0.2"]}],
    }, HOSTVARS, GROUPS)
    assert errors == ["selfhost_firewall_rules_postgresql[0].name: 'pg' is already used by "
                      "base_firewall_rules[0]; rule names must be unique"]


def test_a_variable_that_is_not_a_list_is_named():
    errors = firewall_rules_errors({"selfhost_firewall_rules_redis": "6379"}, HOSTVARS, GROUPS)
    assert errors == ["selfhost_firewall_rules_redis: must be a list of rules ({name, port, proto, sources}), got str"]


def test_host_names_need_hostvars_and_groups():
    # Without inventory information a name cannot resolve.
    errors = firewall_rules_errors({"base_firewall_rules": [{"name": "x", "port": 1, "sources": ["app1"]}]})
    assert errors == ["base_firewall_rules[0].sources: 'app1' is neither an IP/CIDR nor an inventory host or group"]


def test_valid_rules_have_no_errors():
    assert errors_of([{"name": "x", "port": "8000-8010", "proto": "tcp", "sources": ["app1", "dify", "10.0.0.0/8"]}]) == []


def test_input_of_the_wrong_shape_fails_clearly():
    with pytest.raises(AnsibleFilterError, match="expected a mapping of variable name to list of rules"):
        firewall_rules("base_firewall_rules")


class RaisingHostVars(dict):
    """Stands in for Ansible's HostVars whose values fail to template."""

    def __getitem__(self, key):
        raise RuntimeError("undefined variable")


def test_hostvars_that_fail_to_template_are_reported():
    errors = firewall_rules_errors({"r": [{"name": "x", "port": 1, "sources": ["ghost"]}]},
                                   RaisingHostVars(ghost={}), {})
    assert errors == ["r[0].sources: host 'ghost' has no variables"]


def test_source_networks_resolve_hosts_groups_and_cidrs():
    from ansible_collections.selfhost.dify.plugins.filter.firewall import source_networks, source_networks_errors
    hostvars = {"app1": {"selfhost_private_address": "10.0.0.11"}, "app2": {"ansible_default_ipv4": {"address": "10.0.0.12"}}}
    groups = {"dify": ["app1", "app2"]}
    assert source_networks(["dify", "172.30.0.0/24", "app1"], hostvars, groups) == [
        "10.0.0.11/32", "10.0.0.12/32", "172.30.0.0/24"]
    errors = source_networks_errors(["dify", "nowhere"], "postgresql_allowed_sources", hostvars, groups)
    assert errors == ["postgresql_allowed_sources[1]: 'nowhere' is neither an IP/CIDR nor an inventory host or group"]
    with pytest.raises(AnsibleFilterError):
        source_networks(["nowhere"], hostvars, groups)


def test_published_rule_is_marked_and_checked():
    result = rules_of([{"name": "dify-api", "port": 5001, "sources": ["10.0.0.5"], "published": True}])
    assert result[0]["published"] is True
    errors = firewall_rules_errors({"base_firewall_rules": [
        {"name": "dify-api", "port": 5001, "sources": ["10.0.0.5"], "published": "yes"}]})
    assert errors == ["base_firewall_rules[0].published: must be true or false, got 'yes'"]
