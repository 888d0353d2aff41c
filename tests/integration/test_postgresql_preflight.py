"""selfhost.dify.postgresql refuses bad input before it changes anything.

One fresh bare Debian 12 server (a systemd container) serves the whole module: Debian 12 is
where the one platform rule applies (bookworm has no pgvector package, so `distro` is
refused), and every other check is the same on any release. Each case applies the role with
one kind of mistake through the docker connection and asserts that the run fails, that the
output names the variable at fault, and that the host's configuration state (files under
/etc and /usr/local with their modes and owners, and the dpkg status) is exactly what it
was before the run.

The cases share one ansible-playbook run (helpers.RejectionBatch): each is an inventory host of
its own, pointing at the server and carrying the case's variables, and each test reads its
host's part of the output.

The positive control runs the same playbook with valid variables (pgdg on Debian 12) in
check mode, limited to the preflight, and shows that it passes: the cases fail for the
reason they state.
"""
from __future__ import annotations

import json

import pytest
import yaml

from tests import helpers

pytestmark = pytest.mark.docker

PLAYBOOK = helpers.ROOT / "tests" / "integration" / "playbooks" / "postgresql.yml"

# Valid settings each case starts from, so that a case fails only for its own mistake.
VALID = {
    "postgresql_package_source": "pgdg",
    "postgresql_dify_password": "preflight-only-8Jq2vXr5Lw9TzK3m",
    "postgresql_allowed_sources": ["10.20.0.0/24"],
}


@pytest.fixture(scope="module")
def server():
    with helpers.throwaway_host("postgresql-preflight", image="selfhost-dify/debian:12") as name:
        yield name


def apply_role(server, tmp_path, variables, *extra):
    """Apply the role over the docker connection, as root, to the one host `target`
    (group postgresql) with `variables`."""
    host_vars = {"ansible_python_interpreter": "/usr/bin/python3", "ansible_connection": "community.docker.docker",
                 "ansible_host": server, **variables}
    inventory = {"all": {"children": {"postgresql": {"hosts": {"target": host_vars}}}}}
    path = tmp_path / "inventory.yml"
    path.write_text(yaml.safe_dump(inventory, sort_keys=False))
    # JSON results keep each message on one line (the YAML format wraps long ones).
    return helpers.ansible_playbook(["-i", str(path), str(PLAYBOOK), *extra],
                                    env={"ANSIBLE_CALLBACK_RESULT_FORMAT": "json"}, timeout=600)


BOOKWORM = ("postgresql_package_source: distro is not possible on Debian 12 (bookworm): bookworm has no pgvector"
            " package. Set postgresql_package_source: pgdg")

CASES = {
    "sample password": (
        {"postgresql_dify_password": "difyai123456"},
        ["postgresql_dify_password: is a published sample or default value"],
    ),
    "short password": (
        {"postgresql_dify_password": "Xk9v2Lq"},
        ["postgresql_dify_password: is too short (7 characters; at least 16)"],
    ),
    "missing password": (
        {"postgresql_dify_password": None},
        ["postgresql_dify_password: is missing"],
    ),
    "port out of range": (
        {"postgresql_port": 70000},
        ["postgresql_port: 70000 is outside 1-65535"],
    ),
    "unresolvable source": (
        {"postgresql_allowed_sources": ["10.20.0.0/24", "app-host-that-does-not-exist"]},
        ["postgresql_allowed_sources[1]: 'app-host-that-does-not-exist' is neither an IP/CIDR nor an inventory host or group"],
    ),
    "bad identifiers": (
        {"postgresql_dify_user": "Dify-User", "postgresql_plugin_database": "plugin db"},
        ["postgresql_dify_user: 'Dify-User' is not a plain PostgreSQL name",
         "postgresql_plugin_database: 'plugin db' is not a plain PostgreSQL name"],
    ),
    "reserved role name": (
        {"postgresql_dify_user": "postgres"},
        ["postgresql_dify_user: postgres is reserved"],
    ),
    "distro packages on Debian 12": (
        {"postgresql_package_source": "distro"},
        [BOOKWORM],
    ),
    "bad listen address and key fingerprint": (
        {"postgresql_listen_addresses": ["127.0.0.1", "db.internal"], "postgresql_pgdg_key_fingerprint": "ACCC4CF8"},
        ["postgresql_listen_addresses: 'db.internal'",
         "postgresql_pgdg_key_fingerprint: ACCC4CF8 is not an OpenPGP fingerprint"],
    ),
}


@pytest.fixture(scope="module")
def rejections(server, tmp_path_factory):
    """Every case in one run, a host each (helpers.RejectionBatch), each host in the postgresql group."""
    cases = {name: {**VALID, **variables} for name, (variables, _expected) in CASES.items()}
    return helpers.RejectionBatch(server, PLAYBOOK, cases, tmp_path_factory.mktemp("postgresql-batch"),
                                  groups=["postgresql"]).run()


@pytest.mark.parametrize("case", list(CASES), ids=list(CASES))
def test_bad_input_fails_before_any_change(rejections, case):
    rejections.assert_rejected(case, CASES[case][1])


def test_all_problems_are_reported_at_once_and_the_password_never_shown(server, tmp_path):
    proc = apply_role(server, tmp_path, {**VALID, "postgresql_package_source": "distro",
                                         "postgresql_dify_password": "difyai123456", "postgresql_port": 0})
    assert proc.returncode != 0
    failed = [json.loads(line.split("=> ", 1)[1]) for line in proc.stdout.splitlines()
              if line.startswith("fatal: [target]: FAILED! => ")]
    assert len(failed) == 1, proc.stdout[-3000:]
    messages = failed[0]["msg"]
    assert messages[0].startswith("selfhost.dify.postgresql preflight: nothing was changed")
    assert [m.split(":", 1)[0] for m in messages[1:]] == [
        "postgresql_dify_password", "postgresql_port", "postgresql_package_source"]
    assert "difyai123456" not in proc.stdout


def test_valid_input_passes_the_preflight(server, tmp_path):
    before = helpers.fingerprint(server)
    proc = apply_role(server, tmp_path, VALID, "--check", "--tags", "postgresql_preflight")
    assert proc.returncode == 0, proc.stdout[-4000:]
    assert "TASK [selfhost.dify.postgresql : Preflight | Stop before any change if a check failed]" in proc.stdout
    counts = helpers.recap(proc.stdout)["target"]
    assert (counts["changed"], counts["failed"], counts["unreachable"]) == (0, 0, 0)
    assert before == helpers.fingerprint(server)


# -- the PGDG repository: the key is checked before apt trusts it -------------------------------
# Only the repository concern runs (it writes the key and the deb822 file; apt never reads the
# mirror URL here, which nothing serves). The key is PGDG's own, as Debian's postgresql-common
# package ships it, so it comes from the Debian archive this machine reaches.

KEYRING = "/etc/apt/keyrings/selfhost-pgdg.asc"
SOURCES = "/etc/apt/sources.list.d/selfhost-pgdg.sources"
PGDG_FINGERPRINT = "B97B0AFCAA1A47F044F244A07FCC7D46ACCC4CF8"


@pytest.fixture(scope="module")
def pgdg_key(server, tmp_path_factory):
    script = ("cd /tmp && apt-get update -qq >/dev/null && apt-get download -qq postgresql-common >/dev/null"
              " && dpkg-deb --fsys-tarfile postgresql-common_*.deb"
              " | tar -xO ./usr/share/postgresql-common/pgdg/apt.postgresql.org.asc; rm -f /tmp/postgresql-common_*.deb")
    key = tmp_path_factory.mktemp("pgdg") / "apt.postgresql.org.asc"
    key.write_text(helpers.docker("exec", server, "sh", "-c", script).stdout)
    assert "BEGIN PGP PUBLIC KEY BLOCK" in key.read_text()
    return key


def test_a_key_with_another_fingerprint_is_not_installed(server, tmp_path, pgdg_key):
    wrong = "0123456789ABCDEF0123456789ABCDEF01234567"
    proc = apply_role(server, tmp_path, {**VALID, "postgresql_pgdg_key_file": str(pgdg_key),
                                         "postgresql_pgdg_key_fingerprint": wrong},
                      "--tags", "postgresql_repository")
    assert proc.returncode != 0
    assert f"has the primary key fingerprint(s) ['{PGDG_FINGERPRINT}'], expected exactly {wrong}" in proc.stdout
    assert helpers.docker("exec", server, "test", "-e", KEYRING, check=False).returncode != 0
    assert helpers.docker("exec", server, "test", "-e", SOURCES, check=False).returncode != 0


def test_the_checked_key_signs_the_deb822_repository(server, tmp_path, pgdg_key):
    mirror = "http://pgdg-mirror.invalid/pub/repos/apt"
    variables = {**VALID, "postgresql_pgdg_key_file": str(pgdg_key), "postgresql_pgdg_url": mirror}
    proc = apply_role(server, tmp_path, variables, "--tags", "postgresql_repository")
    assert proc.returncode == 0, proc.stdout[-4000:]
    sources = helpers.docker("exec", server, "cat", SOURCES).stdout
    for line in (f"URIs: {mirror}", "Suites: bookworm-pgdg", "Components: main", f"Signed-By: {KEYRING}"):
        assert line in sources.splitlines(), sources
    assert helpers.docker("exec", server, "cat", KEYRING).stdout == pgdg_key.read_text()
    # A rerun has nothing to do.
    again = apply_role(server, tmp_path, variables, "--tags", "postgresql_repository")
    assert helpers.recap(again.stdout)["target"]["changed"] == 0, again.stdout[-3000:]
