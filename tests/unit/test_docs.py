# Copyright: selfhost.dify contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The docs say exactly which Debian release each molecule scenario runs on."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
RELEASES = ("12", "13")


def scenario_releases():
    shared = yaml.safe_load((ROOT / ".config" / "molecule" / "config.yml").read_text())
    found = {}
    for path in sorted((ROOT / "molecule").glob("*/molecule.yml")):
        config = yaml.safe_load(path.read_text()) or {}
        images = {p["image"] for p in config.get("platforms", shared["platforms"])}
        found[path.parent.name] = {r for r in RELEASES if f"selfhost-dify/debian:{r}" in images}
    return found


def documented_releases():
    text = (ROOT / "docs" / "testing.md").read_text()
    table = re.search(r"<!-- debian-coverage:.*?-->\n(.*?)<!-- /debian-coverage -->", text, re.S)
    assert table, "docs/testing.md has no debian-coverage table"
    rows = [line.strip("|").split("|") for line in table.group(1).splitlines()[2:] if line.strip()]
    return {cells[0].strip(): {r for r, cell in zip(RELEASES, cells[1:]) if cell.strip() == "yes"}
            for cells in rows}


def test_debian_coverage_table_matches_the_scenarios():
    assert documented_releases() == scenario_releases()


def test_readme_names_the_debian_12_scenarios():
    on_12 = sorted(name for name, releases in scenario_releases().items() if "12" in releases)
    readme = (ROOT / "README.md").read_text()
    line = readme[readme.index("**Debian 12 (bookworm)**"):]
    line = line[:line.index("\n- ")]
    for name in on_12:
        role = name.removeprefix("edge-")
        assert role in line, f"README's Debian 12 line does not name {role}"
