"""Drift: hand edits to what the base role manages (sshd, the live firewall) are put
back by the next run of `site.yml --tags base`, which reports them as changes."""
from __future__ import annotations

import json

import pytest

from tests.helpers import ansible_playbook, docker, listening, probe, recap, ssh_auth_methods

pytestmark = [pytest.mark.lab, pytest.mark.docker]

SSHD_DROPIN = "/etc/ssh/sshd_config.d/00-selfhost.conf"
TABLE = ("inet", "selfhost")


def input_chain(container: str) -> dict:
    """The base chain of the selfhost table that hooks input: {name, policy}."""
    data = json.loads(docker("exec", container, "nft", "-j", "list", "table", *TABLE).stdout)
    for item in data["nftables"]:
        chain = item.get("chain")
        if chain and chain.get("hook") == "input":
            return chain
    raise AssertionError(f"{container}: no input base chain in table {' '.join(TABLE)}")


def base_run(lab):
    proc = ansible_playbook(["-i", lab.inventory, "site.yml", "--tags", "base"])
    assert proc.returncode == 0, proc.stdout[-6000:]
    return recap(proc.stdout)


def test_hand_edits_are_reverted_and_reported(lab, prober):
    host = lab.hosts[0]
    container, address = lab.container(host), lab.address(host)

    # By hand: allow password logins, open 8765 (a port nothing of the stack uses) and relax the policy in the live table.
    assert docker("exec", container, "test", "-f", SSHD_DROPIN, check=False).returncode == 0, \
        f"{host}: the base role's sshd drop-in {SSHD_DROPIN} is missing"
    docker("exec", container, "sh", "-c",
           f"sed -i -E 's/^(PasswordAuthentication|KbdInteractiveAuthentication)\\b.*/\\1 yes/I' {SSHD_DROPIN} && "
           f"{{ grep -qi '^PasswordAuthentication yes' {SSHD_DROPIN} || "
           f"sed -i '1i PasswordAuthentication yes' {SSHD_DROPIN}; }} && "
           "systemctl reload ssh")
    chain = input_chain(container)["name"]
    docker("exec", container, "nft", "insert", "rule", *TABLE, chain, "tcp", "dport", "8765", "accept")
    docker("exec", container, "nft", "chain", *TABLE, chain, "{ policy accept ; }")

    # The drift is real: a user would now see it.
    assert "password" in ssh_auth_methods(lab.port(host))
    with listening(container, 8765):
        assert probe(prober, address, 8765) == "open"

    result = base_run(lab)
    assert result[host]["changed"] > 0, f"drift not reported: {result}"

    assert "password" not in ssh_auth_methods(lab.port(host))
    assert input_chain(container).get("policy") == "drop"
    with listening(container, 8765):
        assert probe(prober, address, 8765) == "timeout"

    result = base_run(lab)
    assert all(r["changed"] == 0 for r in result.values()), f"run after the repair changed: {result}"
