# Copyright: selfhost.dify contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Unit tests for the selfhost.dify.packages_missing, file_state_command, file_differs,
unit_differs and paths_differing filters."""

from __future__ import annotations

import hashlib
import subprocess

import pytest

from ansible_collections.selfhost.dify.plugins.filter.state import (
    FilterModule,
    file_differs,
    file_state_command,
    packages_missing,
    paths_differing,
    unit_differs,
)

# What dpkg-query --show --showformat='${Package} ${db:Status-Abbrev}\n' prints (the status
# abbreviation ends with a space); unknown names print nothing on stdout.
DPKG = "chrony ii \ntzdata ii \nsudo rc \nnftables iU \n"

# What stat --printf='%F|%U|%u|%G|%g|%a|%n\n' prints; missing paths print nothing on stdout.
STAT = (
    "directory|root|0|root|0|750|/opt/dify\n"
    "directory|UNKNOWN|1001|UNKNOWN|1001|750|/opt/dify/volumes/app/storage\n"
    "directory|root|0|seaweedfs|998|2750|/etc/seaweedfs\n"
    "regular empty file|caddy|997|adm|4|640|/var/log/caddy/access.log\n"
    "symbolic link|root|0|root|0|777|/opt/link\n"
    "directory|root|0|root|0|755|/opt/with|bar\n"
)


def test_filters_are_registered():
    assert FilterModule().filters() == {
        "packages_missing": packages_missing,
        "file_state_command": file_state_command,
        "file_differs": file_differs,
        "unit_differs": unit_differs,
        "paths_differing": paths_differing,
    }


def test_installed_packages_are_not_missing():
    assert packages_missing(["chrony", "tzdata"], DPKG) == []


def test_removed_half_installed_and_unknown_packages_are_missing_in_order():
    assert packages_missing(["sudo", "chrony", "dbus", "nftables"], DPKG) == ["sudo", "dbus", "nftables"]


def test_no_output_means_every_package_is_missing():
    assert packages_missing(["chrony"], "") == ["chrony"]
    assert packages_missing(["chrony"], None) == ["chrony"]


def test_names_apt_must_resolve_count_as_missing():
    out = "chrony ii \n"
    assert packages_missing(["chrony=4.6-1", "chrony:amd64", "chron*"], out) == ["chrony=4.6-1", "chrony:amd64", "chron*"]


def test_a_single_package_name_and_an_empty_list():
    assert packages_missing("chrony", DPKG) == []
    assert packages_missing([], DPKG) == []


def test_paths_as_wanted_do_not_differ():
    wanted = [
        {"path": "/opt/dify", "owner": "root", "group": "root", "mode": "0750"},
        {"path": "/opt/dify/volumes/app/storage", "owner": "1001", "group": 1001, "mode": "0750"},
        {"path": "/etc/seaweedfs", "owner": "root", "group": "seaweedfs", "mode": "2750"},
        {"path": "/var/log/caddy/access.log", "state": "file", "owner": "caddy", "group": "adm", "mode": "0640"},
        {"path": "/opt/with|bar", "mode": 0o755},
        {"path": "/opt/dify"},
    ]
    assert paths_differing(wanted, STAT) == []


def test_missing_paths_and_other_types_differ():
    wanted = [
        {"path": "/opt/dify/missing"},
        {"path": "/opt/link", "mode": "0777"},
        {"path": "/opt/dify", "state": "file"},
        {"path": "/var/log/caddy/access.log"},
    ]
    assert paths_differing(wanted, STAT) == wanted


def test_other_owner_group_or_mode_differs():
    wanted = [
        {"path": "/opt/dify", "owner": "dify"},
        {"path": "/opt/dify", "group": "1001"},
        {"path": "/opt/dify", "mode": "0755"},
        # The setgid bit is part of the mode: 0750 would clear it.
        {"path": "/etc/seaweedfs", "mode": "0750"},
        # A symbolic mode is left to the module.
        {"path": "/opt/dify", "mode": "u=rwx,g=rx"},
    ]
    assert paths_differing(wanted, STAT) == wanted


def test_no_stat_output_and_junk_entries():
    assert paths_differing([{"path": "/opt/dify"}], "") == [{"path": "/opt/dify"}]
    assert paths_differing([{"path": "/opt/dify"}], None) == [{"path": "/opt/dify"}]
    assert paths_differing(["/opt/dify", None], STAT) == ["/opt/dify", None]
    assert paths_differing([], STAT) == []


CONF = "bind 127.0.0.1\n"
SHA1 = hashlib.sha1(CONF.encode()).hexdigest()
# What file_state_command prints on a host (units after an empty line, as systemctl show does).
STATE = (
    "selfhost.dify file state\n"
    "read|/etc/redis/redis.conf\n"
    "read|/etc/redis\n"
    "read|/etc/gone\n"
    "read|/etc/systemd/system/redis-server.service\n"
    "regular file|root|0|redis|996|640|/etc/redis/redis.conf\n"
    "directory|root|0|root|0|755|/etc/redis\n"
    "symbolic link|root|0|root|0|777|/etc/systemd/system/redis-server.service\n"
    f"{SHA1}  /etc/redis/redis.conf\n"
    "\n"
    "Id=redis-server.service\nActiveState=active\nUnitFileState=enabled\n"
    "\n"
    "Id=apt-daily.timer\nActiveState=inactive\nUnitFileState=enabled\n"
    "\n"
    "Id=postgresql@17-main.service\nActiveState=active\nUnitFileState=enabled-runtime\n"
)
TEMPLATE = {"src": "redis.conf.j2", "dest": "/etc/redis/redis.conf", "owner": "root", "group": "redis", "mode": "0640"}


def test_file_state_command_passes_units_then_paths():
    argv = file_state_command(["/etc/redis", "/etc/x y"], ["redis-server", "apt-daily.timer", "bad unit;rm"])
    assert argv[:2] == ["sh", "-c"] and argv[3:] == ["file-state", "redis-server apt-daily.timer", "/etc/redis", "/etc/x y"]
    assert file_state_command("/etc/redis")[3:] == ["file-state", "", "/etc/redis"]


def test_file_state_command_reads_paths(tmp_path):
    conf = tmp_path / "a b.conf"
    conf.write_text(CONF)
    conf.chmod(0o640)
    out = subprocess.run(file_state_command([str(conf), str(tmp_path), str(tmp_path / "missing")]),
                         capture_output=True, text=True, check=True).stdout
    args = {"dest": str(conf), "mode": "0640"}
    assert not file_differs(out, args, CONF)
    assert file_differs(out, args, CONF + "# edited\n")
    assert not file_differs(out, {"path": str(tmp_path), "state": "directory"})
    assert not file_differs(out, {"path": str(tmp_path / "missing"), "state": "absent"})


def test_a_template_as_rendered_does_not_differ():
    assert not file_differs(STATE, TEMPLATE, CONF)


def test_other_content_owner_group_or_mode_differs():
    assert file_differs(STATE, TEMPLATE, CONF + "# hand edit\n")
    for key, value in (("owner", "redis"), ("group", "root"), ("mode", "0644")):
        assert file_differs(STATE, dict(TEMPLATE, **{key: value}), CONF)


def test_copy_content_is_compared_and_missing_content_differs():
    copy = {"dest": "/etc/redis/redis.conf", "content": CONF, "mode": "0640"}
    assert not file_differs(STATE, copy)
    assert file_differs(STATE, dict(copy, content="other"))
    assert file_differs(STATE, {"dest": "/etc/redis/redis.conf"})


def test_paths_not_read_or_output_without_header_differ():
    assert file_differs(STATE, dict(TEMPLATE, dest="/etc/redis/other.conf"), CONF)
    # Not read is not missing: an absent path the command was not asked about differs.
    assert file_differs(STATE, {"path": "/etc/never-read", "state": "absent"})
    assert file_differs(STATE.replace("selfhost.dify file state\n", ""), TEMPLATE, CONF)
    assert file_differs("", {"path": "/etc/gone", "state": "absent"})
    assert file_differs(None, TEMPLATE, CONF)


def test_file_states():
    assert not file_differs(STATE, {"path": "/etc/redis", "state": "directory", "owner": "root", "mode": 0o755})
    assert file_differs(STATE, {"path": "/etc/redis", "state": "directory", "mode": "0750"})
    assert file_differs(STATE, {"path": "/etc/gone", "state": "directory"})
    assert not file_differs(STATE, {"path": "/etc/gone", "state": "absent"})
    assert file_differs(STATE, {"path": "/etc/systemd/system/redis-server.service", "state": "absent"})
    assert not file_differs(STATE, {"path": "/etc/redis/redis.conf", "state": "file", "group": "996"})
    touch = {"path": "/etc/redis/redis.conf", "state": "touch", "access_time": "preserve", "modification_time": "preserve"}
    assert not file_differs(STATE, touch)
    assert file_differs(STATE, dict(touch, modification_time="now"))
    assert file_differs(STATE, {"path": "/etc/redis", "state": "link", "src": "/tmp"})


@pytest.mark.parametrize("args", [
    dict(TEMPLATE, backup=True),
    dict(TEMPLATE, mode="u=rw,g=r"),
    "not a dict",
    None,
])
def test_what_the_filter_cannot_judge_differs(args):
    assert file_differs(STATE, args, CONF)


def test_units_active_and_enabled_do_not_differ():
    assert not unit_differs(STATE, {"name": "redis-server", "state": "started", "enabled": True, "daemon_reload": False})
    assert not unit_differs(STATE, {"name": "redis-server.service", "enabled": True})
    assert not unit_differs(STATE, {"name": "postgresql@17-main", "state": "started"})


def test_units_that_would_change_or_cannot_be_judged_differ():
    assert unit_differs(STATE, {"name": "apt-daily.timer", "state": "started", "enabled": True})
    assert unit_differs(STATE, {"name": "postgresql@17-main", "enabled": True})
    assert unit_differs(STATE, {"name": "unknown", "state": "started"})
    assert unit_differs(STATE, {"name": "redis-server", "state": "started", "daemon_reload": True})
    assert unit_differs(STATE, {"name": "redis-server", "state": "restarted"})
    assert unit_differs(STATE, {"name": "redis-server", "enabled": False})
    assert unit_differs(STATE, {"name": "redis-server"})
    assert unit_differs(STATE, {"name": "redis-server", "state": "started", "scope": "user"})
    assert unit_differs(STATE.replace("selfhost.dify file state\n", ""), {"name": "redis-server", "state": "started"})
    assert unit_differs(None, {"name": "redis-server", "state": "started"})
