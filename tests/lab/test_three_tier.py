"""The three-host layout (edge1, app1, data1) as its own lab next to the single-node one
(`scripts/lab.py up --name test3`): group membership, private addresses, and a firewall
rule given through the interface that opens a port on the data host to the dify group
only, applied by the base role across the three hosts."""
from __future__ import annotations

import json

import pytest

from tests.helpers import ansible_playbook, container_ip, lab as lab_script, listening, probe, recap
from tests.lab.conftest import keep, lab_status, load_lab

pytestmark = [pytest.mark.lab, pytest.mark.docker]

NAME = "test3"
EXPECTED_GROUPS = {
    "edge": ["edge1"], "dify": ["app1"],
    "postgresql": ["data1"], "redis": ["data1"], "object_storage": ["data1"],
}


@pytest.fixture(scope="module")
def three(tmp_path_factory):
    if lab_status(NAME)["exists"]:
        lab_script("destroy", "--name", NAME)  # left over from an interrupted run
    inventory = tmp_path_factory.mktemp("lab-three") / "inventory"
    # The hosts only: the test converges them itself, with its firewall rule.
    proc = lab_script("up", "--name", NAME, "--layout", "three", "--inventory", inventory, "--no-converge",
                      check=False)
    try:
        assert proc.returncode == 0, f"scripts/lab.py up --layout three failed:\n{proc.stdout[-8000:]}"
        yield load_lab(NAME, inventory)
    finally:
        if not keep():
            lab_script("destroy", "--name", NAME, "--all", check=False)


def test_hosts_are_in_their_groups(three):
    assert three.layout == "three"
    for group, hosts in EXPECTED_GROUPS.items():
        assert three.group(group) == hosts, group
    assert three.hosts == ["app1", "data1", "edge1"]
    for host in three.hosts:
        assert three.address(host) == container_ip(three.container(host), three.network)
    assert "lab_http_port" in three.hostvars["edge1"]
    assert "lab_http_port" not in three.hostvars["data1"]


def test_firewall_rule_opens_data_port_to_the_dify_group_only(three):
    rules = {"selfhost_firewall_rules_probe": [{"name": "pgprobe", "port": 5432, "sources": ["dify"]}]}
    proc = ansible_playbook(["-i", three.inventory, "site.yml", "--tags", "base", "-e", json.dumps(rules)])
    assert proc.returncode == 0, proc.stdout[-6000:]
    result = recap(proc.stdout)
    assert set(result) == set(three.hosts)
    assert all(r["failed"] == 0 and r["unreachable"] == 0 for r in result.values()), result

    data = three.address("data1")
    with listening(three.container("data1"), 5432):
        assert probe(three.container("app1"), data, 5432) == "open"
        assert probe(three.container("edge1"), data, 5432) == "timeout"
        # SSH stays open to every host of the private network
        assert probe(three.container("edge1"), data, 22) == "open"
