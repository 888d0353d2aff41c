"""How fast a no-op rerun of site.yml is, against the first converge of the same fresh lab.

For each layout asked for, this script brings up a fresh named lab (scripts/lab.py up
--no-converge: systemd containers that behave as bare Debian servers, an inventory of their
own), times `ansible-playbook -i <inventory> site.yml` once for the converge and once more for
the rerun, which must change nothing (changed=0 on every host of the PLAY RECAP), prints both
durations and the ratio rerun/converge, and destroys the lab (--keep leaves it running).

    .venv/bin/python scripts/bench/rerun.py [--layout single|three|both] [--keep]
        [--dir DIR] [--prefix bench] [--debian 13|12] [--profile [N]]

Lab names: <prefix> for the single layout, <prefix>3 for the three-host one (any lab of that
name is destroyed first); inventories in <dir>/<name> (default .cache/bench/ in the checkout,
git-ignored), with the playbook logs converge.log and rerun.log. --profile N enables the
ansible.posix.profile_tasks callback and prints the N slowest tasks of the rerun (default 20).
The durations depend on the machine's load: compare figures taken under similar load.

Needs what `make lab` needs: the Docker engine, the test images (scripts/build-images.sh), the
project venv, and SELFHOST_DIFY_SOURCE_DIR when no registry serves Dify's images (the lab builds
or loads Dify's api image from upstream's source; `make bench-rerun` sets it). It is not part of
the test suite. Standard library only.
"""
from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LAB = ROOT / "scripts" / "lab.py"
LAYOUTS = ("single", "three")
RECAP_RE = re.compile(
    r"^(?P<host>\S+)\s+:\s+ok=(?P<ok>\d+)\s+changed=(?P<changed>\d+)\s+unreachable=(?P<unreachable>\d+)"
    r"\s+failed=(?P<failed>\d+)", re.MULTILINE)
# profile_tasks' summary lines: "role : task name ---------- 12.34s"
PROFILE_RE = re.compile(r"^(?P<task>\S.*?)\s-{3,}\s+(?P<secs>[0-9.]+)s$", re.MULTILINE)


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def tool(name: str) -> str:
    """A tool from the project venv, else the running interpreter's, else PATH."""
    for candidate in (ROOT / ".venv" / "bin" / name, Path(sys.executable).parent / name):
        if candidate.exists():
            return str(candidate)
    found = shutil.which(name)
    if not found:
        sys.exit(f"{name} not found (run `make venv`)")
    return found


def lab(*args: str, check: bool = True) -> None:
    cmd = [tool("python"), str(LAB), *args]
    proc = subprocess.run(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          check=False)
    if check and proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[1:])} failed ({proc.returncode}):\n{proc.stdout[-4000:]}")


def recap(output: str) -> dict[str, dict[str, int]]:
    """The PLAY RECAP's counters per host."""
    tail = output[output.rfind("PLAY RECAP"):] if "PLAY RECAP" in output else ""
    return {m["host"]: {k: int(m[k]) for k in ("ok", "changed", "unreachable", "failed")}
            for m in RECAP_RE.finditer(tail)}


def playbook(inventory: Path, logfile: Path, profile: bool) -> tuple[float, int, dict[str, dict[str, int]], str]:
    """Run site.yml on the lab: (seconds, return code, recap, output)."""
    env = dict(os.environ, ANSIBLE_NOCOLOR="1", ANSIBLE_FORCE_COLOR="0")
    if profile:
        enabled = [c for c in env.get("ANSIBLE_CALLBACKS_ENABLED", "").split(",") if c]
        if "ansible.posix.profile_tasks" not in enabled:
            enabled.append("ansible.posix.profile_tasks")
        env["ANSIBLE_CALLBACKS_ENABLED"] = ",".join(enabled)
        env.setdefault("PROFILE_TASKS_TASK_OUTPUT_LIMIT", "all")
    cmd = [tool("ansible-playbook"), "-i", str(inventory), "site.yml"]
    with logfile.open("w") as out:  # written as it runs: `tail -f` follows the run
        started = time.monotonic()
        rc = subprocess.run(cmd, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, check=False).returncode
        seconds = time.monotonic() - started
    output = logfile.read_text()
    return seconds, rc, recap(output), output


def slowest(output: str, count: int) -> list[tuple[float, str]]:
    summary = output[output.rfind("=" * 20):] if "=" * 20 in output else ""
    tasks = [(float(m["secs"]), m["task"].strip()) for m in PROFILE_RE.finditer(summary)]
    return sorted(tasks, reverse=True)[:count]


def bench(layout: str, args) -> dict:
    name = args.prefix if layout == "single" else f"{args.prefix}3"
    inventory = (Path(args.dir) / name).resolve()
    result = {"layout": layout, "name": name, "inventory": inventory}
    log(f"{layout}: destroying any lab {name!r}, then bringing it up afresh ({inventory})")
    lab("destroy", "--name", name, "--all", check=False)
    inventory.mkdir(parents=True, exist_ok=True)
    try:
        started = time.monotonic()
        lab("up", "--name", name, "--layout", layout, "--debian", args.debian, "--inventory", str(inventory),
            "--no-converge")
        log(f"{layout}: lab up in {time.monotonic() - started:.0f} s; converging")
        seconds, rc, counts, _profile = playbook(inventory, inventory / "converge.log", args.profile is not None)
        result["converge"] = seconds
        if rc != 0:
            raise RuntimeError(f"the converge failed (rc {rc}); see {inventory / 'converge.log'}")
        log(f"{layout}: converge {seconds:.1f} s; rerunning")
        seconds, rc, counts, output = playbook(inventory, inventory / "rerun.log", args.profile is not None)
        result["rerun"] = seconds
        if rc != 0:
            raise RuntimeError(f"the rerun failed (rc {rc}); see {inventory / 'rerun.log'}")
        if not counts:
            raise RuntimeError(f"no PLAY RECAP in {inventory / 'rerun.log'}")
        changed = {host: c["changed"] for host, c in counts.items() if c["changed"]}
        result["changed"] = changed
        log(f"{layout}: rerun {seconds:.1f} s, " + (f"CHANGED {changed}" if changed else "changed=0 on every host"))
        if args.profile is not None:
            result["slowest"] = slowest(output, args.profile)
    except RuntimeError as exc:
        result["error"] = str(exc)
        log(f"{layout}: {exc}")
    finally:
        if args.keep:
            log(f"{layout}: kept lab {name!r}: scripts/lab.py destroy --name {name} --all")
        else:
            lab("destroy", "--name", name, "--all", check=False)
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--layout", choices=[*LAYOUTS, "both"], default="both", help="lab layout(s) (default both)")
    parser.add_argument("--keep", action="store_true", help="leave the labs running")
    parser.add_argument("--dir", default=str(ROOT / ".cache" / "bench"),
                        help="directory of the labs' inventories (default .cache/bench in the checkout)")
    parser.add_argument("--prefix", default="bench",
                        help="lab name: PREFIX (single), PREFIX3 (three); default bench")
    parser.add_argument("--debian", choices=["13", "12"], default="13", help="Debian release of the hosts")
    parser.add_argument("--profile", type=int, nargs="?", const=20, metavar="N",
                        help="enable ansible.posix.profile_tasks; print the rerun's N slowest tasks (default 20)")
    args = parser.parse_args()
    if not re.fullmatch(r"[a-z0-9][a-z0-9-]{0,18}", args.prefix):
        parser.error("--prefix: lower-case letters, digits, dashes; at most 19 characters")

    layouts = LAYOUTS if args.layout == "both" else (args.layout,)
    results = [bench(layout, args) for layout in layouts]

    print()
    print(f"site.yml on fresh labs (Debian {args.debian}): first converge vs no-op rerun")
    print(f"  {'layout':8} {'converge':>10} {'rerun':>10} {'rerun/converge':>15}  rerun changed")
    failed = False
    for r in results:
        if "error" in r and "rerun" not in r:
            print(f"  {r['layout']:8} {'-':>10} {'-':>10} {'-':>15}  FAILED: {r['error'].splitlines()[0]}")
            failed = True
            continue
        changed = "0" if not r.get("changed") else "FAILED " + ", ".join(f"{h}={n}" for h, n in r["changed"].items())
        if "error" in r:
            changed, failed = f"FAILED: {r['error'].splitlines()[0]}", True
        failed = failed or bool(r.get("changed"))
        print(f"  {r['layout']:8} {r['converge']:9.1f}s {r['rerun']:9.1f}s {r['rerun'] / r['converge']:14.1%}  {changed}")
    for r in results:
        if r.get("slowest"):
            print(f"\nSlowest tasks of the {r['layout']} rerun (profile_tasks):")
            for secs, task in r["slowest"]:
                print(f"  {secs:7.2f}s  {task}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
