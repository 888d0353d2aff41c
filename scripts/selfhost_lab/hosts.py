"""The lab's host containers: the flags of a systemd container, its boot, the cloud-init the
lab plays once, what a container cannot do that a server can, and the facts of a host."""
from __future__ import annotations

import json

from selfhost_lab.common import LabError, docker, log, wait_until
from selfhost_lab.resources import (ADMIN_USER, BACKUPS_MOUNT, IMAGE, LABEL_DEBIAN, LABEL_HOST, LABEL_LAYOUT, LAYOUTS, Lab,
                                    host_address)

# The flags a systemd container needs without --privileged (see tests/helpers.py). SYS_PTRACE:
# the nested Docker's runc opens /proc/<pid>/ns/* of a container whose process is not root
# (Dify's api runs as uid 1001) for `docker exec` and compose healthchecks; without it that
# fails with "setns process: exit status 1". A real server's root has the capability.
SYSTEMD_RUN_FLAGS = [
    "--cap-add", "SYS_ADMIN", "--cap-add", "NET_ADMIN", "--cap-add", "SYS_PTRACE",
    "--security-opt", "seccomp=unconfined",
    "--cgroupns=host", "-v", "/sys/fs/cgroup:/sys/fs/cgroup:rw",
    "--tmpfs", "/run", "--tmpfs", "/run/lock",
    # `docker stop`/`restart` shuts systemd down as a reboot would (SIGTERM only re-executes it).
    "--stop-signal", "SIGRTMIN+3",
]


def wait_for_systemd(container: str, timeout: float = 90) -> None:
    """Wait until systemd in `container` has finished booting (running or degraded)."""
    def systemd_up():
        state = docker("exec", container, "systemctl", "is-system-running", check=False).strip()
        return state in ("running", "degraded")

    wait_until(f"systemd in {container}", systemd_up, timeout)


def wait_for_boot(container: str) -> None:
    wait_for_systemd(container)

    def sshd_up():
        out = docker("exec", container, "sh", "-c",
                     "test -s /etc/ssh/ssh_host_ed25519_key.pub && systemctl is-active ssh.service",
                     check=False)
        return out.strip() == "active"

    wait_until(f"sshd in {container}", sshd_up, 60)


CLOUD_INIT = """set -eu
id -u {user} >/dev/null 2>&1 || useradd --create-home --shell /bin/bash {user}
install -d -m 0700 -o {user} -g {user} /home/{user}/.ssh
printf '%s\\n' "$1" > /home/{user}/.ssh/authorized_keys
chown {user}:{user} /home/{user}/.ssh/authorized_keys
chmod 0600 /home/{user}/.ssh/authorized_keys
printf '%s\\n' '# Written once at creation by the lab (as cloud-init does on a real server).' \\
  '{user} ALL=(ALL) NOPASSWD:ALL' > /etc/sudoers.d/90-lab-cloud-init
chmod 0440 /etc/sudoers.d/90-lab-cloud-init
visudo -cqf /etc/sudoers.d/90-lab-cloud-init
"""


# What a container cannot do that a server can, relaxed for the lab's containers only (never in
# the roles): Debian's redis-server.service has PrivateUsers=yes and ProtectProc=invisible,
# which together fail in a container with status 217/USER (docs/testing.md).
CONTAINER_QUIRKS = """set -e
mkdir -p /etc/systemd/system/redis-server.service.d
printf '%s\\n' '# Written by the lab (scripts/lab.py): containers only, see docs/testing.md.' \\
  '[Service]' 'PrivateUsers=no' > /etc/systemd/system/redis-server.service.d/zz-lab-container.conf
mkdir -p /etc/systemd/system/docker.service.d
printf '%s\n' '# Written by the lab (scripts/lab.py): containers only, see docs/testing.md.' \
  '[Service]' 'Environment=DOCKER_ALLOW_IPV6_ON_IPV4_INTERFACE=1' > /etc/systemd/system/docker.service.d/zz-lab-container.conf
"""


def apply_container_quirks(lab: Lab, host: str) -> None:
    docker("exec", "-i", lab.container(host), "sh", "-s", input=CONTAINER_QUIRKS)


def ensure_volume(lab: Lab, volume: str) -> None:
    """A named volume with the lab's labels (destroy finds it by them)."""
    if docker("volume", "inspect", volume, check=False).strip() in ("", "[]"):
        docker("volume", "create", *[a for label in lab.labels() for a in ("--label", label)], volume)


def create_host(lab: Lab, host: str, layout: str, debian: str, pubkey: str) -> None:
    """Create and boot one lab container, then play cloud-init in it (once). The lab's backups
    volume (ensure_volume, before) is mounted at BACKUPS_MOUNT: it outlives the host."""
    name = lab.container(host)
    volume = lab.volume(host)
    ensure_volume(lab, volume)
    cmd = [
        "run", "-d", "--name", name, "--hostname", host,
        *SYSTEMD_RUN_FLAGS,
        "--network", lab.network, "--ip", host_address(lab, layout, host),
        "-p", "127.0.0.1::22",
        "-v", f"{volume}:/var/lib/docker",
        "-v", f"{lab.backups_volume}:{BACKUPS_MOUNT}",
    ]
    if "edge" in LAYOUTS[layout][host]:
        cmd += ["-p", "127.0.0.1::80", "-p", "127.0.0.1::443"]
    for label in [*lab.labels(), f"{LABEL_LAYOUT}={layout}", f"{LABEL_DEBIAN}={debian}", f"{LABEL_HOST}={host}"]:
        cmd += ["--label", label]
    cmd.append(IMAGE.format(debian=debian))
    log(f"creating {name} (Debian {debian})")
    docker(*cmd)
    try:
        wait_for_boot(name)
        docker("exec", "-i", name, "sh", "-s", "--", pubkey, input=CLOUD_INIT.format(user=ADMIN_USER))
    except LabError:
        docker("rm", "-f", name, check=False)
        raise
    log(f"{name} is up")


def start_host(lab: Lab, host: str) -> None:
    name = lab.container(host)
    log(f"starting {name}")
    docker("start", name)
    wait_for_boot(name)


def published_port(container: str, port: int) -> int:
    out = docker("port", container, f"{port}/tcp").strip().splitlines()
    for line in out:
        if line.startswith("127.0.0.1:"):
            return int(line.rsplit(":", 1)[1])
    raise LabError(f"{container}: port {port} is not published on 127.0.0.1 ({out})")


def host_facts(lab: Lab, host: str) -> dict:
    name = lab.container(host)
    info = json.loads(docker("inspect", name))[0]
    facts = {
        "ansible_port": published_port(name, 22),
        "selfhost_private_address": info["NetworkSettings"]["Networks"][lab.network]["IPAddress"],
        "lab_container": name,
    }
    if "80/tcp" in (info["HostConfig"]["PortBindings"] or {}):
        facts["lab_http_port"] = published_port(name, 80)
        facts["lab_https_port"] = published_port(name, 443)
    facts["host_key"] = " ".join(
        docker("exec", name, "cat", "/etc/ssh/ssh_host_ed25519_key.pub").split()[:2])
    return facts
