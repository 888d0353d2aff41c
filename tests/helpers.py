"""Shared helpers for the selfhost.dify test suite.

Everything here drives real tools (docker CLI, ansible-playbook) as a user would;
nothing is mocked. Test hosts are the systemd images built by scripts/build-images.sh.
"""
from __future__ import annotations

import base64
import contextlib
import json
import os
import re
import shutil
import subprocess
import time
import uuid
from pathlib import Path

import selfhost_lab.hosts
import yaml

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = ROOT / ".venv" / "bin"


# The flags a systemd container needs on this kind of machine (no --privileged): the lab's
# one list (scripts/selfhost_lab/hosts.py; pytest.ini puts scripts/ on the path).
SYSTEMD_RUN_FLAGS = list(selfhost_lab.hosts.SYSTEMD_RUN_FLAGS)

# Wait until systemd in a container has booted (running or degraded).
wait_for_systemd = selfhost_lab.hosts.wait_for_systemd

RECAP_RE = re.compile(
    r"^(?P<host>\S+)\s+:\s+ok=(?P<ok>\d+)\s+changed=(?P<changed>\d+)\s+"
    r"unreachable=(?P<unreachable>\d+)\s+failed=(?P<failed>\d+)",
    re.MULTILINE,
)


def tool(name: str) -> str:
    """Path of a tool from the project venv, falling back to PATH."""
    candidate = VENV_BIN / name
    return str(candidate) if candidate.exists() else (shutil.which(name) or name)


def run(cmd, check=True, timeout=900, env=None, cwd=None, input=None, inherit_ansible_env=True):
    """Run a command, return CompletedProcess with text output (stdout+stderr merged).

    With inherit_ansible_env=False no ANSIBLE_* setting of the caller's environment
    reaches the command (only those in `env`): it runs as a user's shell would."""
    full_env = dict(os.environ)
    if not inherit_ansible_env:
        full_env = {k: v for k, v in full_env.items() if not k.startswith("ANSIBLE_")}
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


@contextlib.contextmanager
def throwaway_host(purpose: str, image: str = "selfhost-dify/debian:13", extra: list[str] | None = None):
    """A fresh bare-server container named selfhost-test-<purpose>-<random>, removed on exit."""
    name = f"selfhost-test-{purpose}-{uuid.uuid4().hex[:8]}"
    start_systemd_container(name, image=image, extra=extra)
    try:
        yield name
    finally:
        docker("rm", "-f", name, check=False)


def assert_rejected_unchanged(container: str, apply, expected=(), hidden=()):
    """Run `apply()` (a role run with bad input against `container`) and assert it failed with
    every text of `expected` in its output, showed none of `hidden` (secrets), reported no
    change, and left the host's fingerprint as it was. Returns the CompletedProcess."""
    before = fingerprint(container)
    proc = apply()
    after = fingerprint(container)
    assert proc.returncode != 0, proc.stdout[-3000:]
    for text in expected:
        assert text in proc.stdout, f"{text!r} not in output:\n{proc.stdout[-4000:]}"
    for secret in hidden:
        assert secret not in proc.stdout, f"a secret was shown in the output:\n{proc.stdout[-4000:]}"
    assert recap(proc.stdout)["target"]["changed"] == 0
    assert before == after, "the rejected run changed the host"
    return proc


class RejectionBatch:
    """Every case of a bad-input test in ONE ansible-playbook run, instead of a run per case.

    Each case ({case id: host variables}) becomes an inventory host (case_01, case_02, ... in
    the order given) that reaches the same `container` over the docker connection and carries
    that case's variables as host vars; each host is also in every group of `groups`. A test
    then asserts on its own host's part of the output with assert_rejected(), as
    assert_rejected_unchanged does for a run of its own: the host failed, its result lines
    name every expected text, its recap says changed=0; and, for the whole run, no hidden
    secret was shown anywhere and the container's fingerprint is what it was before.

    Only for cases that mean the same on one host of many: a case whose variables a role reads
    from another host (the first host of a group) or that needs a layout of its own runs alone.
    run() is called once, by the module-scoped fixture that the first case asks for."""

    RESULT_FORMAT = {"ANSIBLE_CALLBACK_RESULT_FORMAT": "json"}  # one line per result

    def __init__(self, container: str, playbook, cases: dict[str, dict], workdir: Path, groups=(), forks: int = 20,
                 timeout: int = 1800):
        self.container, self.playbook, self.workdir = container, Path(playbook), Path(workdir)
        self.cases = dict(cases)
        self.hosts = {case: f"case_{number:02d}" for number, case in enumerate(self.cases, 1)}
        self.groups, self.forks, self.timeout = tuple(groups), forks, timeout
        self.proc = self.before = self.after = None
        self.results: dict[str, list[str]] = {}
        self.summary: dict[str, dict[str, int]] = {}

    def inventory(self) -> dict:
        hosts = {host: {"ansible_python_interpreter": "/usr/bin/python3",
                        "ansible_connection": "community.docker.docker",
                        "ansible_host": self.container, **self.cases[case]}
                 for case, host in self.hosts.items()}
        inventory = {"all": {"hosts": hosts}}
        if self.groups:
            inventory["all"]["children"] = {group: {"hosts": {host: {} for host in hosts}} for group in self.groups}
        return inventory

    def run(self) -> "RejectionBatch":
        path = self.workdir / "batch-inventory.yml"
        path.write_text(yaml.safe_dump(self.inventory(), sort_keys=False))
        self.before = fingerprint(self.container)
        self.proc = ansible_playbook(["-i", str(path), str(self.playbook)], timeout=self.timeout,
                                     env={**self.RESULT_FORMAT, "ANSIBLE_FORKS": str(self.forks)})
        self.after = fingerprint(self.container)
        self.results = host_lines(self.proc.stdout)
        self.summary = recap(self.proc.stdout)
        return self

    def assert_rejected(self, case: str, expected=(), hidden=()) -> list[str]:
        """Assert that `case` failed with every text of `expected` in its host's result lines,
        that none of `hidden` (secrets) shows anywhere in the run's output, that its host
        reported no change and that the container is as it was. Returns the host's lines."""
        host = self.hosts[case]
        name = f"case {case!r} (host {host} of the batch)"
        lines = self.results.get(host, [])
        text = "\n".join(lines)
        assert self.proc.returncode != 0, f"{name}: the batch run succeeded:\n{self.proc.stdout[-3000:]}"
        assert host in self.summary, f"{name}: not in the PLAY RECAP:\n{self.proc.stdout[-3000:]}"
        failed = [line for line in lines if line.startswith(("fatal:", "failed:"))]
        assert failed and self.summary[host]["failed"] > 0, f"{name}: did not fail:\n{text[-4000:]}"
        for wanted in expected:
            assert wanted in text, f"{name}: {wanted!r} not in its results:\n{text[-4000:]}"
        for secret in hidden:
            shown = [line for line in self.proc.stdout.splitlines() if secret in line]
            assert not shown, f"{name}: a secret was shown in the output:\n" + "\n".join(shown)[-4000:]
        assert self.summary[host]["changed"] == 0, f"{name}: reported changes: {self.summary[host]}\n{text[-4000:]}"
        assert self.before == self.after, f"{name}: the batch changed the host {self.container}"
        return lines


def host_lines(output: str) -> dict[str, list[str]]:
    """{host: its lines} of ansible-playbook's default output: its result lines ("fatal: [host]:
    ...", "ok: [host -> localhost] ...", "failed: [host] (item=...) => ..." and the like), and
    before a failure the "[ERROR]: ..." report printed right above it (the message as it was
    written, where the result line has it JSON-escaped) up to that result line."""
    result: dict[str, list[str]] = {}
    report: list[str] = []
    for line in output.splitlines():
        status = TASK_RESULT_RE.match(line)
        if status:
            lines = result.setdefault(status.group("host"), [])
            if status.group("status") in ("failed", "fatal"):
                lines.extend(report)
            lines.append(line)
            report = []
        elif line.startswith(("TASK [", "RUNNING HANDLER [", "PLAY ")):
            report = []
        elif line.startswith("[ERROR]: ") or report:
            report.append(line)
    return result


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
    # One list of files (runtime-churning ones left out), then their metadata and contents;
    # nothing is written on the host.
    script = (
        "files=\"$(find %s -xdev \\( -path /etc/machine-id -o -path /etc/ld.so.cache -o -path '/etc/ssh/ssh_host_*' \\) -prune "
        "-o -type f -print 2>/dev/null | sort)\"; "
        "printf '%%s\\n' \"$files\" | xargs -r -d '\\n' stat -c '%%n %%a %%U:%%G'; "
        "printf '%%s\\n' \"$files\" | xargs -r -d '\\n' sha256sum"
    ) % " ".join(paths)
    return docker("exec", container, "sh", "-c", script).stdout


# -- network probing (any container, any role's tests) ----------------------------------

_PROBE = r"""
import errno, socket, sys
host, port, timeout = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
s = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
s.settimeout(timeout)
try:
    s.connect((host, port))
    print("open")
except socket.timeout:
    print("timeout")
except ConnectionRefusedError:
    print("refused")
except OSError as e:
    print("unreachable" if e.errno in (errno.EHOSTUNREACH, errno.ENETUNREACH) else "error:%s" % e.errno)
"""


def probe(container: str, address: str, port: int, timeout: float = 3.0) -> str:
    """TCP connect from inside `container` to address:port, as that host would.

    Returns "open" (handshake completed), "refused" (RST: reachable, nothing listens or
    a reject rule), "timeout" (no answer: a firewall drop), or "unreachable"/"error:N".
    Needs python3 in the container (the project images have it)."""
    out = docker("exec", container, "python3", "-c", _PROBE, address, str(port), str(timeout),
                 timeout=timeout + 30).stdout.strip()
    return out.splitlines()[-1] if out else "error:no-output"


def is_listening(container: str, port: int) -> bool:
    """Whether anything listens on TCP `port` (any address) inside `container`."""
    out = docker("exec", container, "ss", "-Hltn", f"sport = :{port}", check=False).stdout
    return bool(out.strip())


def listen(container: str, port: int, timeout: float = 15) -> None:
    """Start a throwaway TCP listener (python3 http.server on all IPv4 addresses) on `port`
    inside `container`; returns once it listens. Stop it with stop_listening()."""
    if is_listening(container, port):
        raise AssertionError(f"{container}: something already listens on {port}")
    pidfile = f"/run/selfhost-test-listener-{port}.pid"
    docker("exec", "-d", container, "sh", "-c",
           f"echo $$ > {pidfile}; mkdir -p /run/selfhost-test-listener-{port}.d; "
           f"exec python3 -m http.server {port} --bind 0.0.0.0 --directory /run/selfhost-test-listener-{port}.d")
    deadline = time.time() + timeout
    while time.time() < deadline:
        if is_listening(container, port):
            return
        time.sleep(0.2)
    raise AssertionError(f"{container}: listener on {port} did not come up")


def stop_listening(container: str, port: int) -> None:
    """Stop a listener started by listen() (by its recorded pid only)."""
    pidfile = f"/run/selfhost-test-listener-{port}.pid"
    docker("exec", container, "sh", "-c",
           f"if [ -f {pidfile} ]; then kill $(cat {pidfile}) 2>/dev/null; rm -f {pidfile}; fi; "
           f"rm -rf /run/selfhost-test-listener-{port}.d", check=False)
    deadline = time.time() + 10
    while time.time() < deadline and is_listening(container, port):
        time.sleep(0.2)


class listening:
    """Context manager: `with listening(container, port): ...` runs listen/stop_listening."""

    def __init__(self, container: str, port: int):
        self.container, self.port = container, port

    def __enter__(self):
        listen(self.container, self.port)
        return self

    def __exit__(self, *exc):
        stop_listening(self.container, self.port)
        return False


def start_plain_container(name: str, image: str = "selfhost-dify/debian:13", network: str | None = None,
                          labels: dict[str, str] | None = None) -> str:
    """Start a container that only sleeps (no systemd): a client to probe from."""
    docker("rm", "-f", name, check=False)
    cmd = ["run", "-d", "--name", name, "--hostname", name]
    if network:
        cmd += ["--network", network]
    for key, value in (labels or {}).items():
        cmd += ["--label", f"{key}={value}"]
    docker(*cmd, image, "sleep", "infinity")
    return name


# -- the lab (scripts/lab.py) -------------------------------------------------------------

LAB_SCRIPT = ROOT / "scripts" / "lab.py"


def lab(*args, check=True, timeout=3600):
    """Run scripts/lab.py with the project's Python (output captured, stdout+stderr)."""
    return run([tool("python"), LAB_SCRIPT, *args], check=check, timeout=timeout)


def ansible_inventory(inventory) -> dict:
    """`ansible-inventory --list` of an inventory as a dict (groups and _meta.hostvars)."""
    proc = subprocess.run([tool("ansible-inventory"), "-i", str(inventory), "--list"], cwd=ROOT,
                          capture_output=True, text=True, timeout=300, check=False)
    if proc.returncode != 0:
        raise AssertionError(f"ansible-inventory -i {inventory} failed:\n{proc.stderr}")
    return json.loads(proc.stdout)


def ssh_auth_methods(port: int, user: str = "admin", host: str = "127.0.0.1") -> list[str]:
    """The authentication methods sshd on host:port offers `user` (from the
    "Permission denied (a,b)" answer of a client that has no key to offer)."""
    out = run(["ssh", "-F", "/dev/null", "-p", port, "-o", "BatchMode=yes",
               "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
               "-o", "PubkeyAuthentication=no",
               "-o", "PreferredAuthentications=password,keyboard-interactive",
               "-o", "ConnectTimeout=10", f"{user}@{host}", "true"], check=False, timeout=60).stdout
    m = re.search(r"Permission denied \(([^)]*)\)", out)
    if not m:
        raise AssertionError(f"no 'Permission denied' from sshd on {host}:{port}:\n{out}")
    return m.group(1).split(",")


# -- molecule scenarios (from a scenario's testinfra tests) ------------------------------

TASK_HEADER_RE = re.compile(r"^(?:TASK|RUNNING HANDLER) \[(?P<name>.*)\] \**\s*$")
TASK_RESULT_RE = re.compile(r"^(?P<status>ok|changed|skipping|failed|fatal): \[(?P<host>[^\]\s]+)")


def molecule_inventory() -> str:
    """The inventory molecule generated for the running scenario (set for the verifier)."""
    try:
        return os.environ["MOLECULE_INVENTORY_FILE"]
    except KeyError:
        raise AssertionError("MOLECULE_INVENTORY_FILE is not set: run this through `molecule verify|test`") from None


def molecule_playbook(playbook: str = "converge.yml", *args, check: bool = True, timeout: int = 1800):
    """Run a playbook of the running molecule scenario against its inventory, as molecule's
    converge does, with extra ansible-playbook `args` (e.g. "--check", "--diff").
    Raises on failure when `check` is true; returns the CompletedProcess."""
    try:
        scenario = Path(os.environ["MOLECULE_SCENARIO_DIRECTORY"])
    except KeyError:
        raise AssertionError("MOLECULE_SCENARIO_DIRECTORY is not set: run this through `molecule verify|test`") from None
    return ansible_playbook(["-i", molecule_inventory(), str(scenario / playbook), *args], check=check, timeout=timeout)


def task_results(output: str) -> dict[str, dict[str, list[str]]]:
    """{host: {status: [task names]}} from ansible-playbook's default output, where status is
    ok, changed, skipping, failed or fatal (a looped task counts once per item).
    Task names are as printed, e.g. "selfhost.dify.base : SSH | Harden sshd"."""
    result: dict[str, dict[str, list[str]]] = {}
    task = None
    for line in output.splitlines():
        header = TASK_HEADER_RE.match(line)
        if header:
            task = header.group("name")
            continue
        status = TASK_RESULT_RE.match(line)
        if status and task is not None:
            result.setdefault(status.group("host"), {}).setdefault(status.group("status"), []).append(task)
    return result


def changed_tasks(output: str) -> dict[str, list[str]]:
    """{host: [names of tasks that reported changed]} (see task_results)."""
    return {host: statuses.get("changed", []) for host, statuses in task_results(output).items()}


def assert_no_changes(output: str, hosts=None) -> dict[str, dict[str, int]]:
    """Assert the run reached every host (or `hosts`) and changed, failed and left out
    nothing; the message names the tasks that changed. Returns the recap."""
    summary = recap(output)
    assert summary, "no PLAY RECAP in the output:\n" + output[-3000:]
    for host in hosts or summary:
        assert host in summary, f"{host} is not in the PLAY RECAP: {sorted(summary)}"
        counts = summary[host]
        assert counts["failed"] == 0 and counts["unreachable"] == 0, f"{host}: {counts}\n{output[-4000:]}"
        assert counts["changed"] == 0, f"{host} reported changes: {changed_tasks(output).get(host)}\n{output[-4000:]}"
    return summary


def assert_check_mode_clean(playbook: str = "converge.yml", hosts=None) -> dict[str, dict[str, int]]:
    """`ansible-playbook --check --diff` of the scenario's playbook reports changed=0 on every
    host: a converged host has nothing left to do, and check mode works on it."""
    proc = molecule_playbook(playbook, "--check", "--diff")
    return assert_no_changes(proc.stdout, hosts)


# -- real Dify, as its administrator and its worker see it (molecule's dify scenario, the lab) ---
# `on_host` is the command prefix that runs a program on a Dify host with stdin attached:
# ["docker", "exec", "-i", CONTAINER] for a molecule host, ["ssh", ..., HOST, "sudo"] for the lab.

def _last_json(proc) -> dict:
    lines = [line for line in proc.stdout.strip().splitlines() if line.startswith("{")]
    if not lines:
        raise AssertionError(f"no JSON answer (rc {proc.returncode}):\n{proc.stdout[-4000:]}")
    return json.loads(lines[-1])


def dify_console(on_host: list[str], api_url: str, command: str, **arguments) -> dict:
    """Run tests/dify_console.py on the host against Dify's api (login, seed, check)."""
    encoded = base64.b64encode(json.dumps(arguments).encode()).decode()
    proc = run([*on_host, "python3", "-", api_url, command, encoded],
               input=(ROOT / "tests" / "dify_console.py").read_text(), check=False, timeout=300)
    return _last_json(proc)


def dify_worker_probe(on_host: list[str], project: str = "/opt/dify", worker: str = "dify-worker-1",
                      timeout: float = 90) -> dict:
    """Send Celery's `celery.accumulate` to every queue the worker is told to consume
    (tests/dify_celery_probe.py, in a one-off container of the api image with the project's
    environment), then read the worker's own log until each task is reported done:
    {queue: {"ok": bool, "id": task id}}."""
    proc = run([*on_host, "docker", "compose", "--project-directory", project, "run", "--rm", "-T",
                "--no-deps", "--entrypoint", "python", "worker", "-"],
               input=(ROOT / "tests" / "dify_celery_probe.py").read_text(), check=False, timeout=300)
    sent = _last_json(proc)
    deadline = time.monotonic() + timeout
    while True:
        log = run([*on_host, "docker", "logs", "--since", "15m", worker], check=False, timeout=60).stdout
        done = {queue: f"Task celery.accumulate[{task_id}] succeeded" in log for queue, task_id in sent.items()}
        if all(done.values()) or time.monotonic() > deadline:
            return {queue: {"ok": done[queue], "id": task_id} for queue, task_id in sent.items()}
        time.sleep(3)


def dify_flask(on_host: list[str], *args: str, project: str = "/opt/dify") -> str:
    """`flask <args>` in a one-off container of the api image (upstream's job mode)."""
    return run([*on_host, "docker", "compose", "--project-directory", project, "run", "--rm", "-T", "--no-deps",
                "-e", "MODE=job", "-e", "MIGRATION_ENABLED=false", "worker", *args], timeout=300).stdout


# -- site.yml's tags (every play tag and role tag) --------------------------------------

VALIDATION_PLAY = "Validate the inputs of every role on every host"


def site_tags() -> dict[str, list[str]]:
    """{tag: the roles it selects} for every tag of playbooks/site.yml but `always`: each play's
    tags select the play's roles, a role's own tags that role."""
    tags: dict[str, list[str]] = {}
    for play in yaml.safe_load((ROOT / "playbooks" / "site.yml").read_text()):
        roles = [entry["role"].rsplit(".", 1)[-1] for entry in play.get("roles", [])]
        for tag in play.get("tags", []):
            if tag != "always":
                tags.setdefault(tag, []).extend(roles)
        for entry in play.get("roles", []):
            for tag in entry.get("tags", []):
                tags.setdefault(tag, []).append(entry["role"].rsplit(".", 1)[-1])
    return tags


# The roles site.yml applies with the defaults (SeaweedFS, Caddy; applied_roles puts the edge
# proxy a lab runs in its place); every tag alone must run exactly these of its roles.
APPLIED = ("base", "postgresql", "redis", "seaweedfs", "docker", "dify", "caddy", "logging", "backup")


def applied_roles(lab) -> tuple[str, ...]:
    """The roles a lab's site applies: APPLIED with the edge proxy its edge host runs (the
    single-node lab Caddy, the three-host lab nginx: scripts/selfhost_lab/inventory.py)."""
    proxy = lab.hostvars[lab.group("edge")[0]].get("selfhost_edge_proxy", "caddy")
    return tuple(proxy if role == "caddy" else role for role in APPLIED)


def assert_tag_alone_changes_nothing(inventory, tag: str, hosts, applied_roles) -> None:
    """`site.yml --tags <tag>` on a converged site: it succeeds on every host with changed=0,
    and runs the tasks of exactly those of the tag's roles the site applies (`applied_roles`)."""
    proc = ansible_playbook(["-i", str(inventory), "site.yml", "--tags", tag])
    assert proc.returncode == 0, f"--tags {tag} failed:\n{proc.stdout[-6000:]}"
    result = recap(proc.stdout)
    assert set(result) == set(hosts), f"recap hosts {sorted(result)} != {sorted(hosts)}"
    changed = {host: r for host, r in result.items() if r["changed"] or r["failed"] or r["unreachable"]}
    assert not changed, f"--tags {tag} changed {changed} on a converged site:\n{proc.stdout[-6000:]}"
    # The roles whose tasks ran after the validation play (which reads every role's checks).
    plays = [p for p in re.split(r"^PLAY \[", proc.stdout, flags=re.M) if not p.startswith(VALIDATION_PLAY)]
    # A role ran when one of its tasks did (not only skipped: the backend or proxy the site does
    # not use); Ansible validates the argument spec of every role of a play whatever the tags.
    ran = {match.group(1) for play in plays
           for match in re.finditer(r"^TASK \[selfhost\.dify\.([a-z]+) : (?!Validating arguments against arg spec)"
                                    r".*?(?=^TASK \[|^PLAY |^RUNNING HANDLER|\Z)", play, re.M | re.S)
           if re.search(r"^(ok|changed): \[", match.group(0), re.M)}
    wanted = set(site_tags()[tag]) & set(applied_roles)
    # The internal role's tasks are the shared task files (apt_repository, artifact, s3_proxy,
    # edge_health) a role includes: they run on behalf of that role, never alone.
    if "selfhost" in ran:
        ran.discard("selfhost")
        assert ran, f"--tags {tag} ran shared tasks of selfhost.dify.selfhost without a role that includes them"
    assert ran == wanted, f"--tags {tag} ran the tasks of {sorted(ran)}, expected {sorted(wanted)}"
