"""The three-host lab (edge1: edge; app1: dify; data1: postgresql, redis, object_storage),
brought up and converged with the whole site.yml once for this directory's tests
(`scripts/lab.py up --name test3 --layout three`, as `make lab LAYOUT=three` does for a user),
next to the single-node lab of tests/lab. Destroyed at the end unless SELFHOST_LAB_KEEP=1;
an existing test3 lab (SELFHOST_LAB_KEEP=1 from an earlier run) is reused and reconverged.
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.helpers import ROOT, docker, lab as lab_script, start_plain_container
from tests.lab.conftest import keep, lab_status, load_lab

NAME = "test3"
PROBER = "selfhost-lab-test3-prober"
# The restore drill replaces two of the lab's hosts: it runs after every other test here,
# whatever the order pytest is given files in.
LAST = "test_three_restore_drill.py"
FIGURES: dict[str, object] = {}
FIGURES_FILE = ROOT / "tests" / "output" / "restore-drill.txt"


def pytest_collection_modifyitems(items):
    items.sort(key=lambda item: item.path.name == LAST and item.path.parent == Path(__file__).parent)


@pytest.fixture
def figure(record_property):
    """Report a measured figure: a junit property of the test, a line in tests/output/restore-drill.txt
    and in the terminal summary (pytest runs without -s in the test command)."""
    def record(name: str, value) -> None:
        record_property(name, value)
        first = not FIGURES
        FIGURES[name] = value
        FIGURES_FILE.parent.mkdir(parents=True, exist_ok=True)
        with FIGURES_FILE.open("w" if first else "a") as out:
            out.write(f"{name}: {value}\n")
    return record


def pytest_terminal_summary(terminalreporter):
    if FIGURES:
        terminalreporter.section("three-host lab: measured")
        for name, value in FIGURES.items():
            terminalreporter.write_line(f"{name}: {value}")


@pytest.fixture(scope="session")
def three(tmp_path_factory):
    status = lab_status(NAME)
    if status["exists"] and (status["layout"] != "three" or not status.get("inventory")
                             or not Path(status["inventory"], "hosts.yml").exists()):
        lab_script("destroy", "--name", NAME, "--all", check=False)
        status = lab_status(NAME)
    inventory = Path(status["inventory"]) if status["exists"] else tmp_path_factory.mktemp("lab-three") / "inventory"
    debian = status["debian"] if status["exists"] else os.environ.get("SELFHOST_LAB_DEBIAN", "13")
    proc = lab_script("up", "--name", NAME, "--layout", "three", "--debian", debian, "--inventory", inventory,
                      check=False)
    try:
        assert proc.returncode == 0, f"scripts/lab.py up --layout three failed:\n{proc.stdout[-8000:]}"
        yield load_lab(NAME, inventory)
    finally:
        if not keep():
            lab_script("destroy", "--name", NAME, "--all", check=False)


@pytest.fixture(scope="session")
def outsider(three) -> str:
    """A plain container on the lab network that is none of the lab's hosts: the outside."""
    start_plain_container(PROBER, image=f"selfhost-dify/debian:{three.debian}", network=three.network,
                          labels={"selfhost.lab": "1", "selfhost.lab.name": three.name})
    yield PROBER
    docker("rm", "-f", PROBER, check=False)
