"""The lab is reached the way a user reaches a real server: SSH with a key, host key
checking on, passwordless sudo for the admin account, and no password logins."""
from __future__ import annotations

import pytest

from tests.helpers import run, ssh_auth_methods

pytestmark = [pytest.mark.lab, pytest.mark.docker]


def ssh(lab, host, known_hosts, *command):
    return run(["ssh", "-F", "/dev/null", "-i", lab.key, "-o", "IdentitiesOnly=yes",
                "-o", f"UserKnownHostsFile={known_hosts}", "-o", "StrictHostKeyChecking=yes",
                "-o", "BatchMode=yes", "-o", "ConnectTimeout=10", "-p", lab.port(host),
                "admin@127.0.0.1", *command], check=False, timeout=60)


def test_admin_logs_in_with_the_lab_key_and_has_sudo(lab):
    for host in lab.hosts:
        proc = ssh(lab, host, lab.known_hosts, "sudo", "-n", "true")
        assert proc.returncode == 0, f"{host}: {proc.stdout}"


def test_host_key_checking_is_on(lab, tmp_path):
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    for host in lab.hosts:
        proc = ssh(lab, host, empty, "true")
        assert proc.returncode != 0
        assert "Host key verification failed" in proc.stdout, proc.stdout


def test_key_files_are_private(lab):
    assert oct(lab.key.stat().st_mode & 0o777) == "0o600"
    assert oct(lab.key.parent.stat().st_mode & 0o777) == "0o700"
    credentials = lab.inventory / ".credentials"
    assert oct(credentials.stat().st_mode & 0o777) == "0o700"


def test_password_authentication_is_refused(lab):
    for host in lab.hosts:
        methods = ssh_auth_methods(lab.port(host))
        assert "password" not in methods and "keyboard-interactive" not in methods, \
            f"{host}: sshd still offers {methods}"
