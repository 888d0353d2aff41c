# Copyright: selfhost.dify contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""TEST DOUBLE, NOT DIFY: ``python3 -m dify_double`` (the image's ``double`` command) runs the
contract double's entry point (double.py)."""

import sys

from .double import main

sys.exit(main())
