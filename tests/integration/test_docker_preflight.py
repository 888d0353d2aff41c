"""selfhost.dify.docker refuses bad input before it changes anything.

One fresh bare Debian 12 server (a systemd container) serves the whole module: Debian 12 is
where the one platform rule applies (its docker-compose is Compose v1, so `distro` needs a
Compose v2 artifact), and every other check is the same on any release. Each case applies the
role with one kind of mistake through the docker connection and asserts that the run fails,
that the output names the variable at fault, and that the host's configuration state (files
under /etc and /usr/local with their modes and owners, and the dpkg status) is exactly what it
was before the run.

The cases share one ansible-playbook run (helpers.RejectionBatch): each is an inventory host of
its own, pointing at the server and carrying the case's variables, and each test reads its
host's part of the output.

The positive control runs the same playbook with valid variables in check mode, limited to
the preflight, and shows that it passes: the cases fail for the reason they state.

Docker's apt repository is not reachable from the test machines, so `docker_package_source:
docker` is tested up to apt: its signing key (Docker's own, as Debian's extrepo-offline-data
package ships it) is refused with a wrong fingerprint and signs the deb822 source with the
right one.
"""
from __future__ import annotations

import hashlib
import ipaddress
import json

import pytest
import yaml

from tests import helpers

pytestmark = pytest.mark.docker

PLAYBOOK = """---
- name: Apply selfhost.dify.docker
  hosts: all
  gather_facts: true
  roles:
    - role: selfhost.dify.docker
"""


@pytest.fixture(scope="module")
def server():
    with helpers.throwaway_host("docker-preflight", image="selfhost-dify/debian:12") as name:
        yield name


# A stand-in for a compose binary on the controller: the preflight only hashes it.
ARTIFACT = b"#!/bin/sh\necho 'stand-in for a Compose v2 binary'\n"
ARTIFACT_SHA256 = hashlib.sha256(ARTIFACT).hexdigest()


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    """The playbook and the stand-in artifact."""
    path = tmp_path_factory.mktemp("docker-preflight")
    (path / "docker.yml").write_text(PLAYBOOK)
    (path / "docker-compose").write_bytes(ARTIFACT)
    return path


def valid(workdir) -> dict:
    """Settings each case starts from, so that a case fails only for its own mistake."""
    return {"docker_package_source": "distro",
            "docker_compose_artifact_path": str(workdir / "docker-compose"),
            "docker_compose_artifact_sha256": ARTIFACT_SHA256}


def apply_role(server, workdir, tmp_path, variables, *extra):
    """Apply the role over the docker connection, as root, to the one host `target`."""
    host_vars = {"ansible_python_interpreter": "/usr/bin/python3", "ansible_connection": "community.docker.docker",
                 "ansible_host": server, **variables}
    inventory = tmp_path / "inventory.yml"
    inventory.write_text(yaml.safe_dump({"all": {"hosts": {"target": host_vars}}}, sort_keys=False))
    # JSON results keep each message on one line (the YAML format wraps long ones).
    return helpers.ansible_playbook(["-i", str(inventory), str(workdir / "docker.yml"), *extra],
                                    env={"ANSIBLE_CALLBACK_RESULT_FORMAT": "json"}, timeout=600)


# A case value that removes the variable from the valid settings.
UNSET = object()
NO_ARTIFACT = {"docker_compose_artifact_path": UNSET, "docker_compose_artifact_sha256": UNSET}


def case_vars(workdir, variables):
    merged = {**valid(workdir), **variables}
    return {k: v for k, v in merged.items() if v is not UNSET}


CASES = {
    "overlapping pools": (
        {"docker_default_address_pools": [{"base": "172.20.0.0/14", "size": 24}, {"base": "172.21.0.0/16", "size": 24}]},
        ["docker_default_address_pools[1]: 172.21.0.0/16 overlaps docker_default_address_pools[0] (172.20.0.0/14)"],
    ),
    "pool overlapping the Dify subnet": (
        {"docker_default_address_pools": [{"base": "172.28.0.0/14", "size": 24}]},
        ["docker_default_address_pools[0]: 172.28.0.0/14 overlaps selfhost_dify_subnet (172.30.0.0/24)"],
    ),
    "pool overlapping a moved Dify subnet": (
        {"selfhost_dify_subnet": "172.21.5.0/24"},
        ["docker_default_address_pools[0]: 172.20.0.0/14 overlaps selfhost_dify_subnet (172.21.5.0/24)"],
    ),
    "bridge address in the Dify subnet": (
        {"docker_bip": "172.30.0.1/24"},
        ["docker_bip: 172.30.0.1/24 overlaps selfhost_dify_subnet (172.30.0.0/24)"],
    ),
    "malformed pools and bridge address": (
        {"docker_default_address_pools": [{"base": "172.20.0.1/14", "size": 24}, {"base": "10.0.0.0/33", "size": 24},
                                          {"base": "10.1.0.0/16", "size": 12}],
         "docker_bip": "10.9.0.0/24"},
        ["docker_default_address_pools[0]: 172.20.0.1/14 has host bits set; the network is 172.20.0.0/14",
         "docker_default_address_pools[1]: 10.0.0.0/33 is not an IPv4 network in CIDR notation",
         "docker_default_address_pools[2]: size 12 must be a prefix length between the base's (16, at least 8) and 30",
         "docker_bip: 10.9.0.0/24 must be the bridge's own address"],
    ),
    "bad registry mirror URLs": (
        {"docker_registry_mirrors": ["mirror.example.com", "https://mirror.example.com/?token=x"]},
        ["docker_registry_mirrors: 'mirror.example.com' must start with http://, https://",
         "docker_registry_mirrors: https://mirror.example.com/?token=x must not contain a query"],
    ),
    "bad apt mirror URL": (
        {"docker_package_source": "docker", "docker_apt_mirror": "ftp://mirror.example.com/docker", **NO_ARTIFACT},
        ["docker_apt_mirror: 'ftp://mirror.example.com/docker' must start with http://, https://"],
    ),
    "distro on Debian 12 without a compose artifact": (
        NO_ARTIFACT,
        ["docker_package_source: distro on Debian 12 (bookworm) has only Compose v1",
         "Set docker_compose_artifact_url or docker_compose_artifact_path to a Compose v2 binary"],
    ),
    "malformed sha256": (
        {"docker_compose_artifact_sha256": "abc123"},
        ["docker_compose_artifact_sha256: 'abc123' is not a SHA-256 checksum"],
    ),
    "sha256 of another file": (
        {"docker_compose_artifact_sha256": "0" * 64},
        [f"has the SHA-256 {ARTIFACT_SHA256}, which is not docker_compose_artifact_sha256 ({'0' * 64})"],
    ),
    "artifact that is not on the controller": (
        {"docker_compose_artifact_path": "/nonexistent/docker-compose"},
        ["docker_compose_artifact_path: /nonexistent/docker-compose is not a file on the controller"],
    ),
    "both artifact sources": (
        {"docker_compose_artifact_url": "https://downloads.example.com/docker-compose-linux-x86_64"},
        ["docker_compose_artifact_url / docker_compose_artifact_path: set only one"],
    ),
    "compose artifact with Docker's packages": (
        {"docker_package_source": "docker"},
        ["docker_compose_artifact_url / docker_compose_artifact_path: only used with docker_package_source: distro"],
    ),
    "unknown package source": (
        {"docker_package_source": "snap"},
        ["docker_package_source", "snap", "docker, distro"],
    ),
    "log rotation": (
        {"docker_log_max_size": "10MB", "docker_log_max_file": 0},
        ["docker_log_max_size: 10MB is not a size such as 10m", "docker_log_max_file: 0 must be a whole number of at least 1"],
    ),
    "daemon settings that bypass the checks": (
        {"docker_daemon_extra": {"hosts": ["tcp://0.0.0.0:2375"], "default-address-pools": []}},
        ["docker_daemon_extra.hosts: conflicts with -H fd://",
         "docker_daemon_extra.default-address-pools: set docker_default_address_pools instead"],
    ),
    "user that does not exist": (
        {"docker_users": ["root", "no-such-user", "Bad Name"]},
        ["docker_users: no-such-user is not a user on this host", "docker_users: Bad Name is not a user name"],
    ),
    "key fingerprint": (
        {"docker_package_source": "docker", "docker_apt_key_fingerprint": "0EBFCD88", **NO_ARTIFACT},
        ["docker_apt_key_fingerprint: 0EBFCD88 is not an OpenPGP fingerprint"],
    ),
}


@pytest.fixture(scope="module")
def rejections(server, workdir):
    """Every case in one run, a host each (helpers.RejectionBatch)."""
    cases = {name: case_vars(workdir, variables) for name, (variables, _expected) in CASES.items()}
    return helpers.RejectionBatch(server, workdir / "docker.yml", cases, workdir).run()


@pytest.mark.parametrize("case", list(CASES), ids=list(CASES))
def test_bad_input_fails_before_any_change(rejections, case):
    rejections.assert_rejected(case, CASES[case][1])


def test_a_pool_overlapping_the_hosts_own_network_is_refused(server, workdir, tmp_path):
    prefix = helpers.docker("inspect", "-f", "{{range .NetworkSettings.Networks}}{{.IPPrefixLen}}{{end}}", server).stdout
    network = ipaddress.ip_interface(f"{helpers.container_ip(server)}/{prefix.strip()}").network
    pools = [{"base": str(network), "size": 24 if network.prefixlen <= 24 else network.prefixlen}]
    helpers.assert_rejected_unchanged(
        server,
        lambda: apply_role(server, workdir, tmp_path, case_vars(workdir, {"docker_default_address_pools": pools})),
        [f"docker_default_address_pools[0]: {network} overlaps this host's network {network} (eth0)"])


def test_all_problems_are_reported_at_once(server, workdir, tmp_path):
    proc = apply_role(server, workdir, tmp_path, case_vars(workdir, {
        **NO_ARTIFACT, "docker_default_address_pools": [{"base": "172.30.0.0/16", "size": 24}],
        "docker_registry_mirrors": ["mirror.example.com"], "docker_log_max_size": "big", "docker_users": ["ghost"]}))
    assert proc.returncode != 0
    failed = [json.loads(line.split("=> ", 1)[1]) for line in proc.stdout.splitlines()
              if line.startswith("fatal: [target]: FAILED! => ")]
    assert len(failed) == 1, proc.stdout[-3000:]
    messages = failed[0]["msg"]
    assert messages[0].startswith("selfhost.dify.docker preflight: nothing was changed")
    assert [m.split(":", 1)[0] for m in messages[1:]] == [
        "docker_package_source", "docker_default_address_pools[0]", "docker_log_max_size", "docker_registry_mirrors",
        "docker_users"]


def test_valid_input_passes_the_preflight(server, workdir, tmp_path):
    before = helpers.fingerprint(server)
    proc = apply_role(server, workdir, tmp_path, valid(workdir), "--check", "--tags", "docker_preflight")
    assert proc.returncode == 0, proc.stdout[-4000:]
    assert "TASK [selfhost.dify.docker : Preflight | Stop before any change if a check failed]" in proc.stdout
    counts = helpers.recap(proc.stdout)["target"]
    assert (counts["changed"], counts["failed"], counts["unreachable"]) == (0, 0, 0)
    assert before == helpers.fingerprint(server)


# -- Docker's repository: the key is checked before apt trusts it -------------------------------
# Only the repository concern runs (it writes the key and the deb822 file; apt never reads the
# mirror URL here, which nothing serves).

KEYRING = "/etc/apt/keyrings/selfhost-docker.asc"
SOURCES = "/etc/apt/sources.list.d/selfhost-docker.sources"
DOCKER_FINGERPRINT = "9DC858229FC7DD38854AE2D88D81803C0EBFCD88"


@pytest.fixture(scope="module")
def docker_key(server, tmp_path_factory):
    script = ("cd /tmp && apt-get update -qq >/dev/null && apt-get download -qq extrepo-offline-data >/dev/null"
              " && dpkg-deb --fsys-tarfile extrepo-offline-data_*.deb"
              " | tar -xO ./usr/share/extrepo/offline-data/debian/bookworm/docker-ce.asc;"
              " rm -f /tmp/extrepo-offline-data_*.deb")
    key = tmp_path_factory.mktemp("docker-key") / "docker-ce.asc"
    key.write_text(helpers.docker("exec", server, "sh", "-c", script).stdout)
    assert "BEGIN PGP PUBLIC KEY BLOCK" in key.read_text()
    return key


def repository_vars(key, **extra):
    return {"docker_package_source": "docker", "docker_apt_key_file": str(key), **extra}


def test_a_key_with_another_fingerprint_is_not_installed(server, workdir, tmp_path, docker_key):
    wrong = "0123456789ABCDEF0123456789ABCDEF01234567"
    proc = apply_role(server, workdir, tmp_path, repository_vars(docker_key, docker_apt_key_fingerprint=wrong),
                      "--tags", "docker_repository")
    assert proc.returncode != 0
    assert f"has the primary key fingerprint(s) ['{DOCKER_FINGERPRINT}'], expected exactly {wrong}" in proc.stdout
    assert helpers.docker("exec", server, "test", "-e", KEYRING, check=False).returncode != 0
    assert helpers.docker("exec", server, "test", "-e", SOURCES, check=False).returncode != 0


def test_the_checked_key_signs_the_deb822_repository(server, workdir, tmp_path, docker_key):
    mirror = "http://docker-mirror.invalid/linux/debian"
    variables = repository_vars(docker_key, docker_apt_mirror=mirror)
    proc = apply_role(server, workdir, tmp_path, variables, "--tags", "docker_repository")
    assert proc.returncode == 0, proc.stdout[-4000:]
    sources = helpers.docker("exec", server, "cat", SOURCES).stdout
    for line in (f"URIs: {mirror}", "Suites: bookworm", "Components: stable", "Architectures: amd64",
                 f"Signed-By: {KEYRING}"):
        assert line in sources.splitlines(), sources
    assert helpers.docker("exec", server, "cat", KEYRING).stdout == docker_key.read_text()
    # A rerun has nothing to do.
    again = apply_role(server, workdir, tmp_path, variables, "--tags", "docker_repository")
    assert helpers.recap(again.stdout)["target"]["changed"] == 0, again.stdout[-3000:]
