"""Fixtures for the tests that run against the lab (scripts/lab.py).

`lab` is the single-node lab, brought up once per session with `scripts/lab.py up
--layout single` (idempotent: an existing single-node lab, e.g. from `make lab`, is
reused and converged with the current code rather than rebuilt). It is destroyed at the
end of the session only if this session created it; SELFHOST_LAB_KEEP=1 keeps it.
SELFHOST_LAB_DEBIAN=12 brings a new lab up on Debian 12 (default 13).
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.helpers import ROOT, ansible_inventory, docker, lab as lab_script, start_plain_container

LAB_NAME = "lab"
LAB_INVENTORY = ROOT / "inventories" / "lab"
PROBER = "selfhost-lab-prober"


@dataclass
class Lab:
    """A running, converged lab as the tests see it."""

    name: str
    inventory: Path
    network: str
    layout: str
    debian: str
    inventory_data: dict = field(repr=False)

    @property
    def hostvars(self) -> dict:
        return self.inventory_data["_meta"]["hostvars"]

    @property
    def hosts(self) -> list[str]:
        return sorted(self.hostvars)

    def group(self, name: str) -> list[str]:
        return sorted(self.inventory_data.get(name, {}).get("hosts", []))

    def container(self, host: str) -> str:
        return self.hostvars[host]["lab_container"]

    def address(self, host: str) -> str:
        return self.hostvars[host]["selfhost_private_address"]

    def port(self, host: str) -> int:
        return int(self.hostvars[host]["ansible_port"])

    @property
    def key(self) -> Path:
        return self.inventory / ".ssh" / "id_ed25519"

    @property
    def known_hosts(self) -> Path:
        return self.inventory / ".ssh" / "known_hosts"


def lab_status(name: str = LAB_NAME) -> dict:
    proc = lab_script("status", "--name", name, "--json", check=False)
    text = proc.stdout
    return json.loads(text[text.index("{"):text.rindex("}") + 1])


def load_lab(name: str, inventory: Path) -> Lab:
    status = lab_status(name)
    assert status["running"], f"lab {name!r} is not running: {status}"
    return Lab(name=name, inventory=inventory, network=status["network"], layout=status["layout"],
               debian=status["debian"], inventory_data=ansible_inventory(inventory))


def keep() -> bool:
    return os.environ.get("SELFHOST_LAB_KEEP", "") not in ("", "0", "false", "no")


@pytest.fixture(scope="session")
def lab() -> Lab:
    """The single-node lab, up and converged with the code under test."""
    if docker("info", check=False).returncode != 0:
        pytest.fail("the Docker engine does not answer (make engine)")
    status = lab_status()
    if status["exists"] and status["layout"] != "single":
        pytest.fail(f"a {status['layout']!r} lab is up; the lab tests need the single-node one: "
                    f"destroy it first (make lab-destroy)")
    created = not status["exists"]
    debian = status["debian"] if status["exists"] else os.environ.get("SELFHOST_LAB_DEBIAN", "13")
    # `up` is idempotent: on an existing lab it refreshes the inventory and converges the
    # current code (the first converge of this session; tests assert the second).
    proc = lab_script("up", "--layout", "single", "--debian", debian, check=False)
    if proc.returncode != 0:
        pytest.fail(f"scripts/lab.py up failed (rc {proc.returncode}):\n{proc.stdout[-8000:]}")
    yield load_lab(LAB_NAME, LAB_INVENTORY)
    if created and not keep():
        lab_script("destroy", "--name", LAB_NAME, check=False)


@pytest.fixture(scope="session")
def prober(lab: Lab) -> str:
    """A plain container on the lab network: "another host" to probe the lab from."""
    start_plain_container(PROBER, image=f"selfhost-dify/debian:{lab.debian}", network=lab.network,
                          labels={"selfhost.lab": "1", "selfhost.lab.name": lab.name})
    yield PROBER
    docker("rm", "-f", PROBER, check=False)
