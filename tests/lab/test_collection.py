"""The collection as users get it: built with ansible-galaxy, installed into a
collections path, and run as `selfhost.dify.site` from a directory with no project
ansible.cfg against the lab inventory."""
from __future__ import annotations

import json
import tarfile

import pytest
import yaml

from tests.helpers import ROOT, recap, run, tool

pytestmark = [pytest.mark.lab, pytest.mark.docker]


# Nothing of the lab's generated state, and nothing of the development tree, ships.
FORBIDDEN = (
    "inventories/lab/.ssh",
    "inventories/lab/hosts.yml",
    "inventories/lab/.credentials",
    "inventories/lab/group_vars/all/generated.yml",
    ".venv",
    "collections",
    ".git",
    ".ansible",
    "molecule",
    "tests",
)


@pytest.fixture(scope="module")
def tarball(tmp_path_factory):
    out = tmp_path_factory.mktemp("build")
    run([tool("ansible-galaxy"), "collection", "build", "--output-path", out, ROOT], cwd=out)
    built = sorted(out.glob("selfhost-dify-*.tar.gz"))
    assert len(built) == 1, built
    return built[0]


def test_tarball_holds_no_lab_secrets_or_dev_tree(tarball):
    with tarfile.open(tarball) as tar:
        names = [n.removeprefix("./") for n in tar.getnames()]
    assert "roles/base/tasks/main.yml" in names and "playbooks/site.yml" in names and "LICENSE" in names
    leaked = [n for n in names for f in FORBIDDEN if n == f or n.startswith(f + "/")]
    assert not leaked, f"the collection tarball ships {leaked}"
    assert not [n for n in names if n.endswith(("id_ed25519", "id_ed25519.pub", "known_hosts")) or "test_only" in n]


def test_installed_collection_converges_the_lab(lab, tarball, tmp_path):
    collections = tmp_path / "collections"
    cfg = tmp_path / "ansible.cfg"
    cfg.write_text(f"[defaults]\ncollections_path = {collections}\n")
    cwd = tmp_path / "work"
    cwd.mkdir()
    env = {"ANSIBLE_CONFIG": str(cfg), "ANSIBLE_COLLECTIONS_PATH": str(collections),
           "ANSIBLE_NOCOLOR": "1", "ANSIBLE_FORCE_COLOR": "0"}
    # --offline: no Galaxy here; the declared dependencies must be found among the installed
    # collections (a user with Galaxy access gets them downloaded by the same command).
    installed = run([tool("ansible-galaxy"), "collection", "install", "--offline", "-p", collections, tarball],
                    env=env, cwd=cwd, inherit_ansible_env=False).stdout
    declared = yaml.safe_load((ROOT / "galaxy.yml").read_text())["dependencies"]
    assert declared, "galaxy.yml declares no dependencies"
    unresolved = [name for name in declared if f"'{name}:" not in installed]
    assert not unresolved, f"the install did not resolve {unresolved}:\n{installed}"

    listing = run([tool("ansible-galaxy"), "collection", "list", "selfhost.dify", "--format", "json"],
                  env=env, cwd=cwd, inherit_ansible_env=False).stdout
    paths = list(json.loads(listing[listing.index("{"):]))
    assert paths == [str(collections / "ansible_collections")], paths

    proc = run([tool("ansible-playbook"), "-i", lab.inventory, "selfhost.dify.site"], timeout=1800,
               env=env, cwd=cwd, check=False, inherit_ansible_env=False)
    assert proc.returncode == 0, proc.stdout[-6000:]
    result = recap(proc.stdout)
    assert set(result) == set(lab.hosts)
    assert all(r["changed"] == 0 for r in result.values()), f"changes on a converged lab: {result}\n{proc.stdout[-6000:]}"
