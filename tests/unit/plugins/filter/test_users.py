# Copyright: selfhost.dify contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Unit tests for the selfhost.dify.admin_users filter."""

from __future__ import annotations

from ansible_collections.selfhost.dify.plugins.filter.users import FilterModule, admin_users


def test_filter_is_registered():
    assert FilterModule().filters() == {"admin_users": admin_users}


def test_defaults_are_filled_in():
    assert admin_users([{"name": "alice"}]) == [{
        "name": "alice", "state": "present", "sudo": True, "shell": "/bin/bash",
        "authorized_keys": [], "manage_keys": False,
    }]


def test_given_values_win_and_empty_key_list_is_managed():
    users = admin_users([{"name": "bob", "sudo": False, "shell": "/bin/zsh", "state": "absent", "authorized_keys": []}])
    assert users[0]["sudo"] is False and users[0]["shell"] == "/bin/zsh" and users[0]["state"] == "absent"
    assert users[0]["manage_keys"] is True and users[0]["authorized_keys"] == []


def test_null_values_take_the_default_and_junk_is_dropped():
    users = admin_users([{"name": "carol", "sudo": None, "authorized_keys": None}, "dave", None])
    assert users == [{"name": "carol", "state": "present", "sudo": True, "shell": "/bin/bash",
                      "authorized_keys": [], "manage_keys": False}]
    assert admin_users(None) == []
