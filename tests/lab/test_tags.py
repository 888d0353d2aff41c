"""Every tag of site.yml alone on the converged single-node lab: the drift-correction run a
user makes for one role (`ansible-playbook -i inventories/lab site.yml --tags <tag>`) succeeds,
changes nothing and runs that role's tasks (none for the backend and proxy the lab does not
use: minio, nginx). tests/lab_three runs the tags whose roles reach across hosts on the three-host layout."""
from __future__ import annotations

import pytest

from tests.helpers import applied_roles, assert_tag_alone_changes_nothing, site_tags

pytestmark = [pytest.mark.lab, pytest.mark.docker]


@pytest.mark.parametrize("tag", sorted(site_tags()))
def test_tag_alone_changes_nothing(lab, tag):
    assert_tag_alone_changes_nothing(lab.inventory, tag, lab.hosts, applied_roles(lab))
