"""Shared helpers for the selfhost.dify test suite.

Everything here drives real tools (docker CLI, ansible-playbook) as a user would;
nothing is mocked. Test hosts are the systemd images built by scripts/build-images.sh.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = ROOT / ".venv" / "bin"

# The flags a systemd container needs on this kind of machine (no --privileged).
SYSTEMD_RUN_FLAGS = [
    "--cap-add", "SYS_ADMIN", "--cap-add", "NET_ADMIN",
    "--security-opt", "seccomp=unconfined",
    "--cgroupns=host", "-v", "/sys/fs/cgroup:/sys/fs/cgroup:rw",
    "--tmpfs", "/run", "--tmpfs", "/run/lock",
]

RECAP_RE = re.compile(
    r"^(?P<host>\S+)\s+:\s+ok=(?P<ok>\d+)\s+changed=(?P<changed>\d+)\s+"
    r"unreachable=(?P<unreachable>\d+)\s+failed=(?P<failed>\d+)",
    re.MULTILINE,
)


def tool(name: str) -> str:
    """Path of a tool from the project venv, falling back to PATH."""
    candidate = VENV_BIN / name
    return str(candidate) if candidate.exists() else (shutil.which(name) or name)


def run(cmd, check=True, timeout=900, env=None, cwd=None, input=None):
    """Run a command, return CompletedProcess with text output (stdout+stderr merged)."""
    full_env = dict(os.environ)
    if env:
        full_env.update(env)
    proc = subprocess.run(
        [str(c) for c in cmd], cwd=cwd or ROOT, env=full_env, input=input, check=False,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=timeout,
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"command failed ({proc.returncode}): {' '.join(map(str, cmd))}\n{proc.stdout[-6000:]}")
    return proc


def docker(*args, check=True, timeout=300):
    return run(["docker", *args], check=check, timeout=timeout)


def start_systemd_container(name: str, image: str = "selfhost-dify/debian:13",
                            network: str | None = None, extra: list[str] | None = None) -> str:
    """Start a bare-server container (systemd as PID 1) and wait until systemd is up."""
    docker("rm", "-f", name, check=False)
    cmd = ["run", "-d", "--name", name, "--hostname", name, *SYSTEMD_RUN_FLAGS]
    if network:
        cmd += ["--network", network]
    cmd += list(extra or []) + [image]
    docker(*cmd)
    wait_for_systemd(name)
    return name


def wait_for_systemd(name: str, timeout: float = 60) -> None:
    deadline = time.time() + timeout
    state = ""
    while time.time() < deadline:
        state = docker("exec", name, "systemctl", "is-system-running", check=False).stdout.strip()
        if state in ("running", "degraded"):
            return
        time.sleep(1)
    raise AssertionError(f"{name}: systemd did not come up (state {state!r})")


def container_ip(name: str, network: str | None = None) -> str:
    fmt = "{{range .NetworkSettings.Networks}}{{.IPAddress}} {{end}}"
    if network:
        fmt = "{{(index .NetworkSettings.Networks \"%s\").IPAddress}}" % network
    return docker("inspect", "-f", fmt, name).stdout.split()[0]


def ansible_playbook(args, env=None, check=False, timeout=1800):
    """Run ansible-playbook from the checkout (ansible.cfg applies)."""
    base_env = {"ANSIBLE_FORCE_COLOR": "0", "ANSIBLE_NOCOLOR": "1", "PY_COLORS": "0"}
    base_env.update(env or {})
    return run([tool("ansible-playbook"), *args], check=check, env=base_env, timeout=timeout)


def recap(output: str) -> dict[str, dict[str, int]]:
    """Parse PLAY RECAP lines into {host: {ok, changed, unreachable, failed}}."""
    result = {}
    for m in RECAP_RE.finditer(output):
        result[m.group("host")] = {k: int(m.group(k)) for k in ("ok", "changed", "unreachable", "failed")}
    return result


def fingerprint(container: str, paths=("/etc", "/var/lib/dpkg/status", "/usr/local")) -> str:
    """A digest of a host's configuration state: every regular file under `paths` with its
    content hash, mode and owner, plus the installed package list. Used to prove that a
    rejected run changed nothing. Runtime-churning files are excluded."""
    script = (
        "find %s -xdev \\( -path /etc/machine-id -o -path /etc/ld.so.cache -o -path '/etc/ssh/ssh_host_*' \\) -prune "
        "-o -type f -printf '%%p %%m %%u:%%g\\n' 2>/dev/null | sort; "
        "find %s -xdev -type f -not -path /etc/machine-id -not -path /etc/ld.so.cache 2>/dev/null | sort | xargs -r sha256sum"
    ) % (" ".join(paths), " ".join(paths))
    out = docker("exec", container, "sh", "-c", script).stdout
    return out
