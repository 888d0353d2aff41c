"""Converging site.yml on a converged lab changes nothing in check mode. The lab's second real
converge is the installed collection's (tests/lab/test_collection.py runs before this file:
`selfhost.dify.site` from the built tarball, changed=0 on every host); tests/lab/test_drift.py
converges again after every drift."""
from __future__ import annotations

import pytest

from tests.helpers import ansible_playbook, recap

pytestmark = [pytest.mark.lab, pytest.mark.docker]


def assert_unchanged(lab, args):
    proc = ansible_playbook(["-i", lab.inventory, "site.yml", *args])
    result = recap(proc.stdout)
    assert proc.returncode == 0, proc.stdout[-6000:]
    assert set(result) == set(lab.hosts), f"recap hosts {sorted(result)} != inventory {lab.hosts}"
    changed = {host: r["changed"] for host, r in result.items() if r["changed"] or r["failed"] or r["unreachable"]}
    assert not changed, f"site.yml {' '.join(args)} changed {changed} on a converged lab:\n{proc.stdout[-6000:]}"


def test_check_diff_reports_no_change(lab):
    assert_unchanged(lab, ["--check", "--diff"])
