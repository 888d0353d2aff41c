"""The lab's commands: up, converge, status and destroy."""
from __future__ import annotations

import concurrent.futures
import json
import subprocess
import time
from pathlib import Path

from selfhost_lab.artifacts import DIFY_SUMMARY, compose_plugin_vars, dify_image_vars, fetch_artifacts
from selfhost_lab.common import ROOT, LabError, docker, ensure_dir, log, now, rel, say, tool, wait_until, write_file
from selfhost_lab.hosts import apply_container_quirks, create_host, ensure_volume, host_facts, start_host
from selfhost_lab.inventory import (converged_marker, edge_vars, remove_generated, render_generated_vars, render_hosts,
                                    set_converged_marker)
from selfhost_lab.resources import (ADMIN_USER, DEFAULT_INVENTORY, DEFAULT_NAME, IMAGE, LABEL, LABEL_NAME, LAYOUTS,
                                    Lab, create_network)
from selfhost_lab.ssh import check_ssh, ensure_key_pair, render_ssh_config, ssh_banner


def cmd_up(args) -> int:
    lab = Lab(args.name, Path(args.inventory) if args.inventory else None)
    if lab.inventory is None:
        raise LabError(f"lab {lab.name!r}: give its inventory directory with --inventory")
    if lab.recorded_inventory is not None and lab.recorded_inventory != lab.inventory:
        raise LabError(f"lab {lab.name!r} on this engine belongs to the inventory {lab.recorded_inventory}; "
                       f"destroy it there first (scripts/lab.py destroy)")
    image = IMAGE.format(debian=args.debian)
    if not docker("image", "inspect", image, check=False).strip().startswith("["):
        raise LabError(f"image {image} is missing: build it with `make images` (scripts/build-images.sh)")
    shape = lab.existing_shape()
    if shape is not None and shape != (args.layout, args.debian):
        raise LabError(
            f"a lab with layout {shape[0]!r} on Debian {shape[1]} exists; this asks for layout "
            f"{args.layout!r} on Debian {args.debian}. Destroy it first: make lab-destroy "
            f"(scripts/lab.py destroy{'' if lab.name == DEFAULT_NAME else ' --name ' + lab.name})")

    t0 = time.monotonic()
    fetch_artifacts()
    pubkey = ensure_key_pair(lab)
    ensure_dir(lab.path(".credentials"), 0o700)

    if not docker("network", "ls", "-q", *lab.label_filters()).strip():
        create_network(lab)
    ensure_volume(lab, lab.backups_volume)

    existing = {c["host"]: c for c in lab.containers()}
    hosts = list(LAYOUTS[args.layout])
    unchanged = all(h in existing and existing[h]["running"] for h in hosts)
    marker = converged_marker(lab) if unchanged else "no"
    with concurrent.futures.ThreadPoolExecutor(max_workers=len(hosts)) as pool:
        futures = []
        for host in hosts:
            if host not in existing:
                futures.append(pool.submit(create_host, lab, host, args.layout, args.debian, pubkey))
            elif not existing[host]["running"]:
                futures.append(pool.submit(start_host, lab, host))
        errors = [f.exception() for f in futures if f.exception()]
    if errors:
        raise LabError("\n".join(str(e) for e in errors))

    facts = {host: host_facts(lab, host) for host in hosts}
    for host, f in facts.items():
        wait_until(f"sshd of {host} on 127.0.0.1:{f['ansible_port']}", lambda p=f["ansible_port"]: ssh_banner(p), 60)

    write_file(lab.known_hosts, "".join(f"[127.0.0.1]:{f['ansible_port']} {f['host_key']}\n"
                                        for f in facts.values()), 0o600)
    write_file(lab.ssh_config, render_ssh_config(lab, facts), 0o600)
    write_file(lab.hosts_file, render_hosts(lab, args.layout, args.debian, facts, marker))
    generated = dify_image_vars() + compose_plugin_vars(args.debian) + edge_vars(args.layout)
    write_file(lab.generated_vars, render_generated_vars(pubkey, generated))
    if lab.name != DEFAULT_NAME:
        # A named lab's inventory lives outside the checkout: link the static lab settings.
        static = lab.path("group_vars", "all", "main.yml")
        if not static.exists():
            static.symlink_to(DEFAULT_INVENTORY / "group_vars" / "all" / "main.yml")
    for host in hosts:
        check_ssh(lab, host)
        apply_container_quirks(lab, host)
    log(f"{len(hosts)} host(s) up and reachable over SSH in {time.monotonic() - t0:.0f}s")

    rc = 0
    if not args.no_converge:
        rc = converge(lab, [])
    print_access(lab, args.layout, args.debian, facts)
    return rc


def converge(lab: Lab, extra: list[str]) -> int:
    if lab.inventory is None or not lab.hosts_file.exists():
        raise LabError(f"lab {lab.name!r} has no inventory; bring it up first (make lab)")
    cmd = [tool("ansible-playbook"), "-i", str(lab.inventory), "site.yml", *extra]
    log("converging: " + " ".join(cmd))
    t0 = time.monotonic()
    rc = subprocess.run(cmd, cwd=ROOT, check=False).returncode
    altering = not any(a in ("--check", "-C", "--syntax-check", "--list-tasks", "--list-hosts", "--list-tags")
                       for a in extra)
    if altering and not any(a in ("--tags", "-t", "--limit", "-l") or a.startswith(("--tags=", "--limit="))
                            for a in extra):
        set_converged_marker(lab, now() if rc == 0 else "no")
    elif altering and rc != 0:
        set_converged_marker(lab, "no")
    log(f"converge {'succeeded' if rc == 0 else 'FAILED (rc %d)' % rc} in {time.monotonic() - t0:.0f}s")
    return rc


def cmd_converge(args, extra: list[str]) -> int:
    lab = Lab(args.name)
    if lab.existing_shape() is None:
        raise LabError(f"no lab {lab.name!r} is running; bring it up first (make lab)")
    return converge(lab, extra)


def print_access(lab: Lab, layout: str, debian: str, facts: dict[str, dict]) -> None:
    say()
    say(f"Lab {lab.name!r}: layout {layout}, Debian {debian}, network {lab.network}")
    say(f"Inventory: {rel(lab.inventory)}  (converged: {converged_marker(lab)})")
    for host, f in facts.items():
        groups = ", ".join(LAYOUTS[layout][host])
        say(f"  {host:5}  {f['selfhost_private_address']:15}  groups: {groups}")
        say(f"         ssh -i {rel(lab.key)} -o UserKnownHostsFile={rel(lab.known_hosts)} "
            f"-p {f['ansible_port']} {ADMIN_USER}@127.0.0.1")
        if "lab_http_port" in f:
            say(f"         http://127.0.0.1:{f['lab_http_port']}/  https://127.0.0.1:{f['lab_https_port']}/")
    say(f"  or: ssh -F {rel(lab.ssh_config)} <host>")
    for line in DIFY_SUMMARY:
        say(line)
    say("Converge again: make lab-converge   Remove: make lab-destroy")


def lab_status(lab: Lab) -> dict:
    containers = lab.containers()
    status = {"name": lab.name, "exists": bool(containers), "running": bool(containers) and all(
        c["running"] for c in containers), "layout": None, "debian": None, "network": lab.network,
        "inventory": str(lab.inventory) if lab.inventory else None, "converged": converged_marker(lab)
        if lab.inventory else "no", "hosts": {}}
    if containers:
        status["layout"], status["debian"] = containers[0]["layout"], containers[0]["debian"]
    for c in containers:
        entry = {"container": c["container"], "running": c["running"]}
        if c["running"]:
            try:
                f = host_facts(lab, c["host"])
                entry.update({k: v for k, v in f.items() if k != "host_key"})
            except LabError as exc:
                entry["error"] = str(exc)
        status["hosts"][c["host"]] = entry
    return status


def cmd_status(args) -> int:
    lab = Lab(args.name)
    st = lab_status(lab)
    if args.json:
        print(json.dumps(st, indent=2))
    elif not st["exists"]:
        say(f"No lab {lab.name!r} on this engine. Bring one up with `make lab`.")
    else:
        say(f"Lab {lab.name!r}: layout {st['layout']}, Debian {st['debian']}, "
            f"{'running' if st['running'] else 'NOT all running'}, converged: {st['converged']}")
        say(f"Inventory: {st['inventory']}")
        for host, e in st["hosts"].items():
            if e["running"] and "ansible_port" in e:
                extra = f"  http {e['lab_http_port']} https {e['lab_https_port']}" if "lab_http_port" in e else ""
                say(f"  {host:5} {e['container']:22} ssh 127.0.0.1:{e['ansible_port']}  "
                    f"private {e['selfhost_private_address']}{extra}")
            else:
                say(f"  {host:5} {e['container']:22} {'stopped' if not e['running'] else e.get('error', '')}")
    if not st["exists"]:
        return 3
    return 0 if st["running"] else 1


def destroy_hosts(lab: Lab, hosts: list[str]) -> None:
    """Remove some hosts of a lab, each with its /var/lib/docker volume, as servers that are
    gone; the network, the inventory, the credentials and the backups volume stay, so that
    `up` brings fresh hosts up in their place (converged from the same inventory)."""
    existing = {c["host"]: c["container"] for c in lab.containers()}
    unknown = sorted(set(hosts) - set(existing))
    if unknown:
        raise LabError(f"lab {lab.name!r} has no host {', '.join(unknown)} (it has: {', '.join(sorted(existing))})")
    names = [existing[h] for h in hosts]
    log(f"removing {' '.join(names)} and their Docker volumes")
    docker("rm", "-f", "-v", *names, timeout=600)
    docker("volume", "rm", "-f", *[lab.volume(h) for h in hosts], timeout=600)
    if lab.inventory is not None and lab.hosts_file.exists():
        set_converged_marker(lab, "no")


def destroy(lab: Lab, everything: bool) -> None:
    filters = lab.label_filters()
    ids = docker("ps", "-aq", *filters).split()
    if ids:
        log(f"removing {len(ids)} container(s) of lab {lab.name!r}")
        docker("rm", "-f", "-v", *ids)
    # The backups volume is the share that outlives the lab's machines: only --all removes it.
    vols = [v for v in docker("volume", "ls", "-q", *filters).split() if everything or v != lab.backups_volume]
    if vols:
        log(f"removing volume(s) {' '.join(vols)}")
        docker("volume", "rm", "-f", *vols)
    nets = docker("network", "ls", "-q", *filters).split()
    if nets:
        log(f"removing network {lab.network}")
        docker("network", "rm", *nets)
    if lab.inventory is not None:
        remove_generated(lab.inventory, everything)


def cmd_destroy(args) -> int:
    if args.host:
        if args.name is None:
            raise LabError("--host needs --name (the lab the hosts belong to)")
        if args.all:
            raise LabError("--host removes those hosts only; --all (the key pair, credentials, backups) is for the whole lab")
        destroy_hosts(Lab(args.name), list(dict.fromkeys(args.host)))
        log("destroyed; `scripts/lab.py up` brings fresh hosts up in their place")
        return 0
    if args.name is not None:
        labs = [Lab(args.name)]
    else:
        # Every lab on this engine: the default one and any named one left behind.
        names = set()
        for kind in ("ps -a", "volume ls", "network ls"):
            out = docker(*kind.split(), "--filter", f"label={LABEL}=1",
                         "--format", "{{.Label \"%s\"}}" % LABEL_NAME)
            names.update(n for n in out.split() if n)
        names.add(DEFAULT_NAME)
        labs = [Lab(n) for n in sorted(names)]
    for lab in labs:
        destroy(lab, args.all)
    left = docker("ps", "-aq", "--filter", f"label={LABEL}=1").split() if args.name is None else []
    if left:
        raise LabError(f"containers labelled {LABEL}=1 remain: {left}")
    log("destroyed" + (" (key pair, credentials and backups removed too)" if args.all else
                       "; the key pair, credentials and backups volume are kept (--all removes them)"))
    return 0
