"""Behaviour of selfhost.dify.docker on the converged molecule hosts (debian13, debian12).

Both hosts use docker_package_source: distro (Docker's own repository is not reachable from
the test machines). docker-debian13 runs Debian's docker.io 26.1 with the docker-compose
package (Compose v2), the default address pools and log rotation 5m x 2; docker-debian12 runs
docker.io 20.10 with Compose v2 installed from an artifact (the plugin binary of Debian 13's
docker-compose, recorded by prepare.yml), its own pools, a bridge address, a registry mirror
and log-opts extended through docker_daemon_extra. The user `deploy` is in docker_users on
both. prepare.yml added a test-only drop-in to docker.service on debian13 (a container quirk)
and busybox-static, from which the tests build a tiny image with `docker import` (no registry
is reachable).

Everything is checked as an operator or a user of the engine sees it: containers that run,
what `docker inspect` and `docker info` report, a network created on demand, compose bringing
a project up, the plain user `deploy` using docker without sudo. The check-mode and drift
tests at the end run the converge playbook again, so they run last.
"""
from __future__ import annotations

import ipaddress
import json
import os
import sys
from pathlib import Path

import pytest
import testinfra
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))
from tests import helpers  # noqa: E402  pylint: disable=wrong-import-position

INVENTORY = helpers.ansible_inventory(helpers.molecule_inventory())
HOSTS = sorted(INVENTORY["_meta"]["hostvars"])
testinfra_hosts = [f"docker://{name}" for name in HOSTS]
D13 = next(h for h in HOSTS if h.endswith("debian13"))
D12 = next(h for h in HOSTS if h.endswith("debian12"))
HOSTVARS = INVENTORY["_meta"]["hostvars"]
DEFAULTS = yaml.safe_load((helpers.ROOT / "roles" / "docker" / "defaults" / "main.yml").read_text())

IMAGE = "selfhost-test/busybox:1"
USER = "deploy"
PLUGIN = "/usr/local/lib/docker/cli-plugins/docker-compose"
DAEMON_JSON = "/etc/docker/daemon.json"


def setting(name: str, variable: str):
    """The value of a role variable on host `name`: inventory, else the role's default."""
    return HOSTVARS[name].get(variable, DEFAULTS[variable])


def expected_daemon_json(name: str) -> dict:
    settings = {
        "log-driver": "json-file",
        "log-opts": {"max-size": str(setting(name, "docker_log_max_size")),
                     "max-file": str(setting(name, "docker_log_max_file"))},
        "live-restore": True,
        "default-address-pools": [{"base": p["base"], "size": int(p["size"])}
                                  for p in setting(name, "docker_default_address_pools")],
    }
    if setting(name, "docker_bip"):
        settings["bip"] = setting(name, "docker_bip")
    if setting(name, "docker_registry_mirrors"):
        settings["registry-mirrors"] = setting(name, "docker_registry_mirrors")
    for key, value in setting(name, "docker_daemon_extra").items():
        settings[key] = {**settings[key], **value} if isinstance(value, dict) and key in settings else value
    return settings


def sh(name: str, script: str, user: str | None = None, check: bool = True):
    """`sh -c script` in container `name` (as `user`, a login-less exec like a cron job's)."""
    return helpers.docker("exec", *(["-u", user] if user else []), name, "sh", "-c", script, check=check)


def inspect(name: str, what: str, fmt: str):
    return json.loads(sh(name, f"docker inspect --format '{{{{json {fmt}}}}}' {what}").stdout)


# The image: busybox-static's binary with a few applet links, imported as a tarball.
BUILD_IMAGE = (
    "set -e; d=$(mktemp -d); mkdir $d/bin; cp /bin/busybox $d/bin/busybox;"
    " for applet in sh sleep echo cat; do ln -s busybox $d/bin/$applet; done;"
    f" tar -C $d -c . | docker import -c 'CMD [\"/bin/sh\"]' - {IMAGE} >/dev/null; rm -rf $d"
)


@pytest.fixture(scope="module", autouse=True)
def image():
    for name in HOSTS:
        sh(name, BUILD_IMAGE)


# -- the engine ----------------------------------------------------------------------------------

@pytest.mark.parametrize("name", HOSTS)
def test_a_container_runs_from_a_locally_imported_image(name):
    assert sh(name, f"docker run --rm {IMAGE} echo hello from a container").stdout.strip() == "hello from a container"


@pytest.mark.parametrize("name", HOSTS)
def test_the_daemon_uses_overlay2_and_live_restore(name):
    info = json.loads(sh(name, "docker info --format '{{json .}}'").stdout)
    assert info["LiveRestoreEnabled"] is True
    assert info["LoggingDriver"] == "json-file"
    assert info["Driver"] == "overlay2"
    mirrors = [m.rstrip("/") for m in info["RegistryConfig"]["Mirrors"] or []]
    assert mirrors == [m.rstrip("/") for m in setting(name, "docker_registry_mirrors")]


@pytest.mark.parametrize("name", HOSTS)
def test_new_containers_rotate_their_json_logs(name):
    container = "selfhost-test-logs"
    sh(name, f"docker rm -f {container} >/dev/null 2>&1; docker run -d --name {container} {IMAGE} sleep 300")
    try:
        log_config = inspect(name, container, ".HostConfig.LogConfig")
    finally:
        sh(name, f"docker rm -f {container}")
    assert log_config["Type"] == "json-file"
    assert log_config["Config"] == expected_daemon_json(name)["log-opts"]
    if name == D12:
        assert log_config["Config"]["compress"] == "true"  # merged in from docker_daemon_extra


@pytest.mark.parametrize("name", HOSTS)
def test_networks_take_their_subnets_from_the_address_pools(name):
    pools = [(ipaddress.ip_network(p["base"]), int(p["size"])) for p in setting(name, "docker_default_address_pools")]
    sh(name, "docker network rm selfhost-test-pool >/dev/null 2>&1; docker network create selfhost-test-pool")
    try:
        config = inspect(name, "selfhost-test-pool", ".IPAM.Config")
    finally:
        sh(name, "docker network rm selfhost-test-pool")
    subnet = ipaddress.ip_network(config[0]["Subnet"])
    assert any(subnet.subnet_of(base) and subnet.prefixlen == size for base, size in pools), (subnet, pools)

    # The default bridge: docker_bip when set, else a subnet of the pools (daemon.json was in
    # place before the daemon first started).
    bridge = ipaddress.ip_network(inspect(name, "bridge", ".IPAM.Config")[0]["Subnet"])
    bip = setting(name, "docker_bip")
    if bip:
        assert bridge == ipaddress.ip_interface(bip).network
        assert f"inet {bip} " in sh(name, "ip -4 addr show docker0").stdout
    else:
        assert any(bridge.subnet_of(base) for base, _size in pools), (bridge, pools)
    assert not bridge.overlaps(ipaddress.ip_network(HOSTVARS[name].get("selfhost_dify_subnet", "172.30.0.0/24")))


@pytest.mark.parametrize("name", HOSTS)
def test_the_python_sdk_reaches_the_daemon(name):
    out = sh(name, "python3 -c 'import docker; print(docker.from_env().ping())'").stdout.strip()
    assert out == "True"


# -- users ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", HOSTS)
def test_a_member_of_docker_users_runs_docker_without_sudo(name):
    assert "docker" in sh(name, "id -nG", user=USER).stdout.split()
    assert sh(name, f"docker run --rm {IMAGE} echo ok", user=USER).stdout.strip() == "ok"
    # Anyone else is refused by the socket's permissions.
    refused = sh(name, "docker ps", user="nobody", check=False)
    assert refused.returncode != 0 and "permission denied" in refused.stdout.lower(), refused.stdout


# -- Compose v2 ----------------------------------------------------------------------------------

COMPOSE_FILE = f"""services:
  app:
    image: {IMAGE}
    pull_policy: never
    command: ["sleep", "300"]
"""


@pytest.mark.parametrize("name", HOSTS)
def test_compose_v2_brings_up_a_one_service_project(name):
    project = f"/home/{USER}/selfhost-test-compose"
    sh(name, f"mkdir -p {project} && cat > {project}/compose.yaml <<'EOF'\n{COMPOSE_FILE}EOF", user=USER)
    try:
        assert sh(name, "docker compose version --short", user=USER).stdout.strip().startswith("2.")
        sh(name, f"cd {project} && docker compose -p selfhost-test up -d --wait", user=USER)
        ps = sh(name, f"cd {project} && docker compose -p selfhost-test ps --format json", user=USER).stdout
        states = [json.loads(line) for line in ps.splitlines() if line.strip()]
        assert [(s["Service"], s["State"]) for s in states] == [("app", "running")], ps
    finally:
        sh(name, f"cd {project} && docker compose -p selfhost-test down --timeout 0; rm -rf {project}", user=USER, check=False)


def test_compose_comes_from_the_package_on_debian13():
    host = testinfra.get_host(f"docker://{D13}")
    assert host.package("docker-compose").is_installed
    assert host.file("/usr/libexec/docker/cli-plugins/docker-compose").is_file
    assert not host.file(PLUGIN).exists


def test_compose_comes_from_the_checked_artifact_on_debian12():
    host = testinfra.get_host(f"docker://{D12}")
    record = Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"]) / "compose-artifact.yml"
    sha256 = yaml.safe_load(record.read_text())["selfhost_test_compose_sha256"]
    plugin = host.file(PLUGIN)
    assert (plugin.user, plugin.group, plugin.mode) == ("root", "root", 0o755)
    assert plugin.sha256sum == sha256
    # Debian 12's docker-compose (Compose v1) is not what the role installs.
    assert not host.package("docker-compose").is_installed


# -- files ---------------------------------------------------------------------------------------

def test_daemon_json_holds_the_managed_settings(host):
    name = host.backend.name
    assert json.loads(host.file(DAEMON_JSON).content_string) == expected_daemon_json(name)
    note = host.file(f"{DAEMON_JSON}.README").content_string
    assert note.startswith("# Managed by selfhost.dify (role docker)")


# -- the playbook again: validation, idempotence seen from outside, drift (keep them last) ------

def test_a_setting_the_daemon_does_not_know_is_refused_before_it_is_written():
    """Debian 13's dockerd (26.1) validates the candidate file; daemon.json stays as it was."""
    proc = helpers.molecule_playbook("converge.yml", "--limit", D13, "--tags", "docker_config",
                                     "-e", json.dumps({"docker_daemon_extra": {"no-such-setting": True}}), check=False)
    assert proc.returncode != 0
    assert "failed to validate" in proc.stdout
    assert "the following directives don't match any configuration option: no-such-setting" in proc.stdout
    assert json.loads(sh(D13, f"cat {DAEMON_JSON}").stdout) == expected_daemon_json(D13)


def test_check_mode_on_converged_hosts_reports_no_change():
    helpers.assert_check_mode_clean("converge.yml", hosts=HOSTS)


def test_a_hand_edited_daemon_json_is_put_back_and_containers_survive_the_restart():
    survivor = "selfhost-test-survivor"
    before = {}
    for name in HOSTS:
        sh(name, f"docker rm -f {survivor} >/dev/null 2>&1; docker run -d --name {survivor} {IMAGE} sleep 600")
        before[name] = inspect(name, survivor, ".State")
        # An operator turns on debug logging and shortens the rotation by hand.
        sh(name, "python3 -c 'import json; p=\"%s\"; c=json.load(open(p)); c[\"debug\"]=True;"
                 " c[\"log-opts\"][\"max-size\"]=\"1m\"; json.dump(c, open(p, \"w\"))'" % DAEMON_JSON)
    try:
        converged = helpers.molecule_playbook("converge.yml").stdout
        changed = helpers.changed_tasks(converged)
        for name in HOSTS:
            assert "selfhost.dify.docker : Config | Write /etc/docker/daemon.json" in changed[name], changed
            assert "selfhost.dify.docker : Restart docker" in changed[name], changed
            assert json.loads(sh(name, f"cat {DAEMON_JSON}").stdout) == expected_daemon_json(name)
            assert sh(name, "docker info --format '{{.Debug}}'").stdout.strip() == "false"
            # live-restore: the container kept running through the daemon's restart.
            after = inspect(name, survivor, ".State")
            assert after["Running"] and after["Pid"] == before[name]["Pid"], (before[name], after)
            assert after["StartedAt"] == before[name]["StartedAt"]
    finally:
        for name in HOSTS:
            sh(name, f"docker rm -f {survivor}", check=False)
