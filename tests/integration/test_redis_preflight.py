"""selfhost.dify.redis refuses bad input before it changes anything.

One fresh bare server (a systemd container of the Debian 13 image) serves the whole
module. Every case applies the role with one kind of mistake through the docker
connection and asserts that the run fails, that the output names the variable at fault
(and never shows a secret), and that the host's configuration state (files under /etc and
/usr/local with their modes and owners, and the dpkg status) is exactly what it was before.

The cases share one ansible-playbook run (helpers.RejectionBatch): each is an inventory host of
its own, pointing at the server and carrying the case's variables, and each test reads its
host's part of the output.

The positive control runs the same playbook with valid variables in check mode, limited
to the preflight, and shows that it passes: the cases fail for the reason they state.
"""
from __future__ import annotations

import json

import pytest
import yaml

from tests import helpers

pytestmark = pytest.mark.docker

PLAYBOOK = helpers.ROOT / "tests" / "integration" / "playbooks" / "redis.yml"
# Valid settings each case starts from, so that a case fails only for its own mistake.
# Test-only values.
VALID = {
    "redis_dify_password": "test-only-4f1c9e2a7d3b8e60",
    "redis_admin_password": "test-only-admin-b72e5c0a9f14",
}


@pytest.fixture(scope="module")
def server():
    with helpers.throwaway_host("redis-preflight", image="selfhost-dify/debian:13") as name:
        yield name


def apply_role(server, tmp_path, variables, *extra):
    """Apply the role to the one host `target` (the container, over the docker connection)."""
    inventory = {"all": {"hosts": {"target": {"ansible_python_interpreter": "/usr/bin/python3",
                                              "ansible_connection": "community.docker.docker",
                                              "ansible_host": server, **variables}}}}
    path = tmp_path / "inventory.yml"
    path.write_text(yaml.safe_dump(inventory, sort_keys=False))
    # JSON results keep each message on one line (the YAML format wraps long ones).
    return helpers.ansible_playbook(["-i", str(path), str(PLAYBOOK), *extra],
                                    env={"ANSIBLE_CALLBACK_RESULT_FORMAT": "json"}, timeout=600)


# A case value that removes the variable from the valid settings.
UNSET = object()


def case_vars(variables):
    """VALID with the case's variables on top (UNSET removes one)."""
    merged = {**VALID, **variables}
    return {k: v for k, v in merged.items() if v is not UNSET}


CASES = {
    "missing password": (
        {"redis_dify_password": UNSET},
        ["redis_dify_password: is missing: set it in the inventory"],
    ),
    "Dify's sample password": (
        {"redis_dify_password": "difyai123456"},
        ["redis_dify_password: is a published sample or default value"],
    ),
    "short password": (
        {"redis_dify_password": "Sh0rt-but-r4nd"},
        ["redis_dify_password: is too short (14 characters; at least 16)"],
    ),
    "weak admin password": (
        {"redis_admin_password": "changeme"},
        ["redis_admin_password: "],
    ),
    "admin password equal to Dify's": (
        {"redis_admin_password": VALID["redis_dify_password"]},
        ["redis_admin_password: must differ from redis_dify_password"],
    ),
    "wrong type: port as words": (
        {"redis_port": "six-three-seven-nine"},
        ["redis_port", "int"],
    ),
    "port out of range": (
        {"redis_port": 70000},
        ["redis_port: 70000 is outside 1-65535"],
    ),
    "bind address that is not an IP": (
        {"redis_bind_addresses": ["127.0.0.1", "10.0.0.300"]},
        ["redis_bind_addresses: '10.0.0.300' is not an IP address"],
    ),
    "bind address this host does not have": (
        {"redis_bind_addresses": ["127.0.0.1", "192.0.2.10"]},
        ["redis_bind_addresses: 192.0.2.10 is not an address of this host"],
    ),
    "clients elsewhere but loopback only": (
        {"redis_bind_addresses": ["127.0.0.1"], "redis_allowed_sources": ["10.0.0.0/24"]},
        ["redis_bind_addresses: must contain"],
    ),
    "unknown client source": (
        {"redis_allowed_sources": ["app-host-that-does-not-exist"]},
        ["redis_allowed_sources", "'app-host-that-does-not-exist' is neither an IP/CIDR nor an inventory host or group"],
    ),
    "memory limit that is not a size": (
        {"redis_maxmemory": "lots"},
        ["redis_maxmemory: lots is neither auto nor a size such as 512M or 4G"],
    ),
    "memory limit below 64M": (
        {"redis_maxmemory": "32M"},
        ["redis_maxmemory: 32M is below the minimum of 64M"],
    ),
    "memory limit above the host's memory": (
        {"redis_maxmemory": "64T"},
        ["redis_maxmemory: 64T is more than the memory of this host"],
    ),
    "users: default, and admin equal to dify": (
        {"redis_dify_user": "default", "redis_admin_user": "default"},
        ["redis_dify_user: default is the built-in user of Redis",
         "redis_admin_user: must differ from redis_dify_user"],
    ),
    "databases and snapshot points": (
        {"redis_databases": 1, "redis_save": ["every hour"]},
        ["redis_databases: 1 is below 2", "redis_save: every hour is not a snapshot point"],
    ),
    "fsync policy off": (
        {"redis_appendfsync": "no"},
        ["redis_appendfsync", "everysec"],
    ),
}


@pytest.fixture(scope="module")
def rejections(server, tmp_path_factory):
    """Every case in one run, a host each (helpers.RejectionBatch)."""
    cases = {name: case_vars(variables) for name, (variables, _expected) in CASES.items()}
    return helpers.RejectionBatch(server, PLAYBOOK, cases, tmp_path_factory.mktemp("redis-batch")).run()


@pytest.mark.parametrize("case", list(CASES), ids=list(CASES))
def test_bad_input_fails_before_any_change(rejections, case):
    # (difyai123456 is public and quoted in the role's documentation, so it is not checked.)
    rejections.assert_rejected(case, CASES[case][1], hidden=("Sh0rt-but-r4nd", "changeme", *VALID.values()))


def test_all_problems_are_reported_at_once(server, tmp_path):
    """Several mistakes: one failed run lists each of them, naming each variable."""
    proc = apply_role(server, tmp_path, {"redis_dify_password": "difyai123456", "redis_port": 0,
                                         "redis_bind_addresses": ["localhost"], "redis_maxmemory": "1 GB"})
    assert proc.returncode != 0
    failed = [json.loads(line.split("=> ", 1)[1]) for line in proc.stdout.splitlines()
              if line.startswith("fatal: [target]: FAILED! => ")]
    assert len(failed) == 1, proc.stdout[-3000:]
    messages = failed[0]["msg"]
    assert messages[0].startswith("selfhost.dify.redis preflight: nothing was changed")
    named = [m.split(":", 1)[0] for m in messages[1:]]
    assert named == ["redis_dify_password", "redis_port", "redis_bind_addresses", "redis_maxmemory"]


def test_valid_input_passes_the_preflight(server, tmp_path):
    before = helpers.fingerprint(server)
    proc = apply_role(server, tmp_path, VALID, "--check", "--tags", "redis_preflight")
    assert proc.returncode == 0, proc.stdout[-4000:]
    assert "TASK [selfhost.dify.redis : Preflight | Stop before any change if a check failed]" in proc.stdout
    assert helpers.recap(proc.stdout)["target"]["changed"] == 0
    assert before == helpers.fingerprint(server)
