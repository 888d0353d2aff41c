"""Run every molecule scenario under molecule/ as one test each.

Each scenario's own sequence (shared config in .config/molecule/config.yml) is
create → prepare → converge → idempotence (changed=0) → check → verify → destroy;
its verify step holds the behaviour tests (testinfra) and the check-mode assertion.
The full log of each scenario is kept in tests/output/molecule-<scenario>.log.
"""
from __future__ import annotations

import os
import time

import pytest

from tests.helpers import ROOT, VENV_BIN, run, tool

SCENARIOS = sorted(p.parent.name for p in (ROOT / "molecule").glob("*/molecule.yml"))


@pytest.mark.docker
@pytest.mark.molecule
@pytest.mark.parametrize("scenario", SCENARIOS)
def test_molecule_scenario(scenario):
    out_dir = ROOT / "tests" / "output"
    out_dir.mkdir(parents=True, exist_ok=True)
    log = out_dir / f"molecule-{scenario}.log"
    started = time.time()
    proc = run([tool("molecule"), "test", "-s", scenario], check=False, timeout=2400,
               env={"ANSIBLE_FORCE_COLOR": "0", "PY_COLORS": "0", "NO_COLOR": "1",
                    # molecule calls ansible-config and ansible-playbook by name
                    "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}"})
    log.write_text(proc.stdout)
    print(f"molecule {scenario}: {time.time() - started:.0f}s, log {log}")
    assert proc.returncode == 0, f"molecule test -s {scenario} failed; tail of {log}:\n{proc.stdout[-8000:]}"
