"""selfhost.dify.base refuses bad input before it changes anything.

One fresh bare server (a systemd container of the Debian 13 image) serves the whole
module. Every case applies the role with one kind of mistake through the docker
connection and asserts that the run fails, that the output names the variable at fault,
and that the host's configuration state (files under /etc and /usr/local with their
modes and owners, and the dpkg status) is exactly what it was before the run.

The cases share one ansible-playbook run (helpers.RejectionBatch): each is an inventory host of
its own, pointing at the server and carrying the case's variables, and each test reads its
host's part of the output.

The positive control runs the same playbook with valid variables in check mode, limited
to the preflight (the bare host has no apt lists for a check-mode package install), and
shows that it passes: the cases fail for the reason they state.
"""
from __future__ import annotations

import json
import uuid

import pytest
import yaml

from tests import helpers

pytestmark = pytest.mark.docker

PLAYBOOK = helpers.ROOT / "tests" / "integration" / "playbooks" / "base.yml"
KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAILSCOrvJzEIxtmPKXjna/0ZH+hsXotLUBrSijFn1pJXh test@example"
RULE = {"name": "metrics", "port": 9100, "sources": ["10.0.0.0/24"]}

# Valid settings each case starts from, so that a case fails only for its own mistake.
VALID = {
    "base_chrony_set_clock": False,
    "base_admin_users": [{"name": "alice", "authorized_keys": [KEY]}],
    "base_firewall_rules": [RULE],
}


@pytest.fixture(scope="module")
def server():
    with helpers.throwaway_host("base-preflight", image="selfhost-dify/debian:13") as name:
        yield name


def run_role(tmp_path, host_vars, extra=(), env=None):
    """Apply the role to the one host `target` described by host_vars."""
    inventory = {"all": {"hosts": {"target": {"ansible_python_interpreter": "/usr/bin/python3", **host_vars}}}}
    path = tmp_path / "inventory.yml"
    path.write_text(yaml.safe_dump(inventory, sort_keys=False))
    # JSON results keep each message on one line (the YAML format wraps long ones).
    return helpers.ansible_playbook(["-i", str(path), str(PLAYBOOK), *extra],
                                    env={"ANSIBLE_CALLBACK_RESULT_FORMAT": "json", **(env or {})}, timeout=600)


def apply_role(server, tmp_path, variables, *extra):
    """Over the docker connection, as root."""
    return run_role(tmp_path, {"ansible_connection": "community.docker.docker", "ansible_host": server, **variables},
                    extra)


CASES = {
    "wrong type: port as words": (
        {"base_ssh_port": "twenty-two"},
        ["base_ssh_port", "int"],
    ),
    "wrong type: admin users as a string": (
        {"base_admin_users": "alice"},
        ["base_admin_users"],
    ),
    "unknown time zone": (
        {"base_timezone": "Mars/Olympus_Mons"},
        ["base_timezone: 'Mars/Olympus_Mons' is not a time zone in the IANA database"],
    ),
    "password logins off with no key anywhere": (
        {"base_admin_users": []},
        ["base_ssh_password_authentication: false, but nobody could log in by SSH afterwards",
         "base_admin_users"],
    ),
    "ports out of range": (
        {"base_ssh_port": 70000, "base_firewall_rules": [{"name": "zero", "port": 0, "sources": ["10.0.0.1"]}]},
        ["base_ssh_port: 70000 is outside 1-65535", "base_firewall_rules[0].port: 0 is outside 1-65535"],
    ),
    "malformed CIDR": (
        {"base_firewall_rules": [RULE, {"name": "bad-cidr", "port": 8080, "sources": ["10.0.0.300/24"]}]},
        ["base_firewall_rules[1].sources: '10.0.0.300/24' is neither an IP/CIDR nor an inventory host or group"],
    ),
    "unknown source host": (
        {"base_firewall_rules": [{"name": "ghost", "port": 5432, "sources": ["db-that-does-not-exist"]}]},
        ["base_firewall_rules[0].sources: 'db-that-does-not-exist' is neither an IP/CIDR nor an inventory host or group"],
    ),
    "bad rule from another role's variable": (
        {"selfhost_firewall_rules_broken": [{"name": "metrics", "port": "9000-8000", "proto": "sctp", "sources": ["10.0.0.1"]}]},
        ["selfhost_firewall_rules_broken[0].name: 'metrics' is already used by base_firewall_rules[0]",
         "selfhost_firewall_rules_broken[0].port: '9000-8000' is a range whose start 9000 is above its end 8000",
         "selfhost_firewall_rules_broken[0].proto: must be tcp or udp"],
    ),
    "bad authorized key": (
        {"base_admin_users": [{"name": "alice", "authorized_keys": [KEY, "ssh-ed25519 this-is-not-a-key alice@laptop"]}]},
        ["base_admin_users[0].authorized_keys[1]: 'ssh-ed25519 this-is-not-a-key alice@laptop' does not look like an OpenSSH public key"],
    ),
    "bad size, time and sysctl": (
        {"base_journald_system_max_use": "1 GB", "base_unattended_upgrades_reboot_time": "25:00",
         "base_sysctl": {"net.ipv4.ip_forward": 0}},
        ["base_journald_system_max_use: '1 GB' is not a size",
         "base_unattended_upgrades_reboot_time: '25:00' is not a time of day",
         "base_sysctl['net.ipv4.ip_forward']: must stay 1"],
    ),
}


@pytest.fixture(scope="module")
def rejections(server, tmp_path_factory):
    """Every case in one run, a host each (helpers.RejectionBatch)."""
    cases = {name: {**VALID, **variables} for name, (variables, _expected) in CASES.items()}
    return helpers.RejectionBatch(server, PLAYBOOK, cases, tmp_path_factory.mktemp("base-batch")).run()


@pytest.mark.parametrize("case", list(CASES), ids=list(CASES))
def test_bad_input_fails_before_any_change(rejections, case):
    rejections.assert_rejected(case, CASES[case][1])


def test_all_problems_are_reported_at_once(server, tmp_path):
    """Several mistakes: one failed run lists each of them."""
    proc = apply_role(server, tmp_path, {**VALID, "base_timezone": "Mars/Olympus_Mons", "base_ssh_port": 0,
                                         "base_firewall_rules": [{"name": "x", "port": 1, "sources": ["10.0.0.0/33"]}]})
    assert proc.returncode != 0
    failed = [json.loads(line.split("=> ", 1)[1]) for line in proc.stdout.splitlines()
              if line.startswith("fatal: [target]: FAILED! => ")]
    assert len(failed) == 1, proc.stdout[-3000:]
    messages = failed[0]["msg"]
    assert messages[0].startswith("selfhost.dify.base preflight: nothing was changed")
    assert [m.split(":", 1)[0] for m in messages[1:]] == ["base_timezone", "base_ssh_port", "base_firewall_rules[0].sources"]


def test_valid_input_passes_the_preflight(server, tmp_path):
    before = helpers.fingerprint(server)
    proc = apply_role(server, tmp_path, VALID, "--check", "--tags", "base_preflight")
    assert proc.returncode == 0, proc.stdout[-4000:]
    assert "TASK [selfhost.dify.base : Preflight | Stop before any change if a check failed]" in proc.stdout
    assert helpers.recap(proc.stdout)["target"] == {"ok": helpers.recap(proc.stdout)["target"]["ok"],
                                                    "changed": 0, "unreachable": 0, "failed": 0}
    assert before == helpers.fingerprint(server)


# -- the lockout guard over a real SSH connection ---------------------------------------------

@pytest.fixture(scope="module")
def ssh_server(tmp_path_factory):
    """A bare server reachable by SSH on a loopback port. The login user `deploy` (sudo
    without password) has its key in /etc/ssh/authorized_keys/deploy, which sshd reads
    besides ~/.ssh/authorized_keys, so the guard cannot see it there; root has the same key
    in /root/.ssh/authorized_keys."""
    name = f"selfhost-test-base-guard-{uuid.uuid4().hex[:8]}"
    keydir = tmp_path_factory.mktemp("guard-key")
    key = keydir / "id_ed25519"
    helpers.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "guard-test", "-f", key])
    public = (keydir / "id_ed25519.pub").read_text().strip()
    helpers.start_systemd_container(name, image="selfhost-dify/debian:13", extra=["-p", "127.0.0.1::22"])
    try:
        setup = (
            "useradd -m -s /bin/bash deploy && echo 'deploy ALL=(ALL:ALL) NOPASSWD: ALL' > /etc/sudoers.d/deploy"
            " && chmod 0440 /etc/sudoers.d/deploy"
            " && mkdir -p /etc/ssh/authorized_keys /root/.ssh && chmod 700 /root/.ssh"
            f" && echo '{public}' > /etc/ssh/authorized_keys/deploy && echo '{public}' > /root/.ssh/authorized_keys"
            " && echo 'AuthorizedKeysFile .ssh/authorized_keys /etc/ssh/authorized_keys/%u' > /etc/ssh/sshd_config.d/50-keys.conf"
            " && systemctl restart ssh"
        )
        helpers.docker("exec", name, "sh", "-c", setup)
        port = helpers.docker("port", name, "22/tcp").stdout.split(":")[-1].strip()
        yield {"name": name, "port": int(port), "key": str(key), "public": public}
    finally:
        helpers.docker("rm", "-f", name, check=False)


def apply_over_ssh(server, tmp_path, user, variables, *extra):
    """Over SSH as `user` with become, the way users reach real servers."""
    return run_role(tmp_path, {
        "ansible_host": "127.0.0.1",
        "ansible_port": server["port"],
        "ansible_user": user,
        "ansible_ssh_private_key_file": server["key"],
        "ansible_ssh_common_args": "-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o IdentitiesOnly=yes",
        "ansible_become": True,
        **variables,
    }, extra, env={"ANSIBLE_HOST_KEY_CHECKING": "False"})


def test_guard_refuses_when_the_ssh_login_user_would_have_no_key(ssh_server, tmp_path):
    before = helpers.fingerprint(ssh_server["name"])
    proc = apply_over_ssh(ssh_server, tmp_path, "deploy", {"base_chrony_set_clock": False, "base_admin_users": []})
    assert proc.returncode != 0
    assert "base_ssh_password_authentication: false would lock out the login user deploy of this connection" in proc.stdout
    assert "base_admin_users" in proc.stdout
    assert helpers.fingerprint(ssh_server["name"]) == before


def test_guard_accepts_a_key_for_the_login_user_in_base_admin_users(ssh_server, tmp_path):
    proc = apply_over_ssh(ssh_server, tmp_path, "deploy",
                          {"base_chrony_set_clock": False,
                           "base_admin_users": [{"name": "deploy", "authorized_keys": [ssh_server["public"]]}]},
                          "--check", "--tags", "base_preflight")
    assert proc.returncode == 0, proc.stdout[-4000:]


def test_guard_accepts_an_existing_authorized_keys_of_the_login_user(ssh_server, tmp_path):
    proc = apply_over_ssh(ssh_server, tmp_path, "root", {"base_chrony_set_clock": False, "base_admin_users": []},
                          "--check", "--tags", "base_preflight")
    assert proc.returncode == 0, proc.stdout[-4000:]


def test_guard_refuses_to_forbid_root_logins_while_logged_in_as_root(ssh_server, tmp_path):
    before = helpers.fingerprint(ssh_server["name"])
    proc = apply_over_ssh(ssh_server, tmp_path, "root",
                          {"base_chrony_set_clock": False, "base_admin_users": [], "base_ssh_permit_root_login": "no"})
    assert proc.returncode != 0
    assert "base_ssh_permit_root_login: no would lock out root, the login user of this connection" in proc.stdout
    assert helpers.fingerprint(ssh_server["name"]) == before
