# Copyright: selfhost.dify contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The collection's metadata: its license, and the collections it declares are exactly the ones
its roles and playbooks call.

The used collections, modules, module options and filters are read from the FQCNs in the
tree (every YAML file under roles/ and playbooks/, and site.yml). The floors are then
checked against the documentation of the installed collections: a floor below the
version that added a module, a filter or an option the tree uses would let a user
install a collection on which a role fails.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest
import yaml
from ansible.module_utils.compat.version import LooseVersion

ROOT = Path(__file__).resolve().parents[2]
ANSIBLE_DOC = ROOT / ".venv" / "bin" / "ansible-doc"
OWN = {"ansible.builtin", "ansible.legacy", "selfhost.dify"}
FQCN = r"[a-z][a-z0-9_]*\.[a-z][a-z0-9_]*\.[a-z][a-z0-9_]*"
FILTER_RE = re.compile(r"\|\s*(" + FQCN + r")\b")


def _yaml_files():
    files = [ROOT / "site.yml"]
    for top in ("roles", "playbooks"):
        files += sorted((ROOT / top).rglob("*.yml"))
    return files


def _collection(fqcn):
    return ".".join(fqcn.split(".")[:2])


def _walk_tasks(node, found):
    """Record {module: set(options)} for every mapping whose key is a foreign FQCN."""
    if isinstance(node, list):
        for item in node:
            _walk_tasks(item, found)
    elif isinstance(node, dict):
        for key, value in node.items():
            if isinstance(key, str) and re.fullmatch(FQCN, key) and _collection(key) not in OWN:
                options = found.setdefault(key, set())
                if isinstance(value, dict):
                    options.update(value)
            _walk_tasks(value, found)


def used_plugins():
    modules, filters = {}, set()
    for path in _yaml_files():
        text = path.read_text()
        filters.update(name for name in FILTER_RE.findall(text) if _collection(name) not in OWN)
        if "/templates/" in str(path) or "/meta/" in str(path):
            continue
        _walk_tasks(yaml.safe_load(text), modules)
    return modules, filters


def _galaxy_dependencies():
    return yaml.safe_load((ROOT / "galaxy.yml").read_text())["dependencies"] or {}


def _requirements():
    listed = yaml.safe_load((ROOT / "requirements.yml").read_text())["collections"]
    return {item["name"]: item["version"] for item in listed}


def _floor(spec):
    match = re.fullmatch(r">=\s*([0-9][0-9.]*)", spec.strip())
    assert match, f"a dependency is declared as a floor (>=X.Y.Z), got {spec!r}"
    return LooseVersion(match.group(1))


def _docs(kind, names):
    if not names:
        return {}
    proc = subprocess.run([str(ANSIBLE_DOC), "-j", "-t", kind, *sorted(names)], capture_output=True,
                          text=True, check=True, cwd=ROOT)
    return json.loads(proc.stdout)


@pytest.fixture(scope="module")
def used():
    return used_plugins()


def test_the_tree_calls_collections(used):
    modules, _filters = used
    # The reader finds what the roles are known to call.
    assert "community.docker.docker_compose_v2" in modules
    assert "project_src" in modules["community.docker.docker_compose_v2"]


def test_galaxy_and_requirements_declare_exactly_the_used_collections(used):
    modules, filters = used
    needed = {_collection(name) for name in set(modules) | filters}
    assert set(_galaxy_dependencies()) == needed, "galaxy.yml dependencies differ from the collections the tree calls"
    assert set(_requirements()) == needed, "requirements.yml differs from the collections the tree calls"
    assert _galaxy_dependencies() == _requirements(), "galaxy.yml and requirements.yml give different floors"


def test_floors_hold_every_module_option_and_filter_used(used):
    modules, filters = used
    floors = {name: _floor(spec) for name, spec in _galaxy_dependencies().items()}
    too_low = []

    def need(collection, version, what):
        if version and collection in floors and floors[collection] < LooseVersion(str(version)):
            too_low.append(f"{what} needs {collection} >= {version}, the floor is {floors[collection]}")

    for name, doc in _docs("module", modules).items():
        collection = _collection(name)
        doc = doc["doc"]
        if doc.get("version_added_collection", collection) == collection:
            need(collection, doc.get("version_added"), name)
        options = doc.get("options") or {}
        for option in sorted(modules[name]):
            spec = options.get(option)
            if spec is None:
                spec = next((s for s in options.values() if option in (s.get("aliases") or [])), None)
            assert spec is not None, f"{name} has no option {option} in the installed collection"
            if spec.get("version_added_collection", collection) == collection:
                need(collection, spec.get("version_added"), f"{name} option {option}")
    for name, doc in _docs("filter", filters).items():
        collection = _collection(name)
        need(collection, doc["doc"].get("version_added"), f"filter {name}")
    assert not too_low, "\n".join(too_low)


def test_license_file_matches_the_headers():
    assert yaml.safe_load((ROOT / "galaxy.yml").read_text())["license"] == ["GPL-3.0-or-later"]
    text = (ROOT / "LICENSE").read_text()
    assert "GNU GENERAL PUBLIC LICENSE" in text and "Version 3, 29 June 2007" in text
    sources = sorted((ROOT / "plugins").rglob("*.py"))
    assert sources
    unlabelled = [str(p.relative_to(ROOT)) for p in sources if "GPL-3.0-or-later" not in p.read_text()]
    assert not unlabelled, f"plugin files without the license header: {unlabelled}"
