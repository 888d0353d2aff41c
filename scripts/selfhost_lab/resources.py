"""A lab's Docker resources: its name, layouts and labels, the Lab object that finds them on
the engine, and the lab's network (a subnet of its own, fixed host addresses)."""
from __future__ import annotations

import fcntl
import ipaddress
import json
import re
import tempfile
from pathlib import Path

from selfhost_lab.common import ROOT, LabError, docker, log

DEFAULT_NAME = "lab"
DEFAULT_INVENTORY = ROOT / "inventories" / "lab"
IMAGE = "selfhost-dify/debian:{debian}"
DEBIAN_VERSIONS = ("13", "12")
ADMIN_USER = "admin"
# Where every lab host mounts the lab's backups volume, as a server mounts a backup share
# (NFS) that outlives it: the backup role's default repository is below it.
BACKUPS_MOUNT = "/var/backups/selfhost"

# Every inventory carries these groups (children of `all`), empty or not.
GROUPS = ("postgresql", "redis", "object_storage", "dify", "edge", "logging")
LAYOUTS: dict[str, dict[str, tuple[str, ...]]] = {
    "single": {"node1": GROUPS},
    # Host names differ from group names (Ansible warns when a host and a group share one).
    "three": {
        "edge1": ("edge",),
        "app1": ("dify",),
        "data1": ("postgresql", "redis", "object_storage", "logging"),
    },
}

LABEL = "selfhost.lab"
LABEL_NAME = "selfhost.lab.name"
LABEL_LAYOUT = "selfhost.lab.layout"
LABEL_DEBIAN = "selfhost.lab.debian"
LABEL_HOST = "selfhost.lab.host"
LABEL_INVENTORY = "selfhost.lab.inventory"


class Lab:
    """One lab: its docker resources (found by labels) and its inventory directory."""

    def __init__(self, name: str = DEFAULT_NAME, inventory: Path | None = None):
        if not re.fullmatch(r"[a-z0-9][a-z0-9-]{0,19}", name):
            raise LabError(f"invalid lab name {name!r} (lower-case letters, digits, dashes)")
        self.name = name
        self.prefix = "selfhost-lab" if name == DEFAULT_NAME else f"selfhost-lab-{name}"
        self.network = self.prefix
        recorded = self._recorded_inventory()
        if inventory is not None:
            self.inventory = inventory.resolve()
        elif recorded is not None:
            self.inventory = recorded
        elif name == DEFAULT_NAME:
            self.inventory = DEFAULT_INVENTORY
        else:
            self.inventory = None  # only `up --inventory` can create a named lab
        self.recorded_inventory = recorded

    # -- names and paths -------------------------------------------------------------
    def container(self, host: str) -> str:
        return f"{self.prefix}-{host}"

    def volume(self, host: str) -> str:
        return f"{self.prefix}-{host}-docker"

    @property
    def backups_volume(self) -> str:
        """One per lab, shared by its hosts: plain destroy and destroying hosts keep it."""
        return f"{self.prefix}-backups"

    def path(self, *parts: str) -> Path:
        assert self.inventory is not None
        return self.inventory.joinpath(*parts)

    @property
    def key(self) -> Path:
        return self.path(".ssh", "id_ed25519")

    @property
    def known_hosts(self) -> Path:
        return self.path(".ssh", "known_hosts")

    @property
    def ssh_config(self) -> Path:
        return self.path(".ssh", "config")

    @property
    def hosts_file(self) -> Path:
        return self.path("hosts.yml")

    @property
    def generated_vars(self) -> Path:
        return self.path("group_vars", "all", "generated.yml")

    def labels(self) -> list[str]:
        return [f"{LABEL}=1", f"{LABEL_NAME}={self.name}"]

    def label_filters(self) -> list[str]:
        return ["--filter", f"label={LABEL}=1", "--filter", f"label={LABEL_NAME}={self.name}"]

    # -- docker state ----------------------------------------------------------------
    def _recorded_inventory(self) -> Path | None:
        out = docker("network", "ls", "-q", *self.label_filters(), check=False).split()
        if not out:
            return None
        value = docker("network", "inspect", "-f", "{{index .Labels \"%s\"}}" % LABEL_INVENTORY, out[0],
                       check=False).strip()
        return Path(value) if value and value != "<no value>" else None

    def containers(self) -> list[dict]:
        """The lab's containers: name, host, layout, debian, running."""
        ids = docker("ps", "-aq", *self.label_filters(), "--filter", f"label={LABEL_HOST}").split()
        if not ids:
            return []
        result = []
        for info in json.loads(docker("inspect", *ids)):
            labels = info["Config"]["Labels"] or {}
            result.append({
                "container": info["Name"].lstrip("/"),
                "host": labels.get(LABEL_HOST, ""),
                "layout": labels.get(LABEL_LAYOUT, ""),
                "debian": labels.get(LABEL_DEBIAN, ""),
                "running": bool(info["State"]["Running"]),
            })
        return sorted(result, key=lambda c: c["container"])

    def existing_shape(self) -> tuple[str, str] | None:
        """(layout, debian) of the lab on the engine, or None when there is none."""
        found = self.containers()
        if not found:
            return None
        shapes = {(c["layout"], c["debian"]) for c in found}
        if len(shapes) != 1:
            raise LabError(f"lab {self.name!r} has containers of mixed layouts {sorted(shapes)}; "
                           f"run `scripts/lab.py destroy` first")
        return shapes.pop()


NETWORK_LOCK = Path(tempfile.gettempdir()) / "selfhost-lab-network.lock"


def create_network(lab: Lab) -> None:
    """The lab's network, with a subnet of its own so that each host keeps its address across
    restarts (a server's address does not change when it reboots; Docker hands out addresses
    anew only on networks without a configured subnet). Docker chooses a free subnet first."""
    log(f"creating network {lab.network}")
    labels = [a for label in lab.labels() for a in ("--label", label)] + ["--label", f"{LABEL_INVENTORY}={lab.inventory}"]
    # One lab at a time between `rm` and the second `create`: labs brought up side by side
    # (the test streams) would otherwise be handed the same free subnet.
    with open(NETWORK_LOCK, "w", encoding="utf-8") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        docker("network", "create", *labels, lab.network)
        subnet = json.loads(docker("network", "inspect", lab.network))[0]["IPAM"]["Config"][0]["Subnet"]
        docker("network", "rm", lab.network)
        docker("network", "create", "--subnet", subnet, *labels, lab.network)


def host_address(lab: Lab, layout: str, host: str) -> str:
    """The fixed address of a lab host: .10, .11, ... of the network's subnet, in layout order."""
    subnet = json.loads(docker("network", "inspect", lab.network))[0]["IPAM"]["Config"][0]["Subnet"]
    return str(ipaddress.ip_network(subnet)[10 + list(LAYOUTS[layout]).index(host)])
