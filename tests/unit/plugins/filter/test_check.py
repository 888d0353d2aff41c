# Copyright: selfhost.dify contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Unit tests for the selfhost.dify.check filter."""

from __future__ import annotations

import pytest

from ansible.errors import AnsibleFilterError
from ansible_collections.selfhost.dify.plugins.filter.check import FilterModule, check, checks

# A real key (test-only, generated for these tests) and a copy whose type was edited.
ED25519 = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAILSCOrvJzEIxtmPKXjna/0ZH+hsXotLUBrSijFn1pJXh test@example"
ED25519_AS_RSA = ED25519.replace("ssh-ed25519", "ssh-rsa", 1)


def test_filter_is_registered():
    assert FilterModule().filters() == {"check": check, "checks": checks}


@pytest.mark.parametrize("value", ["Etc/UTC", "Europe/Berlin", "America/Argentina/Buenos_Aires"])
def test_valid_timezones(value):
    assert check(value, "timezone", "base_timezone") == []


@pytest.mark.parametrize("value", ["Mars/Olympus_Mons", "", "UTC+2", "../etc/passwd", None, 5])
def test_invalid_timezones_name_the_variable(value):
    errors = check(value, "timezone", "base_timezone")
    assert len(errors) == 1 and errors[0].startswith("base_timezone: ")


def test_timezone_message():
    assert check("Mars/Olympus_Mons", "timezone", "base_timezone") == [
        "base_timezone: 'Mars/Olympus_Mons' is not a time zone in the IANA database (e.g. Etc/UTC, Europe/Berlin)"
    ]


@pytest.mark.parametrize("value", [1, 22, 65535, "2222"])
def test_valid_ports(value):
    assert check(value, "port", "base_ssh_port") == []


@pytest.mark.parametrize("value, reason", [
    (0, "0 is outside 1-65535"),
    (70000, "70000 is outside 1-65535"),
    (-1, "-1 is outside 1-65535"),
    ("twenty-two", "'twenty-two' is not a port number 1-65535"),
    (True, "True is not a port number 1-65535"),
    (22.5, "22.5 is not a port number 1-65535"),
])
def test_invalid_ports(value, reason):
    assert check(value, "port", "base_ssh_port") == ["base_ssh_port: " + reason]


def test_port_list_reports_each_bad_item_by_index():
    assert check([80, 0, 443, 99999], "ports", "base_firewall_public_tcp_ports") == [
        "base_firewall_public_tcp_ports[1]: 0 is outside 1-65535",
        "base_firewall_public_tcp_ports[3]: 99999 is outside 1-65535",
    ]
    assert check(443, "ports", "p") == ["p: must be a list of port numbers, got int"]
    assert check([], "ports", "p") == []


@pytest.mark.parametrize("value, ok", [
    ("1G", True), ("500M", True), ("4096", True), ("2T", True),
    ("1GB", False), ("0", False), ("1.5G", False), ("", False), (1, False), ("-1G", False), ("10%", False),
])
def test_sizes(value, ok):
    errors = check(value, "size", "base_journald_system_max_use")
    assert (errors == []) is ok
    if not ok:
        assert errors[0].startswith("base_journald_system_max_use: ")


@pytest.mark.parametrize("value, ok", [
    ("10.0.0.5", True), ("2001:db8::1", True),
    ("10.0.0.0/24", False), ("10.0.0.300", False), ("", False), (None, False), ("host.example", False),
])
def test_ip_address(value, ok):
    assert (check(value, "ip_address", "selfhost_private_address") == []) is ok


def test_sysctl():
    assert check({"net.core.somaxconn": 4096, "vm.swappiness": "10", "net.ipv4.ip_forward": 1}, "sysctl", "base_sysctl") == []
    assert check({"kernel.panic": True}, "sysctl", "base_sysctl") == []
    errors = check({"net.ipv4.ip_forward": 0, "bad name": 1, "vm.x": {"a": 1}, "vm.y": ""}, "sysctl", "base_sysctl")
    assert errors == [
        "base_sysctl['net.ipv4.ip_forward']: must stay 1 (Docker needs IP forwarding); remove it from base_sysctl",
        "base_sysctl['bad name']: 'bad name' is not a sysctl name (e.g. net.core.somaxconn)",
        "base_sysctl['vm.x']: the value must be a non-empty string or number, got {'a': 1}",
        "base_sysctl['vm.y']: the value must be a non-empty string or number, got ''",
    ]
    assert check(["a"], "sysctl", "base_sysctl") == ["base_sysctl: must be a dict of sysctl name to value, got list"]


def test_admin_users_valid():
    users = [
        {"name": "alice", "authorized_keys": [ED25519, 'from="10.0.0.0/8",no-agent-forwarding ' + ED25519]},
        {"name": "bob_2", "sudo": False, "shell": "/usr/bin/zsh", "state": "absent"},
        {"name": "_svc"},
    ]
    assert check(users, "admin_users", "base_admin_users") == []


@pytest.mark.parametrize("users, expected", [
    ("alice", "base_admin_users: must be a list of users"),
    (["alice"], "base_admin_users[0]: must be a dict with at least a name, got str"),
    ([{"name": "Alice"}], "base_admin_users[0].name: 'Alice' is not a valid user name"),
    ([{"name": "1abc"}], "base_admin_users[0].name: '1abc' is not a valid user name"),
    ([{"name": "a" * 33}], "is not a valid user name"),
    ([{}], "base_admin_users[0].name: None is not a valid user name"),
    ([{"name": "root"}], "base_admin_users[0].name: root cannot be managed"),
    ([{"name": "a"}, {"name": "a"}], "base_admin_users[1].name: 'a' is listed twice (also base_admin_users[0])"),
    ([{"name": "a", "state": "gone"}], "base_admin_users[0].state: must be present or absent, got 'gone'"),
    ([{"name": "a", "sudo": "yes"}], "base_admin_users[0].sudo: must be true or false, got 'yes'"),
    ([{"name": "a", "shell": "bash"}], "base_admin_users[0].shell: must be an absolute path"),
    ([{"name": "a", "groups": ["x"]}], "base_admin_users[0]: unknown key(s) groups"),
    ([{"name": "a", "authorized_keys": ED25519}], "base_admin_users[0].authorized_keys: must be a list of public keys, got str"),
    ([{"name": "a", "authorized_keys": ["not a key"]}],
     "base_admin_users[0].authorized_keys[0]: 'not a key' does not look like an OpenSSH public key"),
    ([{"name": "a", "authorized_keys": ["ssh-ed25519 notbase64!"]}], "does not look like an OpenSSH public key"),
    ([{"name": "a", "authorized_keys": ["ssh-ed25519 QUJD"]}], "has key data that is too short"),
    ([{"name": "a", "authorized_keys": [ED25519_AS_RSA]}], "key data does not match its type ssh-rsa"),
    ([{"name": "a", "authorized_keys": ["ssh-dss AAAAB3NzaC1kc3MAAACBAP"]}], "does not look like an OpenSSH public key"),
    ([{"name": "a", "authorized_keys": [ED25519 + "\n" + ED25519]}], "must be a single line"),
    ([{"name": "a", "authorized_keys": [42]}], "base_admin_users[0].authorized_keys[0]: 42 must be a string, not int"),
])
def test_admin_users_invalid(users, expected):
    errors = check(users, "admin_users", "base_admin_users")
    assert any(expected in e for e in errors), errors


def test_unknown_kind_and_bad_name_fail_loudly():
    with pytest.raises(AnsibleFilterError, match="unknown kind 'colour'"):
        check(1, "colour", "x")
    with pytest.raises(AnsibleFilterError, match="variable name"):
        check(1, "port", "")


def test_no_timezone_database_on_the_controller_is_an_error(monkeypatch):
    from ansible_collections.selfhost.dify.plugins.filter import check as check_module  # pylint: disable=import-outside-toplevel

    monkeypatch.setattr(check_module.zoneinfo, "available_timezones", set)
    with pytest.raises(AnsibleFilterError, match="no IANA time zone database"):
        check("Etc/UTC", "timezone", "base_timezone")


@pytest.mark.parametrize("value, ok", [("03:30", True), ("00:00", True), ("23:59", True),
                                       ("24:00", False), ("3:30", False), ("03:60", False), (330, False)])
def test_time_of_day(value, ok):
    errors = check(value, "time_of_day", "base_unattended_upgrades_reboot_time")
    assert (errors == []) is ok
    if not ok:
        assert errors == ["base_unattended_upgrades_reboot_time: %r is not a time of day HH:MM (00:00-23:59)" % (value,)]


def test_hosts():
    assert check(["2.debian.pool.ntp.org", "ntp1", "192.0.2.1", "2001:db8::1", "time.example."], "hosts", "s") == []
    assert check(["bad host", "", "10.0.0.300", "-x.example", None], "hosts", "base_chrony_servers") == [
        "base_chrony_servers[0]: 'bad host' is neither a host name nor an IP address",
        "base_chrony_servers[1]: '' is neither a host name nor an IP address",
        "base_chrony_servers[2]: '10.0.0.300' is neither a host name nor an IP address",
        "base_chrony_servers[3]: '-x.example' is neither a host name nor an IP address",
        "base_chrony_servers[4]: None is neither a host name nor an IP address",
    ]
    assert check("pool.ntp.org", "hosts", "base_chrony_pools") == [
        "base_chrony_pools: must be a list of host names or IP addresses, got str"]


# -- secrets, names and addresses that later roles check ----------------------------------

@pytest.mark.parametrize("value", ["difyai123456", "minioadmin", "MinioAdmin", "dify-sandbox", "password",
                                   "sk-9f73s3ljTXVcMT3Blb3ljTqtsKiGHXVcMT3BlbkFJLK7U"])
def test_sample_secrets_are_rejected(value):
    errors = check(value, "secret", "redis_dify_password")
    assert len(errors) == 1 and "sample or default" in errors[0]


@pytest.mark.parametrize("value,reason", [
    (None, "is missing"), ("", "is missing"), ("   ", "is missing"),
    ("Xk3v9Qm2", "too short (8 characters; at least 16)"),
    ("abababababababababab", "fewer than 6 distinct"),
    ("REPLACE-WITH-A-SECRET-VALUE", "placeholder"),
    ("my-example-password-here", "placeholder"),
    (12345678901234567890, "must be a string"),
])
def test_weak_or_missing_secrets_are_rejected(value, reason):
    errors = check(value, "secret", "postgresql_dify_password")
    assert len(errors) == 1 and errors[0].startswith("postgresql_dify_password: ") and reason in errors[0]


def test_secret_messages_never_contain_the_value():
    for value in ("Xk3v9Qm2", "abababababababababab", "REPLACE-WITH-A-SECRET-VALUE"):
        assert value not in check(value, "secret", "s")[0]


def test_a_random_secret_passes():
    assert check("q7Wf2LmZ9xT4bN8cR1vK", "secret", "redis_dify_password") == []


@pytest.mark.parametrize("kind,good,bad", [
    ("domain", ["dify.example.com", "a.b.example.org", "xn--bcher-kva.example"],
     ["localhost", "dify.example.com.", "10.0.0.1", "-bad.example.com", "has space.example.com", "", None]),
    ("email", ["ops@example.com", "first.last+dify@mail.example.org"],
     ["ops@localhost", "ops.example.com", "@example.com", "ops@exa mple.com", None]),
    ("url", ["https://example.com/x", "http://10.0.0.1:9000"],
     ["example.com", "ftp://example.com", "https://", "http://host:99999", None]),
    ("sha256", ["a" * 64, "sha256:" + "0123456789abcdef" * 4], ["a" * 63, "md5:" + "a" * 64, "g" * 64, None]),
    ("sql_identifier", ["dify", "dify_plugin", "_x1"], ["Dify", "dify-plugin", "1dify", "a" * 64, "", None]),
])
def test_format_checks(kind, good, bad):
    for value in good:
        assert check(value, kind, "v") == [], value
    for value in bad:
        errors = check(value, kind, "v")
        assert len(errors) == 1 and errors[0].startswith("v: "), (value, errors)
