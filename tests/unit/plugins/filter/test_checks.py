# Copyright: selfhost.dify contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Unit tests for the selfhost.dify.checks filter and the kinds of rules the preflights declare."""

from __future__ import annotations

import hashlib

import pytest

from ansible.errors import AnsibleFilterError
from ansible_collections.selfhost.dify.plugins.filter.check import check, checks

SHA = "ab" * 32


# -- the filter -------------------------------------------------------------------------------

def test_checks_collects_the_messages_of_every_entry_in_order():
    assert checks([
        {"name": "b_port", "kind": "port", "value": 0},
        {"name": "a_zone", "kind": "timezone", "value": "Etc/UTC"},
        {"name": "c_mail", "kind": "email", "value": "nobody"},
    ]) == ["b_port: 0 is outside 1-65535", "c_mail: 'nobody' is not an e-mail address such as ops@example.com"]


@pytest.mark.parametrize("when", [False, "False", "false", 0, ""])
def test_an_entry_whose_when_is_false_is_skipped(when):
    assert checks([{"name": "p", "kind": "port", "value": 0, "when": when}]) == []


@pytest.mark.parametrize("when", [True, "True", "yes", 1])
def test_an_entry_whose_when_is_true_runs(when):
    assert checks([{"name": "p", "kind": "port", "value": 0, "when": when}]) == ["p: 0 is outside 1-65535"]


def test_entries_for_other_roles_are_skipped_when_roles_are_given():
    entries = [{"name": "a", "kind": "port", "value": 0, "roles": ["dify"]},
               {"name": "b", "kind": "port", "value": 0, "roles": ["base", "redis"]},
               {"name": "c", "kind": "port", "value": 0}]
    assert checks(entries, roles=["redis"]) == ["b: 0 is outside 1-65535", "c: 0 is outside 1-65535"]
    assert len(checks(entries)) == 3


def test_nested_checks_run_those_of_one_role():
    shared = [{"name": "selfhost_domain", "kind": "required_domain", "value": None, "roles": ["dify"]},
              {"name": "selfhost_private_address", "kind": "ip_address", "value": "x", "roles": ["base"]}]
    assert checks([{"name": "first", "kind": "rule", "ok": False, "reason": "is wrong"},
                   {"name": "shared", "kind": "checks", "value": shared, "role": "dify"}]) == [
        "first: is wrong",
        "selfhost_domain: is missing: set the public name of the Dify site, such as dify.example.com "
        "(every URL derives from it)"]


@pytest.mark.parametrize("entries, text", [
    ("not a list", "expects a list"),
    ([{"kind": "port", "value": 1}], "entry 0 must be a dict with a name"),
    ([{"name": "x", "kind": "nope", "value": 1}], "x: unknown kind 'nope'"),
    ([{"name": "x", "kind": "port", "value": 1, "extra": 2}], "x: wrong arguments for the kind port"),
    ([{"name": "x", "kind": "rule"}], "x: wrong arguments for the kind rule"),
])
def test_malformed_entries_are_errors_of_the_role(entries, text):
    with pytest.raises(AnsibleFilterError, match=text):
        checks(entries)


def test_check_refuses_kinds_that_need_arguments():
    with pytest.raises(AnsibleFilterError, match="use selfhost.dify.checks"):
        check("x", "rule", "name")


# -- simple kinds -----------------------------------------------------------------------------

@pytest.mark.parametrize("value", ["10m", "1h", "1d", "-1", "600", 600, "2w", "1mo"])
def test_fail2ban_times(value):
    assert check(value, "fail2ban_time", "t") == []


@pytest.mark.parametrize("value", ["ten minutes", "", "1 h", None, True, "-2"])
def test_bad_fail2ban_times_have_one_wording(value):
    assert check(value, "fail2ban_time", "t") == ["t: %s is not a fail2ban time such as 10m, 1h, 1d or -1" % value]


@pytest.mark.parametrize("value, message", [
    (None, "d: is missing: set the public name of the Dify site, such as dify.example.com (every URL derives from it)"),
    ("", "d: is missing: set the public name of the Dify site, such as dify.example.com (every URL derives from it)"),
    ("192.0.2.10", "d: '192.0.2.10' is not a fully qualified domain name such as dify.example.com"),
    ("localhost", "d: 'localhost' is not a fully qualified domain name such as dify.example.com"),
])
def test_required_domain(value, message):
    assert check(value, "required_domain", "d") == [message]
    assert check("dify.example.com", "required_domain", "d") == []


def test_domains_report_each_bad_one():
    assert check(["www.example.com", "bad_name"], "domains", "x") == [
        "x: 'bad_name' is not a fully qualified domain name such as dify.example.com"]
    assert check("a.example.com", "domains", "x") == ["x: must be a list of domain names, got str"]


@pytest.mark.parametrize("ok, expected", [(True, []), ("True", []), (False, ["n: is bad"]), ("False", ["n: is bad"])])
def test_rule(ok, expected):
    assert checks([{"name": "n", "kind": "rule", "ok": ok, "reason": "is bad"}]) == expected


@pytest.mark.parametrize("value, minimum, unit, expected", [
    (1, 1, "", []), ("5", 1, "", []), (0, 0, "", []),
    (0, 1, "seconds", ["n: must be at least 1 (seconds), got 0"]),
    ("x", 1, "", ["n: must be at least 1, got x"]),
    (-1, 0, "", ["n: must be 0 or more, got -1"]),
    (True, 0, "", ["n: must be 0 or more, got True"]),
])
def test_at_least(value, minimum, unit, expected):
    assert checks([{"name": "n", "kind": "at_least", "value": value, "minimum": minimum, "unit": unit}]) == expected


@pytest.mark.parametrize("value, minimum, unit, expected", [
    (30, 1, "seconds", []), ("0", 0, "", []),
    (0, 1, "seconds", ["n: must be a whole number of seconds (at least 1), got 0"]),
    ("1.5", 1, "", ["n: must be a whole number of at least 1, got 1.5"]),
    (-1, 0, "seconds", ["n: must be a whole number of seconds (0 or more), got -1"]),
])
def test_whole_number(value, minimum, unit, expected):
    assert checks([{"name": "n", "kind": "whole_number", "value": value, "minimum": minimum, "unit": unit}]) == expected


@pytest.mark.parametrize("value, expected", [
    ("100M", []), ("1g", []), ("5", []),
    ("1T", ["n: 1T is not a size nginx takes, such as 100M or 1G (a number with an optional k, m or g suffix)"]),
    ("100 MB", ["n: 100 MB is not a size nginx takes, such as 100M or 1G (a number with an optional k, m or g suffix)"]),
])
def test_nginx_size(value, expected):
    assert check(value, "nginx_size", "n") == expected


def test_simple_path_and_url_paths():
    assert check("/var/log/nginx/access.json", "simple_path", "p") == []
    assert check("/var/log/a b", "simple_path", "p") == [
        "p: must be an absolute path (letters, digits, /, _, . and -), got /var/log/a b"]
    assert checks([{"name": "u", "kind": "url_paths", "value": ["/threads"], "example": "/threads"}]) == []
    assert checks([{"name": "u", "kind": "url_paths", "value": [], "example": "/x"}]) == []
    assert checks([{"name": "u", "kind": "url_paths", "value": [], "example": "/x", "nonempty": True}]) == [
        "u: every entry must be a URL path such as /x (at least one)"]
    assert checks([{"name": "u", "kind": "url_paths", "value": ["threads"], "example": "/x"}]) == [
        "u: every entry must be a URL path such as /x"]


def test_upstreams():
    assert check(["127.0.0.1", "app1.example.com"], "upstreams", "u") == []
    assert check([], "upstreams", "u")[0].startswith("u: is empty; the edge needs at least one Dify host")
    assert check(["10.0.0.300"], "upstreams", "u") == ["u[0]: '10.0.0.300' is neither a host name nor an IP address"]


def test_openpgp_fingerprint():
    assert check("9DC8 5822 9FC7 DD38 854A  E2D8 8D81 803C 0EBF CD88", "openpgp_fingerprint", "f") == []
    assert check("abc", "openpgp_fingerprint", "f") == ["f: abc is not an OpenPGP fingerprint (40 hexadecimal digits)"]


def test_access_and_plain_keys():
    assert check("minioadmin", "access_key", "k") == [
        "k: is a published sample or default value; generate a random one (e.g. openssl rand -hex 24)"]
    assert check("SHORTKEY", "access_key", "k") == []  # an access key is not a secret: short is fine
    assert check(None, "access_key", "k") == ["k: is missing: set it in the inventory (ansible-vault encrypted)"]
    assert check("bad key!", "plain_key", "k") == ["k: must be 3 to 128 letters, digits, dots, dashes or underscores"]
    assert check("", "plain_key", "k") == [] and check("good.key-1", "plain_key", "k") == []


@pytest.mark.parametrize("value, ok", [("dify", True), ("my.bucket-1", True), ("ab", False), ("Dify", False),
                                       ("a..b", False), ("192.168.0.1", False), (None, False)])
def test_s3_bucket(value, ok):
    assert (check(value, "s3_bucket", "b") == []) is ok


@pytest.mark.parametrize("value, ok", [("/var/lib/minio", True), ("/", False), ("/data/", False), ("data", False),
                                       ("/a b", False), ("/a/../b", False), ("/a/.", False)])
def test_data_dir(value, ok):
    assert (check(value, "data_dir", "d") == []) is ok


@pytest.mark.parametrize("value, ok", [("/var/backups/selfhost/restic/db1", True), ("s3:https://s3.example.com/backups", True),
                                       ("s3:http://127.0.0.1:8333/backups/dify-1", True), ("relative/repo", False),
                                       ("s3:https://s3.example.com", False), ("s3:https://s3.example.com/Bad_Bucket/x", False),
                                       ("s3:ftp://host/bucket", False), ("sftp:host:/repo", False), ("/", False), (None, False)])
def test_restic_repository(value, ok):
    assert (check(value, "restic_repository", "r") == []) is ok


def test_user_name_and_ip_address_lists():
    assert check("minio-user", "user_name", "u") == []
    assert check("Bad", "user_name", "u") == ["u: Bad is not a valid user name"]
    assert check(None, "ip_addresses", "a") == []
    assert check(["10.0.0.1", "10.0.0.300"], "ip_addresses", "a") == ["a[1]: '10.0.0.300' is not an IP address"]
    assert check([], "ip_address_list", "l") == ["l: must be a non-empty list of IP addresses"]
    assert check(["127.0.0.1", "x"], "ip_address_list", "l") == ["l: 'x' is not an IP address"]


def test_grpc_ports_and_a_free_port():
    ports = {"selfhost_object_storage_port": 70000, "seaweedfs_master_port": 60000,
             "seaweedfs_volume_port": 8080, "seaweedfs_filer_port": 8080}
    assert check(ports, "grpc_ports", "ports") == [
        "selfhost_object_storage_port: 70000 is outside 1-65535",
        "seaweedfs_master_port: 60000 is above 55535 (its gRPC port is 60000 + 10000)",
        "seaweedfs_filer_port: port 8080 is also used by seaweedfs_volume_port",
        "seaweedfs_filer_port: port 18080 is also used by seaweedfs_volume_port"]
    taken = {"seaweedfs_volume_port": 8080}
    assert checks([{"name": "m", "kind": "free_port", "value": 0, "taken": taken}]) == []
    assert checks([{"name": "m", "kind": "free_port", "value": 18080, "taken": taken}]) == [
        "m: port 18080 is also used by seaweedfs_volume_port"]


def test_postgresql_settings():
    assert check({"work_mem": "4MB"}, "postgresql_settings", "s") == []
    assert check({"Bad Name": 1, "x": "a\nb"}, "postgresql_settings", "s") == [
        "s: 'Bad Name' is not a setting name", "s.x: the value contains a line break"]
    assert check([], "postgresql_settings", "s") == ["s: must be a dict of postgresql.conf setting name to value"]


def test_snapshot_points():
    assert check(["300 100", "60 10000"], "snapshot_points", "s") == []
    assert check(["every hour"], "snapshot_points", "s") == [
        's: every hour is not a snapshot point "<seconds> <changes>" such as "300 100"']


def test_known_keys_and_env_values():
    assert checks([{"name": "i", "kind": "known_keys", "value": {"api": 1, "nginx": 2}, "known": ["api", "web"],
                    "what": "a service"}]) == ["i: nginx is not a service (api, web)"]
    errors = checks([{"name": "env", "kind": "env_values", "value": {"a_password": "it's", "b": "fine"},
                      "extra": {"X": "line\nbreak"}, "extra_name": "dify_extra_env"}])
    assert errors == ["a_password: may not contain a single quote or a line break (.env quotes values in single quotes)",
                      "dify_extra_env.X: may not contain a single quote or a line break (.env quotes values in "
                      "single quotes)"]
    assert "it's" not in " ".join(errors)


def test_required_host():
    assert checks([{"name": "s", "kind": "required_host", "value": "", "missing": "set it"}]) == ["s: set it"]
    assert checks([{"name": "s", "kind": "required_host", "value": "smtp.example.com", "missing": "x"}]) == []
    assert checks([{"name": "s", "kind": "required_host", "value": "bad host", "missing": "x"}]) == [
        "s[0]: 'bad host' is neither a host name nor an IP address"]


def test_image_archives(tmp_path):
    archive = tmp_path / "images.tar"
    archive.write_bytes(b"x")
    good = [{"path": str(archive), "sha256": "sha256:" + SHA}]
    entry = {"name": "a", "kind": "image_archives", "required": True, "on_controller": True}
    assert checks([dict(entry, value=good)]) == []
    assert checks([dict(entry, value=[])]) == [
        "a: archive needs at least one {path, sha256} (docker save tarballs on the controller)"]
    assert checks([dict(entry, value=[{"sha256": SHA}, {"path": "/nonexistent.tar"}])]) == [
        "a: an entry has no path: {'sha256': '%s'}" % SHA,
        "a: /nonexistent.tar needs its sha256 (64 hex digits)",
        "a: /nonexistent.tar is not a file on the controller"]
    assert checks([dict(entry, value=[{"path": "/nonexistent.tar", "sha256": SHA}], required=False,
                        on_controller=False)]) == []


def test_controller_files():
    results = [{"item": "/a.pem", "stat": {"exists": True, "isreg": True}},
               {"item": "/b.pem", "stat": {"exists": False}}]
    assert check(results, "controller_files", "c") == ["c: /b.pem is not a file on the controller"]


# -- artifacts: a URL or a controller file and its checksum ----------------------------------

def _artifact(**kwargs):
    return checks([dict({"name": "x_artifact", "kind": "artifact"}, **kwargs)])


def test_artifact_from_a_url():
    assert _artifact(url="https://mirror.example.com/x", sha256=SHA) == []
    assert _artifact(url="mirror/x", sha256="abc") == [
        "x_artifact_url: 'mirror/x' must start with http://, https://",
        "x_artifact_sha256: 'abc' is not a SHA-256 checksum (64 hex digits, optionally prefixed sha256:)"]


def test_artifact_url_or_path():
    assert _artifact() == []
    assert _artifact(required=True) == [
        "x_artifact_url / x_artifact_path: set exactly one (a URL the host downloads the binary from, or a file on "
        "the controller)"]
    both = _artifact(url="https://a.example.com/x", path="/x", sha256=SHA)
    assert both == ["x_artifact_url / x_artifact_path: set only one (a URL the host downloads the binary from, or "
                    "a file on the controller)"]
    assert _artifact(url="https://a.example.com/x", path="/x", sha256=SHA, required=True, what="artifact")[0] \
        .startswith("x_artifact_url / x_artifact_path: set exactly one (a URL the host downloads the artifact from")
    assert _artifact(required=True, hint="e.g. a release on a mirror") == [
        "x_artifact_url / x_artifact_path: set exactly one (a URL the host downloads the binary from, e.g. a "
        "release on a mirror, or a file on the controller)"]


def test_artifact_from_the_controller(tmp_path):
    data = b"binary"
    digest = hashlib.sha256(data).hexdigest()
    stat = {"exists": True, "isreg": True, "checksum": digest}
    assert _artifact(path="/x", sha256="sha256:" + digest.upper(), stat=stat) == []
    assert _artifact(path="/x", sha256=SHA, stat=stat) == [
        "x_artifact_path: /x has the SHA-256 %s, which is not x_artifact_sha256 (%s)" % (digest, SHA)]
    assert _artifact(path="/x", sha256=SHA, stat={}) == ["x_artifact_path: /x is not a file on the controller"]
    assert _artifact(path="/x", sha256="", stat=stat) == [
        "x_artifact_sha256: '' is not a SHA-256 checksum (64 hex digits, optionally prefixed sha256:)"]


# -- edge TLS ---------------------------------------------------------------------------------

def test_acme(tmp_path):
    root = tmp_path / "root.pem"
    root.write_text("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n")
    not_pem = tmp_path / "root.txt"
    not_pem.write_text("hello")
    entry = {"name": "selfhost_edge_acme_email", "kind": "acme", "value": "ops@example.com",
             "directory": "https://acme.example.com/dir", "ca_root": ""}
    assert checks([entry]) == []
    assert checks([dict(entry, ca_root=str(root))]) == []
    assert checks([dict(entry, value="nope", directory="http://acme.example.com/dir", ca_root=str(not_pem))]) == [
        "selfhost_edge_acme_email: 'nope' is not an e-mail address such as ops@example.com",
        "selfhost_edge_acme_directory: must be an https:// URL (ACME directories are served over TLS)",
        "selfhost_edge_acme_ca_root: %s holds no PEM certificate" % not_pem]
    assert checks([dict(entry, directory="acme/dir", ca_root="/nonexistent.pem")]) == [
        "selfhost_edge_acme_directory: 'acme/dir' must start with http://, https://",
        "selfhost_edge_acme_ca_root: /nonexistent.pem is not a file on the controller"]


def test_tls_files(tmp_path):
    cert = tmp_path / "cert.pem"
    cert.write_text("x")
    assert checks([{"name": "selfhost_edge_tls_certificate", "kind": "tls_files", "value": str(cert),
                    "key": str(cert)}]) == []
    assert checks([{"name": "selfhost_edge_tls_certificate", "kind": "tls_files", "value": "", "key": "/no.pem"}]) == [
        "selfhost_edge_tls_certificate: selfhost_edge_tls is provided, so this must name the PEM certificate "
        "(full chain) file on the controller; got nothing",
        "selfhost_edge_tls_key: selfhost_edge_tls is provided, so this must name the PEM private key file on the "
        "controller; got /no.pem"]


# -- docker -----------------------------------------------------------------------------------

def _networks(pools, bip="", dify="172.30.0.0/24", hosts=()):
    return checks([{"name": "docker_default_address_pools", "kind": "docker_networks", "value": pools, "bip": bip,
                    "dify_subnet": dify, "host_networks": list(hosts)}])


def test_docker_networks_that_do_not_overlap():
    assert _networks([{"base": "10.213.0.0/16", "size": 24}], bip="172.19.0.1/24",
                     hosts=[{"iface": "eth0", "cidr": "192.168.1.0/24"}]) == []


def test_docker_networks_overlaps():
    assert _networks([{"base": "172.20.0.0/14", "size": 24}, {"base": "172.21.0.0/16", "size": 24}]) == [
        "docker_default_address_pools[1]: 172.21.0.0/16 overlaps docker_default_address_pools[0] (172.20.0.0/14)"]
    assert _networks([{"base": "172.28.0.0/14", "size": 24}]) == [
        "docker_default_address_pools[0]: 172.28.0.0/14 overlaps selfhost_dify_subnet (172.30.0.0/24), the fixed "
        "subnet of the Dify compose network"]
    assert _networks([{"base": "10.213.0.0/16", "size": 24}], bip="172.30.0.1/24") == [
        "docker_bip: 172.30.0.1/24 overlaps selfhost_dify_subnet (172.30.0.0/24), the fixed subnet of the Dify "
        "compose network"]
    assert _networks([{"base": "10.0.0.0/8", "size": 24}], hosts=[{"iface": "eth0", "cidr": "10.1.2.0/24"}]) == [
        "docker_default_address_pools[0]: 10.0.0.0/8 overlaps this host's network 10.1.2.0/24 (eth0); containers "
        "could not reach that network"]


def test_docker_networks_malformed():
    assert _networks([{"base": "172.20.0.1/14", "size": 24}, {"base": "10.0.0.0/33", "size": 24},
                      {"base": "10.20.0.0/16", "size": 12}, "x"], bip="10.9.0.0/24") == [
        "docker_default_address_pools[3]: must be a dict {base, size} such as {base: 172.20.0.0/14, size: 24}",
        "docker_default_address_pools[0]: 172.20.0.1/14 has host bits set; the network is 172.20.0.0/14",
        "docker_default_address_pools[1]: 10.0.0.0/33 is not an IPv4 network in CIDR notation, such as "
        "172.20.0.0/14",
        "docker_default_address_pools[2]: size 12 must be a prefix length between the base's (16, at least 8) and "
        "30, such as 24",
        "docker_bip: 10.9.0.0/24 must be the bridge's own address (not the network or broadcast address) with a "
        "prefix length up to 30, such as 172.19.0.1/24"]
    assert _networks([])[0].startswith("docker_default_address_pools: must be a non-empty list of {base, size}")
    assert _networks([{"base": "10.213.0.0/16", "size": 24}], bip="300.1.1.1/24") == [
        "docker_bip: 300.1.1.1/24 is not an IPv4 address with prefix length, such as 172.19.0.1/24"]


def test_docker_daemon_extra_and_mirrors_and_users():
    assert check({"hosts": [], "default-address-pools": [], "debug": True}, "docker_daemon_extra", "e") == [
        "e.hosts: conflicts with -H fd:// of the packaged docker.service, so dockerd would not start; add "
        "listeners with a systemd drop-in instead",
        "e.default-address-pools: set docker_default_address_pools instead (it is checked against the host's "
        "networks and the Dify subnet)"]
    assert check([], "docker_daemon_extra", "e") == ["e: must be a dict of daemon.json settings"]
    assert check(["mirror.example.com", "https://mirror.example.com/?token=x"], "registry_mirrors", "m") == [
        "m: 'mirror.example.com' must start with http://, https://",
        "m: https://mirror.example.com/?token=x must not contain a query, a fragment or user:password (the daemon "
        "refuses it)"]
    assert check("https://m.example.com", "registry_mirrors", "m") == ["m: must be a list of URLs"]
    assert checks([{"name": "u", "kind": "docker_users", "value": ["root", "nobody-here", "Bad Name"],
                    "passwd": {"root": []}}]) == [
        "u: Bad Name is not a user name (lower case letters, digits, _ and -)",
        "u: nobody-here is not a user on this host; create it first (the base role manages admin users), the "
        "docker role only adds it to the docker group"]


# -- base: the SSH lockout guard --------------------------------------------------------------

def _guard(users, **kwargs):
    entry = {"name": "base_admin_users", "kind": "ssh_lockout", "value": users, "over_ssh": True, "login": "ops",
             "password_authentication": False, "permit_root_login": "prohibit-password"}
    return checks([dict(entry, **kwargs)])


KEYED = {"name": "ops", "state": "present", "authorized_keys": ["ssh-ed25519 AAAA"]}


def test_lockout_guard_lets_a_user_with_keys_through():
    assert _guard([KEYED]) == []
    assert _guard([], login_keys_on_host=True) == []
    assert _guard([], password_authentication=True) == []


def test_lockout_guard_over_ssh():
    assert _guard([])[0].startswith("base_ssh_password_authentication: false would lock out the login user ops of "
                                    "this connection")
    assert _guard([KEYED], login="root", permit_root_login="no", password_authentication=True) == [
        "base_ssh_permit_root_login: no would lock out root, the login user of this connection. Connect as a user "
        "from base_admin_users (they get sudo) instead, or keep prohibit-password."]
    assert _guard([dict(KEYED, state="absent")], password_authentication=True) == [
        "base_admin_users: ops is the login user of this connection and cannot be removed (state: absent) in the "
        "same run."]


def test_lockout_guard_on_a_local_connection():
    assert _guard([], over_ssh=False)[0].startswith("base_ssh_password_authentication: false, but nobody could log in")
    assert _guard([], over_ssh=False, root_keys_on_host=True) == []
    assert _guard([KEYED], over_ssh=False) == []


# -- redis ------------------------------------------------------------------------------------

def _bind(value, **kwargs):
    entry = {"name": "redis_bind_addresses", "kind": "redis_bind", "value": value,
             "local_addresses": ["127.0.0.1", "::1", "0.0.0.0", "::", "10.0.0.5"], "host_ipv4": ["10.0.0.5"],
             "host_address": "10.0.0.5", "remote_clients": True}
    return checks([dict(entry, **kwargs)])


def test_redis_bind():
    assert _bind(["127.0.0.1", "10.0.0.5"]) == []
    assert _bind(["0.0.0.0"]) == []
    assert _bind(["127.0.0.1"], remote_clients=False) == []
    assert _bind([]) == ["redis_bind_addresses: must be a non-empty list of IP addresses"]
    assert _bind(["127.0.0.1", "10.0.0.300"]) == ["redis_bind_addresses: '10.0.0.300' is not an IP address"]
    assert _bind(["127.0.0.1", "192.0.2.10", "10.0.0.5"]) == [
        "redis_bind_addresses: 192.0.2.10 is not an address of this host (it has 10.0.0.5); Redis could not listen "
        "there"]
    assert _bind(["127.0.0.1"])[0].startswith("redis_bind_addresses: must contain 10.0.0.5 (selfhost_host_address")


@pytest.mark.parametrize("value, expected", [
    ("auto", []), ("512M", []), ("1G", []),
    ("lots", ["m: lots is neither auto nor a size such as 512M or 4G (a number with an optional K, M, G or T suffix)"]),
    ("32M", ["m: 32M is below the minimum of 64M"]),
    ("64T", ["m: 64T is more than the memory of this host (2048 MB)"]),
])
def test_redis_maxmemory(value, expected):
    assert checks([{"name": "m", "kind": "redis_maxmemory", "value": value, "memtotal_mb": 2048}]) == expected


# -- sources resolved against the inventory ---------------------------------------------------

def test_source_networks_and_firewall_rules_name_their_variable():
    hostvars = {"app1": {"selfhost_private_address": "10.0.0.7"}}
    groups = {"all": ["app1"], "dify": ["app1"]}
    assert checks([{"name": "s", "kind": "source_networks", "value": ["dify", "10.1.0.0/16"], "hostvars": hostvars,
                    "groups": groups}]) == []
    errors = checks([{"name": "s", "kind": "source_networks", "value": ["nowhere"], "hostvars": hostvars,
                      "groups": groups}])
    assert len(errors) == 1 and errors[0].startswith("s[0]: ")
    errors = checks([{"name": "ignored", "kind": "firewall_rules", "value": {"base_firewall_rules": "x"},
                      "hostvars": hostvars, "groups": groups}])
    assert errors and errors[0].startswith("base_firewall_rules")


PREREQUISITE_PROBES = [{"name": "PostgreSQL", "type": "postgresql"}, {"name": "Redis", "type": "redis"},
                       {"name": "S3", "type": "s3"}]
DOCKER_FILES = ["/run/docker.sock", "/usr/libexec/docker/cli-plugins/docker-compose"]


def _prerequisites(files, result):
    return checks([{"name": "dify prerequisites", "kind": "dify_prerequisites", "files": files,
                    "probes": PREREQUISITE_PROBES, "result": result}])


def test_dify_prerequisites_met():
    answered = {"checks": [{"name": p["name"], "healthy": True, "detail": "ok"} for p in PREREQUISITE_PROBES]}
    assert _prerequisites(DOCKER_FILES, answered) == []


def test_dify_prerequisites_name_docker_compose_and_every_silent_service():
    answered = {"checks": [{"name": "PostgreSQL", "healthy": False, "detail": "connection refused"},
                           {"name": "Redis", "healthy": True, "detail": "PONG"},
                           {"name": "S3", "healthy": False, "detail": "timed out"}]}
    errors = _prerequisites([], answered)
    assert errors[0].startswith("Docker: the engine does not run here (no /run/docker.sock)")
    assert errors[1].startswith("Docker Compose: no compose plugin here")
    assert errors[2:] == [
        "PostgreSQL does not answer: connection refused (converge the postgresql, redis and object_storage plays "
        "first: site.yml --tags postgresql,redis,object_storage)",
        "S3 does not answer: timed out (converge the postgresql, redis and object_storage plays first: site.yml "
        "--tags postgresql,redis,object_storage)"]


def test_dify_prerequisites_name_missing_client_libraries():
    failed = {"msg": "Failed to import the required Python library (psycopg2 (python3-psycopg2), botocore "
                     "(python3-botocore)) on app1"}
    errors = _prerequisites(["/run/docker.sock", "/usr/local/lib/docker/cli-plugins/docker-compose"], failed)
    assert [e.split(" (")[0] for e in errors] == ["PostgreSQL cannot be probed: this host lacks python3-psycopg2",
                                                  "S3 cannot be probed: this host lacks python3-botocore"]
    assert all("site.yml --tags base installs it" in e for e in errors)
