"""selfhost.dify.backup refuses bad input before it changes anything.

One fresh bare server (a systemd container of the Debian 13 image), in the redis group (so it
holds a Redis to back up), serves the whole module. Every case applies the role with one kind
of mistake through the docker connection and asserts that the run fails, that the output names
the variable at fault (and never shows a secret), and that the host's configuration state is
exactly what it was before. The positive control runs the preflight alone, in check mode, with
valid variables, and passes.

The cases share one ansible-playbook run (helpers.RejectionBatch): each is an inventory host of
its own, pointing at the server and carrying the case's variables, and each test reads its
host's part of the output.
"""
from __future__ import annotations

import pytest
import yaml

from tests import helpers

pytestmark = pytest.mark.docker

PLAYBOOK = helpers.ROOT / "tests" / "integration" / "playbooks" / "backup.yml"
# Test-only values.
VALID = {
    "backup_password": "test-only-backup-7b2e9c4f1a",
    "redis_admin_password": "test-only-redis-admin-3c8e1f",
}
UNSET = object()


@pytest.fixture(scope="module")
def server():
    with helpers.throwaway_host("backup-preflight", image="selfhost-dify/debian:13") as name:
        yield name


def case_vars(variables):
    """VALID with the case's variables on top (UNSET removes one)."""
    return {k: v for k, v in {**VALID, **variables}.items() if v is not UNSET}


def apply_role(server, tmp_path, variables, *extra):
    variables = case_vars(variables)
    inventory = {"all": {"hosts": {"target": {"ansible_python_interpreter": "/usr/bin/python3",
                                              "ansible_connection": "community.docker.docker",
                                              "ansible_host": server, **variables}},
                         "children": {"redis": {"hosts": {"target": {}}}}}}
    path = tmp_path / "inventory.yml"
    path.write_text(yaml.safe_dump(inventory, sort_keys=False))
    return helpers.ansible_playbook(["-i", str(path), str(PLAYBOOK), *extra],
                                    env={"ANSIBLE_CALLBACK_RESULT_FORMAT": "json"}, timeout=600)


CASES = {
    "missing backup password": (
        {"backup_password": UNSET},
        ["backup_password: is missing: set it in the inventory"],
    ),
    "sample backup password": (
        {"backup_password": "changeme"},
        ["backup_password: is a published sample or default value"],
    ),
    "placeholder backup password": (
        {"backup_password": "CHANGE_ME_backup_password_xxxx"},
        ["backup_password: "],
    ),
    "short backup password": (
        {"backup_password": "Sh0rt-but-r4nd"},
        ["backup_password: is too short (14 characters; at least 16)"],
    ),
    "malformed schedule": (
        {"backup_schedule": "every night at two"},
        ["backup_schedule: every night at two is not a systemd calendar expression"],
    ),
    "repository URL without a bucket": (
        {"backup_repository": "s3:https://s3.example.com",
         "backup_s3_access_key": "backupkey", "backup_s3_secret_key": "test-only-s3-secret-91ac4e"},
        ["backup_repository: s3:https://s3.example.com is not an S3 repository"],
    ),
    "relative repository path": (
        {"backup_repository": "restic/here"},
        ["backup_repository: restic/here is neither an absolute path nor"],
    ),
    "S3 repository without its keys": (
        {"backup_repository": "s3:https://s3.example.com/backups/db1"},
        ["backup_s3_access_key: is missing", "backup_s3_secret_key: is missing"],
    ),
    "retention of no daily snapshot": (
        {"backup_keep_daily": 0},
        ["backup_keep_daily: must be at least 1, got 0"],
    ),
    "Redis host without the operator password": (
        {"redis_admin_password": UNSET},
        ["redis_admin_password: is missing"],
    ),
}


@pytest.fixture(scope="module")
def rejections(server, tmp_path_factory):
    """Every case in one run, a host each (helpers.RejectionBatch), each host in the redis group."""
    cases = {name: case_vars(variables) for name, (variables, _expected) in CASES.items()}
    return helpers.RejectionBatch(server, PLAYBOOK, cases, tmp_path_factory.mktemp("backup-batch"),
                                  groups=["redis"]).run()


@pytest.mark.parametrize("case", list(CASES), ids=list(CASES))
def test_bad_input_fails_before_any_change(rejections, case):
    rejections.assert_rejected(case, CASES[case][1],
                               hidden=("Sh0rt-but-r4nd", "test-only-s3-secret-91ac4e", *VALID.values()))


def test_valid_input_passes_the_preflight(server, tmp_path):
    before = helpers.fingerprint(server)
    proc = apply_role(server, tmp_path, {}, "--check", "--tags", "backup_preflight")
    assert proc.returncode == 0, proc.stdout[-4000:]
    assert "TASK [selfhost.dify.backup : Preflight | Stop before any change if a check failed]" in proc.stdout
    assert helpers.recap(proc.stdout)["target"]["changed"] == 0
    assert before == helpers.fingerprint(server)
