# -*- coding: utf-8 -*-
# Copyright: selfhost.dify contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The ``selfhost.dify.admin_users`` filter: admin user entries with their defaults filled in.

Documentation: admin_users.yml next to this file.
"""

from __future__ import annotations

from collections.abc import Mapping

USER_DEFAULTS = {"state": "present", "sudo": True, "shell": "/bin/bash"}


def admin_users(users):
    """Each user dict with ``state``, ``sudo`` and ``shell`` defaulted and key handling made explicit.

    ``manage_keys`` is true when the entry has ``authorized_keys`` (an empty list then
    removes every key); ``authorized_keys`` is always a list. Entries that are not dicts
    are dropped: the preflight reports them.
    """
    result = []
    for user in users or []:
        if not isinstance(user, Mapping):
            continue
        entry = dict(USER_DEFAULTS)
        entry.update({k: v for k, v in user.items() if v is not None})
        entry["manage_keys"] = user.get("authorized_keys") is not None
        entry["authorized_keys"] = list(user.get("authorized_keys") or [])
        result.append(entry)
    return result


class FilterModule:
    """selfhost.dify user filters."""

    def filters(self):
        return {"admin_users": admin_users}
