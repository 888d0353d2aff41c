# Copyright: selfhost.dify contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""TEST DOUBLE, NOT DIFY: the Dify contract double (README.md), a package of one module per
doubled service (web, sandbox, plugin_daemon), their shared plumbing (server) and the entry
point (double). In its image it is the package ``dify_double``; in the checkout,
``tests.dify_double``."""
