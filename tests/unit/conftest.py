# Copyright: selfhost.dify contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Make ``ansible_collections.selfhost.dify`` importable when pytest runs from the checkout.

The checkout holds collections/ansible_collections/selfhost/dify -> ../../.. (a symlink), so
putting collections/ on sys.path lets the tests import the plugins by their collection
path, exactly as Ansible loads them. Under ``ansible-test units`` the collection is
already importable and this does nothing.
"""

from __future__ import annotations

import sys
from pathlib import Path

_COLLECTIONS = Path(__file__).resolve().parents[2] / "collections"

try:
    import ansible_collections.selfhost.dify  # noqa: F401  pylint: disable=unused-import
except ImportError:
    if _COLLECTIONS.is_dir():
        # ansible_collections is a namespace package: its path follows sys.path.
        sys.path.insert(0, str(_COLLECTIONS))
