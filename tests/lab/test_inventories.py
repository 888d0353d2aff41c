"""The committed example inventories: the documented groups and addresses, the
firewall interface per host, and no secrets or sample passwords anywhere."""
from __future__ import annotations

import ipaddress
import re

import pytest

from tests.helpers import ROOT, ansible_inventory

INVENTORIES = ROOT / "inventories"
GROUPS = ("postgresql", "redis", "object_storage", "dify", "edge")
DOCUMENTATION_NETS = [ipaddress.ip_network(n) for n in ("192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24")]
SAMPLE_SECRETS = re.compile(r"changeme|difyai123456|minioadmin|password123|secret123", re.IGNORECASE)


def documentation_address(value: str) -> bool:
    return any(ipaddress.ip_address(value) in net for net in DOCUMENTATION_NETS)


@pytest.mark.parametrize("name,expected", [
    ("production-single", {g: ["dify.example.com"] for g in GROUPS}),
    ("production-three-tier", {
        "edge": ["edge1.example.com"], "dify": ["app1.example.com"],
        "postgresql": ["data1.example.com"], "redis": ["data1.example.com"],
        "object_storage": ["data1.example.com"]}),
])
def test_example_inventory_groups_and_addresses(name, expected):
    inv = ansible_inventory(INVENTORIES / name)
    assert {g: sorted(inv.get(g, {}).get("hosts", [])) for g in GROUPS} == expected
    hostvars = inv["_meta"]["hostvars"]
    for host, hv in hostvars.items():
        assert host.endswith(".example.com")
        assert documentation_address(hv["ansible_host"]), f"{name}/{host}: {hv['ansible_host']}"
        if "selfhost_private_address" in hv:
            assert documentation_address(hv["selfhost_private_address"])
        keys = [k for u in hv["base_admin_users"] for k in u["authorized_keys"]]
        assert keys and all("REPLACE" in k for k in keys), "the placeholder key must say to replace it"
    if name == "production-three-tier":
        private = {hv["selfhost_private_address"] for hv in hostvars.values()}
        assert len(private) == len(hostvars), "each host needs its own private address"


def test_no_secret_values_in_committed_inventories():
    for path in INVENTORIES.rglob("*"):
        rel = path.relative_to(INVENTORIES).as_posix()
        generated = rel.startswith("lab/") and rel != "lab/group_vars/all/main.yml"
        if not path.is_file() or generated:
            continue
        text = path.read_text()
        assert not SAMPLE_SECRETS.search(text), f"{rel} holds a sample secret"
        assert "PRIVATE KEY" not in text, f"{rel} holds a private key"
        # A secret-looking variable may only be generated (the lab's password lookup into its
        # git-ignored .credentials/), never written as a value.
        for match in re.finditer(r"^[ \t]*(?!authorized_keys)(\w*(password|secret|_key)\w*)[ \t]*:[ \t]*(\S.*(\n[ \t]+.*)*)",
                                 text, re.MULTILINE | re.IGNORECASE):
            value = match.group(3)
            assert "lookup('ansible.builtin.password', inventory_dir ~ '/.credentials/" in value, \
                f"{rel} sets the secret-looking variable {match.group(1)} in clear text"
