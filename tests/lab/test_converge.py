"""Converging site.yml on a converged lab changes nothing, for real and in check mode."""
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


def test_second_converge_changes_nothing(lab):
    assert_unchanged(lab, [])


def test_check_diff_reports_no_change(lab):
    assert_unchanged(lab, ["--check", "--diff"])
