"""selfhost.dify.seaweedfs and selfhost.dify.minio refuse bad input before they change anything.

One fresh bare server (a systemd container of the Debian 13 image) serves the whole
module. Every case applies one of the roles with one kind of mistake through the docker
connection and asserts that the run fails, that the output names the variable at fault
(never the secret's value), and that the host's configuration state (files under /etc and
/usr/local with their modes and owners, and the dpkg status) is exactly what it was before.

The cases share one ansible-playbook run of each role (helpers.RejectionBatch): each is an
inventory host of its own, pointing at the server and carrying the case's variables, and each
test reads its host's part of the output.

The positive controls run the same playbooks with valid variables in check mode, limited
to the preflight, and show that it passes: the cases fail for the reason they state.
"""
from __future__ import annotations

import functools
import hashlib

import pytest
import yaml

from tests import helpers

pytestmark = pytest.mark.docker

PLAYBOOKS = helpers.ROOT / "tests" / "integration" / "playbooks"
SHA = "a" * 64
DIFY_KEYS = {
    "selfhost_object_storage_access_key": "dify-test-key",
    "selfhost_object_storage_secret_key": "dify-test-secret-7f3c9e21",
}
VALID = {
    "seaweedfs": {
        "selfhost_object_storage_backend": "seaweedfs",
        "seaweedfs_artifact_url": "http://mirror.invalid/seaweedfs/linux_amd64.tar.gz",
        "seaweedfs_artifact_sha256": SHA,
        "seaweedfs_admin_access_key": "admin-test-key",
        "seaweedfs_admin_secret_key": "admin-test-secret-0b8d2f64",
        **DIFY_KEYS,
    },
    "minio": {
        "selfhost_object_storage_backend": "minio",
        "minio_artifact_url": "http://mirror.invalid/pgsty-minio/minio",
        "minio_artifact_sha256": SHA,
        "minio_root_user": "root-test-user",
        "minio_root_password": "root-test-password-4e1a",
        **DIFY_KEYS,
    },
}
# Secret values that must never appear in any output.
SECRETS = ["admin-test-secret-0b8d2f64", "root-test-password-4e1a", "dify-test-secret-7f3c9e21"]


@pytest.fixture(scope="module")
def server():
    with helpers.throwaway_host("object-storage-preflight", image="selfhost-dify/debian:13") as name:
        yield name


def case_vars(role, changes):
    """VALID[role] updated by `changes` (a value of None removes the variable)."""
    return {k: v for k, v in {**VALID[role], **changes}.items() if v is not None}


def apply_role(server, tmp_path, role, changes, *extra):
    """Apply `role` over the docker connection with VALID[role] updated by `changes`
    (a value of None removes the variable)."""
    variables = case_vars(role, changes)
    target = {"ansible_python_interpreter": "/usr/bin/python3", "ansible_connection": "community.docker.docker",
              "ansible_host": server, **variables}
    inventory = {"all": {"hosts": {"target": target}}}
    path = tmp_path / "inventory.yml"
    path.write_text(yaml.safe_dump(inventory, sort_keys=False))
    return helpers.ansible_playbook(["-i", str(path), str(PLAYBOOKS / f"{role}.yml"), *extra],
                                    env={"ANSIBLE_CALLBACK_RESULT_FORMAT": "json"}, timeout=600)


CASES = {
    "seaweedfs: missing secrets": ("seaweedfs", {
        "seaweedfs_admin_access_key": None, "seaweedfs_admin_secret_key": None,
        "selfhost_object_storage_secret_key": None}, [
        "seaweedfs_admin_access_key: is missing", "seaweedfs_admin_secret_key: is missing",
        "selfhost_object_storage_secret_key: is missing"]),
    "seaweedfs: sample secrets": ("seaweedfs", {
        "seaweedfs_admin_access_key": "minioadmin", "seaweedfs_admin_secret_key": "minioadmin",
        "selfhost_object_storage_secret_key": "difyai123456"}, [
        "seaweedfs_admin_access_key: is a published sample", "seaweedfs_admin_secret_key: is a published sample",
        "selfhost_object_storage_secret_key: is a published sample"]),
    "seaweedfs: weak secrets": ("seaweedfs", {
        "seaweedfs_admin_secret_key": "s3cr3t-short", "selfhost_object_storage_secret_key": "aaaaaaaaaaaaaaaaaaaa"}, [
        "seaweedfs_admin_secret_key: is too short", "selfhost_object_storage_secret_key: is too weak"]),
    "seaweedfs: bad sha256 and url": ("seaweedfs", {
        "seaweedfs_artifact_sha256": "d41d8cd98f00b204e9800998ecf8427e", "seaweedfs_artifact_url": "ftp://mirror/weed.tar.gz"}, [
        "seaweedfs_artifact_sha256: 'd41d8cd98f00b204e9800998ecf8427e' is not a SHA-256 checksum",
        "seaweedfs_artifact_url: 'ftp://mirror/weed.tar.gz' must start with http://"]),
    "seaweedfs: url and path both set": ("seaweedfs", {"seaweedfs_artifact_path": "/nonexistent/weed.tar.gz"}, [
        "seaweedfs_artifact_url / seaweedfs_artifact_path: set exactly one"]),
    "seaweedfs: bad ports": ("seaweedfs", {
        "selfhost_object_storage_port": 70000, "seaweedfs_master_port": 60000, "seaweedfs_filer_port": 8080}, [
        "selfhost_object_storage_port: 70000 is outside 1-65535",
        "seaweedfs_master_port: 60000 is above 55535",
        "seaweedfs_filer_port: port 8080 is also used by seaweedfs_volume_port"]),
    "seaweedfs: wrong backend, scheme and address": ("seaweedfs", {
        "selfhost_object_storage_backend": "minio", "selfhost_object_storage_scheme": "https",
        "seaweedfs_s3_addresses": ["10.0.0.300"]}, [
        "selfhost_object_storage_backend: is minio, but the seaweedfs role serves only the seaweedfs backend",
        "selfhost_object_storage_scheme: must be http",
        "seaweedfs_s3_addresses[0]: '10.0.0.300' is not an IP address"]),
    "minio: missing secrets": ("minio", {"minio_root_user": None, "minio_root_password": None}, [
        "minio_root_user: is missing", "minio_root_password: is missing"]),
    "minio: the minioadmin default": ("minio", {"minio_root_user": "minioadmin", "minio_root_password": "minioadmin"}, [
        "minio_root_user: is a published sample", "minio_root_password: is a published sample"]),
    "minio: weak and sample secrets": ("minio", {
        "minio_root_password": "abc123", "selfhost_object_storage_secret_key": "difyai123456"}, [
        "minio_root_password: is too short", "selfhost_object_storage_secret_key: is a published sample"]),
    "minio: secret longer than MinIO takes": ("minio", {"minio_root_password": "Zx9-" * 11}, [
        "minio_root_password: is longer than 40 characters"]),
    "minio: bad sha256 and url": ("minio", {"minio_artifact_sha256": "sha256:xyz", "minio_artifact_url": "mirror/minio"}, [
        "minio_artifact_sha256: 'sha256:xyz' is not a SHA-256 checksum", "minio_artifact_url: 'mirror/minio'"]),
    "minio: bad ports": ("minio", {"selfhost_object_storage_port": 0, "minio_console_port": 65536}, [
        "selfhost_object_storage_port: 0 is outside 1-65535", "minio_console_port: 65536 is outside 1-65535"]),
    "minio: half a TLS pair": ("minio", {"minio_tls_certificate": "/nonexistent/cert.pem"}, [
        "minio_tls_certificate / minio_tls_key: set both",
        "minio_tls_certificate / minio_tls_key: /nonexistent/cert.pem is not a file on the controller",
        "selfhost_object_storage_scheme: must be https when minio_tls_certificate is set"]),
}


@pytest.fixture(scope="module")
def rejections(server, tmp_path_factory):
    """role -> the run of all its cases, a host each (helpers.RejectionBatch); a role's run
    starts when its first case asks for it."""
    return functools.cache(lambda role: helpers.RejectionBatch(
        server, PLAYBOOKS / f"{role}.yml",
        {name: case_vars(role, changes) for name, (case_role, changes, _expected) in CASES.items()
         if case_role == role},
        tmp_path_factory.mktemp(f"{role}-batch")).run())


@pytest.mark.parametrize("case", list(CASES), ids=list(CASES))
def test_bad_input_fails_before_any_change(rejections, case):
    role, changes, expected = CASES[case]
    rejections(role).assert_rejected(
        case, [f"selfhost.dify.{role} preflight: nothing was changed", *expected],
        hidden=SECRETS + [v for v in changes.values() if isinstance(v, str) and "secret" in v])


@pytest.mark.parametrize("role", ["seaweedfs", "minio"])
def test_a_controller_file_with_another_sha256_is_refused(server, tmp_path, role):
    artifact = tmp_path / ("linux_amd64.tar.gz" if role == "seaweedfs" else "minio")
    artifact.write_bytes(b"not the artifact the checksum names\n")
    actual = hashlib.sha256(artifact.read_bytes()).hexdigest()
    before = helpers.fingerprint(server)
    proc = apply_role(server, tmp_path, role, {f"{role}_artifact_url": "", f"{role}_artifact_path": str(artifact)})
    assert proc.returncode != 0
    assert f"{role}_artifact_path: {artifact} has the SHA-256 {actual}, which is not {role}_artifact_sha256" in proc.stdout
    assert helpers.fingerprint(server) == before


@pytest.mark.parametrize("role", ["seaweedfs", "minio"])
def test_valid_input_passes_the_preflight(server, tmp_path, role):
    before = helpers.fingerprint(server)
    proc = apply_role(server, tmp_path, role, {}, "--check", "--tags", f"{role}_preflight")
    assert proc.returncode == 0, proc.stdout[-4000:]
    assert f"TASK [selfhost.dify.{role} : Preflight | Stop before any change if a check failed]" in proc.stdout
    counts = helpers.recap(proc.stdout)["target"]
    assert counts["changed"] == 0 and counts["failed"] == 0
    assert before == helpers.fingerprint(server)
