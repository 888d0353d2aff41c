"""site.yml validates every role's inputs on every host before it changes anything.

Three fresh bare servers (systemd containers of the Debian 13 image, on their own network)
form the three-host layout: edge1 (edge), app1 (dify), data1 (postgresql, redis,
object_storage). The inventory is valid for every role except for what a case breaks.
`ansible-playbook site.yml` is run as README says, over the docker connection.

- A wrong input for the last roles (the edge's ACME e-mail, the Dify admin's e-mail) stops
  the run in its first play: every error of every host is listed at once, and no host's
  configuration state (helpers.fingerprint) differs from before.
- `--tags dify` on hosts where Docker and the data services are missing stops at once and
  names what to converge first; nothing changes either.
"""
from __future__ import annotations

import contextlib
import hashlib
import uuid

import pytest
import yaml

from tests import helpers

pytestmark = pytest.mark.docker

HOSTS = {"edge1": ("edge",), "app1": ("dify",), "data1": ("postgresql", "redis", "object_storage")}
# Valid settings for every role (test-only values); each case breaks some of them.
VALID = {
    "selfhost_domain": "dify.validation.test",
    "selfhost_edge_tls": "acme",
    "selfhost_edge_acme_email": "ops@validation.test",
    "dify_admin_email": "admin@validation.test",
    "dify_admin_password": "test-only-Admin-3k8v1m6q",
    "postgresql_dify_password": "test-only-pg-2f7c9e1a4b6d",
    "redis_dify_password": "test-only-redis-8a3d5f0c2e91",
    "redis_admin_password": "test-only-redis-admin-5e0b7d2c",
    "backup_password": "test-only-backup-9c4a1e7f3b",
    "selfhost_object_storage_access_key": "TESTONLYS3KEY7Q2W9E4",
    "selfhost_object_storage_secret_key": "test-only-s3-secret-6b1e4c9a7d3f",
    "seaweedfs_admin_access_key": "TESTONLYADMIN5R8T1Y3",
    "seaweedfs_admin_secret_key": "test-only-s3-admin-0d9f2a7c5e1b",
    "base_admin_users": [{"name": "admin", "sudo": True, "authorized_keys": [
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKRWxFdRz7cLQrz1wOcVu3XCyUEhW0Gm3XauacqtJP0q test-only"]}],
    "base_chrony_set_clock": False,
    "base_chrony_servers": [],
    "base_chrony_pools": [],
    "redis_kernel_settings_apply": False,
    "docker_package_source": "distro",
    "docker_default_address_pools": [{"base": "10.213.0.0/16", "size": 24}],
}
SECRETS = [v for k, v in VALID.items() if "password" in k or "secret" in k]


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """The three fresh hosts on one network, and a function that writes an inventory for them."""
    network = f"selfhost-test-validation-{uuid.uuid4().hex[:8]}"
    helpers.docker("network", "create", network)
    with contextlib.ExitStack() as stack:
        stack.callback(helpers.docker, "network", "rm", network, check=False)
        containers = {host: stack.enter_context(helpers.throwaway_host(f"validation-{host}", extra=["--network", network]))
                      for host in HOSTS}
        addresses = {host: helpers.container_ip(name, network) for host, name in containers.items()}
        # The SeaweedFS server arrives as a file on the controller with its sha256 (the
        # preflight checks both); a stand-in file serves, nothing gets that far.
        artifact = tmp_path_factory.mktemp("artifacts") / "seaweedfs.whl"
        artifact.write_bytes(b"stand-in for the SeaweedFS artifact; the run stops before it is used\n")

        def inventory(path, variables):
            merged = {**VALID, "seaweedfs_artifact_path": str(artifact),
                      "seaweedfs_artifact_sha256": hashlib.sha256(artifact.read_bytes()).hexdigest(), **variables}
            data = {"all": {
                "vars": {"ansible_connection": "community.docker.docker",
                         "ansible_python_interpreter": "/usr/bin/python3", **merged},
                "hosts": {host: {"ansible_host": containers[host], "selfhost_private_address": addresses[host]}
                          for host in HOSTS},
                "children": {group: {"hosts": {host: {} for host, groups in HOSTS.items() if group in groups}}
                             for group in ("edge", "dify", "postgresql", "redis", "object_storage")}}}
            path.write_text(yaml.safe_dump(data, sort_keys=False))
            return path

        yield containers, inventory


def fingerprints(containers):
    return {host: helpers.fingerprint(name) for host, name in containers.items()}


def run_site(inventory, *args):
    # JSON results keep each message on one line.
    return helpers.ansible_playbook(["-i", str(inventory), "site.yml", *args],
                                    env={"ANSIBLE_CALLBACK_RESULT_FORMAT": "json"}, timeout=900)


def test_bad_input_for_the_last_roles_stops_every_host_before_any_change(site, tmp_path):
    containers, inventory = site
    path = inventory(tmp_path / "inventory.yml", {"selfhost_edge_acme_email": "ops-at-validation.test",
                                                  "dify_admin_email": "admin-at-validation.test"})
    before = fingerprints(containers)
    proc = run_site(path)
    after = fingerprints(containers)

    assert proc.returncode != 0, proc.stdout[-4000:]
    out = proc.stdout
    # The whole list, each error on its host and naming its role and variable.
    assert "selfhost.dify validation: nothing was changed on any host; on edge1" in out, out[-4000:]
    assert "caddy: selfhost_edge_acme_email: 'ops-at-validation.test' is not an e-mail address" in out, out[-4000:]
    assert "selfhost.dify validation: nothing was changed on any host; on app1" in out, out[-4000:]
    assert "dify: dify_admin_email: 'admin-at-validation.test' is not an e-mail address" in out, out[-4000:]
    # The first play stopped the run: no role's task ran, on any host.
    assert "PLAY [Base operating system]" not in out, out[-4000:]
    result = helpers.recap(out)
    assert set(result) == set(HOSTS), result
    assert all(r["changed"] == 0 for r in result.values()), result
    for secret in SECRETS:
        assert secret not in out, "a secret was shown in the output"
    assert before == after, "a host changed although the run was refused"


def test_valid_inputs_pass_the_validation(site, tmp_path):
    """The positive control: the same inventory without the mistakes passes the first play
    (a check-mode run of the validation alone: --tags never runs only `always` plays)."""
    containers, inventory = site
    before = fingerprints(containers)
    proc = run_site(inventory(tmp_path / "inventory.yml", {}), "--tags", "never")
    assert proc.returncode == 0, proc.stdout[-4000:]
    assert fingerprints(containers) == before


def test_a_tag_without_its_prerequisites_stops_and_names_them(site, tmp_path):
    containers, inventory = site
    path = inventory(tmp_path / "inventory.yml", {})
    before = fingerprints(containers)
    proc = run_site(path, "--tags", "dify")
    after = fingerprints(containers)

    assert proc.returncode != 0, proc.stdout[-4000:]
    out = proc.stdout
    assert "selfhost.dify.dify: nothing was changed; app1 lacks what the role needs" in out, out[-4000:]
    assert "Docker: the engine does not run here" in out and "site.yml --tags docker" in out, out[-4000:]
    for service in ("PostgreSQL login as Dify", "Redis AUTH as Dify", "S3 bucket with Dify's key"):
        assert service in out, f"{service!r} not named:\n{out[-4000:]}"
    assert "site.yml --tags postgresql,redis,object_storage" in out, out[-4000:]
    assert helpers.recap(out)["app1"]["changed"] == 0
    for secret in SECRETS:
        assert secret not in out, "a secret was shown in the output"
    assert before == after, "a host changed although the run was refused"
