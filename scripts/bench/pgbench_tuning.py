"""What the selfhost.dify.postgresql tuning is worth, measured with pgbench.

In one fresh Debian 13 container (the project's systemd test image) this script installs
PostgreSQL with Debian's defaults, initialises a pgbench database and runs pgbench; then it
applies the role selfhost.dify.postgresql to the same container with ansible-playbook (its
tuning: shared_buffers, effective_cache_size, work_mem, maintenance_work_mem, WAL sizes,
planner costs, parallelism), initialises the same database again and reruns pgbench with
the same parameters. With --rounds N (default 2) it alternates default and tuned runs N
times (the role's conf.d files moved aside and back, with a restart), so that a change in the
machine's load hits both. It prints both TPS figures (medians) and the ratio tuned/default,
and removes the container.

    .venv/bin/python scripts/bench/pgbench_tuning.py [--scale 20] [--clients 8] [--threads 2]
        [--duration 20] [--rounds 2] [--builtin tpcb-like|simple-update|select-only] [--memory-mb N]
        [--image selfhost-dify/debian:13] [--keep]

Defaults finish in about two minutes of pgbench (plus the package install and one role run).
--memory-mb sizes the role for that much memory (postgresql_memory_mb); by default the role
sizes for the memory the container sees, which is the whole machine's. It is not part of the
test suite. Needs the Docker engine and the test images (scripts/build-images.sh), and
ansible-playbook in the project venv (or on PATH). Standard library only.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# The flags a systemd container needs on this kind of machine (the lab's list is in
# scripts/selfhost_lab/hosts.py).
SYSTEMD_RUN_FLAGS = [
    "--cap-add", "SYS_ADMIN", "--cap-add", "NET_ADMIN",
    "--security-opt", "seccomp=unconfined",
    "--cgroupns=host", "-v", "/sys/fs/cgroup:/sys/fs/cgroup:rw",
    "--tmpfs", "/run", "--tmpfs", "/run/lock",
]
TPS_RE = re.compile(r"^tps = ([0-9.]+) \(without initial connection time\)", re.MULTILINE)
PLAYBOOK = """---
- name: Apply selfhost.dify.postgresql
  hosts: postgresql
  gather_facts: true
  roles:
    - role: selfhost.dify.postgresql
"""


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def run(cmd, check=True, env=None, timeout=1800) -> str:
    proc = subprocess.run([str(c) for c in cmd], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, timeout=timeout, check=False)
    if check and proc.returncode != 0:
        sys.exit(f"command failed ({proc.returncode}): {' '.join(map(str, cmd))}\n{proc.stdout[-4000:]}")
    return proc.stdout


def in_container(container: str, *cmd: str, check=True, timeout=1800) -> str:
    return run(["docker", "exec", container, *cmd], check=check, timeout=timeout)


def as_postgres(container: str, *cmd: str, timeout=1800) -> str:
    return in_container(container, "runuser", "-u", "postgres", "--", *cmd, timeout=timeout)


def wait_for_systemd(container: str, timeout: float = 90) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        state = in_container(container, "systemctl", "is-system-running", check=False).strip()
        if state in ("running", "degraded"):
            return
        time.sleep(1)
    sys.exit(f"systemd in {container} did not finish booting within {timeout:.0f} s")


def pgbench(container: str, args) -> float:
    """Initialise the benchmark database afresh, run pgbench, return its TPS."""
    as_postgres(container, "dropdb", "--if-exists", "bench")
    as_postgres(container, "createdb", "bench")
    log(f"pgbench -i -s {args.scale}")
    as_postgres(container, "pgbench", "-i", "-q", "-s", str(args.scale), "bench")
    as_postgres(container, "psql", "-X", "-q", "-d", "bench", "-c", "VACUUM ANALYZE", "-c", "CHECKPOINT")
    log(f"pgbench -b {args.builtin} -c {args.clients} -j {args.threads} -T {args.duration}")
    out = as_postgres(container, "pgbench", "-n", "-b", args.builtin, "-c", str(args.clients),
                      "-j", str(args.threads), "-T", str(args.duration), "bench",
                      timeout=args.duration + 600)
    match = TPS_RE.search(out)
    if not match:
        sys.exit(f"no TPS figure in pgbench's output:\n{out}")
    return float(match.group(1))


def settings(container: str) -> str:
    names = ("shared_buffers", "effective_cache_size", "work_mem", "maintenance_work_mem", "max_wal_size",
             "max_connections", "random_page_cost")
    query = "SELECT string_agg(name || '=' || current_setting(name), ', ' ORDER BY name) FROM pg_settings " \
            "WHERE name IN (%s)" % ", ".join("'%s'" % n for n in names)
    return as_postgres(container, "psql", "-X", "-At", "-c", query).strip()


CONF_D = "/etc/postgresql/17/main/conf.d"
ASIDE = "/root/selfhost-conf-aside"


def use_role_settings(container: str, enabled: bool) -> None:
    """Put the role's conf.d files back (enabled) or aside (Debian's defaults), and restart."""
    src, dst = (ASIDE, CONF_D) if enabled else (CONF_D, ASIDE)
    in_container(container, "sh", "-c", f"mkdir -p {ASIDE} && mv {src}/5*-selfhost*.conf {dst}/")
    in_container(container, "systemctl", "restart", "postgresql@17-main")


def apply_role(container: str, args) -> None:
    playbook_tool = ROOT / ".venv" / "bin" / "ansible-playbook"
    tool = str(playbook_tool) if playbook_tool.exists() else (shutil.which("ansible-playbook") or "ansible-playbook")
    host_vars = {
        "ansible_connection": "community.docker.docker",
        "ansible_host": container,
        "ansible_python_interpreter": "/usr/bin/python3",
        # Throwaway: the container is removed at the end.
        "postgresql_dify_password": secrets.token_hex(24),
    }
    if args.memory_mb:
        host_vars["postgresql_memory_mb"] = args.memory_mb
    with tempfile.TemporaryDirectory(prefix="pgbench-tuning-") as tmp:
        inventory = Path(tmp) / "inventory.json"
        inventory.write_text(json.dumps({"postgresql": {"hosts": {"bench": host_vars}}}))
        os.chmod(inventory, 0o600)
        playbook = Path(tmp) / "postgresql.yml"
        playbook.write_text(PLAYBOOK)
        env = dict(os.environ, ANSIBLE_NOCOLOR="1", ANSIBLE_FORCE_COLOR="0")
        run([tool, "-i", inventory, playbook], env=env)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", type=int, default=20, help="pgbench -i scale factor (default 20, about 300 MB)")
    parser.add_argument("--clients", type=int, default=8, help="pgbench clients (default 8)")
    parser.add_argument("--threads", type=int, default=2, help="pgbench threads (default 2)")
    parser.add_argument("--duration", type=int, default=20, help="seconds per pgbench run (default 20)")
    parser.add_argument("--builtin", default="tpcb-like", choices=["tpcb-like", "simple-update", "select-only"],
                        help="pgbench built-in script (default tpcb-like)")
    parser.add_argument("--rounds", type=int, default=2,
                        help="default/tuned pairs, interleaved so that a change in machine load hits both "
                             "(default 2; the role's conf.d files are moved aside for later default runs)")
    parser.add_argument("--memory-mb", type=int, default=0, help="size the role for this much memory (default: the host's)")
    parser.add_argument("--image", default="selfhost-dify/debian:13", help="container image (default selfhost-dify/debian:13)")
    parser.add_argument("--keep", action="store_true", help="leave the container running for inspection")
    args = parser.parse_args()

    container = f"selfhost-bench-pgbench-{uuid.uuid4().hex[:8]}"
    log(f"starting {container} from {args.image}")
    # Docker's default /dev/shm (64 MB) would starve PostgreSQL's dynamic shared memory.
    run(["docker", "run", "-d", "--name", container, "--hostname", container, "--shm-size", "1g",
         *SYSTEMD_RUN_FLAGS, args.image])
    try:
        wait_for_systemd(container)
        log("installing PostgreSQL with Debian's defaults")
        in_container(container, "apt-get", "update", "-q")
        in_container(container, "env", "DEBIAN_FRONTEND=noninteractive", "apt-get", "install", "-y", "-q",
                     "postgresql", "postgresql-contrib")
        default_settings = settings(container)
        default_runs, tuned_runs = [], []
        for round_no in range(1, args.rounds + 1):
            if round_no > 1:
                use_role_settings(container, False)
            default_runs.append(pgbench(container, args))
            log(f"round {round_no}: default {default_runs[-1]:.1f} tps")
            if round_no == 1:
                log("applying selfhost.dify.postgresql")
                apply_role(container, args)
                tuned_settings = settings(container)
            else:
                use_role_settings(container, True)
            tuned_runs.append(pgbench(container, args))
            log(f"round {round_no}: tuned {tuned_runs[-1]:.1f} tps")
        default_tps = statistics.median(default_runs)
        tuned_tps = statistics.median(tuned_runs)
    finally:
        if args.keep:
            log(f"kept {container}; remove it with: docker rm -f {container}")
        else:
            run(["docker", "rm", "-f", container], check=False)

    print()
    print(f"pgbench -b {args.builtin} -s {args.scale} -c {args.clients} -j {args.threads} -T {args.duration}")
    print(f"  default settings: {default_settings}")
    print(f"  tuned settings:   {tuned_settings}")
    print(f"  default: {default_tps:10.1f} tps (median of {', '.join(f'{t:.1f}' for t in default_runs)})")
    print(f"  tuned:   {tuned_tps:10.1f} tps (median of {', '.join(f'{t:.1f}' for t in tuned_runs)})")
    print(f"  ratio tuned/default: {tuned_tps / default_tps:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
