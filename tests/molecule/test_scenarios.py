"""Run every molecule scenario under molecule/ as one test each.

Each scenario's own sequence (shared config in .config/molecule/config.yml) is
create → prepare → converge → idempotence (changed=0) → verify → destroy;
its verify step holds the behaviour tests (testinfra) and the check-mode assertion
(`--check --diff` reports changed=0: checked present in every scenario below).
The full log of each scenario is kept in tests/output/molecule-<scenario>.log, and the
verify step's own report in tests/output/junit-testinfra-<scenario>.xml (the closing line of
scripts/test.sh counts every testinfra test in it, each host separately).
"""
from __future__ import annotations

import os
import re
import time
import xml.etree.ElementTree as ET

import pytest

from tests.helpers import ROOT, VENV_BIN, docker, run, tool

SCENARIOS = sorted(p.parent.name for p in (ROOT / "molecule").glob("*/molecule.yml"))
# The internal role has no tasks of its own to converge: every other role's scenario runs it.
INTERNAL_ROLES = {"selfhost"}


def test_every_role_has_a_scenario():
    """An empty or partial scenario list fails here instead of passing with nothing run."""
    assert SCENARIOS, "no molecule scenario found under molecule/"
    converged = set()
    for scenario in SCENARIOS:
        text = (ROOT / "molecule" / scenario / "converge.yml").read_text()
        converged.update(re.findall(r"selfhost\.dify\.([a-z_]+)", text))
    roles = {p.name for p in (ROOT / "roles").iterdir() if (p / "tasks").is_dir()} - INTERNAL_ROLES
    assert roles, "no roles found"
    missing = sorted(roles - converged)
    assert not missing, f"roles no molecule scenario converges: {missing}"


def test_every_scenario_asserts_that_check_mode_changes_nothing():
    """molecule's own `check` step fails only on errors, so the sequence leaves it out: each
    scenario's testinfra tests run the converge with --check --diff and assert changed=0."""
    without = [scenario for scenario in SCENARIOS
               if not any("assert_check_mode_clean(" in path.read_text()
                          for path in (ROOT / "molecule" / scenario / "tests").glob("test_*.py"))]
    assert not without, f"scenarios that never assert changed=0 in check mode: {without}"


def _dangling_volumes():
    """Anonymous Docker volumes no container uses (a scenario's destroy must not leave any
    behind; named volumes belong to the labs, which remove their own)."""
    names = docker("volume", "ls", "--quiet", "--filter", "dangling=true").stdout.split()
    return {name for name in names if re.fullmatch(r"[0-9a-f]{64}", name)}


def _testinfra_report(path):
    root = ET.parse(path).getroot()
    suites = [root] if root.tag == "testsuite" else list(root)
    return {key: sum(int(s.get(key, 0)) for s in suites) for key in ("tests", "failures", "errors", "skipped")}


@pytest.mark.docker
@pytest.mark.molecule
@pytest.mark.parametrize("scenario", SCENARIOS)
def test_molecule_scenario(scenario):
    out_dir = ROOT / "tests" / "output"
    out_dir.mkdir(parents=True, exist_ok=True)
    log = out_dir / f"molecule-{scenario}.log"
    report = out_dir / f"junit-testinfra-{scenario}.xml"
    report.unlink(missing_ok=True)
    volumes_before = _dangling_volumes()
    started = time.time()
    proc = run([tool("molecule"), "test", "-s", scenario], check=False, timeout=2400,
               env={"ANSIBLE_FORCE_COLOR": "0", "PY_COLORS": "0", "NO_COLOR": "1",
                    # molecule calls ansible-config and ansible-playbook by name
                    "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}"})
    log.write_text(proc.stdout)
    print(f"molecule {scenario}: {time.time() - started:.0f}s, log {log}")
    assert proc.returncode == 0, f"molecule test -s {scenario} failed; tail of {log}:\n{proc.stdout[-8000:]}"
    assert report.is_file(), f"the verify step of {scenario} wrote no testinfra report ({report})"
    counts = _testinfra_report(report)
    assert counts["tests"] > counts["skipped"], f"{scenario}: no testinfra test ran: {counts}"
    left = _dangling_volumes() - volumes_before
    assert not left, f"{scenario} left Docker volumes behind (keep_volumes: false on its platforms): {sorted(left)}"
