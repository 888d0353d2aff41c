# -*- coding: utf-8 -*-
# Copyright: selfhost.dify contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Filters that compare what a host reports with what a role wants, so that a rerun asks the
host once and runs a module only where something differs.

``selfhost.dify.packages_missing``: which packages dpkg does not report installed.
``selfhost.dify.file_state_command``: the command that reads files, directories and units at once.
``selfhost.dify.file_differs``: whether a file, template or copy task would change its path.
``selfhost.dify.unit_differs``: whether a task starting and enabling a systemd unit would change it.
``selfhost.dify.paths_differing``: which directories differ from their wanted owner and mode.

Documentation: the .yml file of each filter next to this file.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping

# A plain package name: anything else (a version, an architecture, a pattern) counts as missing.
PLAIN_NAME = re.compile(r"^[a-z0-9][a-z0-9+.-]+$")
# stat(1) types by the state of ansible.builtin.file.
STAT_TYPES = {"directory": ("directory",), "file": ("regular file", "regular empty file")}
OCTAL_MODE = re.compile(r"^0?[0-7]{3,4}$")


def packages_missing(packages, dpkg_output):
    """The names of ``packages`` that ``dpkg_output`` does not list as installed.

    ``dpkg_output`` is what ``dpkg-query --show --showformat='${Package} ${db:Status-Abbrev}\\n'``
    prints for those packages: a package is installed when its status is ``ii`` (wanted install,
    installed). A name dpkg-query does not know prints nothing on stdout.
    """
    if isinstance(packages, str):
        packages = [packages]
    installed = set()
    for line in (dpkg_output or "").splitlines():
        fields = line.split()
        if len(fields) >= 2 and fields[1] == "ii":
            installed.add(fields[0])
    return [p for p in packages or [] if not (isinstance(p, str) and PLAIN_NAME.match(p) and p in installed)]


# What file_state_command prints first: without it (the command did not run) nothing is known.
# Then one line per path it was given ("read|<path>"), so that a path it was not asked about
# is never taken for a missing one.
STATE_HEADER = "selfhost.dify file state"
READ_PREFIX = "read|"
# The units come first, as one argument (names have no spaces); systemctl prints one block of
# properties per unit, blocks separated by an empty line.
STATE_SCRIPT = (
    "units=$1; shift; "
    "printf '%s\\n' '" + STATE_HEADER + "'; "
    "printf '" + READ_PREFIX + "%s\\n' \"$@\"; "
    "stat --printf='%F|%U|%u|%G|%g|%a|%n\\n' -- \"$@\" 2>/dev/null; "
    "sha1sum -- \"$@\" 2>/dev/null; "
    "if [ -n \"$units\" ]; then echo; systemctl show --property=Id,ActiveState,UnitFileState -- $units 2>/dev/null; fi; "
    "exit 0"
)
UNIT_NAME = re.compile(r"^[A-Za-z0-9:_.@-]+$")
UNIT_SUFFIXES = (".service", ".socket", ".timer", ".target", ".path", ".mount", ".slice", ".scope")
SHA1_LINE = re.compile(r"^([0-9a-f]{40})  (.+)$")
# Arguments of ansible.builtin.file, template and copy that file_differs can check; any other
# (backup, attributes, remote_src, ...) makes it leave the decision to the module.
KNOWN_ARGS = {"src", "dest", "path", "state", "owner", "group", "mode", "validate", "content",
              "access_time", "modification_time"}


def _stat_lines(stat_output):
    """{path: {type, owner, group, mode, checksum}} from the output of file_state_command (or of
    ``stat --printf='%F|%U|%u|%G|%g|%a|%n\\n'`` alone)."""
    found = {}
    checksums = {}
    for line in (stat_output or "").splitlines():
        sha1 = SHA1_LINE.match(line)
        if sha1:
            checksums[sha1.group(2)] = sha1.group(1)
            continue
        fields = line.split("|", 6)
        if len(fields) == 7:
            kind, user, uid, group, gid, mode, path = fields
            found[path] = {"type": kind, "owner": (user, uid), "group": (group, gid), "mode": mode}
    for path, checksum in checksums.items():
        if path in found:
            found[path]["checksum"] = checksum
    return found


def _attributes_match(entry, now):
    return (all(entry.get(key) is None or str(entry[key]) in now[key] for key in ("owner", "group"))
            and (entry.get("mode") is None or _same_mode(entry["mode"], now["mode"])))


def _same_mode(wanted, actual):
    if isinstance(wanted, bool):
        return False
    if isinstance(wanted, int):
        # YAML read 0750 as an octal int already (ansible.builtin.file does the same).
        return wanted == int(actual, 8)
    wanted = str(wanted)
    return bool(OCTAL_MODE.match(wanted)) and int(wanted, 8) == int(actual, 8)


def _unit_id(name):
    name = str(name)
    return name if name.endswith(UNIT_SUFFIXES) else name + ".service"


def file_state_command(paths, units=None):
    """The argv of a command that prints, for each of ``paths`` that exists, its type, owner,
    group and mode (stat) and, for regular files, the SHA-1 of its content (sha1sum), after a
    header line; then, for each of ``units``, whether it runs and is enabled (systemctl show).
    Read-only; it always exits 0 (a missing path is simply not listed)."""
    if isinstance(paths, str):
        paths = [paths]
    if isinstance(units, str):
        units = [units]
    names = [str(u) for u in units or [] if UNIT_NAME.match(str(u))]
    return ["sh", "-c", STATE_SCRIPT, "file-state", " ".join(names)] + [str(p) for p in paths or []]


def _units(state_output):
    """{unit id: {property: value}} from the systemctl show blocks of file_state_command."""
    units = {}
    block = {}
    for line in (state_output or "").splitlines() + [""]:
        if not line:
            if "Id" in block:
                units[block["Id"]] = block
            block = {}
        elif "=" in line and "|" not in line:
            key, value = line.split("=", 1)
            block[key] = value
    return units


def file_differs(state_output, args, content=None):
    """Whether the task with module arguments ``args`` (ansible.builtin.file, template or
    copy) would change its path, judged from the output of file_state_command.

    Template and copy (``dest``): the path must be a regular file whose SHA-1 is that of
    ``content`` (the rendered template; for copy, ``args.content`` when not given), with the
    owner, group and mode of ``args`` where set. File (``path``): ``state`` directory, file,
    absent, or touch with both times preserved. Anything else, a path the output does not
    was not asked about, or an output without the header, differs: the module then decides.
    """
    if not isinstance(args, Mapping) or set(args) - KNOWN_ARGS:
        return True
    lines = (state_output or "").splitlines()
    path = str(args.get("dest") or args.get("path") or "")
    if STATE_HEADER not in lines[:1] or READ_PREFIX + path not in lines:
        return True
    now = _stat_lines(state_output).get(path)
    if "dest" in args:
        if content is None:
            content = args.get("content")
        if content is None or now is None or now["type"] not in STAT_TYPES["file"]:
            return True
        checksum = hashlib.sha1(str(content).encode("utf-8")).hexdigest()
        return now.get("checksum") != checksum or not _attributes_match(args, now)
    state = args.get("state") or "file"
    if state == "absent":
        return now is not None
    if state == "touch":
        if not (args.get("access_time") == "preserve" and args.get("modification_time") == "preserve"):
            return True
        state = "file"
    if state not in STAT_TYPES or now is None or now["type"] not in STAT_TYPES[state]:
        return True
    return not _attributes_match(args, now)


def unit_differs(state_output, args):
    """Whether the ansible.builtin.systemd_service task with module arguments ``args`` would
    change its unit, judged from the output of file_state_command: only a task that starts
    and/or enables a unit without a daemon reload is judged; it does not differ when the unit
    is active and its unit file enabled (as asked). Anything else differs: the module decides.
    """
    if not isinstance(args, Mapping) or set(args) - {"name", "state", "enabled", "daemon_reload"}:
        return True
    if args.get("daemon_reload") or args.get("state") not in (None, "started") or args.get("enabled") not in (None, True):
        return True
    if (args.get("state"), args.get("enabled")) == (None, None):
        return True
    lines = (state_output or "").splitlines()
    unit = _units(state_output).get(_unit_id(args.get("name", ""))) if STATE_HEADER in lines[:1] else None
    if unit is None:
        return True
    return ((args.get("state") == "started" and unit.get("ActiveState") != "active")
            or (args.get("enabled") is True and unit.get("UnitFileState") != "enabled"))


def paths_differing(wanted, stat_output):
    """The entries of ``wanted`` whose path differs from what ``stat_output`` reports.

    Each entry is a dict with ``path`` and optionally ``state`` (``directory``, the default, or
    ``file``), ``owner``, ``group`` (a name or a number) and ``mode`` (octal, such as ``"0750"``),
    as ansible.builtin.file takes them; a key that is not set is not compared. A path stat
    did not report, of another type, or with another owner, group or mode differs. A mode
    that is not octal (a symbolic one), and an entry that is not a dict, always differ, so
    that the module decides.
    """
    found = _stat_lines(stat_output)
    result = []
    for entry in wanted or []:
        if not isinstance(entry, Mapping):
            result.append(entry)  # the module reports what is wrong with it
            continue
        now = found.get(str(entry.get("path", "")))
        same = (
            now is not None
            and now["type"] in STAT_TYPES.get(entry.get("state", "directory"), ())
            and _attributes_match(entry, now)
        )
        if not same:
            result.append(entry)
    return result


class FilterModule:
    """selfhost.dify filters comparing the host's state with the wanted one."""

    def filters(self):
        return {
            "packages_missing": packages_missing,
            "file_state_command": file_state_command,
            "file_differs": file_differs,
            "unit_differs": unit_differs,
            "paths_differing": paths_differing,
        }
