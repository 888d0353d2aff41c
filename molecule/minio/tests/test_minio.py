"""Behaviour of selfhost.dify.minio on the converged molecule host (Debian 13 only).

What is NOT verified here: no MinIO server binary can be had on the test machines
(MinIO, Inc. stopped publishing binaries in 2026; GitHub, where the pgsty/minio fork
publishes, is unreachable), so the scenario installs a clearly labelled placeholder
(files/not-minio-placeholder.sh: it prints "placeholder for tests: not MinIO" and exits 1)
and runs the role with minio_service_state: stopped. Starting the server and every
post-start step (the bucket through selfhost.dify.s3_bucket, Dify's user and policy
through minio-client, the health check) are therefore never run by these tests (README
and docs/testing.md say so; no test here pretends to cover them).

What is verified: the artifact comes from a URL and is accepted by its SHA-256 only (a
wrong one is refused and changes nothing), the role never executes it, the system user,
directories, the environment file (0640 root:minio, root credentials, S3 API and console
on 127.0.0.1 only), the units pass `systemd-analyze verify`, the service is enabled but
not started, check mode reports nothing to do, and a hand edit is put back.
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))
from tests import helpers  # noqa: E402  pylint: disable=wrong-import-position

INVENTORY = helpers.ansible_inventory(helpers.molecule_inventory())
HOSTS = sorted(INVENTORY["_meta"]["hostvars"])
testinfra_hosts = [f"docker://{name}" for name in HOSTS]
NAME = HOSTS[0]
VARS = INVENTORY["_meta"]["hostvars"][NAME]
PLACEHOLDER = Path(__file__).resolve().parents[1] / "files" / "not-minio-placeholder.sh"


def test_installed_binary_is_the_checksummed_artifact_and_was_never_run(host):
    binary = host.file("/usr/local/bin/minio")
    assert (binary.user, binary.group, binary.mode) == ("root", "root", 0o755)
    assert binary.sha256sum == VARS["minio_artifact_sha256"]
    assert binary.content_string == PLACEHOLDER.read_text()
    assert "placeholder for tests: not MinIO" in binary.content_string
    # Had the role run it, the unit would have failed: it never started.
    assert host.check_output("systemctl show minio -p ExecMainStartTimestampMonotonic --value") == "0"
    assert host.check_output("systemctl show minio -p NRestarts --value") == "0"


def test_minio_client_and_boto3_are_installed(host):
    assert host.package("minio-client").is_installed
    assert host.file("/usr/bin/minio-client").is_file
    assert host.package("python3-boto3").is_installed


def test_system_user_and_data_directory(host):
    user = host.user("minio")
    assert user.uid < 1000 and user.shell == "/usr/sbin/nologin" and user.group == "minio"
    data = host.file("/var/lib/minio")
    assert (data.user, data.group, data.mode) == ("minio", "minio", 0o750)
    config = host.file("/etc/minio")
    assert (config.user, config.group, config.mode) == ("root", "minio", 0o750)


def test_environment_file_holds_the_root_credentials_privately(host):
    env = host.file("/etc/default/minio")
    assert (env.user, env.group, env.mode) == ("root", "minio", 0o640)
    content = env.content_string
    assert content.startswith("# Managed by selfhost.dify (role minio); local edits are overwritten.\n")
    lines = content.splitlines()
    assert f'MINIO_ROOT_USER="{VARS["minio_root_user"]}"' in lines
    assert f'MINIO_ROOT_PASSWORD="{VARS["minio_root_password"]}"' in lines
    assert 'MINIO_VOLUMES="/var/lib/minio"' in lines
    assert 'MINIO_OPTS="--address 127.0.0.1:9000 --console-address 127.0.0.1:9001 --certs-dir /etc/minio/certs"' in lines
    assert "minioadmin" not in content
    assert host.run("runuser -u nobody -- cat /etc/default/minio").rc != 0


def test_units_pass_systemd_analyze_verify(host):
    verify = host.run("systemd-analyze verify --man=no /etc/systemd/system/minio.service "
                      "/etc/systemd/system/minio-s3-proxy.socket /etc/systemd/system/minio-s3-proxy.service")
    assert verify.rc == 0, verify.stderr
    props = dict(line.split("=", 1) for line in host.check_output(
        "systemctl show minio -p User -p EnvironmentFiles -p NoNewPrivileges -p ProtectSystem -p ReadWritePaths "
        "-p Type").splitlines())
    assert props["User"] == "minio" and props["Type"] == "notify"
    assert props["EnvironmentFiles"].startswith("/etc/default/minio")
    assert props["NoNewPrivileges"] == "yes" and props["ProtectSystem"] == "strict"
    assert props["ReadWritePaths"] == "/var/lib/minio"


def test_service_is_enabled_but_not_started(host):
    service = host.service("minio")
    assert service.is_enabled and not service.is_running
    socket = host.service("minio-s3-proxy.socket")
    assert socket.is_enabled and not socket.is_running
    ip = helpers.container_ip(NAME)
    assert f"ListenStream={ip}:9000" in host.file("/etc/systemd/system/minio-s3-proxy.socket").content_string
    listening = host.check_output("ss -Hltn")
    assert ":9000 " not in listening and ":9001 " not in listening


def test_an_artifact_with_another_sha256_is_refused():
    before = helpers.docker("exec", NAME, "sha256sum", "/usr/local/bin/minio").stdout
    proc = helpers.molecule_playbook("converge.yml", "--tags", "minio_install",
                                     "-e", "minio_artifact_sha256=" + "0" * 64, check=False)
    assert proc.returncode != 0, proc.stdout[-3000:]
    assert "did not match" in proc.stdout, proc.stdout[-3000:]
    assert helpers.recap(proc.stdout)[NAME]["changed"] == 0
    assert helpers.docker("exec", NAME, "sha256sum", "/usr/local/bin/minio").stdout == before


# -- idempotence seen from outside and drift (these edit the host: keep them last) -----------

def test_check_mode_on_the_converged_host_reports_no_change():
    helpers.assert_check_mode_clean("converge.yml", hosts=HOSTS)


def test_hand_edits_are_detected_and_put_back():
    helpers.docker("exec", NAME, "sed", "-i", "s/--address 127.0.0.1:9000/--address :9000/", "/etc/default/minio")
    helpers.docker("exec", NAME, "chmod", "0644", "/etc/default/minio")
    env_task = "selfhost.dify.minio : Configure | Write the environment file (root credentials, addresses)"
    checked = helpers.molecule_playbook("converge.yml", "--check", "--diff", "--tags", "minio_configure").stdout
    assert env_task in helpers.changed_tasks(checked)[NAME]
    converged = helpers.molecule_playbook("converge.yml").stdout
    assert env_task in helpers.changed_tasks(converged)[NAME]
    env = helpers.docker("exec", NAME, "stat", "-c", "%a %U:%G", "/etc/default/minio").stdout.strip()
    assert env == "640 root:minio"
    assert "--address 127.0.0.1:9000" in helpers.docker("exec", NAME, "cat", "/etc/default/minio").stdout
    helpers.assert_no_changes(helpers.molecule_playbook("converge.yml").stdout, hosts=HOSTS)
